import Alignment
import ArgumentParser
import Config
import Foundation
import Kernels
import Models
import Training

struct BenchDPO: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dpo",
        abstract:
            "Pairs per second of a DPO training step (the dpo stage's step: forward, loss, backward, clip, AdamW).",
        discussion: """
            Default case: tiny preset, 8 pairs × 2 sequences × 128 tokens (64 prompt + 64 response) per step. Modes: \
            full (full fine-tuning, reference log-probs cached as the stage does), full-ref (full fine-tuning plus a \
            reference forward every step, as TRL does unless precompute_ref_log_probs is set), lora (rank 16, cached \
            reference). \
            Each mode runs in its own child process so peak_rss_mib is its own.
            """)

    @Option(help: "Preset.") var preset = "tiny"
    @Option(help: "Modes (repeatable): full, full-ref, lora.") var mode: [String] = ["full", "full-ref", "lora"]
    @Option(help: "Pairs per step.") var pairs = 8
    @Option(help: "Prompt tokens.") var promptTokens = 64
    @Option(help: "Response tokens (chosen and rejected each).") var responseTokens = 64
    @Option(help: "Seconds of timed steps (after one warm-up step).") var seconds = 3.0

    func run() async throws {
        if mode.count > 1 {
            for m in mode {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/proc/self/exe")
                process.arguments = [
                    "bench", "dpo", "--preset", preset, "--mode", m, "--pairs", "\(pairs)", "--prompt-tokens",
                    "\(promptTokens)",
                    "--response-tokens", "\(responseTokens)", "--seconds", "\(seconds)",
                ]
                try process.run()
                process.waitUntilExit()
                guard process.terminationStatus == 0 else { throw CLIError("bench dpo --mode \(m) failed") }
            }
            return
        }
        try measure(mode[0])
    }

    func measure(_ mode: String) throws {
        guard ["full", "full-ref", "lora"].contains(mode) else {
            throw CLIError("--mode must be full, full-ref or lora")
        }
        let config = try ModelFamilies.preset(preset)
        log("bench dpo \(preset) \(mode): \(BLAS.summary)")
        let bench = try DPOBenchStep(
            config: config, mode: mode, pairs: pairs, promptTokens: promptTokens,
            responseTokens: responseTokens)
        try bench.run()
        bench.phase = (0, 0, 0, 0)
        var steps = 0
        let start = Measure.now()
        while Measure.now() - start < seconds || steps < 3 {
            try bench.run()
            steps += 1
        }
        report(bench, perStep: (Measure.now() - start) / Double(steps), steps: steps)
    }

    /// The JSON line: pairs/s, each phase's seconds, GFLOP/s against the sgemm peak, peak RSS.
    func report(_ bench: DPOBenchStep, perStep: Double, steps: Int) {
        let config = bench.config, batch = bench.batch, lora = bench.adapter != nil
        let forward = LanguageModelStep.forwardFLOPs(config: config, batch: batch.batch, tokens: batch.length)
        // Training issues 3× a forward's products (full) or about 2× plus the LoRA terms (no weight
        // gradients for frozen matrices); the reference pass adds one forward.
        let flops = (lora ? 2 : 3) * forward + (bench.mode == "full-ref" ? forward : 0)
        let rows = batch.batch * batch.length, c = config.channels
        let peak = Measure.sgemmPeak(shapes: [
            (rows, c, 3 * c), (rows, c, config.innerSize), (rows, c, config.vocabSize),
        ])
        let n = Double(steps), phase = bench.phase
        printJSONLine([
            "case": "dpo", "preset": preset, "mode": bench.mode, "threads": BLAS.threads, "core": BLAS.coreName,
            "pairs": pairs, "sequence_tokens": promptTokens + responseTokens,
            "trained_parameters": bench.parameters.count,
            "pairs_per_s": rounded(Double(pairs) / perStep, 1), "step_s": rounded(perStep, 4),
            "reference_s": rounded(phase.reference / n, 4), "forward_s": rounded(phase.forward / n, 4),
            "backward_s": rounded(phase.backward / n, 4), "optimizer_s": rounded(phase.optimizer / n, 4),
            "gflops": rounded(flops / perStep / 1e9, 1), "sgemm_peak_gflops": rounded(peak, 1),
            "peak_fraction": rounded(flops / perStep / 1e9 / peak, 3),
            "peak_rss_mib": rounded(Measure.peakRSSMiB(), 1),
        ])
    }
}

/// One DPO step as the stage takes it, on random pairs: reference sums (cached, or recomputed
/// for full-ref), forward, loss, backward, clip and AdamW, each phase timed.
final class DPOBenchStep {
    let config: any ModelConfiguration, mode: String, pairs: Int
    let reference: any CausalLM, adapter: LoRAAdapter?
    let parameters: FloatBuffer, gradients: FloatBuffer
    let optimizer: AdamW
    let batch: PreferenceBatch
    let step: TokenLogProbStep
    let objective = PreferenceObjective(kind: .family(.dpo))
    let cached: [Double]
    var phase = (reference: 0.0, forward: 0.0, backward: 0.0, optimizer: 0.0)

    init(config: any ModelConfiguration, mode: String, pairs: Int, promptTokens: Int, responseTokens: Int) throws {
        self.config = config
        self.mode = mode
        self.pairs = pairs
        var rng = RNG(seed: 1)
        reference = try config.makeModel(weights: nil)
        reference.initialize(rng: &rng)
        adapter =
            mode == "lora"
            ? try LoRAAdapter(
                config: LoRAConfig(rank: 16, alpha: 32, targets: config.allLoRATargets), modelConfig: config)
            : nil
        adapter?.initialize(rng: &rng)
        let policy = adapter != nil ? reference : try reference.clone()
        parameters = adapter?.weights ?? policy.weights
        optimizer = AdamW(
            layout: adapter?.layout ?? policy.parameterLayout, hyper: AdamWHyperparameters(learningRate: 1e-5))
        gradients = FloatBuffer(count: parameters.count)
        func random(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) } }
        let batchPairs = (0..<pairs).map { _ in
            TokenizedPair(
                prompt: random(promptTokens), chosen: random(responseTokens), rejected: random(responseTokens))
        }
        batch = PreferenceBatch(batchPairs, kinds: [.chosen, .rejected])
        step = TokenLogProbStep(trunk: policy, batch: batch.batch, tokens: batch.length, adapter: adapter)
        cached = try reference.referenceSums(batch)
    }

    func run() throws {
        let lora = adapter != nil
        let t0 = Measure.now()
        let ref = mode == "full-ref" ? try reference.referenceSums(batch) : cached
        let t1 = Measure.now()
        let logProbs = try step.forward(tokens: batch.tokens, targets: batch.targets)
        let dLogProbs = lossGradient(logProbs, reference: ref)
        let t2 = Measure.now()
        gradients.zero()
        step.backward(
            dLogProbs: dLogProbs, trunkGradients: lora ? nil : gradients, adapterGradients: lora ? gradients : nil)
        let t3 = Measure.now()
        clipGradientNorm(gradients, maxNorm: 1)
        optimizer.update(parameters: parameters, gradients: gradients, learningRate: 1e-5)
        let t4 = Measure.now()
        phase.reference += t1 - t0
        phase.forward += t2 - t1
        phase.backward += t3 - t2
        phase.optimizer += t4 - t3
    }

    /// ∂(mean DPO loss)/∂ each token's log-prob.
    func lossGradient(_ logProbs: [Float], reference ref: [Double]) -> [Float] {
        let perPair = batch.responseLogProbs(logProbs, pairs: pairs)
        var dLogProbs = [Float](repeating: 0, count: logProbs.count)
        var grads: [[PairSequenceKind: [Double]]] = []
        for (i, p) in perPair.enumerated() {
            let g = objective.evaluate(
                .init(chosen: p[.chosen]!, rejected: p[.rejected]!, refChosen: ref[2 * i], refRejected: ref[2 * i + 1]))
            grads.append([.chosen: g.chosen, .rejected: g.rejected])
        }
        for s in batch.spans {
            for t in 0..<s.count {
                dLogProbs[s.row * batch.length + s.start + t] = Float(grads[s.pair][s.kind]![t] / Double(pairs))
            }
        }
        return dLogProbs
    }
}
