import Alignment
import Config
import Datasets
import Foundation

/// An SVG line chart of one metric against step for several runs (`rlhf plot`). Plain SVG so it
/// opens in any browser; PNG needs an external converter (rsvg-convert or ImageMagick).
public enum MetricsChart {
    public struct Series {
        public let name: String
        public let points: [(x: Double, y: Double)]
        /// Over several seeds: the mean ± one sample standard deviation of y at each point.
        public var band: [(low: Double, high: Double)]? = nil

        public init(name: String, points: [(x: Double, y: Double)], band: [(low: Double, high: Double)]? = nil) {
            self.name = name
            self.points = points
            self.band = band
        }
    }

    /// (x, value) pairs of `metric` from a run folder's metrics.jsonl, x being `x` (default the
    /// step) of the same line; lines without both are skipped.
    public static func series(run: String, metric: String, x: String = "step") throws -> Series {
        // A multi-stage run folder (pipeline) is drawn by its RL stage.
        var path = run.hasSuffix(".jsonl") ? run : (run as NSString).appendingPathComponent("metrics.jsonl")
        let ppo = (run as NSString).appendingPathComponent("ppo/metrics.jsonl")
        if !run.hasSuffix(".jsonl") && !FileManager.default.fileExists(atPath: path)
            && FileManager.default.fileExists(atPath: ppo)
        {
            path = ppo
        }
        let points = try JSONL.objects(path: path).compactMap { entry -> (Double, Double)? in
            guard let step = entry.object[x] as? Double ?? (entry.object[x] as? Int).map(Double.init),
                let value = entry.object[metric] as? Double ?? (entry.object[metric] as? Int).map(Double.init)
            else { return nil }
            return (step, value)
        }
        let folder = run.hasSuffix(".jsonl") ? (run as NSString).deletingLastPathComponent : run
        let name = (folder as NSString).lastPathComponent
        return Series(name: name, points: points.map { (x: $0.0, y: $0.1) })
    }

    /// Moving averages over `window` consecutive points of both coordinates: a noisy trajectory
    /// (gold reward against KL, iteration by iteration) as a readable curve.
    public static func smoothed(_ s: Series, window: Int) -> Series {
        guard window > 1, s.points.count > 1 else { return s }
        let p = s.points
        return Series(
            name: s.name,
            points: p.indices.map { i in
                let part = p[max(0, i - window + 1)...i]
                return (
                    x: part.reduce(0) { $0 + $1.x } / Double(part.count),
                    y: part.reduce(0) { $0 + $1.y } / Double(part.count)
                )
            })
    }

    /// Runs with the same folder name (one method on several seeds: seed-1/proxy, seed-2/proxy, …)
    /// merged point by point, each run smoothed over `window` first: x and y are the means over
    /// the runs (as far as the shortest goes), the band is y's mean ± sample standard deviation; a
    /// name with one run keeps no band.
    public static func bands(runs: [String], metric: String, x: String, window: Int) throws -> [Series] {
        let all = try runs.map { run in
            let s = try series(run: run, metric: metric, x: x)
            guard !s.points.isEmpty else {
                throw TrainingError(
                    "\(run): no '\(metric)' values\(x == "step" ? "" : " with '\(x)'") in metrics.jsonl")
            }
            return smoothed(s, window: window)
        }
        var names: [String] = []
        for s in all where !names.contains(s.name) { names.append(s.name) }
        return names.map { name in
            let group = all.filter { $0.name == name }
            guard group.count > 1 else { return group[0] }
            let n = group.map(\.points.count).min() ?? 0
            var points: [(x: Double, y: Double)] = [], band: [(low: Double, high: Double)] = []
            for i in 0..<n {
                let xs = group.map { $0.points[i].x }, ys = group.map { $0.points[i].y }
                let (my, sd) = Statistics.meanAndDeviation(ys, sample: true)
                points.append((x: xs.reduce(0, +) / Double(xs.count), y: my))
                band.append((low: my - sd, high: my + sd))
            }
            return Series(name: "\(name) (\(group.count) seeds)", points: points, band: band)
        }
    }

    /// Tick positions at 1, 2 or 5 × 10^k spacing covering [low, high].
    package static func ticks(_ low: Double, _ high: Double, count: Int = 5) -> [Double] {
        guard high > low else { return [low] }
        let raw = (high - low) / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var t = ceil(low / step) * step
        var result: [Double] = []
        while t <= high + step * 1e-9 {
            result.append(t)
            t += step
        }
        return result
    }

    package static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 1e4 || abs(v) < 1e-3 { return String(format: "%.1e", v) }
        return String(format: "%g", (v * 1e4).rounded() / 1e4)
    }

    public static func svg(
        series: [Series], metric: String, x xLabel: String = "step", width: Double = 720, height: Double = 420
    ) -> String {
        let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        let frame = ChartFrame(series: series, width: width, height: height)
        var out = frame.axes(metric: metric, xLabel: xLabel)
        for (i, s) in series.enumerated() { out += frame.markup(s, color: palette[i % palette.count], index: i) }
        return out + "</svg>\n"
    }

    static func escaped(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    }

    /// The plot area and the data ranges it maps (5% margin in y), in SVG coordinates.
    struct ChartFrame {
        let width: Double, height: Double
        let left = 70.0, right = 20.0, top = 40.0, bottom = 50.0
        var x0: Double, x1: Double, y0: Double, y1: Double

        init(series: [Series], width: Double, height: Double) {
            self.width = width
            self.height = height
            let all = series.flatMap(\.points)
            let bandValues = series.flatMap { $0.band ?? [] }.flatMap { [$0.low, $0.high] }
            x0 = all.map(\.x).min() ?? 0
            x1 = all.map(\.x).max() ?? 1
            y0 = (all.map(\.y) + bandValues).min() ?? 0
            y1 = (all.map(\.y) + bandValues).max() ?? 1
            if x1 == x0 {
                x0 -= 1
                x1 += 1
            }
            if y1 == y0 {
                y0 -= 1
                y1 += 1
            }
            let pad = (y1 - y0) * 0.05
            y0 -= pad
            y1 += pad
        }

        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (width - left - right) }
        func py(_ y: Double) -> Double { height - bottom - (y - y0) / (y1 - y0) * (height - top - bottom) }

        /// The header, title, grid with tick labels, frame and x label.
        func axes(metric: String, xLabel: String) -> String {
            var out = """
                <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
                font-family="sans-serif" font-size="12">
                <rect width="100%" height="100%" fill="white"/>
                <text x="\(width / 2)" y="22" text-anchor="middle" font-size="15">\(MetricsChart.escaped(metric))</text>

                """
            for t in MetricsChart.ticks(x0, x1) {
                out += "<line x1=\"\(px(t))\" y1=\"\(top)\" x2=\"\(px(t))\" y2=\"\(height - bottom)\" stroke=\"#eee\"/>"
                out +=
                    "<text x=\"\(px(t))\" y=\"\(height - bottom + 18)\" "
                    + "text-anchor=\"middle\">\(MetricsChart.label(t))</text>\n"
            }
            for t in MetricsChart.ticks(y0, y1) {
                out += "<line x1=\"\(left)\" y1=\"\(py(t))\" x2=\"\(width - right)\" y2=\"\(py(t))\" stroke=\"#eee\"/>"
                out +=
                    "<text x=\"\(left - 6)\" y=\"\(py(t) + 4)\" text-anchor=\"end\">\(MetricsChart.label(t))</text>\n"
            }
            out +=
                "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(width - left - right)\" "
                + "height=\"\(height - top - bottom)\" "
                + "fill=\"none\" stroke=\"#444\"/>\n"
            out +=
                "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 12)\" "
                + "text-anchor=\"middle\">\(MetricsChart.escaped(xLabel))</text>\n"
            return out
        }

        /// One series: its band (a polygon), its line (or point) and its legend entry.
        func markup(_ s: Series, color: String, index i: Int) -> String {
            var out = ""
            if let band = s.band, band.count == s.points.count, band.count > 1 {
                let upper = zip(s.points, band).map { String(format: "%.1f,%.1f", px($0.0.x), py($0.1.high)) }
                let lower = zip(s.points, band).reversed().map { String(format: "%.1f,%.1f", px($0.0.x), py($0.1.low)) }
                out +=
                    "<polygon fill=\"\(color)\" fill-opacity=\"0.15\" stroke=\"none\" "
                    + "points=\"\((upper + lower).joined(separator: " "))\"/>\n"
            }
            let points = s.points.map { String(format: "%.1f,%.1f", px($0.x), py($0.y)) }.joined(separator: " ")
            if s.points.count == 1 {
                out += "<circle cx=\"\(px(s.points[0].x))\" cy=\"\(py(s.points[0].y))\" r=\"3\" fill=\"\(color)\"/>\n"
            } else {
                out += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\" points=\"\(points)\"/>\n"
            }
            let ly = top + 16 + Double(i) * 16
            out +=
                "<line x1=\"\(width - right - 230)\" y1=\"\(ly - 4)\" x2=\"\(width - right - 210)\" y2=\"\(ly - 4)\" "
                + "stroke=\"\(color)\" stroke-width=\"2\"/>"
            out += "<text x=\"\(width - right - 205)\" y=\"\(ly)\">\(MetricsChart.escaped(s.name))</text>\n"
            return out
        }
    }
}
