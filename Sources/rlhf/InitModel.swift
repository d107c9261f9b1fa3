import ArgumentParser
import Foundation
import Kernels
import Models

struct InitModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract:
            "Write a randomly initialised model folder (GPT-2 or Llama family), or a random LoRA adapter (PEFT "
            + "format) for an existing model."
    )

    @Option(help: "Architecture, by Hugging Face's model_type: gpt2 or llama.")
    var family: String = "gpt2"

    @Option(help: "Model shape of the family: gpt2 has tiny, small, gpt2; llama has tiny, small, smollm2-135m.")
    var preset: String = "tiny"

    @Option(help: "Folder to write the model into; created if missing.")
    var out: String?

    @Option(help: "Seed of the initialisation.")
    var seed: UInt64 = 0

    @Option(help: "With --adapter-out: the model folder the adapter is for.")
    var model: String?

    @Option(help: "Write a random LoRA adapter (A and B both random, so it changes the model) here, in PEFT's format.")
    var adapterOut: String?

    @Option(help: "Rank of the random adapter.")
    var adapterRank: Int = 4

    func run() throws {
        if let adapterOut {
            guard let model else { throw CLIError("--adapter-out needs --model (the folder the adapter is for)") }
            let config = try HFCheckpoint.readConfig(directory: model)
            let adapter = try LoRAAdapter(
                config: LoRAConfig(rank: adapterRank, alpha: Float(2 * adapterRank), targets: config.allLoRATargets),
                modelConfig: config)
            var rng = RNG(seed: seed)
            rng.fillNormal(adapter.weights.buffer, std: 0.3)
            try PEFTAdapter.save(adapter, directory: adapterOut, baseModel: model)
            log("init: wrote a random rank-\(adapterRank) adapter for \(model) to \(adapterOut)")
            return
        }
        guard let out else { throw CLIError("give --out (a new model folder) or --adapter-out with --model") }
        let trunk = try ModelFamilies.preset(preset, family: family).makeModel(weights: nil)
        var rng = RNG(seed: seed)
        trunk.initialize(rng: &rng)
        try HFCheckpoint.save(trunk, directory: out)
        log("init: wrote \(out) (\(family) \(preset), \(trunk.parameterCount) parameters, seed \(seed))")
    }
}
