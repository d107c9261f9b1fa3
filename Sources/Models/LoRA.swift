import Kernels

/// The projections a LoRA adapter can wrap, named by their Hugging Face GPT-2 module paths.
public enum LoRATarget: String, CaseIterable, Codable, Sendable {
    case attentionQKV = "attn.c_attn"      // C → 3C
    case attentionOutput = "attn.c_proj"   // C → C
    case mlpUp = "mlp.c_fc"                // C → I
    case mlpDown = "mlp.c_proj"            // I → C

    /// (in, out) features of the wrapped projection.
    func dimensions(_ c: GPT2Config) -> (input: Int, output: Int) {
        switch self {
        case .attentionQKV: return (c.channels, 3 * c.channels)
        case .attentionOutput: return (c.channels, c.channels)
        case .mlpUp: return (c.channels, c.innerSize)
        case .mlpDown: return (c.innerSize, c.channels)
        }
    }
    var slot: Int { LoRATarget.allCases.firstIndex(of: self)! }
}

public struct LoRAConfig: Codable, Equatable, Sendable {
    public var rank: Int
    public var alpha: Float
    public var targets: [LoRATarget]
    public init(rank: Int = 8, alpha: Float = 16, targets: [LoRATarget] = [.attentionQKV, .attentionOutput]) {
        self.rank = rank; self.alpha = alpha; self.targets = targets
    }
    /// LoRA's output scaling α/r (Hu et al. 2021, §4.1).
    public var scale: Float { alpha / Float(rank) }
}

/// Offsets of one wrapped projection's A [r, in] and B [out, r] (PEFT's lora_A / lora_B layout).
public struct LoRASite: Sendable, Equatable {
    public let a: Int, b: Int, input: Int, output: Int
}

/// One set of low-rank adapters over a GPT-2 trunk: ΔW = (α/r)·Bᵀ… applied as
/// y = x·W + b + (α/r)·(x·Aᵀ)·Bᵀ. Several adapters can be used with one trunk object (Hydra):
/// the trunk is never copied or modified, the adapter is an argument of forward/backward.
public final class LoRAAdapter: @unchecked Sendable {
    public let config: LoRAConfig
    public let modelConfig: GPT2Config
    public let layout: TensorLayout
    public let weights: FloatBuffer
    /// sites[layer][target.slot]
    public let sites: [[LoRASite?]]

    public init(config: LoRAConfig, modelConfig: GPT2Config) throws {
        guard config.rank > 0 else { throw ModelError.invalidConfig("LoRA rank must be positive, got \(config.rank)") }
        guard !config.targets.isEmpty else { throw ModelError.invalidConfig("LoRA needs at least one target projection") }
        self.config = config
        self.modelConfig = modelConfig
        var layout = TensorLayout()
        var sites: [[LoRASite?]] = []
        for l in 0..<modelConfig.layers {
            var row = [LoRASite?](repeating: nil, count: LoRATarget.allCases.count)
            for target in LoRATarget.allCases where config.targets.contains(target) {
                let (input, output) = target.dimensions(modelConfig)
                let prefix = "h.\(l).\(target.rawValue)."
                let a = layout.add(prefix + "lora_A.weight", [config.rank, input])
                let b = layout.add(prefix + "lora_B.weight", [output, config.rank])
                row[target.slot] = LoRASite(a: a, b: b, input: input, output: output)
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

    /// A copy of `trunk` with the adapter folded in, W[in, out] += (α/r)·Aᵀ·Bᵀ for every wrapped
    /// projection (Conv1D layout): a plain model folder other tools load without the adapter.
    public func merged(into trunk: GPT2Trunk) throws -> GPT2Trunk {
        let out = try GPT2Trunk(config: trunk.config, weights: trunk.weights.clone())
        for (l, row) in sites.enumerated() {
            for target in LoRATarget.allCases {
                guard let site = row[target.slot], let w = out.layout.tensors["h.\(l).\(target.rawValue).weight"] else { continue }
                BLAS.sgemm(transA: true, transB: true, m: site.input, n: site.output, k: config.rank, alpha: config.scale,
                           a: weights.pointer + site.a, lda: site.input, b: weights.pointer + site.b, ldb: config.rank,
                           beta: 1, c: out.weights.pointer + w.offset, ldc: site.output)
            }
        }
        return out
    }
}

/// What a linear layer needs to add one LoRA branch: weights, gradient slots and the saved u = x·Aᵀ.
struct LoRABranch {
    let a: UnsafePointer<Float>          // [r, in]
    let b: UnsafePointer<Float>          // [out, r]
    let gradA: UnsafeMutablePointer<Float>?
    let gradB: UnsafeMutablePointer<Float>?
    let u: UnsafeMutablePointer<Float>   // [M, r], saved by forward
    let rank: Int
    let scale: Float
}
