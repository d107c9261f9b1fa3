import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An HTTP endpoint `http://host[:port][/path]` (`rewards.external_url`). Plain HTTP only: a reward
/// server runs beside the job (localhost or the cluster's network), and the binary stays free of
/// a TLS library.
package struct HTTPEndpoint: Equatable, Sendable {
    package let host: String, port: Int, path: String

    /// The endpoint of `url`, or an error saying what is wrong with it.
    package init(_ url: String) throws {
        guard url.hasPrefix("http://") else {
            throw ExternalRewardError(
                url.hasPrefix("https://")
                    ? "rewards.external_url '\(url)': https is not supported; serve the reward over plain http beside "
                        + "the job, or use rewards.external_command"
                    : "rewards.external_url '\(url)': give an address http://host[:port][/path]")
        }
        let rest = url.dropFirst("http://".count)
        let authority = rest.prefix { $0 != "/" }
        path = rest.count > authority.count ? String(rest.dropFirst(authority.count)) : "/"
        let hostPart: Substring, portPart: Substring?
        if authority.hasPrefix("["), let close = authority.firstIndex(of: "]") {  // [IPv6]:port
            hostPart = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            portPart = after.hasPrefix(":") ? after.dropFirst() : nil
        } else if let colon = authority.lastIndex(of: ":") {
            hostPart = authority[..<colon]
            portPart = authority[authority.index(after: colon)...]
        } else {
            (hostPart, portPart) = (authority, nil)
        }
        host = String(hostPart)
        guard !host.isEmpty else { throw ExternalRewardError("rewards.external_url '\(url)': no host") }
        if let portPart {
            guard let p = Int(portPart), (1...65_535).contains(p) else {
                throw ExternalRewardError("rewards.external_url '\(url)': port '\(portPart)' is not in 1…65535")
            }
            port = p
        } else {
            port = 80
        }
    }
}

/// One POST of a JSON body over HTTP/1.1 with `Connection: close`; every step (resolving,
/// connecting, sending, reading) within one deadline.
package enum HTTPPost {
    /// The status code and body of the reply to `body` posted to `endpoint`.
    package static func send(_ body: Data, to endpoint: HTTPEndpoint, timeout: Double) throws -> (
        status: Int, body: Data
    ) {
        let deadline = Date().addingTimeInterval(timeout)
        let socket = try connect(endpoint, deadline: deadline)
        defer { Glibc.close(socket) }
        let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host  // IPv6 in brackets
        var request = Data(
            ("POST \(endpoint.path) HTTP/1.1\r\nHost: \(host):\(endpoint.port)\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n").utf8)
        request += body
        try write(request, to: socket, deadline: deadline)
        return try parse(try readAll(socket, deadline: deadline))
    }

    static func connect(_ endpoint: HTTPEndpoint, deadline: Date) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(endpoint.host, String(endpoint.port), &hints, &list)
        guard status == 0, let first = list else {
            throw ExternalRewardError("cannot resolve '\(endpoint.host)': \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var failure = "no address"
        for address in sequence(first: first, next: { $0.pointee.ai_next }) {
            let s = socket(address.pointee.ai_family, address.pointee.ai_socktype, address.pointee.ai_protocol)
            guard s >= 0 else { continue }
            _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK)
            if Glibc.connect(s, address.pointee.ai_addr, address.pointee.ai_addrlen) == 0 || errno == EINPROGRESS {
                let ready: Bool
                do { ready = try wait(s, for: Int16(POLLOUT), deadline: deadline, what: "connecting") } catch {
                    Glibc.close(s)
                    throw error
                }
                if ready {
                    var error: Int32 = 0
                    var length = socklen_t(MemoryLayout<Int32>.size)
                    getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &length)
                    if error == 0 { return s }
                    failure = String(cString: strerror(error))
                }
            } else {
                failure = String(cString: strerror(errno))
            }
            Glibc.close(s)
        }
        throw ExternalRewardError("cannot connect to \(endpoint.host):\(endpoint.port): \(failure)")
    }

    /// Whether the socket became ready for `events`; an error when the deadline passes first.
    static func wait(_ socket: Int32, for events: Int16, deadline: Date, what: String) throws -> Bool {
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw ExternalRewardError("timed out \(what)") }
            var poller = pollfd(fd: socket, events: events, revents: 0)
            let ready = poll(&poller, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 { throw ExternalRewardError("\(what): \(String(cString: strerror(errno)))") }
            if ready > 0 { return true }
        }
    }

    static func write(_ data: Data, to socket: Int32, deadline: Date) throws {
        var sent = 0
        while sent < data.count {
            _ = try wait(socket, for: Int16(POLLOUT), deadline: deadline, what: "sending the request")
            let n = data.withUnsafeBytes {
                Glibc.send(socket, $0.baseAddress! + sent, data.count - sent, Int32(MSG_NOSIGNAL))
            }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard n > 0 else { throw ExternalRewardError("sending the request: \(String(cString: strerror(errno)))") }
            sent += n
        }
    }

    /// The reply up to the server's close, or as soon as it is whole (a server that keeps the
    /// connection open despite `Connection: close`).
    static func readAll(_ socket: Int32, deadline: Date) throws -> Data {
        var reply = Data(), buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            _ = try wait(socket, for: Int16(POLLIN), deadline: deadline, what: "waiting for the reply")
            let n = recv(socket, &buffer, buffer.count, 0)
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard n >= 0 else { throw ExternalRewardError("reading the reply: \(String(cString: strerror(errno)))") }
            if n == 0 { return reply }
            reply.append(contentsOf: buffer[..<n])
            if isWhole(reply) { return reply }
        }
    }

    /// Whether `reply` holds its headers and all the body they announce (Content-Length, or a
    /// chunked body's last chunk).
    static func isWhole(_ reply: Data) -> Bool {
        guard let end = reply.range(of: Data("\r\n\r\n".utf8)) else { return false }
        let head = String(decoding: reply[..<end.lowerBound], as: UTF8.self).lowercased()
        let body = reply.count - end.upperBound
        for line in head.components(separatedBy: "\r\n") {
            if line.hasPrefix("content-length:"), let n = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) {
                return body >= n
            }
            if line.hasPrefix("transfer-encoding:") && line.contains("chunked") {
                return (try? dechunk(Data(reply[end.upperBound...]))) != nil
            }
        }
        return false
    }

    /// Status and body of a whole HTTP/1.1 response (Content-Length, chunked, or up to the close).
    static func parse(_ reply: Data) throws -> (status: Int, body: Data) {
        guard let end = reply.range(of: Data("\r\n\r\n".utf8)) else {
            throw ExternalRewardError("the server closed the connection without a whole HTTP reply")
        }
        let head = String(decoding: reply[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusParts = head[0].split(separator: " ")
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/"), let status = Int(statusParts[1]) else {
            throw ExternalRewardError("not an HTTP reply: \(head[0].prefix(100))")
        }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        var body = Data(reply[end.upperBound...])
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            body = try dechunk(body)
        } else if let length = headers["content-length"].flatMap({ Int($0) }) {
            guard body.count >= length else {
                throw ExternalRewardError("the reply ended after \(body.count) of its \(length) bytes")
            }
            body = body.prefix(length)
        }
        return (status, body)
    }

    /// The body of a chunked transfer: hexadecimal size lines, each followed by that many bytes.
    static func dechunk(_ data: Data) throws -> Data {
        var body = Data(), rest = data[...]
        let crlf = Data("\r\n".utf8)
        while let lineEnd = rest.range(of: crlf) {
            let sizeText = String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self)
            let sizeField = sizeText.split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeField.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0
            else { throw ExternalRewardError("a chunked reply with a bad chunk size '\(sizeText.prefix(20))'") }
            if size == 0 { return body }
            let start = lineEnd.upperBound
            guard rest.distance(from: start, to: rest.endIndex) >= size else { break }
            body += rest[start..<(rest.index(start, offsetBy: size))]
            rest = rest[rest.index(start, offsetBy: size)...].dropFirst(2)
        }
        throw ExternalRewardError("the chunked reply ended before its last chunk")
    }
}
