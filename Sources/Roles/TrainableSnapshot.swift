import Foundation
import Kernels
import Models

/// What a trainable part of a role needs to continue exactly: its parameters and its AdamW
/// moments and step. PPO's checkpoints are made of these.
public struct TrainableSnapshot: Sendable, Equatable {
    public var parameters: [Float], m: [Float], v: [Float]
    public var step: Int
    public init(parameters: [Float], m: [Float], v: [Float], step: Int) {
        self.parameters = parameters
        self.m = m
        self.v = v
        self.step = step
    }
}

extension Trainable {
    func snapshot() -> TrainableSnapshot {
        TrainableSnapshot(
            parameters: parameters.array, m: optimizer.m.array, v: optimizer.v.array, step: optimizer.step)
    }
    func restore(_ s: TrainableSnapshot, name: String) throws {
        guard s.parameters.count == parameters.count else {
            throw RoleError(
                "\(name): the checkpoint holds \(s.parameters.count) parameters, the role has \(parameters.count)")
        }
        s.parameters.withUnsafeBufferPointer { parameters.pointer.update(from: $0.baseAddress!, count: $0.count) }
        try optimizer.restore(m: s.m, v: s.v, step: s.step)
    }
}

extension LocalPolicy {
    /// "policy": the LoRA adapter, or the whole trunk when the policy fine-tunes fully.
    public func snapshots() -> [String: TrainableSnapshot] { ["policy": trainable.snapshot()] }
    public func restore(_ snapshots: [String: TrainableSnapshot]) throws {
        guard let s = snapshots["policy"] else { throw RoleError("checkpoint has no policy state") }
        try trainable.restore(s, name: "policy")
    }
}

extension LocalCritic {
    /// "value_head", plus "critic_adapter" (hydra) or "critic_trunk" (separate).
    public func snapshots() -> [String: TrainableSnapshot] {
        var out = ["value_head": headTrainable.snapshot()]
        if let adapterTrainable { out["critic_adapter"] = adapterTrainable.snapshot() }
        if let trunkTrainable { out["critic_trunk"] = trunkTrainable.snapshot() }
        return out
    }
    public func restore(_ snapshots: [String: TrainableSnapshot]) throws {
        for (name, part) in [
            ("value_head", Optional(headTrainable)), ("critic_adapter", adapterTrainable),
            ("critic_trunk", trunkTrainable),
        ] {
            guard let part else { continue }
            guard let s = snapshots[name] else { throw RoleError("checkpoint has no \(name) state") }
            try part.restore(s, name: name)
        }
    }
}
