import Foundation
import Models
import XCTest

/// `rlhf bench scale`: its measurements, its predictions from a file of them, and the layout the
/// launch scripts take from it.
final class ScaleModelTests: CLITestCase {
    static let repository =
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Measurements worked by hand: 4 units take 4 s on one thread and 2.4 s on two (1 s per unit,
    /// parallel fraction 0.8); the link between hosts α = 0.2 ms a step, β = 1 GB/s; 100 MB of
    /// gradient sums in 16 MiB messages (6 of them); a rank 1 GB + 0.1 GB per unit, nothing shared.
    func measurements(acrossHosts: Bool = true) -> String {
        let big = 64 << 20
        let lines: [String] = [
            #"{"case":"scale_compute","workload":"sft","preset":"p","hosts":1,"ranks_per_host":1,"threads":1,"#
                + #""units":4,"seconds":4.0,"cpu":"test cpu"}"#,
            #"{"case":"scale_compute","workload":"sft","preset":"p","hosts":1,"ranks_per_host":1,"threads":2,"#
                + #""units":4,"seconds":2.4}"#,
            #"{"case":"scale_memory","workload":"sft","preset":"p","units":4,"units_2":8,"#
                + #""resident_bytes":1400000000,"resident_bytes_2":1800000000,"shared_bytes":0,"added_bytes":0,"#
                + #""gradient_bytes":100000000}"#,
            #"{"case":"scale_link","workload":"sft","preset":"p","ranks":2,"hosts":1,"message_bytes":1048576,"#
                + #""latency_s":0.00001,"bandwidth_bytes_per_s":8000000000}"#,
            #"{"case":"scale_step","workload":"sft","preset":"p","hosts":2,"ranks_per_host":1,"threads":1,"#
                + #""units":4,"seconds":4.2}"#,
            #"{"case":"scale_step","workload":"grpo","preset":"p","hosts":2,"ranks_per_host":1,"threads":1,"#
                + #""units":4,"seconds":99}"#,
        ]
        let across =
            #"{"case":"scale_link","workload":"grpo","preset":"q","ranks":2,"hosts":2,"message_bytes":16777216,"#
            + #""latency_s":0.0002,"bandwidth_bytes_per_s":1000000000,"sizes":[8,\#(big)]}"#
        return (lines + (acrossHosts ? [across] : [])).joined(separator: "\n") + "\n"
    }

    func write(_ text: String) throws -> String {
        let path = directory + "/scale.jsonl"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func objects(_ stdout: String, _ kind: String) -> [[String: Any]] {
        stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }.filter { $0["case"] as? String == kind }
    }

    /// The measured 2-host step is checked against 4 × 1 s of compute + 6 messages × 2 steps × 0.2 ms
    /// + 100 MB / 1 GB/s.
    func testPredictionsFromAFileOfMeasurements() throws {
        let file = try write(measurements())
        let (stdout, _) = try run([
            "bench", "scale", "--predict", file, "--workload", "sft", "--preset", "p", "--hosts", "4",
            "--cores-per-host", "4", "--host-memory-gib", "100",
        ])
        let checks = objects(stdout, "scale_validation")
        XCTAssertEqual(checks.count, 1, "only this workload's steps: \(stdout)")
        let predicted = try XCTUnwrap(checks.first?["predicted_s"] as? Double)
        XCTAssertEqual(predicted, 4 + 6 * 2 * 0.0002 + 0.1, accuracy: 1e-4)
        XCTAssertEqual(try XCTUnwrap(checks.first?["error"] as? Double), (4.1024 / 4.2 - 1), accuracy: 1e-3)
        XCTAssertEqual(checks.first?["cpu"] as? String, "test cpu", "the measured machine's, not this one's")
        // 4 hosts × (4×1, 2×2, 1×4) × (flat, hierarchical).
        XCTAssertEqual(objects(stdout, "scale_prediction").count, 6)
        let best = try XCTUnwrap(objects(stdout, "scale_recommendation").first)
        // f = 0.8: 2 threads take 0.6 s a unit, 4 threads 0.4 s. One rank per core computes its 4
        // units in 4 s + 0.18 s of hierarchical all-reduce (15.3 units/s); 2 × 2 threads 8 units in
        // 4.8 + 0.17 s (12.9); one rank of 4 threads 16 units in 6.4 + 0.16 s (9.8).
        XCTAssertEqual(best["ranks_per_host"] as? Int, 4, "\(best)")
    }

    /// What launch/cluster.sh and launch/slurm.sbatch read: "RANKS THREADS ROUTE", with memory.
    func testRecommendedLayoutThroughTheLaunchHelper() throws {
        let file = try write(measurements())
        let script = Self.repository.appendingPathComponent("launch/layout.sh").path
        func layout(_ stage: String, memoryGiB: String) throws -> String {
            let p = Process(), out = Pipe()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = [script, stage, "4", "4", memoryGiB]
            p.environment = Self.cleanEnvironment.merging([
                "SCALE_MEASUREMENTS": file, "SCALE_PRESET": "p", "RLHF": binary.path,
            ]) { $1 }
            p.standardOutput = out
            try p.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "layout.sh \(stage)")
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let roomy = try layout("sft", memoryGiB: "100")
        XCTAssertTrue(roomy.hasPrefix("4 1 "), roomy)
        // 4 ranks need 4 × 1.4 GB = 5.6 GB; in 4 GiB fit 2 ranks of 2 threads (2 × 1.8 GB) and one of 4
        // (2.6 GB), and 2 × 2 is the faster.
        XCTAssertTrue(try layout("sft", memoryGiB: "4").hasPrefix("2 2 "))
    }

    /// A file that lacks what the model needs is named with what is missing, and the run fails.
    func testMissingMeasurementsAreNamed() throws {
        let file = try write(measurements(acrossHosts: false))
        let (_, stderr) = try run(
            ["bench", "scale", "--predict", file, "--workload", "sft", "--preset", "p"], expectExit: 1)
        XCTAssertTrue(stderr.contains("no scale_link line measured across hosts"), stderr)
        let (_, other) = try run(
            ["bench", "scale", "--predict", file, "--workload", "sft", "--preset", "nothing"], expectExit: 1)
        XCTAssertTrue(other.contains("no one-rank `bench scale` lines of sft nothing"), other)
        let broken = try write(measurements().replacingOccurrences(of: #""seconds":2.4"#, with: #""seconds":0"#))
        let (_, zero) = try run(
            ["bench", "scale", "--predict", broken, "--workload", "sft", "--preset", "p"], expectExit: 1)
        XCTAssertTrue(zero.contains("scale_compute line has no positive number 'seconds' (got 0)"), zero)
    }

    /// Options of one mode are refused in the other rather than ignored.
    func testOptionsOfTheOtherModeAreRefused() throws {
        let (_, measuring) = try run(["bench", "scale", "--hosts", "8"], expectExit: 64)
        XCTAssertTrue(measuring.contains("apply to --predict FILE"), measuring)
        let file = try write(measurements())
        let (_, predicting) = try run(["bench", "scale", "--predict", file, "--units", "2"], expectExit: 64)
        XCTAssertTrue(predicting.contains("with --predict the file's figures are used"), predicting)
        let (_, link) = try run(["bench", "scale", "--predict", file, "--across-gbps", "0"], expectExit: 64)
        XCTAssertTrue(link.contains("--across-gbps must be positive"), link)
    }

    /// One rank measures a tiny preset: compute at 1 and 2 threads, the 2-unit steps, memory with
    /// the Float64 gradient sum of every parameter.
    func testMeasuringOneRank() throws {
        let (stdout, _) = try run(["bench", "scale", "--preset", "tiny", "--units", "1", "--tokens", "16"])
        let compute = objects(stdout, "scale_compute"), steps = objects(stdout, "scale_step")
        XCTAssertEqual(compute.compactMap { $0["threads"] as? Int }, [1, 2])
        XCTAssertEqual(steps.compactMap { $0["units"] as? Int }, [2, 2])
        XCTAssertTrue((compute + steps).allSatisfy { ($0["seconds"] as? Double ?? 0) > 0 })
        let memory = try XCTUnwrap(objects(stdout, "scale_memory").first)
        let parameters = try ModelFamilies.preset(qualified: "tiny").makeModel(weights: nil).parameterCount
        XCTAssertEqual(memory["gradient_bytes"] as? Int, parameters * 8)
        XCTAssertEqual(memory["added_bytes"] as? Int, parameters * 8, "AdamW's two Float32 moments")
    }
}
