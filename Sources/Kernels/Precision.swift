/// The number format of matrix products. fp32 is the exact reference (golden tests, bit-identical
/// runs); bf16 is mixed precision as PyTorch's CPU autocast does it: matmul inputs rounded to bf16,
/// fp32 accumulation and outputs, everything else (norms, softmax, rotary, losses, log-probs,
/// optimizer, master weights) in fp32.
public enum Precision: String, Sendable, CaseIterable, Codable {
    case fp32, bf16
}

/// The `precision` setting: a format, or `auto` for bf16 where the CPU executes it natively.
public enum PrecisionSetting: String, Sendable, CaseIterable {
    case fp32, bf16, auto

    public struct Decision: Sendable, Equatable {
        public var precision: Precision
        /// Said at start: the choice and why.
        public var reason: String
    }

    /// bf16 runs natively on CPUs with AVX512_BF16 (dot products of bf16 pairs) or AMX-BF16 (tile
    /// matmuls); elsewhere bf16 is converted and multiplied in fp32 and is slower than fp32.
    /// Decided from CPU flags, never from model names (docs/platform.md fact 17).
    public static func nativeBF16(_ cpu: CPUFeatures) -> String? {
        ["amx_bf16", "avx512_bf16"].first(where: cpu.flags.contains)
    }

    public func decide(cpu: CPUFeatures) -> Decision {
        let native = Self.nativeBF16(cpu)
        switch self {
        case .fp32: return Decision(precision: .fp32, reason: "precision fp32 (set)")
        case .bf16:
            return Decision(
                precision: .bf16,
                reason: native.map { "precision bf16 (set; the CPU has \($0))" }
                    ?? "precision bf16 (set) — note: this CPU has no native bf16 (neither avx512_bf16 nor amx_bf16), "
                    + "so bf16 products are converted and run slower than fp32")
        case .auto:
            if let native {
                return Decision(precision: .bf16, reason: "precision auto → bf16: the CPU has \(native)")
            }
            return Decision(
                precision: .fp32, reason: "precision auto → fp32: the CPU has neither avx512_bf16 nor amx_bf16")
        }
    }
}
