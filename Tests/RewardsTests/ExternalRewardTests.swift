import Foundation
import XCTest

@testable import Rewards

#if canImport(Glibc)
    import Glibc
#endif

/// A local HTTP server on a thread of its own: each connection's request body goes to `reply`,
/// which returns the raw bytes written back (status line, headers and body) before the close.
final class LocalHTTPServer: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let seen = Seen()
    var requests: [String] { seen.lock.withLock { seen.bodies } }

    /// The bodies received, shared with the serving thread (which must not hold the server, so
    /// that the server's deinit closes the listener).
    final class Seen: @unchecked Sendable {
        let lock = NSLock()
        var bodies: [String] = []
    }

    init(reply: @escaping @Sendable (String) -> String) throws {
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listener = listener
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, length) == 0 && listen(listener, 8) == 0 && getsockname(listener, $0, &length) == 0
            }
        }
        guard bound else { throw ExternalRewardError("test server: cannot listen") }
        port = Int(UInt16(bigEndian: address.sin_port))
        let seen = seen
        Thread {
            while true {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                let body = Self.readRequest(client)
                seen.lock.withLock { seen.bodies.append(body) }
                let response = Array(reply(body).utf8)
                _ = response.withUnsafeBytes { Glibc.send(client, $0.baseAddress, response.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
        }.start()
    }

    deinit {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    /// The body of one request (read up to its Content-Length).
    static func readRequest(_ client: Int32) -> String {
        var data = Data(), buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            if let end = data.range(of: Data("\r\n\r\n".utf8)) {
                let head = String(decoding: data[..<end.lowerBound], as: UTF8.self).lowercased()
                let length =
                    head.components(separatedBy: "\r\n").compactMap { line -> Int? in
                        line.hasPrefix("content-length:")
                            ? Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) : nil
                    }.first ?? 0
                if data.count - end.upperBound >= length {
                    return String(decoding: data[end.upperBound...].prefix(length), as: UTF8.self)
                }
            }
            let n = recv(client, &buffer, buffer.count, 0)
            guard n > 0 else { return String(decoding: data, as: UTF8.self) }
            data.append(contentsOf: buffer[..<n])
        }
    }

    static func ok(_ body: String) -> String {
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
    }
}

/// The external reward's request, its reply checks, the command and the HTTP client (issue 29,
/// point 1). The command tests run jq (installed by scripts/install-deps.sh) as the reward server.
final class ExternalRewardTests: XCTestCase {
    func request() -> ExternalRewardRequest {
        var r = ExternalRewardRequest(
            batch: 3, iteration: 2, prompts: ["1+2=", "say \"hi\"\n"], completions: ["3", "hi"], answers: ["3", nil],
            tasks: ["arith", ""])
        r.extras["bonus"] = ["0.5", nil]
        r.extras["meta"] = ["{\"a\":[1,2]}", "\"x\""]
        return r
    }

    func testTheRequestCarriesTRLsArgumentsTheColumnsAndOpenRLHFsFields() throws {
        let text = request().json()
        XCTAssertFalse(text.contains("\n"), "one line")
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        XCTAssertEqual(o["batch"] as? Int, 3)
        XCTAssertEqual(o["iteration"] as? Int, 2)
        XCTAssertEqual(o["prompts"] as? [String], ["1+2=", "say \"hi\"\n"])
        XCTAssertEqual(o["completions"] as? [String], ["3", "hi"])
        XCTAssertEqual(o["query"] as? [String], ["1+2=3", "say \"hi\"\nhi"])
        let answers = try XCTUnwrap(o["answer"] as? [Any])
        XCTAssertEqual(answers[0] as? String, "3")
        XCTAssertTrue(answers[1] is NSNull)
        XCTAssertEqual((o["labels"] as? [Any])?.first as? String, "3")
        XCTAssertEqual(o["task"] as? [String], ["arith", ""])
        let bonus = try XCTUnwrap(o["bonus"] as? [Any])
        XCTAssertEqual(bonus[0] as? Double, 0.5)
        XCTAssertTrue(bonus[1] is NSNull)
        let meta = try XCTUnwrap(o["meta"] as? [Any])
        XCTAssertEqual((meta[0] as? [String: Any])?["a"] as? [Int], [1, 2])
        XCTAssertEqual(meta[1] as? String, "x")
    }

    func testARepliesRewardsAreReadAndEveryWrongReplyNamesTheBatchAndQuotesIt() throws {
        XCTAssertEqual(
            try ExternalRewardReply.rewards("{\"rewards\": [1, -0.5, 0]}", count: 3, batch: 1, from: "t"),
            [
                1, -0.5, 0,
            ])
        let wrong: [(String, String)] = [
            ("{\"rewards\": [1, 2]}", "2 rewards for 3 completions"),
            ("{\"rewards\": [1, \"2\", 3]}", "reward 2 is not a number"),
            ("{\"rewards\": [1, true, 3]}", "reward 2 is not a number"),
            ("{\"rewards\": [1, null, 3]}", "reward 2 is not a number"),
            ("{\"rewards\": [1, NaN, 3]}", "not JSON (NaN and Infinity are not JSON numbers)"),
            ("[1, 2, 3]", "not a JSON object"),
            ("{\"score\": [1, 2, 3]}", "no list 'rewards'"),
            ("oops", "not a JSON object"),
        ]
        for (reply, problem) in wrong {
            XCTAssertThrowsError(try ExternalRewardReply.rewards(reply, count: 3, batch: 7, from: "t"), reply) {
                let message = "\($0)"
                XCTAssertTrue(message.contains("batch 7: \(problem)"), message)
                XCTAssertTrue(message.contains("the reply was: \(reply)"), message)
            }
        }
    }

    func testAFailedFunctionIsReportedWithTheEndOfItsTraceback() {
        let traceback = String(repeating: "  File x.py, line 1\\n", count: 200) + "ZeroDivisionError: division by zero"
        XCTAssertThrowsError(
            try ExternalRewardReply.rewards("{\"error\": \"\(traceback)\"}", count: 3, batch: 5, from: "t")
        ) {
            XCTAssertTrue("\($0)".contains("batch 5: the reward function failed:\n"), "\($0)")
            XCTAssertTrue("\($0)".hasSuffix("ZeroDivisionError: division by zero"), "\($0)")
        }
    }

    func jq(_ program: String) -> String { "jq -c --unbuffered '\(program)'" }

    func testACommandIsAskedOncePerBatchAndStaysUpBetweenBatches() throws {
        // The reward is the completion's length plus its bonus column plus the number of requests
        // the command has read: the second batch reaches the same process.
        let command = try ExternalRewardCommand(
            command: "jq -n -c --unbuffered 'foreach inputs as $r (0; . + 1; . as $n | {rewards: [range(0; "
                + "$r.completions | length) as $i | ($r.completions[$i] | length) + ($r.bonus[$i] // 0) + $n]})'")
        var r = request()
        for expected in [[1.5 + 1, 1.0 + 1 + 1], [1.5 + 2, 1.0 + 1 + 2]] {
            let reply = try command.exchange(r.json(), batch: r.batch, timeout: 30)
            XCTAssertEqual(try ExternalRewardReply.rewards(reply, count: 2, batch: r.batch, from: "jq"), expected)
            r.batch += 1
        }
        command.close()
    }

    func testACommandThatExitsTimesOutOrMiscountsIsAnErrorNamingTheBatch() throws {
        let cases: [(String, Double, String)] = [
            (
                "read line; printf partial; exit 3", 30,
                "exited with status 3 before replying to batch 3; it had written: partial"
            ),
            ("sleep 30.25; true", 0.5, "no reply to batch 3 within 0.5 s"),
            ("no-such-reward-command-here", 30, "exited with status 127 before replying to batch 3"),
        ]
        for (line, timeout, expected) in cases {
            let command = try ExternalRewardCommand(command: line)
            XCTAssertThrowsError(try command.exchange(request().json(), batch: 3, timeout: timeout), line) {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
            command.close()
        }
        // The timed-out command's own child (sh forks `sleep` in a list) was ended with it.
        let sleeping = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter {
            (try? String(contentsOfFile: "/proc/\($0)/cmdline", encoding: .utf8)) == "sleep\u{0}30.25\u{0}"
        }
        XCTAssertEqual(sleeping, [])
        // A command that never reads its stdin: a request larger than the pipe's buffer is sent
        // against the same deadline, not blocked on.
        var big = request()
        big.completions = [String(repeating: "x", count: 200_000), "y"]
        let deaf = try ExternalRewardCommand(command: "sleep 30.5; true")
        XCTAssertThrowsError(try deaf.exchange(big.json(), batch: 4, timeout: 0.5)) {
            XCTAssertTrue("\($0)".contains("no reply to batch 4 within 0.5 s"), "\($0)")
        }
        deaf.close()
        let miscount = try ExternalRewardCommand(command: jq("{rewards: [1]}"))
        let reply = try miscount.exchange(request().json(), batch: 3, timeout: 30)
        XCTAssertThrowsError(try ExternalRewardReply.rewards(reply, count: 2, batch: 3, from: "jq")) {
            XCTAssertTrue("\($0)".contains("batch 3: 1 rewards for 2 completions"), "\($0)")
        }
        miscount.close()
    }

    func testEndpointsAreParsedAndHTTPSIsRefusedWithTheReason() throws {
        XCTAssertEqual(
            try HTTPEndpoint("http://localhost:5000/get_reward"), try HTTPEndpoint("http://localhost:5000/get_reward"))
        let e = try HTTPEndpoint("http://10.0.0.2:8080/a/b?x=1")
        XCTAssertEqual([e.host, "\(e.port)", e.path], ["10.0.0.2", "8080", "/a/b?x=1"])
        let plain = try HTTPEndpoint("http://rm")
        XCTAssertEqual([plain.host, "\(plain.port)", plain.path], ["rm", "80", "/"])
        let v6 = try HTTPEndpoint("http://[::1]:9/")
        XCTAssertEqual([v6.host, "\(v6.port)"], ["::1", "9"])
        for (bad, why) in [
            ("https://rm/", "https is not supported"), ("rm:5000", "give an address http://"),
            ("http://rm:0/", "port '0'"), ("http://rm:x/", "port 'x'"), ("http:///x", "no host"),
        ] {
            XCTAssertThrowsError(try HTTPEndpoint(bad), bad) { XCTAssertTrue("\($0)".contains(why), "\($0)") }
        }
    }

    func testAPostGetsTheRewardsAndBadRepliesAreErrors() throws {
        let server = try LocalHTTPServer { body in
            let completions = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?[
                "completions"]
            let count = (completions as? [Any])?.count ?? 0
            return LocalHTTPServer.ok(
                "{\"rewards\": [" + Array(repeating: "0.25", count: count).joined(separator: ",") + "]}")
        }
        let endpoint = try HTTPEndpoint("http://127.0.0.1:\(server.port)/score")
        let line = request().json()
        let (status, body) = try HTTPPost.send(Data(line.utf8), to: endpoint, timeout: 30)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(
            try ExternalRewardReply.rewards(String(decoding: body, as: UTF8.self), count: 2, batch: 1, from: "t"),
            [0.25, 0.25])
        XCTAssertEqual(server.requests, [line], "the body arrives whole")
        let source = ExternalRewardSource(server: .http(endpoint), weight: 1, timeout: 30, extras: [])
        XCTAssertEqual(
            try ExternalRewardSource.ask(source.server, line, count: 2, batch: 4, timeout: 30), [0.25, 0.25])
    }

    func testChunkedRepliesAndHTTPErrorsAreRead() throws {
        let chunked = try LocalHTTPServer { _ in
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"rewa\r\nD;x=1\r\nrds\": [1, 2]}\r\n0\r\n\r\n"
        }
        let (_, body) = try HTTPPost.send(
            Data("{}".utf8), to: try HTTPEndpoint("http://127.0.0.1:\(chunked.port)/"), timeout: 30)
        XCTAssertEqual(String(decoding: body, as: UTF8.self), "{\"rewards\": [1, 2]}")
        let failing = try LocalHTTPServer { _ in "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\nboom!"
        }
        let endpoint = try HTTPEndpoint("http://127.0.0.1:\(failing.port)/")
        XCTAssertThrowsError(try ExternalRewardSource.ask(.http(endpoint), "{}", count: 2, batch: 9, timeout: 30)) {
            XCTAssertTrue("\($0)".contains("batch 9: HTTP 500: boom!"), "\($0)")
        }
        let silent = try LocalHTTPServer { _ in
            Thread.sleep(forTimeInterval: 5)
            return ""
        }
        XCTAssertThrowsError(
            try HTTPPost.send(Data("{}".utf8), to: try HTTPEndpoint("http://127.0.0.1:\(silent.port)/"), timeout: 0.5)
        ) { XCTAssertTrue("\($0)".contains("timed out waiting for the reply"), "\($0)") }
        // Nothing listens on a port just closed.
        let closedPort = try { () throws -> Int in
            let s = try LocalHTTPServer { _ in "" }
            return s.port
        }()
        XCTAssertThrowsError(
            try HTTPPost.send(Data("{}".utf8), to: try HTTPEndpoint("http://127.0.0.1:\(closedPort)/"), timeout: 5)
        ) { XCTAssertTrue("\($0)".contains("cannot connect to 127.0.0.1"), "\($0)") }
    }
}
