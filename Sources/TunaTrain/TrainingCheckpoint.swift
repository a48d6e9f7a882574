import Foundation
import TunaCore
import TunaEngine

/// A training checkpoint is one file, `checkpoint.safetensors`: the adapter (`adapter.NAME`), both
/// AdamW moments (`adam_m.NAME`, `adam_v.NAME`) and, in the metadata, the optimizer step. One
/// file written to a temp name and renamed, so a kill at any moment leaves either the previous
/// checkpoint or the new one, never a mix of two steps (the contract's "keep only the latest").
enum TrainingCheckpoint {
    static let fileName = "checkpoint.safetensors"
    static let format = "tuna-native-checkpoint-1"

    static func save(adapter: LoRAAdapter, optimizer: AdamW, step: Int, to dir: URL) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let state = optimizer.state
        var w = SafeTensorsWriter(metadata: ["format": format, "step": String(step), "adam_step": String(state.step)])
        for name in adapter.tensors.keys.sorted() {
            let shape = adapter.shapes[name]!
            try w.add("adapter." + name, shape: shape, floats: adapter.tensors[name]!)
            if let m = state.m[name], let v = state.v[name] {
                try w.add("adam_m." + name, shape: shape, floats: m)
                try w.add("adam_v." + name, shape: shape, floats: v)
            }
        }
        let url = dir.appendingPathComponent(fileName)
        let tmp = dir.appendingPathComponent(".\(fileName).tmp")
        do {
            try w.serialized().write(to: tmp)
            guard rename(tmp.path, url.path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw TrainError.badCheckpoint(file: url.path, reason: "write failed: \(error)")
        }
    }

    /// Restores adapter and optimizer from `dir`, returning the step; nil when there is no
    /// checkpoint. A checkpoint that does not fit this job (other targets or rank, corrupt file)
    /// is reported with a `resume_failed` event and ignored: the run starts over rather than
    /// failing every retry on the same bad file (which stays stored on the coordinator).
    static func load(from dir: URL, into adapter: inout LoRAAdapter, optimizer: inout AdamW,
                     emit: NativeTrainer.Emit) throws -> Int? {
        let url = dir.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do {
            let file = try SafeTensorsFile(path: url.path)
            guard file.metadata["format"] == format, let step = Int(file.metadata["step"] ?? ""),
                  let adamStep = Int(file.metadata["adam_step"] ?? "") else {
                throw TrainError.badCheckpoint(file: url.path, reason: "not a \(format) file")
            }
            var restored = adapter
            var m: [String: [Float]] = [:], v: [String: [Float]] = [:]
            for name in adapter.tensors.keys {
                let info = try file.info("adapter." + name)
                guard info.shape == adapter.shapes[name]! else {
                    throw TrainError.badCheckpoint(file: url.path, reason: "\(name) has shape \(info.shape), this job needs \(adapter.shapes[name]!)")
                }
                restored.tensors[name] = try file.floats("adapter." + name)
                if adamStep > 0 {
                    m[name] = try file.floats("adam_m." + name)
                    v[name] = try file.floats("adam_v." + name)
                }
            }
            if file.tensors.count != adapter.tensors.count * (adamStep > 0 ? 3 : 1) {
                throw TrainError.badCheckpoint(file: url.path, reason: "holds \(file.tensors.count) tensors, this job's adapter has \(adapter.tensors.count)")
            }
            adapter = restored
            optimizer.restore(step: adamStep, m: m, v: v)
            return step
        } catch {
            emit(["event": TrainerEvent.Kind.resumeFailed.json, "reason": .string("\(error)")])
            return nil
        }
    }
}
