import Foundation

extension Tokenizer {
    /// Loads a `.tiktoken` ranks file (e.g. `o200k_base.tiktoken`) with the given special
    /// tokens; the default makes it `o200k_harmony`, the gpt-oss tokenizer.
    public init(tiktokenFile url: URL, specialTokens: [String: Int32] = HarmonySpecialTokens.all) throws(TextError) {
        let ranks = try TiktokenFile.load(url)
        try self.init(checked: ranks, specialTokens: specialTokens, path: url.path)
    }

    /// Loads a Hugging Face `tokenizer.json` (as shipped with gpt-oss checkpoints); the
    /// specials come from its `added_tokens`.
    public init(tokenizerJSON url: URL) throws(TextError) {
        let contents = try TokenizerJSONFile.load(url)
        try self.init(checked: contents.ranks, specialTokens: contents.specials, path: url.path)
    }

    /// Finds and loads the tokenizer of a checkpoint directory: `tokenizer.json` if present,
    /// else `o200k_base.tiktoken` (with the harmony specials).
    public static func load(fromCheckpoint directory: URL) throws(TextError) -> Tokenizer {
        let candidates = ["tokenizer.json", "o200k_base.tiktoken"]
        let fm = FileManager.default
        let json = directory.appendingPathComponent(candidates[0])
        if fm.fileExists(atPath: json.path) { return try Tokenizer(tokenizerJSON: json) }
        let tiktoken = directory.appendingPathComponent(candidates[1])
        if fm.fileExists(atPath: tiktoken.path) { return try Tokenizer(tiktokenFile: tiktoken) }
        throw .tokenizerNotFound(directory: directory.path, looked: candidates)
    }

    /// Shared tail of the loaders: a byte-level BPE must contain every single byte (otherwise
    /// some text cannot be encoded at all), and specials must not collide with ranks.
    private init(checked ranks: RankTable, specialTokens: [String: Int32], path: String) throws(TextError) {
        for byte in 0..<256 where ranks.rank(of: [UInt8(byte)]) == nil {
            throw .tokenizerFile(path: path, line: nil, reason: "vocabulary has no token for byte 0x\(String(byte, radix: 16))")
        }
        for (name, id) in specialTokens where ranks.tokenBytes(Int(id)) != nil {
            throw .tokenizerFile(path: path, line: nil, reason: "special token \(name) reuses ordinary id \(id)")
        }
        do {
            try self.init(ranks: ranks, specialTokens: specialTokens)
        } catch {
            throw .tokenizerFile(path: path, line: nil, reason: "special tokens: \(error.reason)")
        }
    }
}
