import Kernels
import Models

/// The four roles of RLHF (docs/architecture.md §3–§4). Each is a protocol with a local actor over a shared
/// trunk and a remote proxy that forwards the call to the rank hosting the role, so a controller
/// loop reads the same whatever the placement.
///
/// Sequences are token ids [prompt + response]; "log-probs" are log p(tokens[i] | tokens[..<i])
/// for i ≥ 1, as `rlhf score` prints them.
public enum RoleKind: String, CaseIterable, Sendable, Codable {
    case policy, critic, reference, reward
}

public protocol PolicyRole: Sendable {
    func generate(prompts: [[Int32]], options: SamplingOptions) async throws -> GenerationResult
    func logProbs(_ sequences: [[Int32]]) async throws -> [[Float]]
    /// One optimizer step on `objective` over `sequences` as `shape` says; gradients clipped to
    /// `maxGradNorm` (0: off).
    func trainStep(
        _ sequences: [[Int32]], objective: PolicyObjective, shape: StepShape, learningRate: Float, maxGradNorm: Float
    ) async throws -> StepStats
    /// The trainable state ("policy"): parameters, AdamW moments and step — for checkpoints, and
    /// for the controller's copy when the policy trains on another rank.
    func snapshots() async throws -> [String: TrainableSnapshot]
    func restore(_ snapshots: [String: TrainableSnapshot]) async throws
    /// Frees the buffers kept between train steps, at the end of an update phase, so that they do
    /// not add to the next rollout's KV cache (the memory plan counts them in the update only).
    func releaseBuffers() async
}

public protocol CriticRole: Sendable {
    /// A value per position of each sequence.
    func values(_ sequences: [[Int32]]) async throws -> [[Float]]
    /// One optimizer step on `objective` over `sequences` as `shape` says; gradients clipped to
    /// `maxGradNorm` (0: off).
    func trainStep(
        _ sequences: [[Int32]], objective: CriticObjective, shape: StepShape, learningRate: Float, maxGradNorm: Float
    ) async throws -> StepStats
    /// The trainable state ("value_head", "critic_adapter" or "critic_trunk").
    func snapshots() async throws -> [String: TrainableSnapshot]
    func restore(_ snapshots: [String: TrainableSnapshot]) async throws
    /// As `PolicyRole.releaseBuffers`.
    func releaseBuffers() async
}

extension PolicyRole {
    /// One optimizer step over all of `sequences` in one pass.
    public func trainStep(_ sequences: [[Int32]], objective: PolicyObjective, learningRate: Float, maxGradNorm: Float)
        async throws -> StepStats
    {
        try await trainStep(
            sequences, objective: objective, shape: .whole, learningRate: learningRate, maxGradNorm: maxGradNorm)
    }
}

extension CriticRole {
    /// One optimizer step over all of `sequences` in one pass.
    public func trainStep(_ sequences: [[Int32]], objective: CriticObjective, learningRate: Float, maxGradNorm: Float)
        async throws -> StepStats
    {
        try await trainStep(
            sequences, objective: objective, shape: .whole, learningRate: learningRate, maxGradNorm: maxGradNorm)
    }
}

/// A role on another rank keeps its buffers in that rank's memory: nothing to free here.
extension PolicyRole { public func releaseBuffers() async {} }
extension CriticRole { public func releaseBuffers() async {} }

public protocol ReferenceRole: Sendable {
    func logProbs(_ sequences: [[Int32]]) async throws -> [[Float]]
}

public protocol RewardRole: Sendable {
    /// The reward head's score at each sequence's last token.
    func scores(_ sequences: [[Int32]]) async throws -> [Float]
}

public struct RoleError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Right-padded [B, T] batch of sequences, with next-token targets (−1 on padding).
struct PaddedBatch {
    let batch: Int, length: Int
    let tokens: [Int32], targets: [Int32]
    init(_ sequences: [[Int32]], contextLength: Int) throws {
        guard !sequences.isEmpty else { throw RoleError("empty batch") }
        for (i, s) in sequences.enumerated() where s.isEmpty || s.count > contextLength {
            throw RoleError("sequence \(i) has \(s.count) tokens; it must have 1…\(contextLength)")
        }
        batch = sequences.count
        length = sequences.map(\.count).max()!
        var tokens = [Int32](repeating: 0, count: batch * length),
            targets = [Int32](repeating: -1, count: batch * length)
        for (r, s) in sequences.enumerated() {
            for (j, t) in s.enumerated() { tokens[r * length + j] = t }
            for j in 0..<(s.count - 1) { targets[r * length + j] = s[j + 1] }
        }
        self.tokens = tokens
        self.targets = targets
    }
}
