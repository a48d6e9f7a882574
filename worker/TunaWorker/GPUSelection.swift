import TunaCore

/// Which of the box's GPUs this worker may use, and how a trainer is told which are its own.
///
/// The box's GPUs are nvidia-smi's. An inherited `CUDA_VISIBLE_DEVICES` (set by Slurm, a
/// container runtime or the user) narrows them, as it would for any CUDA program: its entries
/// are nvidia-smi indices or `GPU-` UUIDs (or unique UUID prefixes, as CUDA accepts). `--gpus`
/// narrows further to nvidia-smi indices, so that two workers can share a box or leave GPUs to
/// others. Anything that names a GPU the box does not have is an error, not a silent shrink
/// (CUDA itself silently drops everything after an unknown entry).
public enum GPUSelection {
    public struct Problem: Error, CustomStringConvertible {
        public let description: String
    }

    public static func select(probed: [GPUInfo], inheritedVisible: String?, requested: [Int]?) throws -> [GPUInfo] {
        var visible = probed
        if let inherited = inheritedVisible {
            let entries = inherited.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            visible = try entries.map { entry in
                try match(entry, in: probed, what: "CUDA_VISIBLE_DEVICES=\(inherited)")
            }
        }
        guard let requested else { return visible }
        return try requested.map { index in
            guard let gpu = visible.first(where: { $0.index == index }) else {
                let have = visible.map { String($0.index) }.joined(separator: ", ")
                throw Problem(description: "--gpus \(index): this box has no such GPU visible to the worker (visible: \(have.isEmpty ? "none" : have)"
                                           + (inheritedVisible.map { "; CUDA_VISIBLE_DEVICES=\($0)" } ?? "") + ")")
            }
            return gpu
        }
    }

    static func match(_ entry: String, in probed: [GPUInfo], what: String) throws -> GPUInfo {
        if let index = Int(entry) {
            if let gpu = probed.first(where: { $0.index == index }) { return gpu }
        } else if entry.hasPrefix("GPU-") {
            let hits = probed.filter { $0.uuid?.hasPrefix(entry) == true }
            if hits.count == 1 { return hits[0] }
            if hits.count > 1 { throw Problem(description: "\(what): \(entry) matches \(hits.count) GPUs; give more of the UUID") }
        } else if entry.hasPrefix("MIG-") {
            throw Problem(description: "\(what): MIG instances are not supported yet; give whole GPUs (indices or GPU- UUIDs)")
        }
        let have = probed.map { "\($0.index) \($0.uuid ?? "")" }.joined(separator: ", ")
        throw Problem(description: "\(what): \(entry) is not a GPU of this box (nvidia-smi lists: \(have.isEmpty ? "none" : have))")
    }

    /// What a trainer's CUDA_VISIBLE_DEVICES holds for these GPUs: their UUIDs, which mean the
    /// same GPU under any device ordering, else their (PCI-bus-ordered) indices.
    public static func cudaVisibleDevices(_ gpus: [GPUInfo]) -> String {
        gpus.map { $0.uuid ?? String($0.index) }.joined(separator: ",")
    }
}
