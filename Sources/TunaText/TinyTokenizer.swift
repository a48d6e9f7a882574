import Foundation

/// A cut-down o200k_harmony for small demo models: the first `ordinaryTokens` (K) ranks of
/// o200k_base and the first `specialTokens` (S) harmony specials renumbered to K, K+1, ...
/// (o200k id 199998 + i becomes K + i, so every named token keeps its offset: `<|start|>` is
/// K + 8, `<|return|>` K + 4). o200k's full 201088-row embedding and lm_head would dominate
/// a tiny model's compute; with K = 1024, S = 64 the vocabulary is 1088.
///
/// Why truncating the ranks is sound: o200k's ranks are merge order. Every token of rank r
/// >= 256 is the BPE merge of exactly two tokens of rank < r (checked for all 199742 such
/// tokens; `TinyTokenizerTests` re-checks the ranks it uses), so the first K ranks are closed
/// under the merges that build them: BPE restricted to them is tiktoken with
/// `mergeable_ranks` cut at K, every token < K stays reachable, and since ranks 0...255 are
/// the 256 single bytes (K >= 256 required) every text still encodes.
public enum TinyTokenizer {
    /// o200k id of the first harmony special, `<|startoftext|>`.
    public static let firstO200kSpecial: Int32 = 199998
    /// `<|endofprompt|>` (200018) is the last named special: S must reach it.
    public static let minimumSpecialTokens = 21

    /// Writes `tokenizer.json` (Hugging Face format: loads in `tokenizers`/transformers and in
    /// `Tokenizer.load(fromCheckpoint:)`) built from `tiktokenFile` (o200k_base.tiktoken).
    /// - Returns: the vocabulary size K + S (round it up for the model's `vocab_size`).
    @discardableResult
    public static func write(to url: URL, tiktokenFile: URL, ordinaryTokens k: Int = 1024,
                             specialTokens s: Int = 64) throws -> Int {
        let total = Int(HarmonySpecialTokens.all.values.max()! - firstO200kSpecial) + 1
        guard (256...Int(firstO200kSpecial)).contains(k), (minimumSpecialTokens...total).contains(s) else {
            throw TextError.tokenizerFile(path: url.path, line: nil,
                                          reason: "tiny tokenizer needs 256 <= K <= 199998 and \(minimumSpecialTokens) <= S <= \(total), got K=\(k) S=\(s)")
        }
        let ranks = try TiktokenFile.load(tiktokenFile)
        var tokens: [[UInt8]] = []
        for r in 0..<k {
            guard let bytes = ranks.tokenBytes(r) else {
                throw TextError.tokenizerFile(path: tiktokenFile.path, line: nil, reason: "rank \(r) is missing")
            }
            tokens.append(Array(bytes))
        }
        let object: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "normalizer": NSNull(),
            "post_processor": NSNull(),
            "added_tokens": specialTokens(ordinaryTokens: k, specialTokens: s).sorted { $0.value < $1.value }.map {
                ["id": Int($0.value), "content": $0.key, "single_word": false, "lstrip": false, "rstrip": false,
                 "normalized": false, "special": true] as [String: Any]
            },
            "pre_tokenizer": ["type": "Sequence", "pretokenizers": [
                ["type": "Split", "pattern": ["Regex": o200kPattern], "behavior": "Isolated", "invert": false],
                ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false],
            ]],
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": [
                "type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false,
                // tiktoken looks a whole piece up before merging; so does `ignore_merges`.
                "ignore_merges": true,
                "vocab": Dictionary(uniqueKeysWithValues: tokens.enumerated().map { (ByteLevelDecoder.encode($0.element), $0.offset) }),
                "merges": try merges(tokens).map { [ByteLevelDecoder.encode($0), ByteLevelDecoder.encode($1)] },
            ] as [String: Any],
        ]
        do {
            try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]).write(to: url)
        } catch {
            throw TextError.tokenizerFile(path: url.path, line: nil, reason: "cannot write: \(error.localizedDescription)")
        }
        return k + s
    }

    /// Name -> id of the kept specials: o200k id 199998 + i -> K + i for i < S. 200018's
    /// second name `<|reserved_200018|>` is dropped, as in gpt-oss's own tokenizer.json.
    public static func specialTokens(ordinaryTokens k: Int = 1024, specialTokens s: Int = 64) -> [String: Int32] {
        var out: [String: Int32] = [:]
        for (name, id) in HarmonySpecialTokens.all where id - firstO200kSpecial < Int32(s) {
            if id == HarmonySpecialTokens.endOfPrompt, name != "<|endofprompt|>" { continue }
            out[name] = Int32(k) + (id - firstO200kSpecial)
        }
        return out
    }

    /// HF's merges list, in priority (= rank) order: each token's final merge. Throws if a
    /// token is not the merge of two lower-ranked ones (cannot happen for o200k, see above).
    static func merges(_ tokens: [[UInt8]]) throws -> [([UInt8], [UInt8])] {
        var rankOf: [[UInt8]: Int] = [:]
        for (r, t) in tokens.enumerated() { rankOf[t] = r }
        return try tokens.enumerated().compactMap { r, token in
            guard token.count > 1 else { return nil }
            let parts = bpeParts(token, below: r, rankOf)
            guard parts.count == 2 else {
                throw TextError.tokenizerFile(path: "<tiny tokenizer>", line: nil,
                                              reason: "rank \(r) is not the merge of two lower ranks; cannot truncate here")
            }
            return (parts[0], parts[1])
        }
    }

    /// tiktoken's merge loop over `token`'s bytes using only ranks below `limit`.
    static func bpeParts(_ token: [UInt8], below limit: Int, _ rankOf: [[UInt8]: Int]) -> [[UInt8]] {
        var parts = token.map { [$0] }
        while parts.count > 1 {
            var best: (rank: Int, at: Int)?
            for i in 0..<(parts.count - 1) {
                if let r = rankOf[parts[i] + parts[i + 1]], r < limit, r < (best?.rank ?? .max) { best = (r, i) }
            }
            guard let (_, at) = best else { break }
            parts[at] += parts[at + 1]
            parts.remove(at: at + 1)
        }
        return parts
    }

    /// o200k's pre-tokenizer pattern (tiktoken's `pat_str`), for other readers of the file;
    /// TunaText itself always splits with `O200kSplitter`.
    static let o200kPattern = [
        #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
        #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
        #"\p{N}{1,3}"#, #" ?[^\s\p{L}\p{N}]+[\r\n/]*"#, #"\s*[\r\n]+"#, #"\s+(?!\S)"#, #"\s+"#,
    ].joined(separator: "|")
}
