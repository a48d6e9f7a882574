import Foundation

/// `tuna merge`: the base checkpoint with an adapter folded into its weights, written as a
/// checkpoint transformers and the engine load without PEFT.
///
///  - attention: W[out, in] += scaling · B A, stored in `attentionDType` (the base's BF16 by
///    default: that rounding is the only difference from base + adapter; F32 keeps it exact);
///  - targeted experts: W[e][in, out] += scaling · A_e^T B_e^T, then either re-quantized to MXFP4
///    (`.mxfp4`: small, but MXFP4's rounding is coarse — the merge reports its error) or every
///    layer's experts written dense [E, in, out] (`.dense`), the layout transformers saves
///    after dequantizing, with `quantization_config` removed from config.json (transformers
///    cannot mix MXFP4 and dense experts in one model);
///  - everything else is copied byte for byte.
public enum LoRAMerge {
    public enum Experts: Sendable, Equatable { case mxfp4, dense(DType) }

    public struct Report: Sendable {
        public var mergedTensors: [String] = []
        /// Largest |dequantize(quantize(merged)) - merged| over re-quantized experts (0 otherwise).
        public var maxRequantizationError: Float = 0
    }

    public static func write(base: GptOssCheckpoint, adapter: LoRAAdapter, to out: URL, attentionDType: DType = .bf16,
                             experts: Experts = .mxfp4) throws -> Report {
        guard attentionDType == .bf16 || attentionDType == .f32 else { throw EngineError.badInput(reason: "merge: dtype must be BF16 or F32") }
        if case .dense(let d) = experts, d != .bf16 && d != .f32 { throw EngineError.badInput(reason: "merge: expert dtype must be BF16 or F32") }
        try DerivedCheckpoint.refuseBase(out, base: base.directory, what: "merge")
        let cfg = base.config, store = base.store
        var report = Report()
        var writer = SafeTensorsWriter(metadata: ["format": "pt", "merged_by": "tuna merge"])
        var handled = Set<String>()
        let e = cfg.numLocalExperts, c = cfg.hiddenSize, inter = cfg.intermediateSize

        for layer in 0..<cfg.numHiddenLayers {
            for module in LoRASettings.attentionModules {
                guard let l = adapter.attention(layer: layer, module: module) else { continue }
                let name = "model.layers.\(layer).self_attn.\(module).weight"
                var w = try store.floats(name, shape: [l.outFeatures, l.inFeatures])
                w.withUnsafeMutableBufferPointer { wp in l.b.withUnsafeBufferPointer { bp in l.a.withUnsafeBufferPointer { ap in
                    BLAS.sgemm(m: l.outFeatures, n: l.inFeatures, k: l.rank, alpha: l.scaling, a: bp.baseAddress!, lda: l.rank,
                               b: ap.baseAddress!, ldb: l.inFeatures, beta: 1, c: wp.baseAddress!, ldc: l.inFeatures)
                } } }
                try add(&writer, name, shape: [l.outFeatures, l.inFeatures], values: w, dtype: attentionDType)
                handled.insert(name); report.mergedTensors.append(name)
            }
            for (param, inF, outF) in [("gate_up_proj", c, 2 * inter), ("down_proj", inter, c)] {
                let lora = adapter.expert(layer: layer, parameter: param, experts: e)
                let name = "model.layers.\(layer).mlp.experts.\(param)"
                let quantized = store.contains(name + "_blocks")
                if lora == nil, case .mxfp4 = experts { continue }      // untouched: copied as is
                if lora == nil, !quantized { continue }                 // already dense: copied as is
                var w = try base.expertMatrix(name, experts: e, inFeatures: inF, outFeatures: outF)  // [E, in, out]
                if let lora {
                    for x in 0..<e {
                        let be = lora.bExpert(x)  // [out, r]
                        w.withUnsafeMutableBufferPointer { wp in lora.a.withUnsafeBufferPointer { ap in be.withUnsafeBufferPointer { bp in
                            // W[e] [in, out] += scaling · A_e^T [in, r] B_e^T [r, out]
                            BLAS.sgemm(transA: true, transB: true, m: inF, n: outF, k: lora.rank, alpha: lora.scaling,
                                       a: ap.baseAddress! + x * lora.rank * inF, lda: inF, b: bp.baseAddress!, ldb: lora.rank,
                                       beta: 1, c: wp.baseAddress! + x * inF * outF, ldc: outF)
                        } } }
                    }
                    report.mergedTensors.append(name)
                }
                switch experts {
                case .mxfp4:
                    let (blocks, scales) = try MXFP4.quantize(inputMajor: w, experts: e, inFeatures: inF, outFeatures: outF)
                    let back = try MXFP4.dequantize(blocks: blocks, scales: scales, experts: e, rows: outF, groups: inF / 32)
                    for i in 0..<w.count { report.maxRequantizationError = max(report.maxRequantizationError, abs(back[i] - w[i])) }
                    try writer.add(name + "_blocks", dtype: .u8, shape: [e, outF, inF / 32, 16], bytes: blocks)
                    try writer.add(name + "_scales", dtype: .u8, shape: [e, outF, inF / 32], bytes: scales)
                case .dense(let dtype):
                    try add(&writer, name, shape: [e, inF, outF], values: w, dtype: dtype)
                }
                handled.formUnion([name, name + "_blocks", name + "_scales"])
            }
        }
        for name in store.names where !handled.contains(name) {
            let info = try store.info(name)
            let bytes = try store.file(for: name).withRawBytes(name) { Array($0) }
            try writer.add(name, dtype: info.dtype, shape: info.shape, bytes: bytes)
        }

        try DerivedCheckpoint.writeWeights(writer, to: out, base: base.directory)
        // transformers cannot mix MXFP4 and dense experts: dense means no quantization_config
        try DerivedCheckpoint.writeConfig(from: base.directory, to: out) { if experts != .mxfp4 { $0.removeValue(forKey: "quantization_config") } }
        return report
    }

    static func add(_ w: inout SafeTensorsWriter, _ name: String, shape: [Int], values: [Float], dtype: DType) throws {
        if dtype == .f32 { try w.add(name, shape: shape, floats: values); return }
        var bytes = [UInt8](); bytes.reserveCapacity(values.count * 2)
        for v in values { let b = HalfFloat.floatToBF16(v); bytes.append(UInt8(b & 0xff)); bytes.append(UInt8(b >> 8)) }
        try w.add(name, dtype: .bf16, shape: shape, bytes: bytes)
    }
}
