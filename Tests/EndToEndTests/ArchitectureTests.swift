import Foundation
import XCTest

/// Rules of the source tree that keep it one house for every model family.
final class ArchitectureTests: XCTestCase {
    var sources: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources") }

    /// Swift files under `folder`, relative path → text.
    func swiftFiles(under folder: URL) throws -> [(path: String, text: String)] {
        let names = try XCTUnwrap(FileManager.default.subpathsOfDirectory(atPath: folder.path)).filter { $0.hasSuffix(".swift") }.sorted()
        return try names.map { ($0, try String(contentsOf: folder.appendingPathComponent($0), encoding: .utf8)) }
    }

    /// Roles, Training and the CLI reach models through the family-free protocols (CausalLM,
    /// ModelConfiguration, ModelFamilies); only Sources/Models names a family's types.
    func testNoFileOutsideModelsNamesAGPT2Type() throws {
        let pattern = try NSRegularExpression(pattern: "\\bGPT2[A-Za-z]*\\b")
        var offenders: [String] = []
        var scanned = 0
        for module in try FileManager.default.contentsOfDirectory(atPath: sources.path).sorted() where module != "Models" {
            for (path, text) in try swiftFiles(under: sources.appendingPathComponent(module)) {
                scanned += 1
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    let s = String(line)
                    if let match = pattern.firstMatch(in: s, range: NSRange(s.startIndex..., in: s)) {
                        offenders.append("Sources/\(module)/\(path):\(n + 1): \(s[Range(match.range, in: s)!])")
                    }
                }
            }
        }
        XCTAssertGreaterThan(scanned, 50, "the scan found the sources")
        XCTAssertEqual(offenders, [], "GPT-2 types named outside Sources/Models:\n" + offenders.joined(separator: "\n"))
    }
    /// Every module of this package that a target's files import is among the target's declared
    /// dependencies in Package.swift (SwiftPM would otherwise build it by accident of order).
    func testEveryImportedModuleIsDeclared() throws {
        let root = sources.deletingLastPathComponent()
        let package = try String(contentsOf: root.appendingPathComponent("Package.swift"), encoding: .utf8)
        let declaration = try NSRegularExpression(pattern: #"(target|executableTarget|testTarget|systemLibrary)\(\s*name:\s*"(\w+)"(?:\s*,\s*dependencies:\s*\[([^\]]*)\])?"#)
        var dependencies: [String: Set<String>] = [:], kinds: [String: String] = [:]
        for m in declaration.matches(in: package, range: NSRange(package.startIndex..., in: package)) {
            let name = String(package[Range(m.range(at: 2), in: package)!])
            kinds[name] = String(package[Range(m.range(at: 1), in: package)!])
            let list = Range(m.range(at: 3), in: package).map { String(package[$0]) } ?? ""
            dependencies[name] = Set(list.components(separatedBy: ",").compactMap { item in
                let t = item.trimmingCharacters(in: .whitespacesAndNewlines)
                return t.hasPrefix("\"") ? String(t.dropFirst().dropLast()) : nil
            })
        }
        XCTAssertGreaterThan(dependencies.count, 15, "the targets were read from Package.swift")
        let ownModules = Set(dependencies.keys)
        let importLine = try NSRegularExpression(pattern: #"^(?:@testable )?import (\w+)"#, options: .anchorsMatchLines)
        var missing: [String] = []
        for (target, kind) in kinds where kind != "systemLibrary" {
            let folder = root.appendingPathComponent(kind == "testTarget" ? "Tests" : "Sources").appendingPathComponent(target)
            for (path, text) in try swiftFiles(under: folder) {
                for m in importLine.matches(in: text, range: NSRange(text.startIndex..., in: text)) {
                    let module = String(text[Range(m.range(at: 1), in: text)!])
                    if ownModules.contains(module) && module != target && !(dependencies[target] ?? []).contains(module) {
                        missing.append("\(target)/\(path) imports \(module)")
                    }
                }
            }
        }
        XCTAssertEqual(missing, [], "imported but not declared in Package.swift:\n" + missing.joined(separator: "\n"))
    }
}
