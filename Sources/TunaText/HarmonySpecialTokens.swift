import Foundation

/// The special tokens of `o200k_harmony`, transcribed from tiktoken's
/// `tiktoken_ext/openai_public.py` (and identical in `openai_harmony`'s Rust table):
/// o200k_base's two specials, the named harmony control tokens, and every other id in
/// 199998 ... 201087 as `<|reserved_N|>`.
public enum HarmonySpecialTokens {
    /// Named tokens the harmony format uses.
    public static let startOfText: Int32 = 199998
    public static let endOfText: Int32 = 199999
    public static let returnToken: Int32 = 200002
    public static let constrain: Int32 = 200003
    public static let channel: Int32 = 200005
    public static let start: Int32 = 200006
    public static let end: Int32 = 200007
    public static let message: Int32 = 200008
    public static let call: Int32 = 200012
    /// o200k_base's `<|endofprompt|>`. In o200k_harmony the id 200018 also has the name
    /// `<|reserved_200018|>` (the reserved range overlaps it); both names encode to 200018,
    /// and decoding prints `<|endofprompt|>`.
    public static let endOfPrompt: Int32 = 200018

    /// Name → id for every o200k_harmony special token: 1091 names for the 1090 ids
    /// 199998 ... 201087 (200018 has two names, see `endOfPrompt`).
    public static let all: [String: Int32] = {
        var table: [String: Int32] = [
            "<|endoftext|>": 199999,
            "<|endofprompt|>": 200018,
            "<|startoftext|>": 199998,
            "<|return|>": 200002,
            "<|constrain|>": 200003,
            "<|channel|>": 200005,
            "<|start|>": 200006,
            "<|end|>": 200007,
            "<|message|>": 200008,
            "<|call|>": 200012,
        ]
        for id in [200000, 200001, 200004, 200009, 200010, 200011] {
            table["<|reserved_\(id)|>"] = Int32(id)
        }
        for id in 200013..<201088 {
            table["<|reserved_\(id)|>"] = Int32(id)
        }
        return table
    }()

    /// o200k_base's own specials (no harmony tokens), for matching plain `o200k_base`.
    public static let o200kBase: [String: Int32] = [
        "<|endoftext|>": 199999,
        "<|endofprompt|>": 200018,
    ]

    /// The tokens that end a reply that samples an assistant action (openai-harmony's
    /// `stop_tokens_for_assistant_actions`): `<|end|>` only closes the analysis, after which the
    /// model writes its final message itself.
    public static let assistantActionStops = ["<|return|>", "<|call|>"]
    /// The tokens that end any message (openai-harmony's `stop_tokens`), what its parser stops at.
    public static let messageStops = ["<|return|>", "<|call|>", "<|end|>"]

    /// Names preferred when decoding an id that has several names.
    static let preferredNames: [Int32: String] = [200018: "<|endofprompt|>"]
}

extension Tokenizer {
    /// A harmony special token's id in this tokenizer, o200k_harmony's own when it has none: a
    /// checkpoint's tokenizer.json may renumber the specials, as the tiny demo model's does
    /// (`TinyTokenizer`). `name` must be one of `HarmonySpecialTokens.all`.
    public func harmonyID(_ name: String) -> Int32 {
        specialTokenID(name) ?? HarmonySpecialTokens.all[name]!
    }
}
