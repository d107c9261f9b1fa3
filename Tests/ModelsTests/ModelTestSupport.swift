import Foundation
import Kernels
import Models
import XCTest

/// A model small enough for finite differences over every tensor, with MLP width ≠ 4C and
/// heads > 1 so that no dimension mix-up can cancel out.
func tinyConfig(context: Int = 16) -> GPT2Config {
    GPT2Config(vocabSize: 23, contextLength: context, channels: 16, layers: 2, heads: 2, innerSize: 24,
               bosTokenId: 21, eosTokenId: 22)
}

func randomTrunk(_ config: GPT2Config = tinyConfig(), seed: UInt64 = 1, std: Float = 0.3) throws -> GPT2Trunk {
    let trunk = try GPT2Trunk(config: config)
    var rng = RNG(seed: seed)
    trunk.initialize(rng: &rng, std: std)
    // Non-trivial LayerNorm and bias parameters, so their gradients are exercised too.
    for tensor in trunk.layout.tensors.tensors where tensor.name.contains("ln_") || tensor.name.hasSuffix(".bias") {
        for i in 0..<tensor.count { trunk.weights[tensor.offset + i] += 0.1 * rng.normal() }
    }
    return trunk
}

func randomTokens(_ n: Int, vocab: Int, seed: UInt64) -> [Int32] {
    var rng = RNG(seed: seed)
    return (0..<n).map { _ in Int32(rng.next() % UInt64(vocab)) }
}

func fixturesDirectory() -> String {
    Bundle.module.resourceURL!.appendingPathComponent("Fixtures").path
}

func temporaryDirectory(_ name: String = #function) -> String {
    let path = NSTemporaryDirectory() + "rlhf-tests-\(getpid())-\(name.filter(\.isLetter))-\(UInt32.random(in: 0...UInt32.max))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func maxAbsDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count, "maxAbsDifference: \(a.count) vs \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}
