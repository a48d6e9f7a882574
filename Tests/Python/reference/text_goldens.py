"""TunaText's golden fixtures, from the reference Python libraries.

Writes, into Tests/TunaTextTests/Fixtures/ (or another directory: test_text_goldens.py
regenerates them into a temp dir and compares byte for byte):
  tokenizer_goldens.json  tiktoken's o200k_base / o200k_harmony ids for tokenizer_corpus.json
  subset_tokenizer.json   a small HF-format tokenizer.json (ranks < SUBSET_SIZE + harmony
                          specials), built from o200k_base.tiktoken like gpt-oss's own file
  subset_goldens.json     tiktoken's ids for the corpus with that subset vocabulary
  harmony_goldens.json    openai_harmony's render_conversation_for_training ids for harmony_cases.json
  imstart_goldens.json    ids of the <|im_start|> template (prompt and answer encoded as plain text)
  completion_goldens.json openai_harmony's render_conversation_for_completion ids for each harmony case
                          cut before its last assistant message, its stop tokens, and what
                          parse_messages_from_completion_tokens makes of replies (REPLY_CASES)
  split_goldens.json      the seeded train/validation split, from an independent Python copy
                          of the documented algorithm (SplitMix64 + Fisher-Yates, splitmix64.py)

Requirements (pinned versions the goldens were made with; openai-harmony pulls in pydantic):
  scripts/test.sh makes .venv with scripts/requirements.txt (tiktoken, openai-harmony, ...)

Runs fully offline, using the committed Fixtures/o200k_base.tiktoken:
  * tiktoken caches downloads in $TIKTOKEN_CACHE_DIR under the name sha1(<download URL>);
    we copy the ranks file there under that name, so tiktoken.get_encoding("o200k_harmony")
    loads the real encoding definition (pattern + specials) without network. tiktoken also
    checks the file's sha256 against the expected one.
  * openai_harmony (Rust) reads o200k_base.tiktoken from the folder named by
    $TIKTOKEN_ENCODINGS_BASE instead of downloading it.

Usage:  PYTHONPATH=Tests/Python python3 -m reference.text_goldens   # rewrite the goldens
"""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile

from reference.paths import TEXT_FIXTURES as FIXTURES
from reference.splitmix64 import SplitMix64, validation_indices

RANKS_FILE = os.path.join(FIXTURES, "o200k_base.tiktoken")
RANKS_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
RANKS_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
SUBSET_SIZE = 8000  # ordinary ranks kept in the tokenizer.json fixture
GOLDENS = ["tokenizer_goldens.json", "subset_tokenizer.json", "subset_goldens.json",
           "harmony_goldens.json", "imstart_goldens.json", "completion_goldens.json", "split_goldens.json"]
OFFLINE_VARIABLES = ("TIKTOKEN_CACHE_DIR", "TIKTOKEN_ENCODINGS_BASE")


@contextlib.contextmanager
def offline():
    """tiktoken and openai-harmony load o200k from the committed file (see above); the
    environment is restored afterwards."""
    with open(RANKS_FILE, "rb") as f:
        data = f.read()
    if hashlib.sha256(data).hexdigest() != RANKS_SHA256:
        raise RuntimeError(f"{RANKS_FILE}: unexpected sha256")
    cache = tempfile.mkdtemp(prefix="tuna-tiktoken-")
    saved = {k: os.environ.get(k) for k in OFFLINE_VARIABLES}
    try:
        shutil.copy(RANKS_FILE, os.path.join(cache, hashlib.sha1(RANKS_URL.encode()).hexdigest()))
        os.environ["TIKTOKEN_CACHE_DIR"] = cache
        os.environ["TIKTOKEN_ENCODINGS_BASE"] = FIXTURES
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(cache, ignore_errors=True)


def write(directory, name, obj):
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def load_json(name):
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


def tokenizer_goldens(directory, tiktoken, corpus):
    base = tiktoken.get_encoding("o200k_base")
    harmony = tiktoken.get_encoding("o200k_harmony")
    cases = []
    for text in corpus:
        cases.append({
            "text": text,
            "o200k_base": base.encode_ordinary(text),
            "o200k_harmony_ordinary": harmony.encode_ordinary(text),
            "o200k_harmony_all_special": harmony.encode(text, allowed_special="all"),
            "o200k_harmony_only_start_end": harmony.encode(
                text, allowed_special={"<|start|>", "<|end|>"}, disallowed_special=()),
        })
    fuzz = [{"text": t, "ids": harmony.encode_ordinary(t)} for t in fuzz_strings()]
    long = [{"text": t, "ids": harmony.encode_ordinary(t)} for t in long_pieces()]
    write(directory, "tokenizer_goldens.json", {"tiktoken_version": tiktoken.__version__, "cases": cases, "fuzz": fuzz,
                                     "long": long})
    return harmony


def long_pieces(seed=99):
    """Single pre-tokenizer pieces of thousands of bytes (Swift merges these with a heap)."""
    import random
    rng = random.Random(seed)
    return [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(6000)),
        "".join(rng.choice("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动") for _ in range(2000)),
        "".join(rng.choice("=-*#~+") for _ in range(3000)),
        "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") for _ in range(4000)),
    ]


def fuzz_strings(count=400, seed=1234):
    """Seeded random strings dense in the pre-tokenizer's edge cases: every character class
    the o200k pattern distinguishes (Lu Ll Lt Lm Lo M N, white space, CR/LF, apostrophes and
    contraction letters, '/', punctuation, symbols, emoji with ZWJ/variation selectors)."""
    import random
    rng = random.Random(seed)
    pools = [
        "ABCXYZÀÉÖΣДЖ", "abcxyzàéöσдж", "ǅǈǋǲᾈ", "ʰʲˆˇ々ー", "中文字日本かなカナ한국אבגمرح",
        "\u0301\u0308\u0951\u093f\u0e31\u20dd", "0123456789٣٤१२½Ⅻ²", " ", "  ", "\t", "\u00a0\u3000\u2003",
        "\r", "\n", "\r\n", "'", "'s'S't'T're'RE've'm'll'LL'd'ſ", "/", "!?.,;:-_()[]{}<>\"#%&*+=@^`|~",
        "€$£¥©®™°±×÷∑∫√≈", "😀👍🏽❤️🇫🇷👨‍👩‍👧\u200d\ufe0f🧑🏿‍💻", "<|end|><|start|>",
    ]
    out = []
    for _ in range(count):
        pieces = []
        for _ in range(rng.randint(1, 12)):
            pool = rng.choice(pools)
            pieces.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 4))))
        out.append("".join(pieces))
    return out


# GPT-2 byte-level alphabet used by HF tokenizer.json vocabularies.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def bpe_parts(ranks, token):
    """tiktoken's merge loop (lowest rank first, leftmost on ties) over ranks strictly below token's."""
    limit = ranks[token]
    parts = [token[i:i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best, at = None, None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return parts


def subset_fixture(directory, tiktoken, harmony, corpus):
    ranks = {tok: r for tok, r in harmony._mergeable_ranks.items() if r < SUBSET_SIZE}
    byte_map = bytes_to_unicode()
    enc = lambda b: "".join(byte_map[x] for x in b)
    merges = []
    for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(tok) < 2:
            continue
        parts = bpe_parts(ranks, tok)
        if len(parts) == 2:  # tokens unreachable by one merge have no merges entry (as in HF exports)
            merges.append([enc(parts[0]), enc(parts[1])])
    specials = {}
    for name, i in harmony._special_tokens.items():
        # 200018 has two names in o200k_harmony; keep the named one, as HF's file does.
        if i == 200018 and name != "<|endofprompt|>":
            continue
        specials[name] = i
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for name, i in sorted(specials.items(), key=lambda kv: kv[1])
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": harmony._pat_str}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": True,
                  "vocab": {enc(tok): r for tok, r in sorted(ranks.items(), key=lambda kv: kv[1])},
                  "merges": merges},
    }
    write(directory, "subset_tokenizer.json", tokenizer_json)
    subset = tiktoken.Encoding(name="o200k_harmony_subset", pat_str=harmony._pat_str,
                               mergeable_ranks=ranks, special_tokens=specials)
    write(directory, "subset_goldens.json", {"subset_size": SUBSET_SIZE, "cases": [
        {"text": t, "ids": subset.encode(t, allowed_special="all")} for t in corpus]})


def harmony_messages(oh, case):
    """The openai_harmony messages of one harmony_cases.json case (system, developer, turns)."""
    efforts = {"low": oh.ReasoningEffort.LOW, "medium": oh.ReasoningEffort.MEDIUM, "high": oh.ReasoningEffort.HIGH}
    opts = case["options"]
    system = oh.SystemContent.new()
    # Unset keys fall back to the same defaults as Swift's HarmonyOptions (and harmony's).
    if "model_identity" in opts:
        system.model_identity = opts["model_identity"]
    if "knowledge_cutoff" in opts:
        system.knowledge_cutoff = opts["knowledge_cutoff"]
    if "reasoning_effort" in opts:  # absent: harmony's default (medium), as in Swift
        system.reasoning_effort = efforts[opts["reasoning_effort"]] if opts["reasoning_effort"] else None
    system.conversation_start_date = opts.get("current_date")
    messages = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system)]
    instructions = None
    for m in case["conversation"]["messages"]:
        if m["role"] in ("system", "developer"):
            instructions = m["content"]
    if instructions is None:
        instructions = opts.get("developer_instructions")
    if instructions is not None:
        messages.append(oh.Message.from_role_and_content(
            oh.Role.DEVELOPER, oh.DeveloperContent.new().with_instructions(instructions)))
    for m in case["conversation"]["messages"]:
        if m["role"] == "user":
            messages.append(oh.Message.from_role_and_content(oh.Role.USER, m["content"]))
        elif m["role"] == "assistant":
            if m.get("thinking"):
                messages.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, m["thinking"]).with_channel("analysis"))
            messages.append(oh.Message.from_role_and_content(oh.Role.ASSISTANT, m["content"]).with_channel("final"))
    return messages


def harmony_goldens(directory, cases):
    import openai_harmony as oh
    encoding = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    out = []
    for case in cases:
        opts = case["options"]
        messages = harmony_messages(oh, case)
        config = oh.RenderConversationConfig(auto_drop_analysis=bool(opts.get("auto_drop_analysis", False)))
        ids = encoding.render_conversation_for_training(oh.Conversation.from_messages(messages), config)
        out.append({"name": case["name"], "ids": ids, "text": encoding.decode(ids)})
    write(directory, "harmony_goldens.json", {"cases": out})


# Replies as text (special tokens spelt out), parsed after `<|start|>assistant`.
REPLY_CASES = [
    ("analysis_then_final", "<|channel|>analysis<|message|>User asks 2+2. Simple.<|end|>"
                            "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4, so $\\boxed{4}$.<|return|>"),
    ("final_only", "<|channel|>final<|message|>Paris.<|return|>"),
    ("cut_off_in_final", "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>The answer is 4"),
    ("cut_off_in_analysis", "<|channel|>analysis<|message|>Let me think about th"),
    ("tool_call", "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Tokyo\"}<|call|>"),
    ("recipient_first", " to=functions.lookup<|channel|>commentary<|message|>{}<|call|>"),
    ("unicode", "<|channel|>final<|message|>Ça coûte 5 € — naïve 😀 日本語<|return|>"),
    ("empty_final", "<|channel|>final<|message|><|return|>"),
    ("cut_off_in_header", "<|channel|>ana"),
    ("missing_start", "<|channel|>analysis<|message|>x<|end|>assistant<|channel|>final<|message|>y"),
    ("stray_header_text", "<|channel|>final extra words here<|message|>y<|return|>"),
]


def completion_goldens(directory, cases):
    import openai_harmony as oh
    encoding = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)
    prompts = []
    for case in cases:
        messages = harmony_messages(oh, case)
        while messages[-1].author.role == oh.Role.ASSISTANT:
            messages.pop()
        ids = encoding.render_conversation_for_completion(oh.Conversation.from_messages(messages), oh.Role.ASSISTANT)
        prompts.append({"name": case["name"], "ids": ids, "text": encoding.decode(ids)})
    replies = []
    for name, text in REPLY_CASES:
        ids = encoding.encode(text, allowed_special="all")
        entry = {"name": name, "ids": ids}
        try:
            parsed = encoding.parse_messages_from_completion_tokens(ids, oh.Role.ASSISTANT)
            entry["messages"] = [{"role": m.author.role.value, "channel": m.channel, "recipient": m.recipient,
                                  "content_type": m.content_type, "text": "".join(c.text for c in m.content)}
                                 for m in parsed]
        except Exception as e:  # the Rust parser's error, as text
            entry["error"] = str(e)
        replies.append(entry)
    write(directory, "completion_goldens.json", {
        "prompts": prompts, "replies": replies,
        "stop_tokens_for_assistant_actions": sorted(encoding.stop_tokens_for_assistant_actions()),
        "stop_tokens": sorted(encoding.stop_tokens())})


def imstart_goldens(directory, harmony, cases):
    out = []
    for case in cases:
        prompt = ""
        if case["system"] is not None:
            prompt += f"<|im_start|>system\n{case['system']}<|im_end|>\n"
        prompt += f"<|im_start|>user\n{case['problem']}<|im_end|>\n<|im_start|>assistant\n"
        answer = f"{case['solution']}<|im_end|>"
        out.append({"name": case["name"], "prompt_ids": harmony.encode_ordinary(prompt),
                    "answer_ids": harmony.encode_ordinary(answer)})
    write(directory, "imstart_goldens.json", {"cases": out})


def split_goldens(directory):
    first = SplitMix64(0)
    cases = [{"n": n, "val_fraction": f, "seed": s, "validation": validation_indices(n, f, s)}
             for n, f, s in [(10, 0.2, 0), (10, 0.2, 1), (100, 0.1, 42), (7, 0.5, 3), (1000, 0.05, 2**63 + 5), (3, 0.0, 9)]]
    write(directory, "split_goldens.json", {"splitmix64_seed0_first5": [next(first) for _ in range(5)], "cases": cases})


def write_goldens(directory):
    """Every golden of GOLDENS, into `directory`."""
    with offline():
        import tiktoken
        corpus = load_json("tokenizer_corpus.json")
        harmony = tokenizer_goldens(directory, tiktoken, corpus)
        subset_fixture(directory, tiktoken, harmony, corpus)
        harmony_goldens(directory, load_json("harmony_cases.json"))
        completion_goldens(directory, load_json("harmony_cases.json"))
        imstart_goldens(directory, harmony, load_json("imstart_cases.json"))
        split_goldens(directory)


if __name__ == "__main__":
    write_goldens(FIXTURES)
