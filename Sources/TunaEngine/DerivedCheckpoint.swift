import Foundation

/// What every writer of a checkpoint derived from another one (`tuna merge`, pruning) needs:
/// a refusal to write over the base, and the files beside the weights copied along.
enum DerivedCheckpoint {
    /// The tokenizer and generation files a checkpoint directory may carry.
    static let sidecarFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                               "o200k_base.tiktoken", "chat_template.jinja"]

    /// Throws when `out` is the base directory under any spelling: `x/../`, a trailing `/`, a
    /// symlink to it, or another path to the same inode (writing there would replace the
    /// base's weights and then delete its tokenizer while "copying" it onto itself).
    static func refuseBase(_ out: URL, base: URL, what: String) throws {
        if out.standardizedFileURL.resolvingSymlinksInPath().path == base.standardizedFileURL.resolvingSymlinksInPath().path {
            throw EngineError.badInput(reason: "\(what): the output directory is the base checkpoint; choose another")
        }
        let fm = FileManager.default
        if let x = try? fm.attributesOfItem(atPath: out.path), let y = try? fm.attributesOfItem(atPath: base.path),
           let dx = x[.systemNumber] as? NSNumber, let dy = y[.systemNumber] as? NSNumber,
           let ix = x[.systemFileNumber] as? NSNumber, let iy = y[.systemFileNumber] as? NSNumber, dx == dy, ix == iy {
            throw EngineError.badInput(reason: "\(what): the output directory is the base checkpoint; choose another")
        }
    }

    /// Writes the weights as one model.safetensors (removing a stale shard index, which would
    /// otherwise win over it), then copies the sidecar files.
    static func writeWeights(_ writer: SafeTensorsWriter, to out: URL, base: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: out, withIntermediateDirectories: true)
        try? fm.removeItem(at: out.appendingPathComponent(TensorStore.indexFileName))
        try writer.write(to: out.appendingPathComponent(TensorStore.singleFileName))
        for name in sidecarFiles {
            let src = base.appendingPathComponent(name), dst = out.appendingPathComponent(name)
            if fm.fileExists(atPath: src.path) {
                try? fm.removeItem(at: dst)
                try fm.copyItem(at: src, to: dst)
            }
        }
    }

    /// The base's config.json with `edit` applied, written to `out`.
    static func writeConfig(from base: URL, to out: URL, _ edit: (inout [String: Any]) throws -> Void) throws {
        let url = base.appendingPathComponent("config.json")
        guard var o = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any] else {
            throw EngineError.badConfig(file: url.path, reason: "not a JSON object")
        }
        try edit(&o)
        let data = try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try data.write(to: out.appendingPathComponent("config.json"))
    }
}
