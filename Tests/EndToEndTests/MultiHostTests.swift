import Foundation
import XCTest

/// scripts/multihost.sh in the suite: network namespaces as hosts joined over TCP, data-parallel
/// Hydra-SFT and placed PPO equal to one process bit for bit, a killed rank ending the job within
/// 30 s, SIGUSR1 through mpirun stopping both hosts with a checkpoint. Needs root and iproute2 (as
/// this project's CI has); skipped, saying why, where namespaces cannot be made.
final class MultiHostTests: CLITestCase {
    var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    func shell(_ command: String) throws -> (status: Int32, output: String) {
        try outcome(URL(fileURLWithPath: "/bin/bash"), ["-c", command], in: repository)
    }

    /// Skips, saying why, where network namespaces cannot be made.
    func requireNamespaces() throws {
        let probe = try shell("ip netns add rlhf-probe && ip netns del rlhf-probe")
        try XCTSkipIf(
            probe.status != 0, "network namespaces cannot be made here (root and iproute2 needed): \(probe.output)")
    }

    func testTwoNamespacesAsHostsOverTCP() throws {
        try requireNamespaces()
        let (status, output) = try shell("bash scripts/multihost.sh")
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("every check passed"), output)
        XCTAssertTrue(output.contains("identical: final/policy_adapter/adapter_model.safetensors"), output)
        // Every rank stops after the same step (the script checks one checkpoint); which ranks the
        // signal had reached when they agreed depends on when mpirun's daemon on the other host
        // forwarded it.
        XCTAssertTrue(output.contains("stopped by SIGUSR1"), output)
        XCTAssertTrue(output.contains("after hydra-sft step"), output)
        XCTAssertTrue(output.contains("noticed that process rank 1"), output)
    }

    /// Issue 28, point 4: 16 ranks over 4 namespace hosts (4 each, oversubscribed) write the same
    /// files as one process in sft, hydra-sft, rm, dpo and ppo (GAE, with the rollout and update cut
    /// alike); a rank killed on host 3 ends the job within 5 s, named with its host and the step;
    /// SIGUSR1 stops all 16 after the same step with one checkpoint; 64 ranks run a few SFT steps.
    func testSixteenRanksOnFourHostsMatchOneProcess() throws {
        try requireNamespaces()
        let (status, output) = try shell("HOSTS=4 bash scripts/multihost.sh scale")
        XCTAssertEqual(status, 0, output)
        XCTAssertTrue(output.contains("every scale check passed"), output)
        XCTAssertFalse(output.contains("DIFFERENT"), output)
        for file in [
            "checkpoints/step-00000003/model.safetensors", "checkpoints/step-00000003/reward_head.safetensors",
            "checkpoints/step-00000003/adapter/adapter_model.safetensors",
            "final/policy_adapter/adapter_model.safetensors", "final/critic_adapter/adapter_model.safetensors",
        ] {
            XCTAssertTrue(output.contains("identical: \(file)"), "\(file): \(output)")
        }
        XCTAssertEqual(output.components(separatedBy: "identical: ").count - 1, 9, output)
        // A rank killed on host 3: the job ends within 5 s (the script's limit), naming rank, host and step.
        XCTAssertTrue(output.contains("noticed that process rank 8 with PID"), output)
        XCTAssertTrue(output.contains("on node 10.77.0.13 exited on signal 9"), output)
        XCTAssertTrue(output.contains("(sft, step "), output)
        XCTAssertTrue(output.contains("stopped by SIGUSR1"), output)
        XCTAssertTrue(output.contains("after sft step"), output)
        XCTAssertTrue(output.contains("world size 64"), output)
        XCTAssertTrue(output.contains("64 ranks: 3 steps logged"), output)
    }
}
