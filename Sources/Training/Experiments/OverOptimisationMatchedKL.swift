import Alignment
import Foundation

extension OverOptimisation {
    /// Gold reward compared at matched KL (Gao et al. 2023 plot gold against KL, not at a final
    /// iteration: a method that stops optimising would win on final gold alone). The matched KL K*
    /// is the largest every run reaches: the least, over runs, of the highest smoothed KL on its way.
    /// Per run: gold where its smoothed KL first reaches K* (interpolated), and the mean gold over
    /// KL ∈ [0, K*] (the area under gold against the running highest KL, divided by K*). Per method:
    /// the mean over seeds with a 95% t-interval, and the paired differences (same seed, same SFT
    /// model and proxies) to the best single proxy and to the ensemble. A method "helps" only where
    /// its interval lies wholly above both of theirs.
    struct MatchedKL {
        let results: [Result], methods: [String]
        let kl: Double
        /// The run whose highest KL is K* (the one that moved least).
        let setBy: String

        enum Verdict: String { case helps, hurts, notShown = "not shown", baseline, unknown = "—" }

        init(results: [Result], methods: [String]) {
            self.results = results
            self.methods = methods
            let least = results.min { ($0.klCurve.max() ?? 0) < ($1.klCurve.max() ?? 0) }
            kl = least?.klCurve.max() ?? 0
            setBy = least.map { "\($0.method), seed \($0.seed)" } ?? "—"
        }

        /// Gold at the first smoothed KL ≥ `target` (linear between the iterations around it).
        static func gold(at target: Double, kl: [Double], gold: [Double]) -> Double? {
            guard let i = kl.firstIndex(where: { $0 >= target }) else { return nil }
            guard i > 0, kl[i] > kl[i - 1] else { return gold[i] }
            let f = (target - kl[i - 1]) / (kl[i] - kl[i - 1])
            return gold[i - 1] + f * (gold[i] - gold[i - 1])
        }

        /// ∫ gold d(running highest KL) over [0, target] / target (trapezoids; gold before the
        /// first iteration taken as the first iteration's; nil when the run never reaches target).
        static func meanGold(upTo target: Double, kl: [Double], gold: [Double]) -> Double? {
            guard target > 0, let last = kl.firstIndex(where: { $0 >= target }) else { return nil }
            var x = 0.0, g = gold[0], area = 0.0
            for i in 0...last where kl[i] > x {
                let xi = min(kl[i], target)
                let gi = i == last ? (Self.gold(at: target, kl: kl, gold: gold) ?? gold[i]) : gold[i]
                area += (xi - x) * (g + gi) / 2
                (x, g) = (xi, gi)
            }
            return area / target
        }

        /// One method's runs that reach K*: their seeds, gold at K* and mean gold up to it (aligned).
        struct Row {
            var method: String, seeds: [Int]
            var goldAtKL: [Double], meanGold: [Double]
            var at: (mean: Double, halfWidth: Double) { Statistics.meanAndInterval95(goldAtKL) }
            var area: (mean: Double, halfWidth: Double) { Statistics.meanAndInterval95(meanGold) }
        }

        var rows: [Row] {
            methods.map { m in
                let runs = results.filter { $0.method == m }.compactMap { r -> (Int, Double, Double)? in
                    guard let g = Self.gold(at: kl, kl: r.klCurve, gold: r.goldCurve),
                        let a = Self.meanGold(upTo: kl, kl: r.klCurve, gold: r.goldCurve)
                    else { return nil }
                    return (r.seed, g, a)
                }
                return Row(method: m, seeds: runs.map(\.0), goldAtKL: runs.map(\.1), meanGold: runs.map(\.2))
            }
        }

        /// The single proxy (proxy, proxy2, …) with the highest mean gold at K*.
        var bestProxy: Row? {
            rows.filter { Method(name: $0.method).map { if case .proxy = $0 { true } else { false } } ?? false }
                .max { $0.at.mean < $1.at.mean }
        }
        var ensemble: Row? { rows.first { $0.method == Method.ensemble.description } }
        /// Proxy 1, on which R2M, verifier_proxy and the hybrid's best-of-N are built.
        var firstProxy: Row? { rows.first { $0.method == Method.proxy(1).description } }

        /// Per seed `row` − `baseline` at K*, mean and 95% half-width (seeds both ran).
        func paired(_ row: Row, _ baseline: Row) -> (mean: Double, halfWidth: Double)? {
            let base = Dictionary(zip(baseline.seeds, baseline.goldAtKL), uniquingKeysWith: { a, _ in a })
            let d = zip(row.seeds, row.goldAtKL).compactMap { s, g in base[s].map { g - $0 } }
            return d.count >= 2 ? Statistics.meanAndInterval95(d) : nil
        }

        /// Whether `row`'s interval lies wholly above the best proxy's and the ensemble's.
        func verdict(_ row: Row) -> Verdict {
            guard let best = bestProxy, let ens = ensemble else { return .unknown }
            if row.method == best.method || row.method == ens.method { return .baseline }
            let low = row.at.mean - row.at.halfWidth
            let above = [best, ens].allSatisfy { low > $0.at.mean + $0.at.halfWidth }
            let below = [best, ens].allSatisfy { row.at.mean + row.at.halfWidth < $0.at.mean - $0.at.halfWidth }
            return above ? .helps : below ? .hurts : .notShown
        }

        /// KL levels of the Gao-style table: gold at each, over the seeds whose run reaches it.
        static let levels = [0.05, 0.1, 0.25, 0.5, 1, 2, 4]

        /// Gold at `level` per method: mean, 95% half-width and the runs that reach it.
        func goldAt(level: Double) -> [(method: String, mean: Double, halfWidth: Double, runs: Int, of: Int)] {
            methods.map { m in
                let runs = results.filter { $0.method == m }
                let gold = runs.compactMap { Self.gold(at: level, kl: $0.klCurve, gold: $0.goldCurve) }
                let (mean, half) = Statistics.meanAndInterval95(gold)
                return (m, mean, half, gold.count, runs.count)
            }
        }

        /// Gold at each KL level, methods as rows; a cell needs every seed's run to reach the level.
        var levelsMarkdown: String {
            var out =
                "\nGold at fixed KL (mean ± 95% t-interval over the seeds; — where a seed's run never "
                + "reaches it):\n\n"
            out += "| method | " + Self.levels.map { "KL \($0)" }.joined(separator: " | ") + " |\n"
            out += "|---|" + Self.levels.map { _ in "---|" }.joined() + "\n"
            let columns = Self.levels.map { goldAt(level: $0) }
            for (i, m) in methods.enumerated() {
                let cells = columns.map { c -> String in
                    let v = c[i]
                    return v.runs == v.of && v.runs > 0 ? String(format: "%.3f ± %.3f", v.mean, v.halfWidth) : "—"
                }
                out += "| \(m) | " + cells.joined(separator: " | ") + " |\n"
            }
            return out
        }

        var json: [String: Any] {
            [
                "levels": Self.levels.map { level in
                    [
                        "kl": level,
                        "methods": goldAt(level: level).map {
                            ["method": $0.method, "mean": $0.mean, "ci95": $0.halfWidth, "runs": $0.runs, "of": $0.of]
                                as [String: Any]
                        },
                    ] as [String: Any]
                },
                "kl": kl, "kl_set_by": setBy, "best_proxy": bestProxy?.method ?? "",
                "methods": rows.map { r -> [String: Any] in
                    var j: [String: Any] = [
                        "method": r.method, "seeds": r.seeds, "gold_at_kl": r.goldAtKL, "gold_at_kl_mean": r.at.mean,
                        "gold_at_kl_ci95": r.at.halfWidth, "mean_gold_to_kl": r.meanGold,
                        "mean_gold_to_kl_mean": r.area.mean, "mean_gold_to_kl_ci95": r.area.halfWidth,
                        "verdict": verdict(r).rawValue,
                    ]
                    if let b = bestProxy, let d = paired(r, b) { j["vs_best_proxy"] = [d.mean, d.halfWidth] }
                    if let p = firstProxy, let d = paired(r, p) { j["vs_proxy"] = [d.mean, d.halfWidth] }
                    if let e = ensemble, let d = paired(r, e) { j["vs_ensemble"] = [d.mean, d.halfWidth] }
                    return j
                },
            ]
        }

        var markdown: String {
            func cell(_ v: (mean: Double, halfWidth: Double)?) -> String {
                guard let v else { return "—" }
                return String(format: "%.3f ± %.3f", v.mean, v.halfWidth)
            }
            func signed(_ v: (mean: Double, halfWidth: Double)?) -> String {
                v.map { String(format: "%+.3f ± %.3f", $0.mean, $0.halfWidth) } ?? "—"
            }
            var out =
                String(format: "Gold at matched KL K* = %.3f", kl)
                + " (the highest KL every run reaches; set by \(setBy)), mean ± 95% t-interval over the seeds; "
                + "differences are paired by seed (proxy: proxy 1, the base of R2M, verifier_proxy and the hybrid's "
                + "best-of-N). Best single proxy: \(bestProxy?.method ?? "—").\n\n"
            out += "| method | seeds | gold at K* | mean gold over KL ≤ K* | vs best proxy | vs ensemble | "
            out += "vs proxy | "
            out += "verdict |\n|---|---|---|---|---|---|---|---|\n"
            for r in rows {
                let vsBest = bestProxy.flatMap { paired(r, $0) }, vsEns = ensemble.flatMap { paired(r, $0) }
                let vsProxy = firstProxy.flatMap { paired(r, $0) }
                out += "| \(r.method) | \(r.goldAtKL.count) | \(cell(r.at)) | \(cell(r.area)) | \(signed(vsBest)) | "
                out += "\(signed(vsEns)) | \(signed(vsProxy)) | \(verdict(r).rawValue) |\n"
            }
            return out
        }

        /// Each method's gold at K*: a dot at the mean and a bar over the 95% interval, the best
        /// proxy's and the ensemble's intervals shaded across the chart.
        var svg: String {
            let rows = self.rows.filter { !$0.goldAtKL.isEmpty }
            let w = 720.0, rowHeight = 22.0, left = 200.0, right = 30.0, top = 40.0
            let h = top + rowHeight * Double(rows.count) + 40
            let ends = rows.flatMap { r in [r.at.mean - finite(r.at.halfWidth), r.at.mean + finite(r.at.halfWidth)] }
            let lo = min(ends.min() ?? 0, 0), hi = max(ends.max() ?? 1, lo + 1e-9)
            func x(_ v: Double) -> Double { left + (v - lo) / (hi - lo) * (w - left - right) }
            var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" "
            out += "font-family=\"sans-serif\" font-size=\"12\">\n"
            out += String(
                format: "<text x=\"%.0f\" y=\"20\">gold reward at KL %.3f (mean, 95%% interval)</text>\n", left, kl)
            for (base, colour) in [(bestProxy, "#1f77b4"), (ensemble, "#ff7f0e")] {
                guard let b = base else { continue }
                let a = x(b.at.mean - finite(b.at.halfWidth)), z = x(b.at.mean + finite(b.at.halfWidth))
                out += String(
                    format: "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" ", a, top - 10, max(z - a, 1),
                    rowHeight * Double(rows.count) + 10)
                out += "fill=\"\(colour)\" opacity=\"0.12\"/>\n"
            }
            for (i, r) in rows.enumerated() {
                let y = top + rowHeight * (Double(i) + 0.5)
                let a = x(r.at.mean - finite(r.at.halfWidth)), z = x(r.at.mean + finite(r.at.halfWidth))
                out += String(format: "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">", left - 8, y + 4)
                out += "\(r.method)</text>\n"
                out += String(
                    format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#333\"/>\n", a, y, z, y)
                out += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/>\n", x(r.at.mean), y)
            }
            let axisY = top + rowHeight * Double(rows.count) + 12
            for k in 0...4 {
                let v = lo + (hi - lo) * Double(k) / 4
                out += String(
                    format: "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.2f</text>\n", x(v), axisY + 12, v)
            }
            return out + "</svg>\n"
        }

        /// An infinite half-width (one seed) is drawn as none.
        func finite(_ v: Double) -> Double { v.isFinite ? v : 0 }
    }
}
