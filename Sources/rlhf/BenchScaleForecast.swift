import Cluster
import Foundation
import Runs

/// `rlhf bench scale --predict FILE`: the cluster model built from `bench scale` lines, checked
/// against every step measured in the file, then the predictions for the hosts asked.
struct ScaleForecast {
    let command: BenchScale
    /// The CPU the file's figures were measured on, named in every line printed.
    var cpu = "?"

    mutating func run(file: String) throws {
        let records = try Self.read(file)
        let mine = records.filter {
            $0["workload"] as? String == command.workload.rawValue && $0["preset"] as? String == command.preset
        }
        cpu = mine.first?["cpu"] as? String ?? "?"
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
        emit(
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
        try validate(inputs.measured, steps: mine.filter { $0["case"] as? String == "scale_step" }, file: file)
        forecast(inputs.cluster)
    }

    /// A JSON line of the prediction, stamped with the measured CPU.
    func emit(_ kind: String, _ fields: [String: Any]) {
        command.line(kind, fields.merging(["cpu": cpu]) { $1 })
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
        let (within, across, messageBytes) = try links(records, file: file)
        let units = try field(memory, "units", file: file), units2 = try field(memory, "units_2", file: file)
        let resident = try field(memory, "resident_bytes", file: file)
        let resident2 = try field(memory, "resident_bytes_2", file: file)
        guard units2 > units, try field(c1, "units", file: file) == units, try field(c2, "units", file: file) == units
        else {
            throw CLIError(
                "\(file): the one-rank lines of \(what) disagree on units (scale_compute's units must equal "
                    + "scale_memory's units, and units_2 exceed them)")
        }
        // Memory per unit from two sizes; never below 0 (a smaller second peak is noise).
        let perUnit = max((resident2 - resident) / (units2 - units), 0)
        let shared = try field(memory, "shared_bytes", file: file, zeroAllowed: true)
        let added = try field(memory, "added_bytes", file: file, zeroAllowed: true)
        let measured = ScaleInputs(
            computePerUnit: ThreadScaling(
                oneThread: try field(c1, "seconds", file: file) / units,
                twoThreads: try field(c2, "seconds", file: file) / units),
            unitsPerCore: Int(units), gradientBytes: Int(try field(memory, "gradient_bytes", file: file)),
            messageBytes: messageBytes, within: within, across: across,
            fixedBytes: max(resident + added - shared - perUnit * units, 0), bytesPerUnit: perUnit,
            sharedBytes: shared)
        var cluster = measured
        if let units = command.predictUnits { cluster.unitsPerCore = units }
        if let gbps = command.acrossGbps { cluster.across.bandwidth = gbps * 1e9 / 8 }
        if let ms = command.acrossLatencyMs { cluster.across.latency = ms / 1e3 }
        return (measured, cluster)
    }

    /// The link within a host and between hosts (with its message size): the first sweep of each
    /// kind that could be fitted (-1: its smallest message was slower than the rest allow, as an
    /// 8 B all-reduce over TCP sometimes is); between hosts, --across-gbps/--across-latency-ms where
    /// the file has none.
    func links(_ records: [[String: Any]], file: String) throws -> (LinkCost, LinkCost, Int) {
        let links = records.filter { $0["case"] as? String == "scale_link" }
        func link(_ acrossHosts: Bool) throws -> (LinkCost, Int)? {
            let kind = links.filter { (jsonInt($0["hosts"]) > 1) == acrossHosts }
            let fitted = kind.filter { (($0["bandwidth_bytes_per_s"] as? NSNumber)?.doubleValue ?? -1) > 0 }
            if fitted.count < kind.count {
                log("\(file): \(kind.count - fitted.count) scale_link line(s) without a fit left out")
            }
            guard let l = fitted.first else { return nil }
            return (
                LinkCost(
                    latency: try field(l, "latency_s", file: file, zeroAllowed: true),
                    bandwidth: try field(l, "bandwidth_bytes_per_s", file: file)),
                Int(try field(l, "message_bytes", file: file))
            )
        }
        guard let (within, _) = try link(false) else { throw CLIError("\(file) has no scale_link line of one host") }
        let given = command.acrossGbps.flatMap { gbps in
            command.acrossLatencyMs.map { LinkCost(latency: $0 / 1e3, bandwidth: gbps * 1e9 / 8) }
        }
        guard let (across, messageBytes) = try link(true) ?? given.map({ ($0, 16 << 20) }) else {
            throw CLIError(
                "\(file) has no scale_link line measured across hosts; give --across-gbps and --across-latency-ms")
        }
        return (within, across, messageBytes)
    }

    /// Predicted against measured seconds of every step in the file (flat route, as measured).
    func validate(_ inputs: ScaleInputs, steps: [[String: Any]], file: String) throws {
        log("| layout | units per rank | predicted s | measured s | error |\n|---|---|---|---|---|")
        for s in steps {
            let layout = ClusterLayout(
                hosts: Int(try field(s, "hosts", file: file)),
                ranksPerHost: Int(try field(s, "ranks_per_host", file: file)),
                threadsPerRank: Int(try field(s, "threads", file: file)))
            let units = Int(try field(s, "units", file: file)), measured = try field(s, "seconds", file: file)
            // In the messages the measured run sent, where its line says.
            var run = inputs
            if let bytes = (s["message_bytes"] as? NSNumber)?.intValue, bytes > 0 { run.messageBytes = bytes }
            let p = run.predict(layout, shape: .flat, units: units)
            let error = p.stepSeconds / measured - 1
            emit(
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

/// A number of a `bench scale` line that must be positive (or 0 where allowed), or an error naming
/// the line's case, the field and the file.
func field(_ object: [String: Any], _ key: String, file: String, zeroAllowed: Bool = false) throws -> Double {
    guard let value = (object[key] as? NSNumber)?.doubleValue, value.isFinite, value > 0 || (zeroAllowed && value == 0)
    else {
        let kind = object["case"] as? String ?? "?"
        throw CLIError(
            "\(file): \(kind) line has no \(zeroAllowed ? "non-negative" : "positive") number '\(key)' "
                + "(got \(object[key].map { "\($0)" } ?? "none"))")
    }
    return value
}
