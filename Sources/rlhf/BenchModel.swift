import ArgumentParser
import Foundation
import Kernels
import Models

struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract:
            "Training-step and decoding speed of model presets (GPT-2 and Llama families), with the sgemm peak "
            + "measured in the same run.",
        discussion: """
            Train step = forward + LM-head log-probs + backward + AdamW over every parameter (full fine-tuning), \
            as a PyTorch LM-head model + torch.optim.AdamW would do. Threads come from OPENBLAS_NUM_THREADS. \
            With several presets each runs in its own child process so that peak_rss_mib is that preset's own.
            """)

    @Option(
        help:
            ArgumentHelp(
                "Presets to measure, family/preset (a bare name is GPT-2's): tiny, small, gpt2, llama/tiny, "
                    + "llama/small, llama/smollm2-135m (repeatable).")
    )
    var preset: [String] = ["tiny", "small", "gpt2", "llama/tiny", "llama/small", "llama/smollm2-135m"]

    @Option(help: "Sequences per training step.")
    var batch: Int = 8

    @Option(help: "Tokens per sequence.")
    var tokens: Int = 128

    @Option(help: "Minimum seconds spent timing training steps (after one warm-up step).")
    var seconds: Double = 3

    @Option(help: "Prompt tokens before decoding.")
    var promptTokens: Int = 16

    @Option(help: "New tokens decoded per sequence.")
    var newTokens: Int = 64

    @Option(help: "Precision of the weight products: fp32, bf16, or both (one JSON row each).")
    var precision: PrecisionChoice = .fp32

    enum PrecisionChoice: String, ExpressibleByArgument, CaseIterable {
        case fp32, bf16, both
        var precisions: [Precision] { self == .both ? Precision.allCases : [Precision(rawValue: rawValue)!] }
    }

    func run() throws {
        let runs = preset.flatMap { name in precision.precisions.map { (name, $0) } }
        if runs.count > 1 {
            for (name, p) in runs { try runChild(name, p) }
            return
        }
        try measure(runs[0].0, precision: runs[0].1)
    }

    func runChild(_ name: String, _ precision: Precision) throws {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
        child.arguments = [
            "bench", "model", "--preset", name, "--batch", "\(batch)", "--tokens", "\(tokens)",
            "--seconds", "\(seconds)", "--prompt-tokens", "\(promptTokens)", "--new-tokens", "\(newTokens)",
            "--precision", precision.rawValue,
        ]
        try child.run()
        child.waitUntilExit()
        guard child.terminationStatus == 0 else {
            throw CLIError("bench model --preset \(name) failed (exit \(child.terminationStatus))")
        }
    }

    func measure(_ name: String, precision: Precision) throws {
        let config = try ModelFamilies.preset(qualified: name)
        guard tokens <= config.contextLength else {
            throw CLIError("--tokens \(tokens) exceeds the \(name) context of \(config.contextLength)")
        }
        log("bench model \(name) \(precision.rawValue): \(BLAS.summary); bf16 products: \(BFloat16GEMM.summary)")
        let trunk = try config.makeModel(weights: nil)
        var rng = RNG(seed: 1)
        trunk.initialize(rng: &rng)
        trunk.use(precision, frozen: false)  // full fine-tuning: the bf16 copy follows every step
        let n = trunk.parameterCount
        let ids = (0..<(batch * tokens)).map { _ in Int32(rng.next() % UInt64(config.vocabSize)) }
        let targets = (0..<(batch * tokens)).map { i in (i + 1) % tokens == 0 ? Int32(-1) : ids[i + 1] }
        let train = try timeTraining(trunk, ids: ids, targets: targets)
        let trainSeconds = train.step
        let flops = 3 * LanguageModelStep.forwardFLOPs(config: config, batch: batch, tokens: tokens)
        let trainGFLOPs = flops / trainSeconds / 1e9

        let decode8 = try decodeTokensPerSecond(trunk, batch: 8)
        let decode32 = try decodeTokensPerSecond(trunk, batch: 32)
        let decode128 = try decodeTokensPerSecond(trunk, batch: 128)
        let c = config.channels, rows = batch * tokens
        let shapes = [(rows, c, 3 * c), (rows, c, config.innerSize), (rows, c, config.vocabSize)]
        let peak = precision == .bf16 ? Measure.bf16Peak(shapes: shapes) : Measure.sgemmPeak(shapes: shapes)
        printJSONLine([
            "case": "model", "preset": name, "family": config.modelType, "threads": BLAS.threads, "core": BLAS.coreName,
            "precision": precision.rawValue, "cpu": CPUFeatures.current.modelName,
            "bf16_engine": precision == .bf16 ? BFloat16GEMM.summary : "",
            "batch": batch, "tokens": tokens, "parameters": n,
            "train_tokens_per_s": rounded(Double(rows) / trainSeconds, 1),
            "train_step_s": rounded(trainSeconds, 4),
            "train_forward_backward_s": rounded(train.forwardBackward, 4),
            "train_optimizer_s": rounded(train.optimizer, 4),
            "train_gflops": rounded(trainGFLOPs, 1),
            "sgemm_peak_gflops": rounded(peak, 1),  // in bf16: the bf16 product peak
            "peak_fraction": rounded(trainGFLOPs / peak, 3),
            "decode_tokens_per_s_b8": rounded(decode8, 1),
            "decode_tokens_per_s_b32": rounded(decode32, 1),
            "decode_tokens_per_s_b128": rounded(decode128, 1),
            "peak_rss_mib": rounded(Measure.peakRSSMiB(), 1),
        ])
    }

    /// Seconds per full fine-tuning step (forward, backward, AdamW) after one warm-up step, over
    /// at least `seconds` and 2 steps; and the two phases' seconds per step.
    func timeTraining(_ trunk: any CausalLM, ids: [Int32], targets: [Int32]) throws
        -> (step: Double, forwardBackward: Double, optimizer: Double)
    {
        let n = trunk.parameterCount
        let grads = FloatBuffer(count: n), m = FloatBuffer(count: n), v = FloatBuffer(count: n)
        let step = LanguageModelStep(trunk: trunk, batch: batch, tokens: tokens)
        let hyper = AdamWHyperparameters(learningRate: 1e-4)
        var stepCount = 0
        var phase = (forwardBackward: 0.0, optimizer: 0.0)
        func trainStep() throws {
            let t0 = Measure.now()
            grads.zero()
            try step.run(tokens: ids, targets: targets, trunkGradients: grads)
            let t1 = Measure.now()
            stepCount += 1
            adamWUpdate(
                params: trunk.weights.pointer, grads: grads.pointer, m: m.pointer, v: v.pointer,
                count: n, step: stepCount, hyper: hyper)
            phase.forwardBackward += t1 - t0
            phase.optimizer += Measure.now() - t1
        }
        try trainStep()  // warm-up: first-touch page faults and BLAS buffers
        phase = (0, 0)
        let timed0 = stepCount, start = Measure.now()
        while Measure.now() - start < seconds || stepCount - timed0 < 2 { try trainStep() }
        let timedSteps = Double(stepCount - timed0)
        return ((Measure.now() - start) / timedSteps, phase.forwardBackward / timedSteps, phase.optimizer / timedSteps)
    }

    /// New tokens per second of batched sampling (temperature 1, no EOS) after a prompt prefill.
    func decodeTokensPerSecond(_ trunk: any CausalLM, batch: Int) throws -> Double {
        var rng = RNG(seed: 3)
        let prompts = (0..<batch).map { _ in
            (0..<promptTokens).map { _ in Int32(rng.next() % UInt64(trunk.config.vocabSize)) }
        }
        let options = SamplingOptions(temperature: 1, maxNewTokens: newTokens, seed: 4)
        let seconds = try Measure.best(minSeconds: 1, minRuns: 2) {
            _ = try trunk.generate(prompts: prompts, options: options)
        }
        return Double(batch * newTokens) / seconds
    }
}
