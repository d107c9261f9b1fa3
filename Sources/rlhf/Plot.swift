import ArgumentParser
import Datasets
import Foundation
import Runs
import Training

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Draw a metric of one or more runs against step: an SVG chart (PNG too when rsvg-convert or ImageMagick "
            + "is installed)."
    )
    @Argument(help: "Run folders (or metrics.jsonl files).")
    var runs: [String]
    @Option(help: "Metric to draw, e.g. loss, eval_loss, exact_match, lr, grad_norm.")
    var metric: String = "loss"
    @Option(help: "Metric on the x axis, e.g. kl for gold reward against KL (default: step).")
    var x: String = "step"
    @Option(help: "Average this many consecutive points (both coordinates) before drawing.")
    var smooth: Int = 1
    @Option(help: "Output SVG path (default: <metric>.svg in the first run folder).")
    var out: String?

    @Flag(
        help:
            ArgumentHelp(
                "Draw the reward model's held-out reward histograms per prompt class (reward_histograms.json) "
                    + "instead of a metric.")
    )
    var histograms = false

    @Flag(
        help:
            ArgumentHelp(
                "Merge runs with the same folder name (one method on several seeds) into their mean with a ±1 sd band; "
                    + "an overopt study folder stands for all its runs.")
    )
    var bands = false

    func run() throws {
        guard !runs.isEmpty else { throw CLIError("name at least one run folder") }
        if histograms {
            guard !bands else {
                throw CLIError("--bands merges metric series; --histograms draws one run's histograms")
            }
            let h = try RewardHistograms.read(run: runs[0])
            let path = out ?? (runs[0] as NSString).appendingPathComponent("reward_histograms.svg")
            try h.svg(title: (runs[0] as NSString).lastPathComponent).write(
                toFile: path, atomically: true, encoding: .utf8)
            log("wrote \(path)")
            convertToPNG(path)
            return
        }
        let expanded = try runs.flatMap(Self.studyRuns)
        let series =
            bands
            ? try MetricsChart.bands(runs: expanded, metric: metric, x: x, window: smooth)
            : try expanded.map {
                MetricsChart.smoothed(try MetricsChart.series(run: $0, metric: metric, x: x), window: smooth)
            }
        for s in series where s.points.isEmpty {
            throw CLIError("\(s.name): no '\(metric)' values\(x == "step" ? "" : " with '\(x)'") in metrics.jsonl")
        }
        let path =
            out
            ?? ((runs[0].hasSuffix(".jsonl") ? (runs[0] as NSString).deletingLastPathComponent : runs[0]) as NSString)
            .appendingPathComponent("\(metric).svg")
        try MetricsChart.svg(series: series, metric: metric, x: x).write(
            toFile: path, atomically: true, encoding: .utf8)
        log("wrote \(path)")
        convertToPNG(path)
    }

    /// An overopt study folder (its results.jsonl lists seed and method of each run in seed-N/METHOD)
    /// as its runs; any other path as itself.
    static func studyRuns(_ path: String) throws -> [String] {
        let results = (path as NSString).appendingPathComponent("results.jsonl")
        guard FileManager.default.fileExists(atPath: results) else { return [path] }
        let runs = try JSONL.objects(path: results).map(\.object).compactMap { row -> String? in
            guard let seed = row["seed"] as? Int, let method = row["method"] as? String else { return nil }
            return "\(path)/seed-\(seed)/\(method)"
        }
        guard !runs.isEmpty else { throw CLIError("\(results): no runs (each line needs 'seed' and 'method')") }
        return runs
    }

    func convertToPNG(_ path: String) {
        let png = (path as NSString).deletingPathExtension + ".png"
        for (tool, arguments) in [("rsvg-convert", ["-o", png, path]), ("convert", [path, png])] {
            guard let executable = Self.which(tool) else { continue }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            guard (try? process.run()) != nil else { continue }
            process.waitUntilExit()
            if process.terminationStatus == 0 && FileManager.default.fileExists(atPath: png) {
                log("wrote \(png)")
                return
            }
        }
        log("no PNG: install librsvg2-bin (rsvg-convert) or imagemagick for one")
    }

    static func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
