import Foundation

/// OCP MXFP4 as gpt-oss checkpoints store expert weights:
///   blocks [E, out, G, 16] U8 — 32 FP4 (E2M1) codes per block, two per byte, LOW nibble first
///   scales [E, out, G]     U8 — one E8M0 exponent per block, bias 127
/// Dequantization follows transformers' `convert_moe_packed_tensors` step by step so the result
/// is bit-identical: code -> FP4_VALUES lookup, then torch.ldexp(value, scale - 127), which is an
/// exact scaling by 2^(scale-127) rounded once (measured on torch 2.13: 0.5 x 2^128 = 2^127
/// stays finite, 0 x 2^128 = 0, 2 x 2^128 = inf, 0.5 x 2^-127 is the subnormal 2^-128), in
/// bfloat16 (transformers' default dtype there; the rounding is exact for 2-bit mantissas), then
/// the [E, out, G*32] result transposed to [E, G*32, out] — i.e. [E, in, out], the layout of
/// `GptOssExperts.gate_up_proj` [E, C, 2I] and `down_proj` [E, I, C].
public enum MXFP4 {
    /// E2M1 code -> value (sign bit 3, exponent bits 2..1, mantissa bit 0).
    public static let fp4Values: [Float] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                                            -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]

    /// 2^(scale - 127) in Double, where every E8M0 value (2^-127 ... 2^128) is a normal number,
    /// so value x factor is exact and the conversion to Float is the single rounding ldexp does.
    @inline(__always)
    static func scaleFactor(_ scale: UInt8) -> Double {
        Double(sign: .plus, exponent: Int(scale) - 127, significand: 1)
    }

    @inline(__always)
    static func ldexp(_ value: Float, _ factor: Double) -> Float { Float(Double(value) * factor) }

    /// Every (scale byte, code) result, [256 * 16]: the arithmetic above done once, so
    /// dequantization is a table lookup per nibble.
    static let table: [Float] = (0..<256).flatMap { scale in
        fp4Values.map { roundToBF16(ldexp($0, scaleFactor(UInt8(scale)))) }
    }

    /// Dequantizes every expert. Output [experts, groups*32, rows] where rows is `out`.
    public static func dequantize(blocks: [UInt8], scales: [UInt8], experts: Int, rows: Int, groups: Int) throws -> [Float] {
        guard blocks.count == experts * rows * groups * 16, scales.count == experts * rows * groups else {
            throw EngineError.badInput(reason: "MXFP4: \(blocks.count) block bytes / \(scales.count) scales do not match [\(experts), \(rows), \(groups)]")
        }
        var out = [Float](repeating: 0, count: experts * rows * groups * 32)
        let perExpert = rows * groups * 32
        blocks.withUnsafeBufferPointer { b in scales.withUnsafeBufferPointer { s in
        table.withUnsafeBufferPointer { lut in out.withUnsafeMutableBufferPointer { dst in
            guard let bb = b.baseAddress, let sb = s.baseAddress, let lb = lut.baseAddress, let db = dst.baseAddress else { return }
            let (bs, ss, ls, ds) = (Shared(bb), Shared(sb), Shared(lb), SharedMutable(db))
            Parallel.chunks(experts) { range in  // experts write disjoint [in, out] slices
                for e in range {
                    dequantizeExpert(blocks: UnsafeBufferPointer(start: bs.base, count: blocks.count),
                                     scales: UnsafeBufferPointer(start: ss.base, count: scales.count),
                                     lut: UnsafeBufferPointer(start: ls.base, count: table.count), expert: e,
                                     rows: rows, groups: groups,
                                     into: UnsafeMutableBufferPointer(start: ds.base + e * perExpert, count: perExpert))
                }
            }
        } } } }
        return out
    }

    /// Rows handled together: the transposed writes of a 32-row x 32-input tile stay in L1.
    static let rowTile = 32

    /// One expert: dst [groups*32, rows] (in, out), row-major.
    static func dequantizeExpert(blocks: UnsafeBufferPointer<UInt8>, scales: UnsafeBufferPointer<UInt8>,
                                 lut: UnsafeBufferPointer<Float>, expert e: Int, rows: Int, groups: Int,
                                 into dst: UnsafeMutableBufferPointer<Float>) {
        for g in 0..<groups {
            for r0 in stride(from: 0, to: rows, by: rowTile) {
                for r in r0..<min(r0 + rowTile, rows) {
                    let block = (e * rows + r) * groups + g
                    let base = Int(scales[block]) * 16  // this block's 16 dequantized code values
                    for j in 0..<16 {
                        let byte = blocks[block * 16 + j]
                        let k = g * 32 + 2 * j  // input feature of the low nibble; the high nibble is k + 1
                        dst[k * rows + r] = lut[base + Int(byte & 0x0F)]
                        dst[(k + 1) * rows + r] = lut[base + Int(byte >> 4)]
                    }
                }
            }
        }
    }

    @inline(__always)
    static func roundToBF16(_ x: Float) -> Float { HalfFloat.bf16ToFloat(HalfFloat.floatToBF16(x)) }
}
