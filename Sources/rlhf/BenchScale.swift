import Alignment
import ArgumentParser
import Cluster
import Foundation
import Kernels
import Models
import Training

/// The work `rlhf bench scale` models: an SFT step (full fine-tuning, units are sequences) or a
/// GRPO iteration (Hydra layout with LoRA, units are prompts, each with its group of samples).
enum ScaleWorkload: String, ExpressibleByArgument, CaseIterable {
    case sft, grpo
}

struct BenchScale: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Measure what a cluster performance model needs here, or predict a cluster from such measurements.",
        discussion: """
            Measure (every run prints JSON lines; collect them in one file): at np 1 a rank's step on --units units \
            (sequences of --tokens tokens for sft, prompts of --samples responses for grpo) at 1 and 2 threads, its \
            resident memory at --units and twice as many, and the step on twice the units at 1 and 2 threads (the \
            points the model is checked on). Under mpirun with np ≥ 2: the link (a sweep of gradient all-reduces, \
            8 B to 64 MiB, fitted to latency and bandwidth; across hosts when the ranks span several), every rank's \
            compute alone, and the data-parallel step with its all-reduce. Then `rlhf bench scale --predict FILE` \
            checks the model against every measured step and predicts --hosts hosts of --cores-per-host cores \
            (`RATE=10gbit bash scripts/multihost.sh model OUT` runs it all). fp32 weight products.
            """)

    @Option(help: "Work to model: sft (full fine-tuning step) or grpo (an iteration: sample, score, train).")
    var workload: ScaleWorkload = .sft
    @Option(help: "Model preset, family/preset: llama/smollm2-135m, qwen2/qwen2.5-0.5b, small, ….")
    var preset: String = "llama/smollm2-135m"
    // Measuring.
    @Option(name: .customLong("units"), help: "Units per core: sequences of an SFT step, or prompts of GRPO (4).")
    var unitsGiven: Int?
    @Option(name: .customLong("tokens"), help: "Tokens per sequence (sft; 128).")
    var tokensGiven: Int?
    @Option(name: .customLong("samples"), help: "Responses per prompt (grpo; 8).")
    var samplesGiven: Int?
    @Option(name: .customLong("response-tokens"), help: "Response tokens, every response of full length (grpo; 64).")
    var responseTokensGiven: Int?
    @Option(name: .customLong("repeats"), help: "Timed repeats after a warm-up, the best kept (2).")
    var repeatsGiven: Int?
    var units: Int { unitsGiven ?? 4 }
    var tokens: Int { tokensGiven ?? 128 }
    var samples: Int { samplesGiven ?? 8 }
    var responseTokens: Int { responseTokensGiven ?? 64 }
    var repeats: Int { repeatsGiven ?? 2 }

    // Predicting.
    @Option(help: "Predict from this file of `bench scale` lines instead of measuring.")
    var predict: String?
    @Option(help: "Units per core of the predicted steps (default: the measured units).")
    var predictUnits: Int?
    @Option(name: .customLong("hosts"), help: "Hosts to predict (repeatable; 8 and 64).")
    var hostsGiven: [Int] = []
    @Option(name: .customLong("cores-per-host"), help: "Cores per predicted host (32).")
    var coresGiven: Int?
    @Option(name: .customLong("host-memory-gib"), help: "Memory per predicted host, GiB; the layout must fit (256).")
    var hostMemoryGiven: Double?
    @Option(help: "Link between predicted hosts, Gbit/s (default: the link measured across hosts in the file).")
    var acrossGbps: Double?
    @Option(help: "Latency of one step over the link between predicted hosts, ms (default: measured).")
    var acrossLatencyMs: Double?
    @Option(help: "Write the predicted efficiency against hosts as an SVG chart here.")
    var svg: String?
    @Flag(
        help: ArgumentHelp(
            "With --predict: print only the recommended layout for the first of --hosts, as "
                + "`RANKS_PER_HOST THREADS_PER_RANK REDUCTION` (what launch/layout.sh reads)."))
    var recommend = false
    var hosts: [Int] { hostsGiven.isEmpty ? [8, 64] : hostsGiven }
    var coresPerHost: Int { coresGiven ?? 32 }
    var hostMemoryGib: Double { hostMemoryGiven ?? 256 }

    func validate() throws {
        func within(_ value: Int?, _ range: ClosedRange<Int>, _ flag: String) throws {
            if let value, !range.contains(value) {
                throw ValidationError("\(flag) must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
            }
        }
        try within(unitsGiven, 1...4096, "--units")
        try within(tokensGiven, 2...65536, "--tokens")
        try within(samplesGiven, 1...1024, "--samples")
        try within(responseTokensGiven, 1...65536, "--response-tokens")
        try within(repeatsGiven, 0...100, "--repeats")
        try within(predictUnits, 1...1_000_000, "--predict-units")
        try within(coresGiven, 1...65536, "--cores-per-host")
        for h in hostsGiven { try within(h, 1...1_000_000, "--hosts") }
        for (value, flag) in [(hostMemoryGiven, "--host-memory-gib"), (acrossGbps, "--across-gbps")] {
            if let value, !(value > 0 && value.isFinite) { throw ValidationError("\(flag) must be positive") }
        }
        if let ms = acrossLatencyMs, !(ms >= 0 && ms.isFinite) {
            throw ValidationError("--across-latency-ms must be 0 or more")
        }
        let measuring: [Any?] = [unitsGiven, tokensGiven, samplesGiven, responseTokensGiven, repeatsGiven]
        let predicting: [Any?] = [predictUnits, coresGiven, hostMemoryGiven, acrossGbps, acrossLatencyMs, svg]
        if predict != nil, measuring.contains(where: { $0 != nil }) {
            throw ValidationError(
                "--units, --tokens, --samples, --response-tokens and --repeats measure; with --predict the file's "
                    + "figures are used (--predict-units sets the predicted work)")
        }
        if predict == nil, predicting.contains(where: { $0 != nil }) || !hostsGiven.isEmpty || recommend {
            throw ValidationError(
                "--predict-units, --hosts, --cores-per-host, --host-memory-gib, --across-*, --svg and --recommend "
                    + "apply to --predict FILE")
        }
    }

    func run() async throws {
        if let predict {
            var forecast = ScaleForecast(command: self)
            try forecast.run(file: predict)
            return
        }
        let world = await MPIRuntime.shared.world()
        try await failingLoudly(world, context: { FailureContext(rank: world.rank, role: "bench", step: 0) }) {
            let route = try await world.arrangeReductions(ReductionSetting(shape: .flat, bucketBytes: 0))
            if world.rank == 0 { log("bench scale \(workload) \(preset): \(BLAS.summary); \(route ?? "one rank")") }
            let work: any ScaleWork =
                workload == .sft
                ? try SFTScaleWork(preset: preset, tokens: tokens, world: world)
                : try GRPOScaleWork(
                    preset: preset, samples: samples, responseTokens: responseTokens, world: world)
            if world.size == 1 { try await measureOneRank(work) } else { try await measureRanks(work, world) }
        }
    }

    func line(_ kind: String, _ fields: [String: Any]) {
        let common: [String: Any] = [
            "case": kind, "workload": workload.rawValue, "preset": preset, "cpu": Self.cpuName,
            "core": BLAS.coreName,
        ]
        printJSONLine(common.merging(fields) { $1 })
    }

    /// The CPU model name with its family and model numbers (a VM may name it "AMD EPYC" alone).
    static let cpuName = CPUFeatures.current.summary

    /// One rank: compute at 1 and 2 threads, memory at two sizes, the steps the model is checked on.
    func measureOneRank(_ work: any ScaleWork) async throws {
        var resident: [Int: Double] = [:]
        for (threads, share) in [(1, units), (2, units), (1, 2 * units), (2, 2 * units)] {
            BLAS.setThreads(threads)
            let step = try await work.step(units: share, reduce: false, repeats: repeats)
            resident[share] = max(resident[share] ?? 0, step.residentBytes)
            let kind = share == units ? "scale_compute" : "scale_step"
            let fields: [String: Any] = [
                "hosts": 1, "ranks_per_host": 1, "threads": threads, "units": share,
                "seconds": rounded(step.seconds, 4),
            ]
            line(kind, fields.merging(step.phases.mapValues { rounded($0, 4) }) { $1 })
        }
        line(
            "scale_memory",
            [
                "units": units, "resident_bytes": resident[units] ?? 0, "units_2": 2 * units,
                "resident_bytes_2": resident[2 * units] ?? 0, "shared_bytes": work.sharedBytes,
                "added_bytes": work.unallocatedBytes, "gradient_bytes": work.gradientBytes,
            ])
    }

    /// Several ranks: the link, every rank's compute alone, then the data-parallel step.
    func measureRanks(_ work: any ScaleWork, _ world: MPITransport) async throws {
        let hostCount = world.hostCount.count, threads = BLAS.threads
        var seconds: [Double] = []
        for size in LinkMeasure.sizes {
            let sum = GradientSum(count: max(size / 8, 1))
            var best = Double.infinity
            // Small messages are cheap and, over TCP, sometimes slow by a millisecond: try them more.
            for _ in 0...(size <= 1 << 20 ? 20 : max(repeats, 2)) {
                try await world.barrier()
                let start = Measure.now()
                try await world.allReduce(sum)
                best = min(best, Measure.now() - start)
            }
            // The ranks' mean (a collective ends nearly together on every rank).
            seconds.append(try await world.allReduce([best], op: .sum)[0] / Double(world.size))
        }
        let fit = LinkCost.fitted(
            sizes: LinkMeasure.sizes, seconds: seconds, ranks: world.size, messageBytes: world.messageBytes)
        let pingPong = try await pingPongSeconds(world, bytes: [8, 16 << 20])
        let alone = try await work.step(units: units, reduce: false, repeats: repeats)
        let step = try await work.step(units: units, reduce: true, repeats: repeats)
        // The ranks' means, phase by phase.
        func mean(_ values: [Double]) async throws -> [Double] {
            try await world.allReduce(values, op: .sum).map { $0 / Double(world.size) }
        }
        let names = step.phases.keys.sorted()
        let meanAlone = try await mean([alone.seconds])[0]
        let meanStep = try await mean([step.seconds] + names.map { step.phases[$0] ?? 0 })
        guard world.rank == 0 else { return }
        line(
            "scale_link",
            [
                "ranks": world.size, "hosts": hostCount, "sizes": LinkMeasure.sizes,
                "seconds": seconds.map { rounded($0, 6) }, "latency_s": fit?.latency ?? -1,
                "bandwidth_bytes_per_s": fit?.bandwidth ?? -1, "message_bytes": world.messageBytes,
                "ping_pong_8_bytes_one_way_s": pingPong[0] / 2,
                "ping_pong_16_mib_bytes_per_s": Double(16 << 20) / max(pingPong[1] / 2, 1e-9),
            ])
        let layout: [String: Any] = [
            "hosts": hostCount, "ranks_per_host": world.size / max(hostCount, 1), "threads": threads, "units": units,
        ]
        line("scale_compute", layout.merging(["seconds": rounded(meanAlone, 4), "concurrent": true]) { $1 })
        var fields = layout.merging(["seconds": rounded(meanStep[0], 4), "message_bytes": world.messageBytes]) { $1 }
        for (name, value) in zip(names, meanStep.dropFirst()) { fields[name] = rounded(value, 4) }
        line("scale_step", fields)
    }
}

/// Best round-trip seconds of a message of each size between rank 0 and the last rank (on another
/// host when the ranks span several); the ranks between wait. Every rank returns rank 0's figures.
func pingPongSeconds(_ world: MPITransport, bytes: [Int], repeats: Int = 5) async throws -> [Double] {
    let last = world.size - 1
    var best = [Double](repeating: .infinity, count: bytes.count)
    for (i, size) in bytes.enumerated() {
        let message = Data(count: size)
        for _ in 0..<repeats {
            try await world.barrier()
            if world.rank == 0 {
                let start = Measure.now()
                try await world.send(message, to: last, tag: 71)
                _ = try await world.receive(from: last, tag: 71)
                best[i] = min(best[i], Measure.now() - start)
            } else if world.rank == last {
                let echo = try await world.receive(from: 0, tag: 71)
                try await world.send(echo, to: 0, tag: 71)
            }
        }
    }
    let figures = try await world.allReduce(world.rank == 0 ? best : best.map { _ in 0 }, op: .sum)
    return figures
}

/// A timed step: its best seconds, the peak resident bytes after it, and its phases' seconds
/// where it has phases (a GRPO iteration's generate, score, train).
struct ScaleStep {
    var seconds: Double, residentBytes: Double, phases: [String: Double]
}

/// One rank's share of a step, timed: the best of `repeats` after a warm-up, and the process's
/// peak resident bytes after it (the sizes are measured smallest first, so it is this size's).
/// `reduce`: over the world, with its all-reduce; otherwise alone.
protocol ScaleWork {
    func step(units: Int, reduce: Bool, repeats: Int) async throws -> ScaleStep
    /// Bytes all-reduced per step (Float64 sums of the trainable parameters).
    var gradientBytes: Int { get }
    /// Frozen bytes a host keeps once.
    var sharedBytes: Int { get }
    /// A rank's bytes the timed step does not allocate (AdamW's moments of a full fine-tune).
    var unallocatedBytes: Int { get }
}
