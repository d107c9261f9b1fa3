import Alignment
import Config
import Foundation

/// Held-out rewards σ(r) ∈ [0, 1] binned per prompt class (closed / open-ended), written as
/// reward_histograms.json at every evaluation of a reward model and drawn by `rlhf plot
/// --histograms`. Reward collapse (Song et al. 2023) shows as the same shape in both classes;
/// a prompt-aware utility gives closed prompts a polarised shape and open-ended ones a spread.
public struct RewardHistograms: Codable, Equatable, Sendable {
    public static let fileName = "reward_histograms.json"
    public var step: Int
    public var bins: Int
    /// Per class, the count of rewards in each of `bins` equal bins of [0, 1].
    public var counts: [String: [Int]]
    public var means: [String: Double]
    /// Per class: the Shannon entropy (bits) of the binned σ(r) — low when the rewards polarise into
    /// a few bins, up to log2(bins) when they spread evenly — and the standard deviation of σ(r).
    /// (Optional: files written before they were added lack them.)
    public var entropies: [String: Double]?
    public var deviations: [String: Double]?

    public init(step: Int, rewards: [String: [Double]], bins: Int = 20) {
        self.step = step
        self.bins = bins
        counts = rewards.mapValues { values in
            var c = [Int](repeating: 0, count: bins)
            for v in values { c[min(max(Int(v * Double(bins)), 0), bins - 1)] += 1 }
            return c
        }
        means = rewards.mapValues { $0.reduce(0, +) / Double(max($0.count, 1)) }
        entropies = counts.mapValues { c in
            let total = Double(max(c.reduce(0, +), 1))
            // one bin: 0, not −0
            return max(0, -c.reduce(0.0) { $1 > 0 ? $0 + Double($1) / total * log2(Double($1) / total) : $0 })
        }
        deviations = rewards.mapValues { Statistics.meanAndDeviation($0).deviation }
    }

    /// The per-class figures for a summary line: reward_mean_<class>, reward_entropy_<class>,
    /// reward_std_<class> (class names with '-' as '_').
    public var summary: [String: Double] {
        var out: [String: Double] = [:]
        for name in counts.keys {
            let key = name.replacingOccurrences(of: "-", with: "_")
            out["reward_mean_\(key)"] = means[name]
            out["reward_entropy_\(key)"] = entropies?[name]
            out["reward_std_\(key)"] = deviations?[name]
        }
        return out
    }

    public func write(folder: RunFolder) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(
            to: URL(fileURLWithPath: (folder.path as NSString).appendingPathComponent(Self.fileName)), options: .atomic)
    }

    public static func read(run: String) throws -> RewardHistograms {
        let path = run.hasSuffix(".json") ? run : (run as NSString).appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError("\(path): no reward histograms (an rm or hydra-sft run writes them at each evaluation)")
        }
        do { return try JSONDecoder().decode(RewardHistograms.self, from: data) } catch {
            throw TrainingError("\(path): not reward histograms (\(error))")
        }
    }

    /// One bar chart per class, side by side, as share of that class's rewards per bin.
    public func svg(title: String) -> String {
        let classes = counts.keys.sorted()
        let panelWidth = 340.0, height = 300.0, left = 40.0, bottom = 40.0, top = 40.0
        let width = left + Double(classes.count) * (panelWidth + 20)
        var out =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
            + "font-family=\"sans-serif\" font-size=\"12\">\n"
        out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        out +=
            "<text x=\"\(left)\" y=\"18\" font-size=\"14\">\(title.replacingOccurrences(of: "<", with: "&lt;")) — "
            + "held-out σ(r) per prompt class, step \(step)</text>\n"
        for (k, name) in classes.enumerated() {
            let c = counts[name]!, total = Double(max(c.reduce(0, +), 1)), peak = Double(c.max() ?? 1) / total
            let x0 = left + Double(k) * (panelWidth + 20), plotHeight = height - top - bottom,
                barWidth = panelWidth / Double(bins)
            out +=
                "<text x=\"\(x0)\" y=\"\(top - 6)\">\(name) (n = \(Int(total)), mean "
                + "\(String(format: "%.3f", means[name] ?? 0)))</text>\n"
            out +=
                "<line x1=\"\(x0)\" y1=\"\(height - bottom)\" x2=\"\(x0 + panelWidth)\" y2=\"\(height - bottom)\" "
                + "stroke=\"black\"/>\n"
            for (i, n) in c.enumerated() where n > 0 {
                let h = Double(n) / total / max(peak, 1e-9) * plotHeight
                out += String(
                    format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%@\"/>\n",
                    x0 + Double(i) * barWidth + 1, height - bottom - h, barWidth - 2, h,
                    k % 2 == 0 ? "#1f77b4" : "#d62728")
            }
            for t in [0.0, 0.5, 1.0] {
                out += String(
                    format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n", x0 + t * panelWidth,
                    height - bottom + 16, t)
            }
        }
        return out + "</svg>\n"
    }
}
