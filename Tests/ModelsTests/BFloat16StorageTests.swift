import Foundation
import Kernels
import Models
import XCTest

/// A frozen trunk in bf16 keeps its matrices in bf16 only (docs/architecture.md §12): its passes
/// compute what they computed with the fp32 weights beside the copy, the fp32 memory goes back to
/// the system, an exact pass expands the bf16 weights, and whatever needs the fp32 weights is
/// refused with a reason.
final class BFloat16StorageTests: XCTestCase {
    func trunks() throws -> [any CausalLM] {
        [try randomTrunk(), try randomLlama(), try randomLlama(tinyLlamaConfig(tied: true), seed: 4)]
    }

    /// Token log-probs of a few sequences (inference forward and LM head).
    func logProbs(_ trunk: any CausalLM) throws -> [Float] {
        let tokens = randomTokens(24, vocab: trunk.config.vocabSize, seed: 5)
        let targets = tokens.indices.map { $0 % 8 == 7 ? -1 : tokens[($0 + 1) % tokens.count] }
        let hidden = try trunk.inferenceHidden(tokens: tokens, batch: 3, length: 8, adapter: nil)
        let head = LMHeadCache(rows: 24, vocab: trunk.config.vocabSize)
        return withExtendedLifetime(hidden) { trunk.lmHeadLogProbs(hidden: hidden, targets: targets, cache: head) }
    }

    /// A copy of `trunk` whose fp32 values of `ranges` are rounded to bf16 in place.
    func rounded(_ trunk: any CausalLM, _ ranges: [Range<Int>]) throws -> any CausalLM {
        let weights = trunk.weights.clone()
        for range in ranges { for i in range { weights[i] = BFloat16.rounded(weights[i]) } }
        return try trunk.config.makeModel(weights: weights)
    }

    /// The same bits as a trunk that kept its fp32 weights, frozen or trained (the separate layout's
    /// policy is a trained clone of its bf16-only reference: they must start from the same bits).
    func testPassesMatchTheTrunkThatKeptItsFP32Weights() throws {
        for trunk in try trunks() {
            let name = trunk.config.modelType
            let kept = try trunk.config.makeModel(weights: trunk.weights.clone())
            kept.use(.bf16, frozen: true)
            trunk.use(.bf16, frozen: true)
            let trained = try trunk.clone()
            trunk.keepOnlyBF16()
            XCTAssertFalse(trunk.matmulWeights.holdsFP32, name)
            XCTAssertTrue(kept.matmulWeights.holdsFP32, name)
            let expected = try logProbs(trunk).map(\.bitPattern)
            XCTAssertEqual(try logProbs(kept).map(\.bitPattern), expected, name)
            XCTAssertEqual(try logProbs(trained).map(\.bitPattern), expected, name)
            let options = SamplingOptions(temperature: 1, maxNewTokens: 6, seed: 2)
            let prompts: [[Int32]] = [[1, 2, 3], [4]]
            let a = try trunk.generate(prompts: prompts, options: options)
            let b = try kept.generate(prompts: prompts, options: options)
            XCTAssertEqual(a.tokens, b.tokens, name)
            XCTAssertEqual(a.logProbs.flatMap { $0 }.map(\.bitPattern), b.logProbs.flatMap { $0 }.map(\.bitPattern))
        }
    }

    /// An exact pass over weights kept in bf16 only is the fp32 pass of the bf16 values (products
    /// in column blocks, so to fp32 rounding), and differs from the bf16 pass.
    func testExactPassExpandsTheBF16Weights() throws {
        for trunk in try trunks() {
            let name = trunk.config.modelType
            let reference = try rounded(trunk, trunk.config.bf16OnlyRanges)
            let fp32 = try logProbs(reference)
            trunk.use(.bf16, frozen: true)
            trunk.keepOnlyBF16()
            let exact = try MatmulWeights.$exact.withValue(true) { try logProbs(trunk) }
            XCTAssertLessThanOrEqual(maxAbsDifference(exact, fp32), 1e-5, name)
            XCTAssertGreaterThan(maxAbsDifference(exact, try logProbs(trunk)), 0, "\(name): the bf16 pass ran instead")
        }
    }

    func testFP32WeightsAreNeededAndRefused() throws {
        let trunk = try randomLlama()
        trunk.use(.bf16, frozen: true)
        trunk.keepOnlyBF16()
        XCTAssertThrowsError(try trunk.clone()) { XCTAssertTrue("\($0)".contains("bf16 only"), "\($0)") }
        let adapter = try LoRAAdapter(
            config: LoRAConfig(rank: 2, alpha: 4, targets: [.allLinear]), modelConfig: trunk.config)
        XCTAssertThrowsError(try trunk.merging(adapter)) { XCTAssertTrue("\($0)".contains("bf16 only"), "\($0)") }
        let folder = NSTemporaryDirectory() + "bf16-only-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        XCTAssertThrowsError(try HFCheckpoint.save(trunk, directory: folder)) {
            XCTAssertTrue("\($0)".contains("bf16 only"), "\($0)")
        }
    }

    /// Only a frozen trunk in bf16 gives up its fp32 weights.
    func testFP32AndTrainableTrunksKeepTheirWeights() throws {
        let fp32 = try randomLlama(), trained = try randomLlama()
        trained.use(.bf16, frozen: false)
        for trunk in [fp32, trained] {
            let before = trunk.weights.array
            trunk.keepOnlyBF16()
            XCTAssertTrue(trunk.matmulWeights.holdsFP32)
            XCTAssertEqual(trunk.weights.array, before)
        }
    }

    /// The memory comes back: resident anonymous memory falls by (nearly) the fp32 bytes of the
    /// projection matrices of a trunk of ~24 MB.
    func testReleasedMatricesLeaveTheResidentSet() throws {
        var config = tinyLlamaConfig(tied: true)
        config.vocabSize = 16384
        config.channels = 256
        config.innerSize = 512
        config.layers = 4
        let trunk = try randomLlama(config)
        trunk.use(.bf16, frozen: true)
        let matrices = config.bf16OnlyRanges.reduce(0) { $0 + $1.count } * 4
        let before = try residentAnonymousBytes()
        trunk.keepOnlyBF16()
        let after = try residentAnonymousBytes()
        XCTAssertGreaterThan(Double(before - after), 0.9 * Double(matrices), "RssAnon \(before) → \(after)")
    }

    /// Grouping the prefill (each prompt its own group here) changes no bit in bf16, whose rows do
    /// not depend on the rows beside them.
    func testPrefillGroupsGiveTheSameRollout() throws {
        for trunk in [try randomTrunk(tinyConfig(context: 32)), try randomLlama(tinyLlamaConfig(context: 32))]
            as [any CausalLM]
        {
            trunk.use(.bf16, frozen: true)
            let v = trunk.config.vocabSize
            let prompts = (1...5).map { randomTokens($0 + 2, vocab: v, seed: UInt64($0)) }
            let options = SamplingOptions(temperature: 1, maxNewTokens: 8, seed: 3)
            let whole = try trunk.generate(prompts: prompts, options: options)
            let grouped = try PrefillGroups.$budgetBytes.withValue(1) {
                XCTAssertEqual(trunk.prefillGroups(count: 5, length: 7, loraRank: 0).count, 5)
                return try trunk.generate(prompts: prompts, options: options)
            }
            XCTAssertEqual(whole.tokens, grouped.tokens)
            XCTAssertEqual(
                whole.logProbs.flatMap { $0 }.map(\.bitPattern), grouped.logProbs.flatMap { $0 }.map(\.bitPattern))
        }
    }
}

/// RssAnon of this process, from /proc/self/status.
func residentAnonymousBytes() throws -> Int {
    let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("RssAnon:") }),
        let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { throw XCTSkip("no RssAnon in /proc/self/status") }
    return kib * 1024
}
