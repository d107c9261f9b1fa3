import Cluster
import Foundation
import Runs

extension ScaleForecast {
    /// Every split of --cores-per-host into ranks × threads, on both routes, for each of --hosts;
    /// the recommended layout (fastest that fits --host-memory-gib); an SVG of efficiency.
    func forecast(_ inputs: ScaleInputs) {
        let cores = command.coresPerHost, hostBytes = command.hostMemoryGib * 1_073_741_824
        log(
            "| hosts | ranks × threads | route | step s | compute s | all-reduce s | units/s | efficiency "
                + "| host GiB |")
        log("|---|---|---|---|---|---|---|---|---|")
        for hosts in command.hosts {
            for layout in ClusterLayout.splits(hosts: hosts, coresPerHost: cores) {
                for shape in ReductionShape.allCases {
                    let p = inputs.predict(layout, shape: shape)
                    emit("scale_prediction", fields(p))
                    log(
                        "| \(hosts) | \(layout.ranksPerHost) × \(layout.threadsPerRank) | \(shape) | "
                            + "\(rounded(p.stepSeconds, 2)) | \(rounded(p.computeSeconds, 2)) | "
                            + "\(rounded(p.reduceSeconds, 2)) | \(rounded(p.unitsPerSecond, 2)) | "
                            + "\(rounded(p.efficiency, 3)) | \(rounded(p.hostBytes / 1_073_741_824, 1)) |")
                }
            }
            if let best = inputs.recommend(hosts: hosts, coresPerHost: cores, hostBytes: hostBytes) {
                emit("scale_recommendation", fields(best))
                log("recommended for \(hosts) hosts: \(best.layout), \(best.shape) route")
            } else {
                log("no layout of \(hosts) hosts fits \(command.hostMemoryGib) GiB per host")
            }
        }
        if let path = command.svg { writeChart(inputs, to: path) }
    }

    func fields(_ p: ScalePrediction) -> [String: Any] {
        [
            "hosts": p.layout.hosts, "ranks_per_host": p.layout.ranksPerHost, "threads": p.layout.threadsPerRank,
            "route": p.shape.rawValue, "units_per_rank": p.unitsPerRank, "step_s": rounded(p.stepSeconds, 4),
            "compute_s": rounded(p.computeSeconds, 4), "reduce_s": rounded(p.reduceSeconds, 4),
            "units_per_s": rounded(p.unitsPerSecond, 3), "efficiency": rounded(p.efficiency, 4),
            "host_gib": rounded(p.hostBytes / 1_073_741_824, 2),
            "fits_host_memory": p.hostBytes <= command.hostMemoryGib * 1_073_741_824,
        ]
    }

    /// Efficiency against hosts (1, 2, 4, … up to the most asked) for each ranks × threads split of
    /// a host, each on its faster route.
    func writeChart(_ inputs: ScaleInputs, to path: String) {
        let most = command.hosts.max() ?? 1
        let hostCounts = sequence(first: 1) { $0 * 2 }.prefix { $0 <= most }.map { $0 }
        let series = ClusterLayout.splits(hosts: 1, coresPerHost: command.coresPerHost).map { split in
            let points = hostCounts.map { hosts -> (x: Double, y: Double) in
                let layout = ClusterLayout(
                    hosts: hosts, ranksPerHost: split.ranksPerHost, threadsPerRank: split.threadsPerRank)
                let best = ReductionShape.allCases.map { inputs.predict(layout, shape: $0).efficiency }.max() ?? 0
                return (Double(hosts), best)
            }
            return MetricsChart.Series(
                name: "\(split.ranksPerHost) ranks × \(split.threadsPerRank) threads", points: points)
        }
        let title = "\(command.workload.rawValue) \(command.preset): predicted efficiency"
        do {
            try MetricsChart.svg(series: series, metric: title, x: "hosts of \(command.coresPerHost) cores").write(
                toFile: path, atomically: true, encoding: .utf8)
            log("wrote \(path)")
        } catch { log("cannot write \(path): \(error)") }
    }
}
