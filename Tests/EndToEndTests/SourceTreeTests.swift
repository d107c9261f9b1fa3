import Foundation
import XCTest

/// Rules of the source tree about what it says and what it knows: the documents comments cite
/// are in the repository, and PPO reaches reward sources only through the registry.
final class SourceTreeTests: XCTestCase {
    var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    /// Text files under `folder` (relative to the repository) whose names end in one of `suffixes`.
    func files(under folder: String, suffixes: [String] = [".swift"]) throws -> [(path: String, text: String)] {
        let base = root.appendingPathComponent(folder)
        let names = try FileManager.default.subpathsOfDirectory(atPath: base.path).filter { name in
            suffixes.contains { name.hasSuffix($0) }
        }
        return try names.sorted().map {
            (folder + "/" + $0, try String(contentsOf: base.appendingPathComponent($0), encoding: .utf8))
        }
    }

    /// Every `docs/….md` a comment, script or the README cites exists, and nothing cites the
    /// planning documents outside the repository.
    func testEveryCitedDocumentIsInTheRepository() throws {
        // Ours, not another project's (ggml's docs/gguf.md is the GGUF format's specification).
        let cited = try NSRegularExpression(pattern: #"(?<!ggml's )docs/[A-Za-z0-9_./-]+\.md"#)
        let outside = try NSRegularExpression(pattern: #"shared/(algorithms|design|platform)\.md|shared/papers/"#)
        var all = try files(under: "Sources", suffixes: [".swift", ".h", ".c"])
        all += try files(under: "Tests", suffixes: [".swift"]).filter { !$0.path.hasSuffix("/SourceTreeTests.swift") }
        all +=
            try files(under: "scripts", suffixes: [".sh", ".py"])
            + files(under: "launch", suffixes: [".sh", ".sbatch"])
        all += [
            ("README.md", try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)),
            ("Package.swift", try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)),
        ]
        var missing: [String] = [], citations = 0
        for (path, text) in all {
            let range = NSRange(text.startIndex..., in: text)
            for match in cited.matches(in: text, range: range) {
                citations += 1
                let document = String(text[Range(match.range, in: text)!])
                if !FileManager.default.fileExists(atPath: root.appendingPathComponent(document).path) {
                    missing.append("\(path): \(document)")
                }
            }
            for match in outside.matches(in: text, range: range) {
                missing.append("\(path): \(text[Range(match.range, in: text)!])")
            }
        }
        XCTAssertGreaterThan(citations, 40, "the scan found the citations")
        XCTAssertEqual(missing, [], "cited documents that are not in the repository")
    }

    /// PPO knows reward sources only through the registry: no source's name (as a string) or
    /// type appears in Sources/Training/PPO. Names and types are read from Sources/Rewards.
    func testPPONamesNoRewardSource() throws {
        let rewards = try files(under: "Sources/Rewards")
        let registration = try NSRegularExpression(pattern: #"RewardSourceRegistration\(\s*name:\s*"(\w+)""#)
        let type = try NSRegularExpression(pattern: #"final class (\w+):[^{]*RewardSource"#)
        var names: Set<String> = [], types: Set<String> = ["HybridReward"]
        for (_, text) in rewards {
            let range = NSRange(text.startIndex..., in: text)
            for m in registration.matches(in: text, range: range) {
                names.insert(String(text[Range(m.range(at: 1), in: text)!]))
            }
            for m in type.matches(in: text, range: range) {
                types.insert(String(text[Range(m.range(at: 1), in: text)!]))
            }
        }
        XCTAssertTrue(
            names.isSuperset(of: [
                "reward_head", "verifier", "format", "proxy", "r2m", "hybrid", "genrm", "instructions",
            ]), "\(names)")
        XCTAssertTrue(types.isSuperset(of: ["ProxySource", "HybridSource", "R2MSource", "VerifierSource"]), "\(types)")
        var offenders: [String] = []
        for (path, text) in try files(under: "Sources/Training/PPO") {
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let s = String(line)
                for name in names where s.contains("\"\(name)\"") { offenders.append("\(path):\(n + 1): \"\(name)\"") }
                for t in types where s.range(of: "\\b\(t)\\b", options: .regularExpression) != nil {
                    offenders.append("\(path):\(n + 1): \(t)")
                }
            }
        }
        XCTAssertEqual(offenders, [], "reward sources named in PPO")
    }
}

/// The house's size rules, checked on the tree: no line over 120 characters (Sources and Tests),
/// no function or initializer in Sources over 60 lines, from its declaration to its closing brace.
final class SourceSizeTests: XCTestCase {
    var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    func swiftFiles(_ folder: String) throws -> [(path: String, lines: [String])] {
        let base = root.appendingPathComponent(folder)
        let names = try FileManager.default.subpathsOfDirectory(atPath: base.path).filter { $0.hasSuffix(".swift") }
            .sorted()
        return try names.map { name in
            let text = try String(contentsOf: base.appendingPathComponent(name), encoding: .utf8)
            return (folder + "/" + name, text.components(separatedBy: "\n"))
        }
    }

    func testNoLineIsOver120Characters() throws {
        var long: [String] = []
        for (path, lines) in try swiftFiles("Sources") + swiftFiles("Tests") {
            for (n, line) in lines.enumerated() where line.unicodeScalars.count > 120 {
                long.append("\(path):\(n + 1) (\(line.unicodeScalars.count))")
            }
        }
        XCTAssertEqual(long, [], "lines over 120 characters")
    }

    func testNoFunctionInSourcesIsOver60Lines() throws {
        let declaration = try NSRegularExpression(
            pattern: #"^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|package|private|fileprivate|internal|static|final|"#
                + #"override|mutating|nonisolated|convenience|required|class)\s+)*(?:func\s+\w+|init[?!]?\s*[(<])"#)
        var long: [String] = [], functions = 0
        for (path, lines) in try swiftFiles("Sources") {
            for (start, line) in lines.enumerated() {
                guard !line.trimmingCharacters(in: .whitespaces).hasPrefix("//"),
                    declaration.firstMatch(in: line, range: NSRange(line.startIndex..., in: line)) != nil,
                    let end = Self.closingLine(lines, from: start)
                else { continue }
                functions += 1
                if end - start + 1 > 60 { long.append("\(path):\(start + 1) (\(end - start + 1) lines)") }
            }
        }
        XCTAssertGreaterThan(functions, 1000, "the scan found the functions")
        XCTAssertEqual(long, [], "functions over 60 lines")
    }

    /// The line of the brace closing the body that opens within 8 lines of `start` (braces in
    /// string literals and comments aside); nil for a declaration without a body.
    static func closingLine(_ lines: [String], from start: Int) -> Int? {
        var depth = 0, opened = false
        for n in start..<lines.count {
            var inString = false, previous: Character = " "
            for c in lines[n] {
                if c == "\"" && previous != "\\" { inString.toggle() }
                if !inString && c == "/" && previous == "/" { break }
                if !inString && c == "{" {
                    depth += 1
                    opened = true
                }
                if !inString && c == "}" { depth -= 1 }
                previous = c
            }
            if opened && depth <= 0 { return n }
            if !opened && n > start + 8 { return nil }
        }
        return nil
    }
}
