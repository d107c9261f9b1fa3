import Foundation
import Models

/// An estimate of what each role keeps in memory during PPO, printed before training; the run
/// refuses to start when the total exceeds the limit (config `memory.limit_gib`, default 90% of
/// the machine's memory). Float32 everywhere: 4 bytes per value.
public struct MemoryPlan: CustomStringConvertible {
    public struct Line { let role: String; let weights, adapters, optimizer, activations, kvCache: Double }
    public let lines: [Line]
    public var totalBytes: Double { lines.reduce(0) { $0 + $1.weights + $1.adapters + $1.optimizer + $1.activations + $1.kvCache } }

    public init(config c: any ModelConfiguration, hydra: Bool, lora: LoRAConfig, responses: Int, minibatch: Int, maxLength: Int) throws {
        let params = Double(c.parameterCount) * 4
        let adapter = Double(try makeAdapter(lora, for: c).layout.totalCount) * 4
        let head = Double(c.channels + 1) * 4
        // Training activations of one forward kept for the backward, and its LM-head logits.
        let training = c.trainingActivationBytes(batch: minibatch, tokens: maxLength, lmHead: true)
        let scoring = 4 * Double(responses * maxLength) * (Double(c.vocabSize) + 4 * Double(c.channels))   // one layer + logits
        let kv = 4 * 2 * Double(c.layers * responses * maxLength * c.kvHeads * c.headSize)   // keys and values of G heads of d
        // Trainable state: gradients + two AdamW moments.
        if hydra {
            lines = [Line(role: "trunk (shared)", weights: params, adapters: 0, optimizer: 0, activations: scoring, kvCache: 0),
                     Line(role: "policy", weights: 0, adapters: adapter, optimizer: 3 * adapter, activations: training, kvCache: kv),
                     Line(role: "critic", weights: head, adapters: adapter, optimizer: 3 * (adapter + head), activations: training, kvCache: 0),
                     Line(role: "reference + reward", weights: head, adapters: 0, optimizer: 0, activations: 0, kvCache: 0)]
        } else {
            lines = [Line(role: "policy", weights: params, adapters: 0, optimizer: 3 * params, activations: training, kvCache: kv),
                     Line(role: "critic", weights: params + head, adapters: 0, optimizer: 3 * (params + head), activations: training, kvCache: 0),
                     Line(role: "reference", weights: params, adapters: 0, optimizer: 0, activations: scoring, kvCache: 0),
                     Line(role: "reward", weights: params + head, adapters: 0, optimizer: 0, activations: 0, kvCache: 0)]
        }
    }

    static func mib(_ bytes: Double) -> String { String(format: "%.1f", bytes / 1_048_576) }

    public var description: String {
        var out = "memory plan (MiB)      weights  adapters  optimizer  activations  kv-cache\n"
        for l in lines {
            out += l.role.padding(toLength: 22, withPad: " ", startingAt: 0)
            for v in [l.weights, l.adapters, l.optimizer, l.activations, l.kvCache] {
                out += " " + String(repeating: " ", count: max(0, 9 - Self.mib(v).count)) + Self.mib(v)
            }
            out += "\n"
        }
        return out + "total \(Self.mib(totalBytes)) MiB"
    }

    /// 90% of MemTotal from /proc/meminfo (nil when unreadable).
    public static var defaultLimitBytes: Double? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
              let kib = Double(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return 0.9 * kib * 1024
    }
}
