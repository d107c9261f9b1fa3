import Foundation
import Kernels
import Models
import Tokenizers
import XCTest

@testable import Training

/// A fresh folder per test, removed afterwards.
class TemporaryDirectoryTestCase: XCTestCase {
    var directory = ""
    override func setUp() {
        directory = NSTemporaryDirectory() + "rlhf-\(type(of: self))-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: directory) }
}

/// The model families every stage test runs on.
let testedFamilies = ["gpt2", "llama"]

/// A random tiny model folder of `family` (context 32, byte tokenizer) to start RL stages from.
func makeTinyModel(directory: String, family: String = "gpt2") throws -> String {
    let path = directory + "/sft" + (family == "gpt2" ? "" : "-" + family)
    let trunk: any CausalLM
    if family == "gpt2" {
        var shape = try GPT2Config.preset("tiny")
        shape.contextLength = 32
        trunk = try GPT2Trunk(config: shape)
    } else {
        var shape = try XCTUnwrap(LlamaConfig.presets["tiny"])
        shape.maxPositions = 32
        trunk = try LlamaTrunk(config: shape)
    }
    var rng = RNG(seed: 5)
    trunk.initialize(rng: &rng)
    try HFCheckpoint.save(trunk, directory: path)
    try ByteTokenizer.markerContents.write(
        toFile: path + "/" + ByteTokenizer.markerFile, atomically: true, encoding: .utf8)
    return path
}

/// A short GRPO run on the arith task from `model` into `out` (2 iterations of 2 prompts × 2
/// samples of 4 tokens, LoRA rank 4, no evaluation or checkpoints), then `overrides`.
func tinyPPOConfig(model: String, out: String, _ overrides: [String] = []) throws -> PPOConfig {
    try PPOConfig(
        try ppoSchema.resolve(
            file: nil,
            overrides: [
                "name=ppo", "out=\(out)", "model.init_from=\(model)", "data.task=arith", "ppo.iterations=2",
                "ppo.prompts=2", "ppo.samples_per_prompt=2", "ppo.max_new_tokens=4", "ppo.minibatch_size=4",
                "ppo.estimator=grpo", "lora.rank=4", "train.max_length=16", "eval.every=0", "checkpoint.every=0",
                "log.every=100",
            ] + overrides))
}
