import Cluster
import Foundation
import Runs

/// `rlhf bench scale --predict FILE`: the cluster model built from `bench scale` lines, checked
/// against every step measured in the file, then the predictions for the hosts asked.
struct ScaleForecast {
    let command: BenchScale

    func run(file: String) throws {
        let records = try Self.read(file)
        let mine = records.filter {
            $0["workload"] as? String == command.workload.rawValue && $0["preset"] as? String == command.preset
        }
        let inputs = try modelInputs(records: records, mine: mine, file: file)
        if command.recommend {
            let hosts = command.hosts.first ?? 1
            guard
                let best = inputs.cluster.recommend(
                    hosts: hosts, coresPerHost: command.coresPerHost, hostBytes: command.hostMemoryGib * 1_073_741_824)
            else {
                throw CLIError(
                    "no split of \(command.coresPerHost) cores fits \(command.hostMemoryGib) GiB per host for "
                        + "\(command.workload.rawValue) \(command.preset)")
            }
            print("\(best.layout.ranksPerHost) \(best.layout.threadsPerRank) \(best.shape.rawValue)")
            return
        }
        command.line(
            "scale_inputs",
            [
                "seconds_per_unit_1_thread": inputs.measured.computePerUnit.oneThread,
                "parallel_fraction": inputs.measured.computePerUnit.parallelFraction,
                "units_per_core": inputs.measured.unitsPerCore, "predicted_units_per_core": inputs.cluster.unitsPerCore,
                "gradient_bytes": inputs.measured.gradientBytes,
                "message_bytes": inputs.measured.messageBytes, "within_latency_s": inputs.measured.within.latency,
                "within_bytes_per_s": inputs.measured.within.bandwidth,
                "measured_across_latency_s":
                    inputs.measured.across.latency, "measured_across_bytes_per_s": inputs.measured.across.bandwidth,
                "cluster_across_latency_s": inputs.cluster.across.latency,
                "cluster_across_bytes_per_s": inputs.cluster.across.bandwidth,
                "rank_fixed_bytes": inputs.measured.fixedBytes, "rank_bytes_per_unit": inputs.measured.bytesPerUnit,
                "host_shared_bytes": inputs.measured.sharedBytes,
            ])
        validate(inputs.measured, steps: mine.filter { $0["case"] as? String == "scale_step" })
        forecast(inputs.cluster)
    }

    static func read(_ file: String) throws -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CLIError("cannot read \(file)")
        }
        return text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{"),
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                (object["case"] as? String)?.hasPrefix("scale_") == true
            else { return nil }
            return object
        }
    }

    /// The inputs as measured (links as measured, for checking) and for the predicted cluster
    /// (the link between hosts as --across-gbps/--across-latency-ms say, where given).
    func modelInputs(records: [[String: Any]], mine: [[String: Any]], file: String) throws -> (
        measured: ScaleInputs, cluster: ScaleInputs
    ) {
        let what = "\(command.workload.rawValue) \(command.preset)"
        func one(_ kind: String, threads: Int) -> [String: Any]? {
            mine.first {
                $0["case"] as? String == kind && jsonInt($0["hosts"]) == 1 && jsonInt($0["ranks_per_host"]) == 1
                    && jsonInt($0["threads"]) == threads
            }
        }
        guard let c1 = one("scale_compute", threads: 1), let c2 = one("scale_compute", threads: 2),
            let memory = mine.first(where: { $0["case"] as? String == "scale_memory" })
        else { throw CLIError("\(file) has no one-rank `bench scale` lines of \(what) (scale_compute, scale_memory)") }
        let links = records.filter { $0["case"] as? String == "scale_link" }
        func link(_ acrossHosts: Bool) -> (LinkCost, Int)? {
            guard let l = links.first(where: { (jsonInt($0["hosts"]) > 1) == acrossHosts }),
                jsonDouble(l["latency_s"]) > 0, jsonDouble(l["bandwidth_bytes_per_s"]) > 0
            else { return nil }
            return (
                LinkCost(latency: jsonDouble(l["latency_s"]), bandwidth: jsonDouble(l["bandwidth_bytes_per_s"])),
                jsonInt(l["message_bytes"])
            )
        }
        guard let (within, _) = link(false) else { throw CLIError("\(file) has no scale_link line of one host") }
        let given = command.acrossGbps.flatMap { gbps in
            command.acrossLatencyMs.map { LinkCost(latency: $0 / 1e3, bandwidth: gbps * 1e9 / 8) }
        }
        guard let (across, messageBytes) = link(true) ?? given.map({ ($0, 16 << 20) }) else {
            throw CLIError(
                "\(file) has no scale_link line measured across hosts; give --across-gbps and --across-latency-ms")
        }
        let units = jsonInt(c1["units"]), units2 = jsonInt(memory["units_2"])
        let perUnit =
            (jsonDouble(memory["resident_bytes_2"]) - jsonDouble(memory["resident_bytes"])) / Double(units2 - units)
        let shared = jsonDouble(memory["shared_bytes"])
        let fixed =
            jsonDouble(memory["resident_bytes"]) + jsonDouble(memory["added_bytes"]) - shared - perUnit * Double(units)
        let measured = ScaleInputs(
            computePerUnit: ThreadScaling(
                oneThread: jsonDouble(c1["seconds"]) / Double(units),
                twoThreads: jsonDouble(c2["seconds"]) / Double(units)),
            unitsPerCore: units, gradientBytes: jsonInt(memory["gradient_bytes"]), messageBytes: messageBytes,
            within: within, across: across, fixedBytes: fixed, bytesPerUnit: max(perUnit, 0), sharedBytes: shared)
        var cluster = measured
        if let units = command.predictUnits { cluster.unitsPerCore = units }
        if let gbps = command.acrossGbps { cluster.across.bandwidth = gbps * 1e9 / 8 }
        if let ms = command.acrossLatencyMs { cluster.across.latency = ms / 1e3 }
        return (measured, cluster)
    }

    /// Predicted against measured seconds of every step in the file (flat route, as measured).
    func validate(_ inputs: ScaleInputs, steps: [[String: Any]]) {
        log("| layout | units per rank | predicted s | measured s | error |\n|---|---|---|---|---|")
        for s in steps {
            let layout = ClusterLayout(
                hosts: jsonInt(s["hosts"]), ranksPerHost: jsonInt(s["ranks_per_host"]),
                threadsPerRank: jsonInt(s["threads"]))
            let units = jsonInt(s["units"]), measured = jsonDouble(s["seconds"])
            let p = inputs.predict(layout, shape: .flat, units: units)
            let error = p.stepSeconds / measured - 1
            command.line(
                "scale_validation",
                [
                    "hosts": layout.hosts, "ranks_per_host": layout.ranksPerHost, "threads": layout.threadsPerRank,
                    "units": units, "predicted_s": rounded(p.stepSeconds, 4), "measured_s": measured,
                    "predicted_compute_s": rounded(p.computeSeconds, 4),
                    "predicted_reduce_s": rounded(p.reduceSeconds, 4), "error": rounded(error, 3),
                    "within_20_percent": abs(error) <= 0.2,
                ])
            log(
                "| \(layout) | \(units) | \(rounded(p.stepSeconds, 2)) | \(rounded(measured, 2)) | "
                    + "\(rounded(100 * error, 1))% |")
        }
    }
}

func jsonInt(_ value: Any?) -> Int { (value as? NSNumber)?.intValue ?? -1 }
func jsonDouble(_ value: Any?) -> Double { (value as? NSNumber)?.doubleValue ?? -1 }
