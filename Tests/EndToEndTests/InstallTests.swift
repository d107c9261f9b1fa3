import Foundation
import XCTest

/// A binary for clusters (issue 29, point 5): scripts/install.sh builds rlhf for x86-64-v3 with the
/// Swift standard library and Foundation linked in and installs it under a prefix; the installed binary then runs
/// with the Swift toolchain out of reach (its folder hidden by an empty bind mount in a mount
/// namespace of its own, and off PATH).
final class InstallTests: CLITestCase {
    var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    /// The toolchain's top folder (…/usr of `swift`).
    func toolchain() throws -> String {
        let (out, _) = try shell("readlink -f \"$(command -v swift)\"")
        return URL(fileURLWithPath: out.trimmingCharacters(in: .whitespacesAndNewlines))
            .deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// `command` run by bash in the package's folder: (stdout, stderr); fails the test on a non-zero status.
    @discardableResult
    func shell(_ command: String, environment: [String: String]? = nil) throws -> (String, String) {
        let p = Process(), out = Pipe(), err = Pipe()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", command]
        p.currentDirectoryURL = URL(fileURLWithPath: packageRoot)
        p.environment = environment ?? Self.cleanEnvironment
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let result = (String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
        XCTAssertEqual(p.terminationStatus, 0, "\(command): \(result.1.suffix(3000))")
        return result
    }

    func testTheInstalledBinaryRunsWithTheSwiftToolchainOutOfReach() throws {
        let prefix = directory + "/prefix", swiftHome = try toolchain()
        // Built for the portable level a cluster's nodes share, not for this machine's CPU.
        let (installed, _) = try shell("RLHF_TARGET_CPU=x86-64-v3 bash scripts/install.sh --prefix \(prefix)")
        XCTAssertTrue(installed.contains("installed \(prefix)/bin/rlhf"), installed)
        XCTAssertTrue(installed.contains("built for -target-cpu x86-64-v3"), installed)
        for file in ["share/rlhf/scripts/reward_server.py", "share/rlhf/configs/arith-tiny.yaml", "share/rlhf/launch"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: prefix + "/" + file), file)
        }
        // No Swift library is loaded from anywhere: the runtime and Foundation are in the binary.
        let (libraries, _) = try shell("ldd \(prefix)/bin/rlhf")
        XCTAssertFalse(libraries.contains("libswift"), libraries)
        XCTAssertFalse(libraries.contains("libFoundation"), libraries)
        XCTAssertFalse(libraries.contains(swiftHome), libraries)
        XCTAssertFalse(libraries.contains("not found"), libraries)
        // The toolchain hidden: an empty folder mounted over it, PATH without it; a tiny SFT run works.
        let empty = directory + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let sft =
            "\(prefix)/bin/rlhf sft data.task=arith data.eval_size=10 model.preset=tiny tokenizer=byte "
            + "train.steps=4 train.batch_size=8 train.micro_batch_size=8 train.max_length=16 eval.every=0 "
            + "out=\(directory)/run"
        let hidden =
            "mount --bind \(empty) \(swiftHome) && ! command -v swift && ls \(swiftHome) | wc -l && "
            + "\(prefix)/bin/rlhf --version && \(sft)"
        var environment = Self.cleanEnvironment
        environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        environment["LD_LIBRARY_PATH"] = nil
        let (out, _) = try shell("unshare --mount -- bash -c '\(hidden)'", environment: environment)
        let lines = out.split(separator: "\n")
        XCTAssertEqual(lines.first, "0", "the toolchain's folder is empty in the namespace: \(out)")
        XCTAssertTrue(lines.contains { $0.hasPrefix("rlhf 0.") }, out)
        XCTAssertTrue(lines.last?.contains("\"stage\":\"sft\"") == true, out)
    }
}
