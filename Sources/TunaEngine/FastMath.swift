import Foundation

/// exp over 8 lanes at a time. The engine's two exp-heavy loops (SwiGLU's sigmoid, attention's
/// softmax) would otherwise spend most of their time in scalar expf. This is the Cephes expf
/// algorithm (range reduction by ln2 split in two, degree-6 polynomial, exponent by bit
/// insertion) written only with SIMD operations that lower to single AVX instructions
/// (pointwise min/max, add/mul, bit casts; Swift's generic `rounded`, integer conversion and
/// masked `replace` run lane by lane and were 8x slower than scalar expf).
/// Accuracy: within 1 ulp of glibc expf on [-87.3, 88.7] (tested). The lane function needs its
/// input inside that range (callers clamp with plain scalar loops, which LLVM vectorizes, unlike
/// the generic SIMD pointwiseMin/Max); the array form clamps itself, so it saturates
/// (e^-87.3 ~ 1.2e-38 instead of 0, e^88.7 ~ 3.4e38 instead of inf).
enum FastMath {
    typealias V = SIMD8<Float>

    static let lowest: Float = -87.33654, highest: Float = 88.72283

    /// e^x for x already inside [lowest, highest].
    @inline(__always)
    static func exp(_ clamped: V) -> V {
        // n = round(x / ln2) by the 1.5 * 2^23 trick: after the add the integer sits in the low
        // mantissa bits, so it is also read out as an Int32 without a conversion instruction
        let magic = V(repeating: 12582912)
        let shifted = clamped * 1.442695040888963 + magic
        let n = shifted - magic
        let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- unsafeBitCast(magic, to: SIMD8<Int32>.self)
        var r = clamped - n * 0.693359375  // ln2 split so n * ln2 is exact in the first step
        r = r - n * -2.12194440e-4
        var p = V(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let er = p * (r * r) + r + 1  // e^r, |r| <= ln2/2
        // 2^n as 2^a * 2^b (a = n/2): n reaches 128 at the top of the range, one past the
        // largest exponent a single float factor can hold
        let a = ni &>> 1, b = ni &- a
        let pa = unsafeBitCast((a &+ 127) &<< 23, to: V.self), pb = unsafeBitCast((b &+ 127) &<< 23, to: V.self)
        return er * pa * pb
    }

    /// dst[i] = exp(src[i]) for i in 0..<count (dst may equal src).
    static func exp(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { dst[i] = min(max(src[i], lowest), highest) }
        var i = 0
        while i + 8 <= count {
            let v = UnsafeRawPointer(dst + i).loadUnaligned(as: V.self)
            UnsafeMutableRawPointer(dst + i).storeBytes(of: exp(v), as: V.self)
            i += 8
        }
        if i < count {
            var v = V(repeating: 0)
            for l in 0..<(count - i) { v[l] = dst[i + l] }
            let e = exp(v)
            for l in 0..<(count - i) { dst[i + l] = e[l] }
        }
    }
}
