import Datasets
import Foundation
import Models
import XCTest

/// The shipped experiment files, run through the built binary as a user would, shortened by overrides.
final class ExampleTests: CLITestCase {
    var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
    }

    func testArithSFTConfigRunsEndToEnd() throws {
        let config = repository.appendingPathComponent("configs/arith-sft.yaml").path
        let run = directory + "/run"
        let (stdout, stderr) = try self.run([
            "sft", "--config", config, "out=\(run)", "resume=never", "train.steps=40",
            "eval.every=20", "eval.max_examples=50", "checkpoint.every=20", "log.every=10",
        ])
        XCTAssertTrue(
            stderr.contains("derived: world size 1, global batch 64 sequences = micro-batch 32 × 2 accumulation steps"),
            stderr)
        XCTAssertTrue(stderr.contains("step 40/40"), stderr)
        let summary =
            try JSONSerialization.jsonObject(with: Data(stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
        XCTAssertEqual(summary["steps"] as? Int, 40)
        XCTAssertTrue((0...1).contains(try XCTUnwrap(summary["exact_match"] as? Double)), "exact match is a share")
        XCTAssertEqual(summary["checkpoint"] as? String, run + "/checkpoints/step-00000040")
        let saved = try String(contentsOfFile: run + "/config.yaml", encoding: .utf8)
        XCTAssertTrue(saved.contains("steps: 40"), "the resolved config, overrides included, is saved")
        let metrics = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(metrics.filter { $0.contains("\"loss\"") }.count, 40)
        XCTAssertEqual(metrics.filter { $0.contains("\"eval_loss\"") }.count, 3)

        // Tools on the result.
        try self.run(["plot", run, "--metric", "loss", "--out", directory + "/loss.svg"])
        XCTAssertTrue(try String(contentsOfFile: directory + "/loss.svg", encoding: .utf8).contains("<polyline"))
        let (inspect, _) = try self.run(["inspect", run + "/checkpoints/step-00000040"])
        XCTAssertTrue(inspect.contains("training: sft step 40"), inspect)
        XCTAssertTrue(inspect.contains("tokenizer: byte"), inspect)
        let (generated, _) = try self.run([
            "generate", "--model", run + "/checkpoints/step-00000040", "--prompt", "1+2=", "--max-new-tokens", "4",
        ])
        let line =
            try JSONSerialization.jsonObject(with: Data(generated.split(separator: "\n")[0].utf8)) as! [String: Any]
        XCTAssertEqual(line["prompt"] as? String, "1+2=")
        XCTAssertLessThanOrEqual((line["tokens"] as! [Int]).count, 4)
    }

    func testConfigErrorsReachTheUser() throws {
        let config = repository.appendingPathComponent("configs/arith-sft.yaml").path
        let (_, stderr) = try run(["sft", "--config", config, "train.lrr=1"], expectExit: 1)
        XCTAssertTrue(stderr.contains("unknown key 'train.lrr'; did you mean 'train.lr'?"), stderr)
    }

    func testTokenizeShowsIds() throws {
        let input = directory + "/t.jsonl"
        try "{\"text\": \"hi\"}\n{\"text\": \"\"}\n".write(toFile: input, atomically: true, encoding: .utf8)
        let (stdout, _) = try run(["tokenize", "--tokenizer", "byte", "--input", input])
        XCTAssertEqual(stdout, "{\"ids\":[104,105]}\n{\"ids\":[]}\n")
        try "{\"txt\": \"hi\"}\n".write(toFile: input, atomically: true, encoding: .utf8)
        let (_, stderr) = try run(["tokenize", "--tokenizer", "byte", "--input", input], expectExit: 1)
        XCTAssertTrue(stderr.contains("t.jsonl:1: missing string field 'text'"), stderr)
    }

    /// The default experiment as shipped: PPO with the verifier raises held-out greedy exact match
    /// by at least 20 points over the Hydra-SFT model, to at least 95% (seed 1; measured on AMD
    /// EPYC Zen 5: 59.6% → 96.2%, and 96.4%, 96.8% at seeds 2 and 3).
    func testArithPipelineReachesNinetyFivePercent() throws {
        let config = repository.appendingPathComponent("configs/arith-tiny.yaml").path
        let (stdout, _) = try self.run(["pipeline", "--config", config, "out=\(directory)/pipeline"])
        let summary =
            try JSONSerialization.jsonObject(with: Data(stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
        let sft = try XCTUnwrap(summary["sft_exact_match"] as? Double),
            ppo = try XCTUnwrap(summary["ppo_exact_match"] as? Double)
        XCTAssertGreaterThanOrEqual(ppo - sft, 0.20, "SFT \(sft) → PPO \(ppo)")
        XCTAssertGreaterThanOrEqual(ppo, 0.95, "the goal of issue 16: SFT \(sft) → PPO \(ppo)")
        XCTAssertGreaterThan(try XCTUnwrap(summary["seconds"] as? Double), 0)
        XCTAssertGreaterThan(
            try XCTUnwrap(summary["kl"] as? Double), 0, "the trained policy has moved away from the reference")
        XCTAssertTrue(stdout.contains("held-out exact match: after SFT"), stdout)
        let metrics = try String(contentsOfFile: directory + "/pipeline/ppo/metrics.jsonl", encoding: .utf8)
        for key in [
            "reward_verifier_mean", "reward_format_std", "reward_reward_head_mean", "kl_coef", "clip_fraction",
            "entropy",
            "policy_loss", "grad_norm", "response_length", "truncated_rate", "generate_s", "score_s", "train_s",
            "communicate_s",
        ] {
            XCTAssertTrue(metrics.contains("\"\(key)\""), "metrics.jsonl logs \(key)")
        }
    }

    /// The default experiment on the tiny Llama (4 layers, 4 heads / 2 key/value heads, RMSNorm,
    /// rotary attention, SwiGLU), with the first edition's 1000 SFT steps to keep the suite short:
    /// PPO raises held-out exact match over Hydra-SFT here too (measured on AMD EPYC Zen 5: 57.2% → 79.8%).
    func testArithPipelineOnATinyLlamaRaisesExactMatch() throws {
        let config = repository.appendingPathComponent("configs/arith-tiny.yaml").path
        let (stdout, _) = try self.run([
            "pipeline", "--config", config, "out=\(directory)/pipeline", "model.family=llama", "sft.train.steps=1000",
        ])
        let summary =
            try JSONSerialization.jsonObject(with: Data(stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
        let sft = try XCTUnwrap(summary["sft_exact_match"] as? Double),
            ppo = try XCTUnwrap(summary["ppo_exact_match"] as? Double)
        XCTAssertGreaterThanOrEqual(ppo - sft, 0.10, "SFT \(sft) → PPO \(ppo)")
        let (inspect, _) = try self.run(["inspect", directory + "/pipeline/sft/checkpoints/step-00001000"])
        XCTAssertTrue(inspect.contains("llama: 4 layers, 4 heads of 32 (2 key/value)"), inspect)
        let adapter = try String(
            contentsOfFile: directory + "/pipeline/ppo/final/policy_adapter/adapter_config.json", encoding: .utf8)
        XCTAssertTrue(
            adapter.contains("\"q_proj\"") && adapter.contains("\"down_proj\""), "PEFT's module names: \(adapter)")
    }

    /// configs/arith-prefs.yaml as shipped: one SFT model, then DPO, IPO, CPL and InSPO from it;
    /// each raises held-out exact match over the SFT model; the table is written in both formats.
    func testArithPrefsEveryLossRaisesExactMatch() throws {
        let config = repository.appendingPathComponent("configs/arith-prefs.yaml").path
        let (stdout, _) = try self.run(["prefs", "--config", config, "out=\(directory)/prefs"])
        let rows = stdout.split(separator: "\n").filter { $0.hasPrefix("{") }.map {
            try! JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        XCTAssertEqual(
            rows.compactMap { $0["loss"] as? String }, ["dpo+nll", "ipo+nll", "cpl+nll", "inspo-dpo23+dpo+nll"], stdout)
        for row in rows {
            let sft = try XCTUnwrap(row["sft_exact_match"] as? Double),
                em = try XCTUnwrap(row["exact_match"] as? Double)
            XCTAssertGreaterThan(em, sft, "\(row["loss"]!): exact match \(sft) → \(em)")
            XCTAssertGreaterThan(try XCTUnwrap(row["reward_accuracy"] as? Double), 0.5)
            let kl = try XCTUnwrap(row["kl"] as? Double)
            XCTAssertTrue(kl > 0 && kl < 5, "\(row["loss"]!): KL to the SFT model \(kl)")
            XCTAssertGreaterThan(try XCTUnwrap(row["seconds"] as? Double), 0)
        }
        let conditioned = try XCTUnwrap(
            rows.last?["conditioned_exact_match"] as? Double,
            "InSPO also reports generation conditioned on its own draft")
        XCTAssertTrue((0...1).contains(conditioned))
        let table = try String(contentsOfFile: directory + "/prefs/table.md", encoding: .utf8)
        XCTAssertTrue(table.contains("| cpl+nll |"), table)
        let json =
            try JSONSerialization.jsonObject(
                with: try Data(contentsOf: URL(fileURLWithPath: directory + "/prefs/table.json"))) as! [[String: Any]]
        XCTAssertEqual(json.count, 4)
    }

    /// `rlhf rm` writes held-out reward histograms per prompt class; `rlhf plot --histograms` draws them.
    func testRewardModelHistogramsArePlotted() throws {
        let run = directory + "/rm"
        let (stdout, _) = try self.run([
            "rm", "data.task=arith", "data.eval_size=60", "out=\(run)", "train.steps=10", "train.max_length=16",
            "eval.every=10", "checkpoint.every=0", "log.every=100",
        ])
        XCTAssertTrue(stdout.contains("\"stage\":\"rm\""), stdout)
        try self.run(["plot", run, "--histograms", "--out", directory + "/h.svg"])
        let svg = try String(contentsOfFile: directory + "/h.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("closed (n = 120"), "arith prompts are closed; 60 pairs give 120 rewards")
        let (_, stderr) = try self.run(["plot", directory, "--histograms"], expectExit: 1)
        XCTAssertTrue(stderr.contains("no reward histograms"), stderr)
    }

    /// configs/reward-collapse.yaml, shortened: rm's JSON line gives each prompt class's held-out
    /// σ(r) statistics, the same the written histograms give, and both classes are drawn.
    func testRewardCollapseReportsPerClassStatistics() throws {
        let config = repository.appendingPathComponent("configs/reward-collapse.yaml").path
        let run = directory + "/collapse"
        let (stdout, _) = try self.run([
            "rm", "--config", config, "out=\(run)", "train.steps=40", "eval.every=40", "data.eval_size=40",
        ])
        let summary =
            try JSONSerialization.jsonObject(with: Data(stdout.split(separator: "\n").last!.utf8)) as! [String: Any]
        XCTAssertEqual(summary["utility"] as? String, "adaptive")
        let histograms =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: run + "/reward_histograms.json"))) as! [String: Any]
        let counts = histograms["counts"] as! [String: [Int]]
        XCTAssertEqual(
            counts.mapValues { $0.reduce(0, +) }, ["closed": 120, "open-ended": 120],
            "20 prompts of each class, 6 responses each")
        for (name, key) in [("closed", "closed"), ("open-ended", "open_ended")] {
            let c = counts[name]!.map(Double.init), total = c.reduce(0, +)
            let entropy = -c.filter { $0 > 0 }.reduce(0) { $0 + $1 / total * log2($1 / total) }
            XCTAssertEqual(try XCTUnwrap(summary["reward_entropy_\(key)"] as? Double), entropy, accuracy: 1e-9, name)
        }
        try self.run(["plot", run, "--histograms", "--out", directory + "/h.svg"])
        let svg = try String(contentsOfFile: directory + "/h.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("closed (n = 120") && svg.contains("open-ended (n = 120"), svg)
    }

    /// configs/overopt.yaml, shortened to two seeds: every method runs end to end on each, prints
    /// its JSON line, the summary is the mean ± sd of those lines, and `rlhf plot --bands` draws
    /// gold reward against KL with one band per method.
    func testOverOptimisationStudyRunsEveryMethodOnEverySeedAndPlots() throws {
        let config = repository.appendingPathComponent("configs/overopt.yaml").path
        let methods = [
            "proxy", "proxy2", "proxy3", "ensemble", "r2m", "r2m_no_feedback", "r2m_no_update", "laser",
            "laser+laser.alpha=1", "random", "hybrid", "hybrid_gold", "verifier_proxy", "hybrid_prepo",
            "hybrid_prepo_only", "hybrid_curriculum", "hybrid_random_subset",
        ]
        let study = directory + "/study"
        let overrides = [
            "out=\(study)", "study.seeds=1,2", "sft.train.steps=150", "study.pairs=60",
            "proxy.train.steps=30", "rl.ppo.iterations=8", "rl.eval.every=100", "rl.eval.max_examples=20",
            "rl.rewards.bon_samples=2", "genrm.train.steps=30", "genrm.eval.max_examples=50",
            "study.prepo_candidates=32", "study.prepo_keep=0.5", "rl.prepo.samples=2",
            "study.heldout_pairs=20",
            "study.methods=\(methods.joined(separator: ","))",
        ]
        let (stdout, _) = try self.run(["overopt", "--config", config] + overrides)
        let lines = stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        let runs = lines.filter { $0["seed"] != nil }
        XCTAssertEqual(
            runs.map { "\($0["method"]!)/\($0["seed"]!)" }, [1, 2].flatMap { seed in methods.map { "\($0)/\(seed)" } },
            "one line per method and seed")
        for run in runs {
            let method = run["method"] as! String, seed = run["seed"] as! Int,
                folder = "\(study)/seed-\(seed)/\(method)"
            // The line is the logged series smoothed over study.smooth (5) iterations: recompute it here.
            let logged = try JSONL.objects(path: folder + "/metrics.jsonl").map(\.object).filter {
                $0["gold_mean"] != nil
            }
            XCTAssertEqual(logged.count, 8, "\(method): one gold reward per iteration")
            let gold = logged.compactMap { $0["gold_mean"] as? Double }, kl = logged.compactMap { $0["kl"] as? Double }
            XCTAssertTrue(
                gold.allSatisfy { (-1...1).contains($0) }, "\(method): gold = exact (0/1) + format (0/−1): \(gold)")
            func trailingMeans(_ v: [Double]) -> [Double] {
                v.indices.map { i in v[max(0, i - 4)...i].reduce(0, +) / Double(i - max(0, i - 4) + 1) }
            }
            XCTAssertEqual(try XCTUnwrap(run["gold_start"] as? Double), gold[0], accuracy: 1e-12, method)
            XCTAssertEqual(
                try XCTUnwrap(run["gold_peak"] as? Double), try XCTUnwrap(trailingMeans(gold).max()), accuracy: 1e-12,
                method)
            XCTAssertEqual(
                try XCTUnwrap(run["gold_final"] as? Double), try XCTUnwrap(trailingMeans(gold).last), accuracy: 1e-12,
                method)
            XCTAssertEqual(
                try XCTUnwrap(run["kl_final"] as? Double), try XCTUnwrap(trailingMeans(kl).last), accuracy: 1e-12,
                method)
            let trained =
                method.hasPrefix("r2m")
                ? "reward_r2m_mean"
                : method.hasPrefix("hybrid") || method == "verifier_proxy" ? "reward_hybrid_mean" : "reward_proxy_mean"
            XCTAssertEqual(
                try XCTUnwrap(run["proxy_final"] as? Double),
                try XCTUnwrap(trailingMeans(logged.compactMap { $0[trained] as? Double }).last),
                accuracy: 1e-12, "\(method): the optimised reward is \(trained)")
            if method.hasPrefix("hybrid") || method == "verifier_proxy" {
                let judged = logged.compactMap { $0["gold_judged_mean"] as? Double }
                XCTAssertEqual(
                    try XCTUnwrap(run["gold_judged_final"] as? Double), try XCTUnwrap(trailingMeans(judged).last),
                    accuracy: 1e-12, method)
            }
            if method == "r2m_no_feedback" {
                XCTAssertEqual(logged.compactMap { $0["r2m_omega"] as? Double }, Array(repeating: 1, count: 8))
            }
            try checkStudyMethod(method, run: run, logged: logged, folder: folder)
        }
        XCTAssertTrue(
            ["reward-proxy3", "genrm", "genrm-gold"].allSatisfy {
                FileManager.default.fileExists(atPath: study + "/seed-2/" + $0)
            }, "each seed trains its three proxies and the two GenRMs once")
        let summary = try XCTUnwrap(lines.last?["summary"] as? [[String: Any]])
        XCTAssertEqual(summary.map { $0["method"] as! String }, methods)
        for row in summary {
            let peaks = runs.filter { $0["method"] as? String == row["method"] as? String }.map {
                $0["gold_peak"] as! Double
            }
            let mean = peaks.reduce(0, +) / 2, sd = abs(peaks[0] - peaks[1]) / 2.squareRoot()
            XCTAssertEqual(try XCTUnwrap(row["gold_peak_mean"] as? Double), mean, accuracy: 1e-12)
            XCTAssertEqual(
                try XCTUnwrap(row["gold_peak_sd"] as? Double), sd, accuracy: 1e-12,
                "the sample standard deviation over the seeds")
        }
        let table = try String(contentsOfFile: study + "/summary.md", encoding: .utf8)
        XCTAssertTrue(methods.allSatisfy { table.contains("| \($0) | 2 |") }, table)
        try checkMatchedKL(study: study, runs: runs, methods: methods)
        // The summary made again from the runs' metrics is the same (seconds aside: results.jsonl
        // keeps them as printed decimals).
        func summaryWithoutSeconds() throws -> String {
            let text = try String(contentsOfFile: study + "/summary.json", encoding: .utf8)
            return text.split(separator: "\n").filter { !$0.contains("\"seconds_") }.joined(separator: "\n")
        }
        let written = try summaryWithoutSeconds()
        try FileManager.default.removeItem(atPath: study + "/summary.json")
        _ = try self.run(["overopt", "--config", config, "--summarise", study] + overrides)
        XCTAssertEqual(try summaryWithoutSeconds(), written)
        try self.run(["plot", study, "--bands", "--metric", "gold_mean", "--x", "kl", "--out", directory + "/gold.svg"])
        let svg = try String(contentsOfFile: directory + "/gold.svg", encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<polyline").count - 1, methods.count, "one line per method")
        XCTAssertEqual(
            svg.components(separatedBy: "<polygon").count - 1, methods.count, "one band over the seeds per method")
        XCTAssertTrue(
            svg.contains(">kl</text>") && svg.contains(">laser (2 seeds)</text>"),
            "kl on the x axis, methods named with their seeds")
    }

    /// One study run's method-specific figures: arm counts (LASeR and random), R2M's held-out
    /// accuracy, the routed methods' verifier (not the gold on the fair ones) and their prompts.
    func checkStudyMethod(_ method: String, run: [String: Any], logged: [[String: Any]], folder: String) throws {
        if method.hasPrefix("laser") || method == "random" {
            let arms = logged.compactMap { $0["laser_arm"] as? Int }
            XCTAssertEqual(arms.count, 8, method)
            let counts = try XCTUnwrap(run["arm_counts"] as? [Int], method)
            XCTAssertEqual(counts.reduce(0, +), 8, "\(method): every iteration's arm counted")
            for (k, n) in counts.enumerated() { XCTAssertEqual(arms.filter { $0 == k }.count, n, method) }
        }
        if method.hasPrefix("r2m") {
            let start = try XCTUnwrap(run["r2m_heldout_acc_start"] as? Double, method)
            XCTAssertEqual(start, logged.first?["r2m_heldout_acc_before"] as? Double, method)
            XCTAssertTrue((0...1).contains(try XCTUnwrap(run["r2m_heldout_acc_final"] as? Double)), method)
        }
        guard method.hasPrefix("hybrid") || method == "verifier_proxy" else { return }
        let config = try String(contentsOfFile: folder + "/config.yaml", encoding: .utf8)
        let verifier = method == "hybrid_gold" ? "verifier_tasks: arith " : "verifier_tasks: arith=last_digit+format"
        XCTAssertTrue(config.contains(verifier), "\(method): \(verifier)")
        let pools = logged.compactMap { $0["prompt_pool"] as? Int }
        if ["hybrid_prepo", "hybrid_prepo_only", "hybrid_random_subset"].contains(method) {
            XCTAssertEqual(pools.last, 16, "\(method): Pre-PPO's share, half of 32 candidates")
        }
        if method == "hybrid_prepo" || method == "hybrid_prepo_only" {
            XCTAssertEqual(try JSONL.objects(path: folder + "/prepo.jsonl").count, 32)
        }
        if method == "verifier_proxy" {
            XCTAssertTrue(
                logged.contains { ($0["route_proxy_share"] as? Double ?? 0) > 0 }, "the proxy scores the rest")
            XCTAssertTrue(logged.allSatisfy { ($0["route_genrm_truth_share"] as? Double ?? 0) == 0 }, "no GenRM")
        }
    }

    /// The matched-KL table: K* is the least of the runs' highest smoothed KL, every method has a
    /// row with each seed's gold there, and the SVG draws one interval per method.
    func checkMatchedKL(study: String, runs: [[String: Any]], methods: [String]) throws {
        let summary = try XCTUnwrap(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: study + "/summary.json")))
                as? [String: Any])
        let matched = try XCTUnwrap(summary["matched_kl"] as? [String: Any])
        let kl = try XCTUnwrap(matched["kl"] as? Double)
        XCTAssertGreaterThan(kl, 0)
        let rows = try XCTUnwrap(matched["methods"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["method"] as! String }, methods)
        XCTAssertTrue(rows.allSatisfy { ($0["gold_at_kl"] as? [Double])?.count == 2 }, "both seeds reach K*")
        let svg = try String(contentsOfFile: study + "/gold-at-matched-kl.svg", encoding: .utf8)
        XCTAssertEqual(svg.components(separatedBy: "<circle").count - 1, methods.count)
        let table = try String(contentsOfFile: study + "/summary.md", encoding: .utf8)
        XCTAssertTrue(table.contains("Gold at matched KL K* = "), table)
    }

    /// `score` and `generate` apply a PEFT adapter (the fixture PEFT made) to a model folder.
    func testScoreAndGenerateWithAPEFTAdapter() throws {
        let fixtures = repository.appendingPathComponent("Tests/ModelsTests/Fixtures").path
        let input = directory + "/seqs.jsonl"
        try "{\"tokens\": [1, 5, 9, 12]}\n".write(toFile: input, atomically: true, encoding: .utf8)
        let (plain, _) = try run(["score", "--model", fixtures + "/gpt2-tiny", "--input", input])
        let (adapted, stderr) = try run([
            "score", "--model", fixtures + "/gpt2-tiny", "--adapter", fixtures + "/peft-tiny", "--input", input,
        ])
        XCTAssertTrue(stderr.contains("adapter: ") && stderr.contains("rank 4"), stderr)
        XCTAssertNotEqual(plain, adapted, "the adapter changes the scores")
        let base = try HFCheckpoint.load(directory: fixtures + "/gpt2-tiny")
        let expected = try base.scoreSequences(
            [[1, 5, 9, 12]], adapter: try PEFTAdapter.load(directory: fixtures + "/peft-tiny", modelConfig: base.config)
        )[0]
        let object =
            try JSONSerialization.jsonObject(with: Data(adapted.split(separator: "\n")[0].utf8)) as! [String: Any]
        for (a, b) in zip((object["logprobs"] as! [Double]).map(Float.init), expected) {
            XCTAssertEqual(a, b, accuracy: 1e-5)
        }
        try run(
            [
                "generate", "--model", fixtures + "/gpt2-tiny", "--adapter", fixtures + "/peft-tiny", "--tokenizer",
                "byte", "--prompt", "a", "--max-new-tokens", "3",
            ],
            expectExit: 1)  // vocab 97 < 258 byte ids: a clear error, not a crash
    }
}
