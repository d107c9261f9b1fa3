import ArgumentParser
import Cluster
import Foundation
import Kernels
import Models

struct BenchAllReduce: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allreduce",
        abstract:
            "Gradient all-reduce (Float64 sums, along cluster.reduction's route) against one raw MPI_Allreduce, and "
            + "data-parallel SFT efficiency np=1 → np=N.",
        discussion: """
            Run under mpirun, e.g. `mpirun -np 2 -x OPENBLAS_NUM_THREADS=1 rlhf bench allreduce`. Bandwidth is bytes / \
            seconds of the best run (np=2: bus bandwidth = algorithm bandwidth). Efficiency: one rank trains a global \
            batch alone, then all ranks train it data-parallel, reducing after the backward and then overlapped with \
            it \
            (each layer's all-reduce started as its backward ends); efficiency = t(1 rank) / (N × t(N ranks)).
            """)

    @Option(help: "Gradient sums to reduce, in MiB of Float64 values (repeatable).")
    var mib: [Double] = [1, 16, 64]
    @Option(help: "Route of the gradient sums: flat or hierarchical (as cluster.reduction).")
    var reduction: String = "flat"
    @Option(help: "MiB per message between hosts (as cluster.bucket_mib; 0: sized from the link measured at start).")
    var bucketMib: Double = 0
    @Option(help: "Timed repeats per size (best is kept).")
    var repeats: Int = 5
    @Option(
        help:
            ArgumentHelp(
                "Model preset for the data-parallel efficiency run, family/preset (a bare name is GPT-2's): small, "
                    + "llama/smollm2-135m, ….")
    )
    var preset: String = "small"
    @Option(help: "Global batch (sequences) of the efficiency run; must split over the ranks.")
    var batch: Int = 16
    @Option(help: "Tokens per sequence of the efficiency run.")
    var tokens: Int = 128
    @Option(help: "Timed optimizer steps per phase of the efficiency run.")
    var steps: Int = 3

    func run() async throws {
        let world = await MPIRuntime.shared.world()
        try await failingLoudly(world, context: { FailureContext(rank: world.rank, role: "bench", step: 0) }) {
            if world.rank == 0 { log("bench allreduce: world size \(world.size); \(BLAS.summary)") }
            guard let shape = ReductionShape(rawValue: reduction), bucketMib >= 0 else {
                throw CLIError("--reduction is flat or hierarchical and --bucket-mib ≥ 0")
            }
            let route = try await world.arrangeReductions(
                ReductionSetting(
                    shape: shape, bucketBytes: bucketMib > 0 ? max(8, Int((bucketMib * 1_048_576).rounded())) : 0))
            if world.rank == 0, let route { log(route) }
            for size in mib {
                let count = Int(size * 1024 * 1024 / 8)
                let raw = await MPIRuntime.shared.rawAllReduceSeconds(count: count, repeats: repeats)
                let sum = GradientSum(count: count)
                var transport = Double.infinity
                for _ in 0..<(repeats + 1) {
                    try await world.barrier()
                    let start = Date()
                    try await world.allReduce(sum)
                    transport = min(transport, Date().timeIntervalSince(start))
                }
                let bytes = Double(count * 8)
                if world.rank == 0 {
                    printJSONLine([
                        "case": "allreduce", "world_size": world.size, "mib": size, "reduction": reduction,
                        "hosts": world.hostCount.count,
                        "transport_gb_per_s": rounded(bytes / transport / 1e9, 2),
                        "raw_mpi_gb_per_s": rounded(bytes / raw / 1e9, 2),
                        "fraction_of_raw": rounded(raw / transport, 3), "transport_ms": rounded(transport * 1e3, 3),
                        "raw_ms": rounded(raw * 1e3, 3),
                    ])
                }
            }
            try await efficiency(world)
        }
    }

    /// One rank trains the global batch alone, then every rank trains its share and the
    /// gradients (Float64 sums, as in SFT) are all-reduced.
    func efficiency(_ world: MPITransport) async throws {
        let config = try ModelFamilies.preset(qualified: preset)
        guard batch % world.size == 0 else {
            throw CLIError("--batch \(batch) does not split over \(world.size) ranks")
        }
        let trunk = try config.makeModel(weights: nil)
        var rng = RNG(seed: 1)
        trunk.initialize(rng: &rng)
        let gradients = FloatBuffer(count: trunk.parameterCount), sum = GradientSum(count: trunk.parameterCount)
        let perRank = batch / world.size
        func ids(_ n: Int) -> [Int32] { (0..<(n * tokens)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) } }
        let soloTokens = ids(batch), shareTokens = ids(perRank)
        let solo = LanguageModelStep(trunk: trunk, batch: batch, tokens: tokens)
        let share = LanguageModelStep(trunk: trunk, batch: perRank, tokens: tokens)
        let trainer = DataParallelStep(trunk: trunk, gradients: gradients, sum: sum, world: world, tokens: tokens)
        func step(_ lm: LanguageModelStep, _ t: [Int32], reduce: Bool, overlap: Bool = false) async throws {
            try await trainer.run(lm, t, reduce: reduce, overlap: overlap)
        }
        var soloSeconds = Double.infinity
        if world.rank == 0 {
            for _ in 0...steps {
                let s = Date()
                try await step(solo, soloTokens, reduce: false)
                soloSeconds = min(soloSeconds, Date().timeIntervalSince(s))
            }
        }
        try await world.barrier()
        func parallel(overlap: Bool) async throws -> Double {
            var best = Double.infinity
            for _ in 0...steps {
                try await world.barrier()
                let s = Date()
                try await step(share, shareTokens, reduce: true, overlap: overlap)
                best = min(best, Date().timeIntervalSince(s))
            }
            // The ranks' mean best step.
            return try await world.allReduce([best], op: .sum)[0] / Double(world.size)
        }
        let slowest = try await parallel(overlap: false)
        let overlapped = try await parallel(overlap: true)
        if world.rank == 0 {
            printJSONLine([
                "case": "data_parallel_sft", "preset": preset, "world_size": world.size, "global_batch": batch,
                "tokens": tokens,
                "threads_per_rank": BLAS.threads, "step_s_one_rank": rounded(soloSeconds, 4),
                "step_s_all_ranks": rounded(slowest, 4),
                "speedup": rounded(soloSeconds / slowest, 3),
                "efficiency": rounded(soloSeconds / (Double(world.size) * slowest), 3),
                "step_s_overlapped": rounded(overlapped, 4),
                "efficiency_overlapped": rounded(soloSeconds / (Double(world.size) * overlapped), 3),
                "hosts": world.hostCount.count, "gradient_mib": rounded(Double(trunk.parameterCount * 8) / 1048576, 1),
            ])
        }
    }
}

/// One data-parallel SFT step as the stage takes it: the backward into a Float64 sum, all-reduced
/// after the backward or overlapped with it.
struct DataParallelStep {
    let trunk: any CausalLM, gradients: FloatBuffer, sum: GradientSum, world: MPITransport, tokens: Int

    func run(_ lm: LanguageModelStep, _ t: [Int32], reduce: Bool, overlap: Bool) async throws {
        let targets = t.indices.map { ($0 + 1) % tokens == 0 ? -1 : t[$0 + 1] }
        gradients.zero()
        sum.zero()
        if overlap {
            // As SFT's last micro-batch: each layer's all-reduce starts when its backward ends.
            let reduction = OverlappedReduction(
                sum: sum, gradients: gradients, buckets: trunk.gradientBuckets, transport: world)
            try lm.run(tokens: t, targets: targets, trunkGradients: gradients, gradientsReady: reduction.ready)
            try await reduction.finish()
        } else {
            try lm.run(tokens: t, targets: targets, trunkGradients: gradients)
            sum.add(gradients)
            if reduce { try await world.allReduce(sum) }
        }
        sum.write(into: gradients)
    }
}
