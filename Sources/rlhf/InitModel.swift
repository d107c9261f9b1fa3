import ArgumentParser
import Foundation
import Kernels
import Models

struct InitModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a randomly initialised GPT-2 model folder (config.json + model.safetensors).")

    @Option(help: "Model shape: tiny, small or gpt2.")
    var preset: String = "tiny"

    @Option(help: "Folder to write; created if missing.")
    var out: String

    @Option(help: "Seed of the initialisation.")
    var seed: UInt64 = 0

    func run() throws {
        let trunk = try GPT2Trunk(config: try GPT2Config.preset(preset))
        var rng = RNG(seed: seed)
        trunk.initialize(rng: &rng)
        try HFCheckpoint.save(trunk, directory: out)
        log("init: wrote \(out) (\(preset), \(trunk.layout.parameterCount) parameters, seed \(seed))")
    }
}
