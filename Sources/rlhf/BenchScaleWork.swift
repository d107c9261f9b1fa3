import Alignment
import Cluster
import Foundation
import Kernels
import Models
import Training

/// A full fine-tuning SFT step of a preset with random weights: forward, backward into the
/// Float64 sum, and (`reduce`) its all-reduce, as `DataParallelStep` takes it.
struct SFTScaleWork: ScaleWork {
    let trunk: any CausalLM, tokens: Int, world: MPITransport
    let gradients: FloatBuffer, sum: GradientSum

    init(preset: String, tokens: Int, world: MPITransport) throws {
        let config = try ModelFamilies.preset(qualified: preset)
        trunk = try config.makeModel(weights: nil)
        var rng = RNG(seed: 1)
        trunk.initialize(rng: &rng)
        self.tokens = tokens
        self.world = world
        gradients = FloatBuffer(count: trunk.parameterCount)
        sum = GradientSum(count: trunk.parameterCount)
    }

    var gradientBytes: Int { trunk.parameterCount * MemoryLayout<Double>.stride }
    var sharedBytes: Int { 0 }
    var unallocatedBytes: Int { 2 * trunk.parameterCount * MemoryLayout<Float>.stride }

    func step(units: Int, reduce: Bool, repeats: Int) async throws -> ScaleStep {
        var rng = RNG(seed: UInt64(1 + world.rank))
        let ids = (0..<(units * tokens)).map { _ in Int32(rng.next() % UInt64(trunk.config.vocabSize)) }
        let lm = LanguageModelStep(trunk: trunk, batch: units, tokens: tokens)
        let trainer = DataParallelStep(trunk: trunk, gradients: gradients, sum: sum, world: world, tokens: tokens)
        var best = Double.infinity
        for _ in 0...repeats {
            if reduce { try await world.barrier() }
            let start = Measure.now()
            try await trainer.run(lm, ids, reduce: reduce, overlap: false)
            best = min(best, Measure.now() - start)
        }
        return ScaleStep(seconds: best, residentBytes: Measure.peakRSSMiB() * 1_048_576, phases: [:])
    }
}

/// A GRPO iteration of the Hydra layout (LoRA rank 16) on `units` prompts per rank: the stage's own
/// iteration (`PPOTiming`), over the world when `reduce` (each rank its share of the prompts).
final class GRPOScaleWork: ScaleWork {
    let preset: String, samples: Int, responseTokens: Int, world: MPITransport
    let frozenParameters: Int
    /// LoRA adapters and heads, as the iteration counts them.
    var trainableParameters = 0

    init(preset: String, samples: Int, responseTokens: Int, world: MPITransport) throws {
        self.preset = preset
        self.samples = samples
        self.responseTokens = responseTokens
        self.world = world
        let config = try ModelFamilies.preset(qualified: preset)
        frozenParameters = config.parameterCount
    }

    var gradientBytes: Int { trainableParameters * MemoryLayout<Double>.stride }
    var sharedBytes: Int { frozenParameters * MemoryLayout<Float>.stride }
    var unallocatedBytes: Int { 0 }

    /// `units` prompts on each of `ranks` ranks. `ppo.minibatch_size` counts over every rank: one
    /// optimizer step per iteration (up to 16 responses a rank) at any world size, as the model has
    /// one all-reduce per step.
    func benchCase(units: Int, ranks: Int) -> PPOBenchCase {
        PPOBenchCase(
            preset: preset, layout: "hydra", prompts: units * ranks, samples: samples, promptTokens: 16,
            responseTokens: responseTokens, minibatch: min(16, units * samples) * ranks, loraRank: 16,
            precision: .fp32,
            estimator: .grpo, klCoef: 0.04, oldLogprobs: .sampling)
    }

    func step(units: Int, reduce: Bool, repeats: Int) async throws -> ScaleStep {
        let ranks = reduce ? world.size : 1
        let (config, inputs) = try benchCase(units: units, ranks: ranks).make()
        let best = try await PPOTiming.best(
            config: config, inputs: inputs, iterations: repeats,
            transport: reduce ? world : SingleProcessTransport())
        trainableParameters = best.trainableParameters
        return ScaleStep(
            seconds: best.iteration, residentBytes: Measure.peakRSSMiB() * 1_048_576,
            phases: ["generate_s": best.generate, "score_s": best.score, "train_s": best.train])
    }
}
