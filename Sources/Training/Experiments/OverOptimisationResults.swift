import Alignment
import Config
import Datasets
import Foundation
import Runs

extension OverOptimisation {
    /// One method on one seed: gold reward at the start, at its peak and at the end (trailing
    /// means over study.smooth iterations), the optimised reward and KL at the end.
    public struct Result: Sendable {
        public var method: String, seed: Int
        public var goldStart = 0.0, goldPeak = 0.0, goldFinal = 0.0, proxyFinal = 0.0, klFinal = 0.0
        /// Hybrid: the gold reward on the GenRM's routes alone (on the verifier's route the reward is the gold rules).
        public var judgedPeak: Double?, judgedFinal: Double?
        /// The last held-out greedy exact match (rl.eval.every), when evaluated.
        public var exactMatchFinal: Double?
        /// LASeR and its random baseline: how often each arm was chosen (arm k at index k).
        public var armCounts: [Int]?
        /// R2M: the fused reward's accuracy on the held-out gold pairs before the first round and after the last.
        public var r2mHeldOutStart: Double?, r2mHeldOutFinal: Double?
        /// The smoothed KL and gold reward of every iteration (the matched-KL comparison reads them).
        public var klCurve: [Double] = [], goldCurve: [Double] = []
        public var seconds = 0.0
        public var runFolder: String
        public var goldDrop: Double { goldPeak - goldFinal }

        public var json: [String: Any] {
            var j: [String: Any] = [
                "method": method, "seed": seed, "gold_start": goldStart, "gold_peak": goldPeak, "gold_final": goldFinal,
                "gold_drop": goldDrop, "proxy_final": proxyFinal, "kl_final": klFinal, "seconds": seconds,
            ]
            if let judgedPeak, let judgedFinal {
                j["gold_judged_peak"] = judgedPeak
                j["gold_judged_final"] = judgedFinal
            }
            if let exactMatchFinal { j["exact_match_final"] = exactMatchFinal }
            if let armCounts { j["arm_counts"] = armCounts }
            if let r2mHeldOutStart, let r2mHeldOutFinal {
                j["r2m_heldout_acc_start"] = r2mHeldOutStart
                j["r2m_heldout_acc_final"] = r2mHeldOutFinal
            }
            return j
        }

        /// Gold and trained reward against KL from PPO's metrics.jsonl, each a trailing mean over `smooth` iterations.
        /// `arms`: the arms LASeR or the random baseline chooses among (the counts' length).
        mutating func summarise(metrics path: String, trained: String, smooth w: Int, arms: Int? = nil) throws {
            let all = try JSONL.objects(path: path).map(\.object)
            exactMatchFinal = all.last { $0["exact_match"] != nil }?["exact_match"] as? Double
            let lines = all.filter { $0["gold_mean"] != nil }
            func column(_ key: String, required: Bool = true) throws -> [Double] {
                let values = lines.compactMap { $0[key] as? Double }
                guard !values.isEmpty || !required else {
                    throw TrainingError("\(path): no '\(key)' values to summarise")
                }
                return values
            }
            func smoothed(_ v: [Double]) -> [Double] {
                v.indices.map { i in
                    let s = v[max(0, i - w + 1)...i]
                    return s.reduce(0, +) / Double(s.count)
                }
            }
            let raw = try column("gold_mean"), gold = smoothed(raw)
            goldStart = raw[0]
            goldPeak = gold.max()!
            goldFinal = gold.last!
            proxyFinal = smoothed(try column(trained)).last!
            klFinal = smoothed(try column("kl")).last!
            // The matched-KL curves: the iterations logging both, so that the two stay aligned.
            let both = lines.compactMap { l in
                (l["kl"] as? Double).flatMap { k in (l["gold_mean"] as? Double).map { (k, $0) } }
            }
            klCurve = smoothed(both.map(\.0))
            goldCurve = smoothed(both.map(\.1))
            let chosen = lines.compactMap { ($0["laser_arm"] as? Double).map { Int($0) } }
            if let arms, arms > 0 { armCounts = (0..<arms).map { k in chosen.filter { $0 == k }.count } }
            let before = all.compactMap { $0["r2m_heldout_acc_before"] as? Double }
            let after = all.compactMap { $0["r2m_heldout_acc_after"] as? Double }
            if let first = before.first {
                r2mHeldOutStart = first
                r2mHeldOutFinal = after.last ?? before.last
            }
            let judged = smoothed(try column("gold_judged_mean", required: false))
            if !judged.isEmpty {
                judgedPeak = judged.max()
                judgedFinal = judged.last
            }
        }
    }

    /// Every run of a study and its summary per method: mean ± sample standard deviation over
    /// the seeds, written as summary.md and summary.json in the study's folder.
    public struct Study: Sendable {
        public var folder: String
        public var results: [Result]
        /// Methods in the study's order.
        public var methods: [String]

        static let columns: [(key: String, title: String, value: @Sendable (Result) -> Double?)] = [
            ("gold_start", "gold start", { $0.goldStart }), ("gold_peak", "gold peak", { $0.goldPeak }),
            ("gold_final", "gold final", { $0.goldFinal }),
            ("gold_drop", "drop", { $0.goldDrop }), ("proxy_final", "proxy final", { $0.proxyFinal }),
            ("kl_final", "KL final", { $0.klFinal }),
            ("gold_judged_final", "gold final, routes not verified", { $0.judgedFinal }),
            ("r2m_heldout_acc_start", "R2M held-out acc. start", { $0.r2mHeldOutStart }),
            ("r2m_heldout_acc_final", "R2M held-out acc. end", { $0.r2mHeldOutFinal }),
            ("exact_match_final", "held-out exact match", { $0.exactMatchFinal }),
            ("seconds", "s per run", { $0.seconds }),
        ]

        /// One row per method: its seeds and each column's mean and sd (columns no run has are left out).
        public var summary: [[String: Any]] {
            methods.map { method in
                let runs = results.filter { $0.method == method }
                var row: [String: Any] = ["method": method, "seeds": runs.map(\.seed)]
                for c in Self.columns {
                    let values = runs.compactMap(c.value)
                    guard !values.isEmpty else { continue }
                    let (m, sd) = Statistics.meanAndDeviation(values, sample: true)
                    row[c.key + "_mean"] = m
                    row[c.key + "_sd"] = sd
                }
                return row
            }
        }

        /// How often LASeR and the random baseline chose each arm, summed over the seeds.
        var armMarkdown: String {
            let rows = methods.compactMap { m -> String? in
                let counts = results.filter { $0.method == m }.compactMap(\.armCounts)
                guard !counts.isEmpty else { return nil }
                let width = counts.map(\.count).max()!
                let total = (0..<width).map { k in counts.reduce(0) { $0 + ($1.count > k ? $1[k] : 0) } }
                let perSeed = counts.map { "[" + $0.map(String.init).joined(separator: ", ") + "]" }
                return "| \(m) | " + total.map(String.init).joined(separator: ", ") + " | "
                    + perSeed.joined(separator: " ") + " |\n"
            }
            guard !rows.isEmpty else { return "" }
            return
                "\nArms chosen (arm k = proxy k + 1):\n\n| method | count per arm, all seeds | per seed |\n"
                + "|---|---|---|\n"
                + rows.joined()
        }

        public var markdown: String {
            let rows = summary
            let used = Self.columns.filter { c in rows.contains { $0[c.key + "_mean"] != nil } }
            var out = "| method | seeds | " + used.map(\.title).joined(separator: " | ") + " |\n"
            out += "|---|---|" + used.map { _ in "---|" }.joined() + "\n"
            for row in rows {
                let cells = used.map { c -> String in
                    guard let m = row[c.key + "_mean"] as? Double, let sd = row[c.key + "_sd"] as? Double else {
                        return "—"
                    }
                    return c.key == "seconds" ? String(format: "%.0f", m) : String(format: "%.3f ± %.3f", m, sd)
                }
                out +=
                    "| \(row["method"]!) | \((row["seeds"] as! [Int]).count) | " + cells.joined(separator: " | ")
                    + " |\n"
            }
            return out
        }

        /// summary.md, summary.json, gold-vs-kl.svg (gold reward against KL, one band over the seeds
        /// per method) and gold-at-matched-kl.svg (each method's gold at the matched KL, 95% interval).
        func write() throws {
            let matched = MatchedKL(results: results, methods: methods)
            try (markdown + "\n" + matched.markdown + matched.levelsMarkdown + armMarkdown).write(
                toFile: folder + "/summary.md", atomically: true, encoding: .utf8)
            try JSONSerialization.data(
                withJSONObject: RunFolder.jsonSafe(["methods": summary, "matched_kl": matched.json] as [String: Any]),
                options: [.prettyPrinted, .sortedKeys]
            )
            .write(to: URL(fileURLWithPath: folder + "/summary.json"))
            try matched.svg.write(toFile: folder + "/gold-at-matched-kl.svg", atomically: true, encoding: .utf8)
            let bands = try MetricsChart.bands(runs: results.map(\.runFolder), metric: "gold_mean", x: "kl", window: 10)
            try MetricsChart.svg(series: bands, metric: "gold_mean", x: "kl").write(
                toFile: folder + "/gold-vs-kl.svg", atomically: true, encoding: .utf8)
        }
    }

    /// The summary of a finished study's folder made again from its runs' metrics.jsonl (e.g. after
    /// the summary itself changed): the methods and seeds of `config`, each run's seconds from
    /// results.jsonl. Writes summary.md, summary.json and the SVGs; returns the study.
    public static func summariseAgain(folder: String, config: ResolvedConfig) throws -> Study {
        let study = try Settings(config)
        let recorded = (try? JSONL.objects(path: folder + "/results.jsonl").map(\.object)) ?? []
        var results: [Result] = []
        for seed in study.seeds {
            for spec in study.methods {
                let run = "\(folder)/seed-\(seed)/\(spec)"
                guard FileManager.default.fileExists(atPath: run + "/metrics.jsonl") else {
                    throw TrainingError("\(run): no metrics.jsonl (the study has no such run)")
                }
                var r = Result(method: spec.description, seed: seed, runFolder: run)
                let method = spec.method
                try r.summarise(
                    metrics: run + "/metrics.jsonl", trained: "reward_\(method.trainedSource)_mean",
                    smooth: study.smooth,
                    arms: [.laser, .random].contains(method.selection) ? method.heads(of: study.proxies).count : nil)
                r.seconds =
                    recorded.first { $0["method"] as? String == spec.description && $0["seed"] as? Int == seed }?[
                        "seconds"] as? Double ?? 0
                results.append(r)
            }
        }
        let summary = Study(folder: folder, results: results, methods: study.methods.map(\.description))
        try summary.write()
        return summary
    }
}
