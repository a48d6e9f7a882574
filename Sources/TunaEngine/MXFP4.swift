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

// MARK: quantization (the inverse, for writing checkpoints: the tiny model, `tuna merge`)

extension MXFP4 {
    /// Quantizes fp32 weights [experts, rows (out), columns (in)] to the layout `dequantize`
    /// reads: blocks [experts, rows, columns/32, 16], scales [experts, rows, columns/32].
    ///
    /// Scale rule, per block of 32: the *smallest* power of two 2^s with max|x| <= 6 * 2^s
    /// (6.0 is FP4's largest magnitude), so no value is ever clipped; s is clamped to
    /// -127 ... 126 (E8M0 bytes 0 ... 253; 254 would overflow every code >= 2 on dequantize,
    /// 255 is NaN in the OCP spec). An all-zero block gets s = -127 (byte 0) by the same rule.
    /// This differs from the OCP reference rule (floor(log2 max) - 2, which saturates values
    /// in (6, 8) x 2^s), trading half a step of range for never clipping the block's largest
    /// weight — the one that matters most for a merged LoRA delta.
    ///
    /// Values: x / 2^s (exact: a power-of-two scaling) rounded to the nearest E2M1 value,
    /// ties to even (the code with mantissa bit 0: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2,
    /// 2.5 -> 2, 3.5 -> 4, 5 -> 4), as IEEE and the OCP MX spec round. The sign survives
    /// rounding to zero (-0.1 x 2^s -> code 0x8, -0.0), so canonical bytes round-trip bit for bit.
    ///
    /// Guarantees (MXFP4QuantizeTests): dequantize(quantize(x)) == x exactly whenever some
    /// MXFP4 bytes dequantize to x; otherwise each element is off by at most half the FP4 step
    /// at its magnitude times 2^s (0.25, 0.5 or 1 x 2^s for |x|/2^s in [0,2], (2,4], (4,6]).
    /// Non-finite weights are an error: MXFP4 cannot carry them faithfully.
    public static func quantize(_ weights: [Float], experts: Int, rows: Int, columns: Int) throws
        -> (blocks: [UInt8], scales: [UInt8]) {
        guard experts >= 0, rows >= 0, columns % 32 == 0, weights.count == experts * rows * columns else {
            throw EngineError.badInput(reason: "MXFP4 quantize: \(weights.count) weights do not make [\(experts), \(rows), \(columns)] with columns divisible by 32")
        }
        if let bad = weights.firstIndex(where: { !$0.isFinite }) {
            throw EngineError.badInput(reason: "MXFP4 quantize: weight \(bad) is \(weights[bad])")
        }
        let count = weights.count / 32
        var blocks = [UInt8](repeating: 0, count: count * 16)
        var scales = [UInt8](repeating: 0, count: count)
        weights.withUnsafeBufferPointer { w in blocks.withUnsafeMutableBufferPointer { b in
        scales.withUnsafeMutableBufferPointer { s in
            guard let wb = w.baseAddress, let bb = b.baseAddress, let sb = s.baseAddress else { return }
            let (src, dstB, dstS) = (Shared(wb), SharedMutable(bb), SharedMutable(sb))
            Parallel.chunks(count, minChunk: 4096) { range in  // blocks are independent
                for k in range { quantizeBlock(src.base + k * 32, blocks: dstB.base + k * 16, scale: dstS.base + k) }
            }
        } } }
        return (blocks, scales)
    }

    /// The same for weights in `dequantize`'s output layout [experts, in, out] (what the engine
    /// and transformers hold: `gate_up_proj` [E, C, 2I], `down_proj` [E, I, C]), e.g. merged
    /// experts: transposes to [E, out, in] first.
    public static func quantize(inputMajor weights: [Float], experts: Int, inFeatures: Int, outFeatures: Int) throws
        -> (blocks: [UInt8], scales: [UInt8]) {
        guard weights.count == experts * inFeatures * outFeatures else {
            throw EngineError.badInput(reason: "MXFP4 quantize: \(weights.count) weights do not make [\(experts), \(inFeatures), \(outFeatures)]")
        }
        var t = [Float](repeating: 0, count: weights.count)
        let per = inFeatures * outFeatures
        for e in 0..<experts {
            for i in 0..<inFeatures {
                for o in 0..<outFeatures { t[e * per + o * inFeatures + i] = weights[e * per + i * outFeatures + o] }
            }
        }
        return try quantize(t, experts: experts, rows: outFeatures, columns: inFeatures)
    }

    /// Exponent s of the block scale 2^s: the smallest with amax <= 6 x 2^s, clamped (see `quantize`).
    static func scaleExponent(amax: Double) -> Int {
        guard amax > 0 else { return -127 }
        let ratio = amax / 6  // correctly rounded; == 2^k exactly only when amax == 6 x 2^k
        var s = ratio.exponent  // floor(log2(ratio))
        if ratio > Double(sign: .plus, exponent: s, significand: 1) { s += 1 }
        return min(max(s, -127), 126)
    }

    /// E2M1 code (without sign) of a magnitude y in [0, 6], nearest, ties to even. The
    /// comparisons are against exact midpoints; `<=` picks the even code below, `<` the odd one.
    @inline(__always)
    static func magnitudeCode(_ y: Double) -> UInt8 {
        if y <= 0.25 { return 0 }   // 0.0 (tie 0.25 -> 0.0, even)
        if y < 0.75 { return 1 }    // 0.5 (tie 0.75 -> 1.0, even)
        if y <= 1.25 { return 2 }   // 1.0
        if y < 1.75 { return 3 }    // 1.5
        if y <= 2.5 { return 4 }    // 2.0
        if y < 3.5 { return 5 }     // 3.0
        if y <= 5 { return 6 }      // 4.0
        return 7                    // 6.0
    }

    /// One block: 32 weights -> 16 bytes (element 2j in the low nibble of byte j) and a scale byte.
    @inline(__always)
    static func quantizeBlock(_ x: UnsafePointer<Float>, blocks: UnsafeMutablePointer<UInt8>, scale: UnsafeMutablePointer<UInt8>) {
        var amax = 0.0
        for i in 0..<32 { amax = max(amax, Double(abs(x[i]))) }
        let s = scaleExponent(amax: amax)
        scale.pointee = UInt8(s + 127)
        let inverse = Double(sign: .plus, exponent: -s, significand: 1)  // 2^-s: normal in Double, exact
        for j in 0..<16 {
            var byte: UInt8 = 0
            for h in 0..<2 {
                let v = x[2 * j + h]
                let code = magnitudeCode(Double(abs(v)) * inverse) | (v.sign == .minus ? 0x8 : 0)
                byte |= code << (4 * h)
            }
            blocks[j] = byte
        }
    }
}
