import Datasets
import Foundation
import Models
import Training
import XCTest

/// The built binary under `mpirun` (as root and oversubscribed, as CI runs it): data-parallel
/// equivalence with one process, and no hangs when a rank dies or stops.
final class MPITests: CLITestCase {
    var mpirun: String? {
        ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    func mpiArguments(_ np: Int, _ arguments: [String]) throws -> [String] {
        ["--allow-run-as-root", "--oversubscribe", "-np", "\(np)", "-x", "OPENBLAS_NUM_THREADS=1", binary.path] + arguments
    }

    func sftArguments(out: String, steps: Int = 8, extra: [String] = []) -> [String] {
        ["sft", "name=mpi", "out=\(out)", "resume=never", "data.task=arith", "data.eval_size=50", "train.steps=\(steps)",
         "train.batch_size=16", "train.micro_batch_size=4", "train.max_length=16", "train.warmup_steps=2", "train.lr=3e-3",
         "eval.every=0", "checkpoint.every=0", "log.every=1", "train.check_replicas=true"] + extra
    }

    /// Starts a process and returns it running, with its output collected into files.
    func start(_ executable: String, _ arguments: [String], log: String) throws -> Process {
        let p = Process()
        p.environment = Self.cleanEnvironment
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = FileHandle(forWritingAtPath: log)!
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        return p
    }

    func testDataParallelSFTMatchesOneProcess() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        // The reference is `mpirun -np 1` with the same one BLAS thread per process: OpenBLAS
        // rounds differently with 2 threads, which is not what this test is about.
        let single = try start(mpirun, try mpiArguments(1, sftArguments(out: directory + "/np1")), log: directory + "/np1.log")
        single.waitUntilExit()
        XCTAssertEqual(single.terminationStatus, 0, (try? String(contentsOfFile: directory + "/np1.log", encoding: .utf8)) ?? "")
        let reference = try HFCheckpoint.load(directory: directory + "/np1/checkpoints/step-00000008").weights.array
        let referenceLosses = try JSONL.objects(path: directory + "/np1/metrics.jsonl").compactMap { $0.object["loss"] as? Double }
        for np in [2, 4] {
            let out = directory + "/np\(np)"
            let p = try start(mpirun, try mpiArguments(np, sftArguments(out: out)), log: directory + "/np\(np).log")
            p.waitUntilExit()
            let log = (try? String(contentsOfFile: directory + "/np\(np).log", encoding: .utf8)) ?? ""
            XCTAssertEqual(p.terminationStatus, 0, "mpirun -np \(np): \(log)")
            XCTAssertTrue(log.contains("world size \(np)"), log)
            let weights = try HFCheckpoint.load(directory: out + "/checkpoints/step-00000008").weights.array
            let scale = reference.map { abs($0) }.max()!
            let worst = zip(weights, reference).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(worst / scale, 1e-5, "np \(np): weights differ by \(worst / scale) relative")
            let losses = try JSONL.objects(path: out + "/metrics.jsonl").compactMap { $0.object["loss"] as? Double }
            XCTAssertEqual(losses.count, referenceLosses.count)
            for (a, b) in zip(losses, referenceLosses) { XCTAssertEqual(a, b, accuracy: 1e-5 * abs(b), "np \(np) loss curve") }
        }
    }

    /// Every stage besides SFT (which the test above covers) under mpirun -np 2 and 4 ends with the
    /// same trained files as -np 1, bit for bit: gradients are summed in Float64 whatever the grouping.
    func testDataParallelPreferenceStagesMatchOneProcess() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        let common = ["resume=never", "data.task=arith", "data.eval_size=40", "train.steps=6", "train.batch_size=16",
                      "train.micro_batch_size=4", "train.max_length=16", "train.warmup_steps=2", "eval.every=0", "checkpoint.every=0", "log.every=1"]
        let stages: [(name: String, arguments: [String], files: [String])] = [
            ("dpo-inspo", ["dpo", "name=dpo", "dpo.loss=inspo", "train.lr=3e-3"] + common, ["adapter/adapter_model.safetensors", "optimizer.safetensors"]),
            ("hydra-sft", ["hydra-sft", "name=hydra", "hydra.pair_batch_size=16", "hydra.pair_micro_batch_size=4", "train.check_replicas=true"] + common,
             ["model.safetensors", "reward_head.safetensors", "optimizer.safetensors"]),
            ("rm", ["rm", "name=rm", "hydra.pair_batch_size=16", "hydra.pair_micro_batch_size=4", "rm.utility=adaptive"] + common, ["model.safetensors", "reward_head.safetensors"]),
        ]
        for stage in stages {
            var reference: [String: Data] = [:]
            for np in [1, 2, 4] {
                let out = directory + "/\(stage.name)-np\(np)", log = out + ".log"
                let p = try start(mpirun, try mpiArguments(np, stage.arguments + ["out=\(out)"]), log: log)
                p.waitUntilExit()
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                XCTAssertEqual(p.terminationStatus, 0, "\(stage.name) -np \(np): \(text)")
                XCTAssertTrue(text.contains("world size \(np)"), text)
                for file in stage.files {
                    let bytes = FileManager.default.contents(atPath: out + "/checkpoints/step-00000006/" + file) ?? Data()
                    XCTAssertFalse(bytes.isEmpty, "\(stage.name) -np \(np): \(file)")
                    if np == 1 { reference[file] = bytes } else { XCTAssertEqual(bytes, reference[file], "\(stage.name): \(file) at -np \(np) differs from -np 1") }
                }
            }
        }
    }

    /// The gradient all-reduce overlapped with the last backward (`cluster.overlap_allreduce:
    /// always`) trains the same bits as the reduction after it, for both families and DPO's full
    /// fine-tune; on one host `auto` reduces after the backward and says why.
    func testOverlappedAllReduceTrainsTheSameBits() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        let dpo = ["dpo", "name=dpo", "resume=never", "data.task=arith", "data.eval_size=40", "train.steps=4", "train.batch_size=8",
                   "train.micro_batch_size=2", "train.max_length=16", "eval.every=0", "checkpoint.every=0", "lora.rank=0"]
        let runs: [(name: String, np: Int, arguments: [String])] = [
            ("sft-gpt2", 2, sftArguments(out: "", steps: 4)), ("sft-gpt2", 4, sftArguments(out: "", steps: 4)),
            ("sft-llama", 2, sftArguments(out: "", steps: 4, extra: ["model.family=llama"])), ("dpo-full", 2, dpo),
        ]
        for run in runs {
            var files: [String: Data] = [:]
            for policy in ["auto", "always"] {
                let out = directory + "/\(run.name)-np\(run.np)-\(policy)", log = out + ".log"
                let arguments = run.arguments.filter { !$0.hasPrefix("out=") } + ["out=\(out)", "cluster.overlap_allreduce=\(policy)"]
                let p = try start(mpirun, try mpiArguments(run.np, arguments), log: log)
                p.waitUntilExit()
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                XCTAssertEqual(p.terminationStatus, 0, "\(run.name) -np \(run.np) \(policy): \(text)")
                let said = policy == "auto" ? "gradient all-reduce: after the backward: every rank is on one host"
                                            : "gradient all-reduce: overlapped with the backward (cluster.overlap_allreduce: always)"
                XCTAssertTrue(text.contains(said), "\(run.name) \(policy): \(text)")
                files[policy] = FileManager.default.contents(atPath: "\(out)/checkpoints/step-00000004/model.safetensors") ?? Data()
            }
            XCTAssertFalse(files["auto"]!.isEmpty, run.name)
            XCTAssertEqual(files["auto"], files["always"], "\(run.name) -np \(run.np): the overlapped reduction trained different weights")
        }
    }

    /// The pid of the rank process `rank` of a job whose command line contains `marker`.
    func rankProcess(_ rank: Int, marker: String) -> pid_t? {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                  let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
                  String(decoding: cmdline, as: UTF8.self).contains(marker),
                  let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
            let variables = String(decoding: environ, as: UTF8.self).split(separator: "\0")
            if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") && !String(decoding: cmdline, as: UTF8.self).hasPrefix("mpirun") { return pid }
        }
        return nil
    }

    /// Waits until training has logged a step, so every rank is inside the loop.
    func waitForTraining(_ out: String, process: Process) throws {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && process.isRunning {
            if let text = try? String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8), text.contains("\"loss\"") { return }
            usleep(50_000)
        }
        XCTFail("training did not start within 60 s")
    }

    func testKilledRankEndsTheWholeJobWithinThirtySeconds() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        let out = directory + "/killed"
        let p = try start(mpirun, try mpiArguments(2, sftArguments(out: out, steps: 1_000_000)), log: directory + "/killed.log")
        try waitForTraining(out, process: p)
        let victim = try XCTUnwrap(rankProcess(1, marker: out), "rank 1 not found")
        kill(victim, SIGKILL)
        let killedAt = Date()
        while p.isRunning && Date().timeIntervalSince(killedAt) < 60 { usleep(50_000) }
        let seconds = Date().timeIntervalSince(killedAt)
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationStatus, 0, "a job with a killed rank must fail")
        XCTAssertLessThan(seconds, 30, "mpirun took \(seconds) s to exit after SIGKILL")
    }

    func testStoppedRankMakesTheOthersTimeOutAndAbort() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        let out = directory + "/stopped"
        let p = try start(mpirun, try mpiArguments(2, sftArguments(out: out, steps: 1_000_000, extra: ["cluster.timeout=2"])),
                          log: directory + "/stopped.log")
        try waitForTraining(out, process: p)
        let victim = try XCTUnwrap(rankProcess(1, marker: out), "rank 1 not found")
        kill(victim, SIGSTOP)
        defer { kill(victim, SIGKILL) }
        let stoppedAt = Date()
        while p.isRunning && Date().timeIntervalSince(stoppedAt) < 60 { usleep(50_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let log = (try? String(contentsOfFile: directory + "/stopped.log", encoding: .utf8)) ?? ""
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertLessThan(Date().timeIntervalSince(stoppedAt), 30)
        let pattern = try NSRegularExpression(pattern: #"rank 0 \(sft, step \d+\): timed out after 2 s waiting for"#)
        XCTAssertNotNil(pattern.firstMatch(in: log, range: NSRange(log.startIndex..., in: log)), "rank 0 must say where it waited: \(log.suffix(2000))")
    }

    /// Reference and reward placed on other ranks return exactly what colocated roles return.
    func testRemoteReferenceAndRewardMatchColocated() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        for (np, placement) in [(2, "reference=1,reward=1"), (4, "reference=2,reward=3")] {
            let p = try start(mpirun, try mpiArguments(np, ["check", "roles", "--placement", placement]), log: directory + "/roles\(np).log")
            p.waitUntilExit()
            let log = (try? String(contentsOfFile: directory + "/roles\(np).log", encoding: .utf8)) ?? ""
            XCTAssertEqual(p.terminationStatus, 0, log)
            XCTAssertTrue(log.contains("\"identical\":true"), log)
            XCTAssertTrue(log.contains("reference → rank \(placement.contains("=2") ? 2 : 1)"), "the role → rank map is printed: \(log)")
        }
    }

    /// PPO under mpirun: colocated (data parallel over 2 ranks) and with reward + reference on rank 1.
    func testPPOColocatedAndPlaced() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        let sft = directory + "/hydra"
        try run(["hydra-sft", "name=h", "out=\(sft)", "resume=never", "data.task=arith", "data.eval_size=50", "train.steps=60",
                 "train.batch_size=32", "train.micro_batch_size=16", "train.max_length=16", "eval.every=0", "checkpoint.every=0", "log.every=100"])
        let checkpoint = sft + "/checkpoints/step-00000060"
        // Learned rewards over 2 replicas: LASeR's context and R2M's anchor gradients are summed over ranks.
        let heads = "\(checkpoint),\(checkpoint)"
        for (tag, extra) in [("colocated", ["ppo.estimator=gae", "ppo.ptx_coef=0.05", "ppo.entropy_coef=0.01", "ppo.dual_clip=3", "ppo.kl_estimator=k3", "ppo.kl_target=1"]),
                             ("placed", ["placement=reference=1,reward=1", "rewards.reward_head=0.1"]),
                             ("laser", ["rewards.proxy_heads=\(heads)", "rewards.proxy=1", "rewards.selection=laser", "laser.reward=heldout", "laser.heldout_prompts=8"]),
                             ("r2m", ["rewards.proxy_heads=\(checkpoint)", "rewards.proxy=1", "rewards.selection=r2m", "r2m.replay=8", "prepo.keep=0.5", "prepo.candidates=64"])] {
            let out = directory + "/ppo-" + tag
            let p = try start(mpirun, try mpiArguments(2, ["ppo", "model.init_from=\(checkpoint)", "data.task=arith", "data.eval_size=50",
                "out=\(out)", "ppo.iterations=3", "ppo.prompts=8", "ppo.samples_per_prompt=4", "ppo.max_new_tokens=5", "ppo.minibatch_size=8",
                "eval.every=3", "eval.max_examples=50", "train.max_length=16"] + extra), log: directory + "/\(tag).log")
            p.waitUntilExit()
            let log = (try? String(contentsOfFile: directory + "/\(tag).log", encoding: .utf8)) ?? ""
            XCTAssertEqual(p.terminationStatus, 0, "\(tag): \(log.suffix(3000))")
            XCTAssertTrue(log.contains("\"stage\":\"ppo\""), "\(tag): \(log.suffix(2000))")
            XCTAssertTrue(log.contains(tag == "placed" ? "reference → rank 1, reward → rank 1" : "colocated, data parallel"), "\(tag) role map: \(log.suffix(3000))")
            if tag == "r2m" { XCTAssertTrue(log.contains("Pre-PPO: kept 32 of 64"), log.suffix(3000).description) }
            let iterations = try JSONL.objects(path: out + "/metrics.jsonl").filter { $0.object["kl"] != nil }
            XCTAssertEqual(iterations.count, 3, tag)
        }
    }
    /// Policy and critic placed on rank 1 (np 2) train exactly what one colocated process trains:
    /// rank 1 generates the rollouts and takes the steps, rank 0 drives, scores and evaluates.
    func testPolicyAndCriticPlacedOnRankOneMatchOneProcess() throws {
        let mpirun = try XCTUnwrap(mpirun, "openmpi-bin is not installed")
        let sft = directory + "/hydra"
        try run(["hydra-sft", "name=h", "out=\(sft)", "resume=never", "data.task=arith", "data.eval_size=50", "train.steps=40",
                 "train.batch_size=32", "train.micro_batch_size=16", "train.max_length=16", "eval.every=0", "checkpoint.every=0", "log.every=100"])
        let arguments = ["ppo", "model.init_from=\(sft)/checkpoints/step-00000040", "data.task=arith", "data.eval_size=50", "ppo.iterations=3",
                         "ppo.prompts=8", "ppo.samples_per_prompt=4", "ppo.max_new_tokens=5", "ppo.minibatch_size=8", "ppo.estimator=gae",
                         "rewards.reward_head=0.1", "eval.every=2", "eval.max_examples=50", "train.max_length=16", "checkpoint.every=2"]
        var trained: [String: [String: Data]] = [:]
        for (tag, np, placement) in [("np1", 1, "colocated"), ("placed", 2, "policy=1,critic=1")] {
            let out = directory + "/ppo-" + tag
            let p = try start(mpirun, try mpiArguments(np, arguments + ["out=\(out)", "placement=\(placement)"]), log: out + ".log")
            p.waitUntilExit()
            let log = (try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? ""
            XCTAssertEqual(p.terminationStatus, 0, "\(tag): \(log.suffix(3000))")
            if tag == "placed" { XCTAssertTrue(log.contains("policy → rank 1, critic → rank 1, reference → rank 0, reward → rank 0"), log.suffix(3000).description) }
            for file in ["final/policy_adapter/adapter_model.safetensors", "final/critic_adapter/adapter_model.safetensors", "final/value_head.safetensors",
                         "checkpoints/step-00000002/ppo_state.safetensors"] {
                trained[tag, default: [:]][file] = FileManager.default.contents(atPath: out + "/" + file) ?? Data()
                XCTAssertFalse(trained[tag]![file]!.isEmpty, "\(tag): \(file)")
            }
            let exact = try JSONL.objects(path: out + "/metrics.jsonl").compactMap { $0.object["exact_match"] as? Double }
            trained[tag]!["exact_match"] = Data("\(exact)".utf8)
        }
        for (file, bytes) in trained["np1"]! { XCTAssertEqual(trained["placed"]![file], bytes, "\(file): placed on rank 1 differs from one process") }
    }
}
