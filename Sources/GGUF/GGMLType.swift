import Foundation

/// The tensor types of ggml (`enum ggml_type` in ggml.h) this reader turns into Float32, with their
/// block layouts from ggml-common.h. A quantised tensor is a sequence of blocks along each row
/// (ne[0]); a block of `blockSize` values takes `blockBytes` bytes.
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    public var name: String {
        switch self {
        case .f32: return "F32"
        case .f16: return "F16"
        case .q4_0: return "Q4_0"
        case .q4_1: return "Q4_1"
        case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"
        case .q5_K: return "Q5_K"
        case .q6_K: return "Q6_K"
        case .bf16: return "BF16"
        }
    }

    /// Values per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block (block_q4_0 = half d + 16 nibble bytes, …; QK_K = 256).
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 2 + 16
        case .q4_1: return 2 + 2 + 16
        case .q8_0: return 2 + 32
        case .q4_K: return 2 + 2 + 12 + 128
        case .q5_K: return 2 + 2 + 12 + 32 + 128
        case .q6_K: return 128 + 64 + 16 + 2
        }
    }

    /// Names of the ggml types this reader does not convert, so errors can say what the file has.
    static let otherNames: [UInt32: String] = [
        6: "Q5_0", 7: "Q5_1", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS",
        19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64",
        28: "F64",
        29: "IQ1_M", 34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
    ]

    public static func describe(_ raw: UInt32) -> String {
        GGMLType(rawValue: raw)?.name ?? otherNames[raw].map { "\($0) (type \(raw))" } ?? "type \(raw)"
    }

    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))))
    }

    /// Converts `blocks` consecutive blocks at `source` into `blocks × blockSize` floats, with the
    /// arithmetic of ggml's `dequantize_row_*` (and gguf-py's numpy version, which does the same
    /// products in the same order), so that values match them exactly.
    func dequantize(_ source: UnsafeRawPointer, blocks: Int, into y: UnsafeMutablePointer<Float>) {
        switch self {
        case .f32:
            UnsafeMutableRawPointer(y).copyMemory(from: source, byteCount: blocks * 4)
        case .f16:
            for i in 0..<blocks { y[i] = Self.half(source, 2 * i) }
        case .bf16:
            // bfloat16 is the top half of a float32.
            for i in 0..<blocks {
                y[i] = Float(
                    bitPattern: UInt32(
                        UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
            }
        case .q4_0, .q4_1, .q8_0:
            for b in 0..<blocks { dequantizeSmallBlock(source + b * blockBytes, y + b * 32) }
        case .q4_K, .q5_K:
            for b in 0..<blocks { dequantizeQ45K(source + b * blockBytes, y + b * 256) }
        case .q6_K:
            for b in 0..<blocks { Self.dequantizeQ6K(source + b * blockBytes, y + b * 256) }
        }
    }

    /// Q4_0: x = d·(q − 8), low nibbles first then high; Q4_1: x = d·q + m; Q8_0: x = d·q (int8).
    private func dequantizeSmallBlock(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = Self.half(p, 0)
        switch self {
        case .q4_0:
            let q = p.assumingMemoryBound(to: UInt8.self) + 2
            for j in 0..<16 {
                y[j] = d * Float(Int(q[j] & 0x0F) - 8)
                y[j + 16] = d * Float(Int(q[j] >> 4) - 8)
            }
        case .q4_1:
            let m = Self.half(p, 2)
            let q = p.assumingMemoryBound(to: UInt8.self) + 4
            for j in 0..<16 {
                y[j] = d * Float(q[j] & 0x0F) + m
                y[j + 16] = d * Float(q[j] >> 4) + m
            }
        default:
            let q = (p + 2).assumingMemoryBound(to: Int8.self)
            for j in 0..<32 { y[j] = d * Float(q[j]) }
        }
    }

    /// The 6-bit scale and min of sub-block j (0..<8) packed in 12 bytes (`get_scale_min_k4`).
    private static func scaleMin(_ j: Int, _ s: UnsafePointer<UInt8>) -> (Float, Float) {
        if j < 4 { return (Float(s[j] & 63), Float(s[j + 4] & 63)) }
        return (Float((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4)), Float((s[j + 4] >> 4) | ((s[j] >> 6) << 4)))
    }

    /// Q4_K / Q5_K: 8 sub-blocks of 32, each x = (d·scale)·q − (dmin·min); Q5_K adds a fifth bit
    /// from qh. Pairs of sub-blocks share 32 bytes of nibbles (low nibbles, then high).
    private func dequantizeQ45K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = Self.half(p, 0), dmin = Self.half(p, 2)
        let scales = p.assumingMemoryBound(to: UInt8.self) + 4
        let five = self == .q5_K
        let qh = scales + 12  // Q5_K only: [32]
        var q = five ? qh + 32 : scales + 12  // [128]
        for pair in 0..<4 {
            let (sc1, m1) = Self.scaleMin(2 * pair, scales), (sc2, m2) = Self.scaleMin(2 * pair + 1, scales)
            let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
            let low = UInt8(1) << (2 * pair), high = UInt8(2) << (2 * pair)
            let out = y + 64 * pair
            for l in 0..<32 {
                let bitLow: UInt8 = five && (qh[l] & low) != 0 ? 16 : 0
                let bitHigh: UInt8 = five && (qh[l] & high) != 0 ? 16 : 0
                out[l] = d1 * Float((q[l] & 0x0F) + bitLow) - min1
                out[l + 32] = d2 * Float((q[l] >> 4) + bitHigh) - min2
            }
            q += 32
        }
    }

    /// Q6_K: 16 sub-blocks of 16 with int8 scales; each value's low 4 bits in ql, high 2 in qh;
    /// x = (d·scale)·(q − 32), two halves of 128.
    private static func dequantizeQ6K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        var ql = p.assumingMemoryBound(to: UInt8.self)
        var qh = ql + 128
        var sc = (p + 192).assumingMemoryBound(to: Int8.self)
        let d = half(p, 208)
        var out = y
        for _ in 0..<2 {
            for l in 0..<32 {
                let s = l / 16
                let q1 = Int(ql[l] & 0x0F | ((qh[l] >> 0) & 3) << 4) - 32
                let q2 = Int(ql[l + 32] & 0x0F | ((qh[l] >> 2) & 3) << 4) - 32
                let q3 = Int(ql[l] >> 4 | ((qh[l] >> 4) & 3) << 4) - 32
                let q4 = Int(ql[l + 32] >> 4 | ((qh[l] >> 6) & 3) << 4) - 32
                out[l] = d * Float(sc[s]) * Float(q1)
                out[l + 32] = d * Float(sc[s + 2]) * Float(q2)
                out[l + 64] = d * Float(sc[s + 4]) * Float(q3)
                out[l + 96] = d * Float(sc[s + 6]) * Float(q4)
            }
            out += 128
            ql += 64
            qh += 32
            sc += 8
        }
    }
}
