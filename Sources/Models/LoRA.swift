import Kernels

/// A projection a LoRA adapter wraps, by the module name PEFT uses for it in the model's family
/// ("attn.c_attn" in GPT-2). Which names exist is the family's `loraProjections`.
public struct LoRATarget: Hashable, Codable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public init(stringLiteral name: String) { self.name = name }
    public init(from decoder: any Decoder) throws { name = try decoder.singleValueContainer().decode(String.self) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }
    public var description: String { name }

    /// Every projection of the model's family (PEFT's "all-linear"; the LM head is not wrapped).
    public static let allLinear: LoRATarget = "all-linear"
}

public struct LoRAConfig: Codable, Equatable, Sendable {
    public var rank: Int
    public var alpha: Float
    public var targets: [LoRATarget]
    public init(rank: Int = 8, alpha: Float = 16, targets: [LoRATarget]) {
        self.rank = rank
        self.alpha = alpha
        self.targets = targets
    }
    /// LoRA's output scaling α/r (Hu et al. 2021, §4.1).
    public var scale: Float { alpha / Float(rank) }
}

/// Offsets of one wrapped projection's A [r, in] and B [out, r] (PEFT's lora_A / lora_B layout).
public struct LoRASite: Sendable, Equatable {
    public let a: Int, b: Int, input: Int, output: Int
}

/// One set of low-rank adapters over a trunk of any family: applied as
/// y = x·W + b + (α/r)·(x·Aᵀ)·Bᵀ. Several adapters can be used with one trunk object (Hydra):
/// the trunk is never copied or modified, the adapter is an argument of forward/backward.
public final class LoRAAdapter: @unchecked Sendable {
    public let config: LoRAConfig
    public let modelConfig: any ModelConfiguration
    public let layout: TensorLayout
    public let weights: FloatBuffer
    /// sites[layer][slot], slot = the projection's index in the family's `loraProjections`
    public let sites: [[LoRASite?]]

    public init(config requested: LoRAConfig, modelConfig: any ModelConfiguration) throws {
        guard requested.rank > 0 else {
            throw ModelError.invalidConfig("LoRA rank must be positive, got \(requested.rank)")
        }
        guard !requested.targets.isEmpty else {
            throw ModelError.invalidConfig("LoRA needs at least one target projection")
        }
        // "all-linear" becomes the family's projections, so the adapter names what it wraps.
        var config = requested
        config.targets = modelConfig.resolving(requested.targets)
        for target in config.targets { _ = try modelConfig.loraProjection(target) }
        self.config = config
        self.modelConfig = modelConfig
        var layout = TensorLayout()
        var sites: [[LoRASite?]] = []
        let projections = modelConfig.loraProjections
        for l in 0..<modelConfig.layers {
            var row = [LoRASite?](repeating: nil, count: projections.count)
            // The family's order, whatever the order of `targets`: the tensor order is the adapter's identity.
            for (slot, projection) in projections.enumerated() where config.targets.contains(projection.target) {
                let prefix = modelConfig.loraModulePath(layer: l, target: projection.target) + "."
                let a = layout.add(prefix + "lora_A.weight", [config.rank, projection.input])
                let b = layout.add(prefix + "lora_B.weight", [projection.output, config.rank])
                row[slot] = LoRASite(a: a, b: b, input: projection.input, output: projection.output)
            }
            sites.append(row)
        }
        self.layout = layout
        self.sites = sites
        self.weights = FloatBuffer(count: layout.totalCount)
    }

    /// PEFT's default initialisation: A ~ U(−1/√in, 1/√in) (kaiming_uniform with a = √5), B = 0,
    /// so a fresh adapter leaves the model's function unchanged.
    public func initialize(rng: inout RNG) {
        weights.zero()
        for row in sites {
            for case let site? in row {
                let bound = 1 / Float(site.input).squareRoot()
                for i in 0..<(config.rank * site.input) {
                    weights[site.a + i] = (2 * rng.uniform() - 1) * bound
                }
            }
        }
    }

    public var maxRank: Int { config.rank }
}

/// What a linear layer needs to add one LoRA branch: weights, gradient slots and the saved u = x·Aᵀ.
struct LoRABranch {
    let a: UnsafePointer<Float>  // [r, in]
    let b: UnsafePointer<Float>  // [out, r]
    let gradA: UnsafeMutablePointer<Float>?
    let gradB: UnsafeMutablePointer<Float>?
    let u: UnsafeMutablePointer<Float>  // [M, r], saved by forward
    let rank: Int
    let scale: Float
}
