"""The demo kit's Swift-written files read by the real Python libraries.

The Swift test `TinyModelTests/testWriteForPythonCheck` (env TUNA_TINY_MODEL_DIR) writes the
demo gpt-oss (`TinyModel.write`, MXFP4 experts by `MXFP4.quantize`) and its tokenizer
(`TinyTokenizer.write`) into a temp dir, plus its own logits for a fixed batch and its token
ids for a list of texts. Then, here:
  - transformers loads the checkpoint (Mxfp4Config(dequantize=True)); its experts equal
    convert_moe_packed_tensors of the bytes, and its logits match Swift's (max rel err < 1e-4);
  - `tokenizers` loads tokenizer.json, and it, tiktoken with o200k's ranks cut at K and the
    Swift tokenizer give the same ids for the demo data set and the tokenizer corpus.
"""
import base64
import csv
import json
import os

import pytest
import torch
from safetensors.torch import load_file

from reference import gptoss as ref
from reference.paths import DATA, TEXT_FIXTURES, VOCAB

TOLERANCE = 1e-4


def texts():
    with open(DATA, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(TEXT_FIXTURES, "tokenizer_corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    chat = [f"<|start|>user<|message|>{r['problem']}<|end|><|start|>assistant<|channel|>final<|message|>{r['solution']}<|return|>"
            for r in rows[:20]]
    return [r["problem"] for r in rows] + [r["solution"] for r in rows] + chat + corpus


def tiktoken_subset(k, added):
    import tiktoken
    ranks = {}
    with open(VOCAB, "rb") as f:
        for line in f:
            if line.strip():
                tok, r = line.split()
                if int(r) < k:
                    ranks[base64.b64decode(tok)] = int(r)
    pattern = json.load(open(os.path.join(TEXT_FIXTURES, "subset_tokenizer.json")))
    pat = pattern["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    return tiktoken.Encoding(name="o200k_tiny", pat_str=pat, mergeable_ranks=ranks, special_tokens=added)


@pytest.fixture(scope="module")
def kit(tmp_path_factory, swift_test):
    """The directory the Swift test wrote, the texts it tokenized and its exit code."""
    out = str(tmp_path_factory.mktemp("tiny"))
    sample = texts()
    with open(os.path.join(out, "texts.json"), "w", encoding="utf-8") as f:
        json.dump(sample, f)
    rc = swift_test("TinyModelTests/testWriteForPythonCheck", TUNA_TINY_MODEL_DIR=out, TUNA_O200K_TIKTOKEN=VOCAB)
    return out, sample, rc


@pytest.fixture(scope="module")
def model(kit):
    """transformers' model from the Swift-written files (load_reference also asserts its experts
    are convert_moe_packed_tensors of the bytes)."""
    out = kit[0]
    assert os.path.exists(os.path.join(out, "swift_logits.safetensors")), "the Swift side wrote no swift_logits.safetensors"
    return ref.load_reference(out, load_file(os.path.join(out, "model.safetensors")))


def added_tokens(out):
    spec = json.load(open(os.path.join(out, "tokenizer.json")))
    return len(spec["model"]["vocab"]), {t["content"]: t["id"] for t in spec["added_tokens"]}


def test_swift_writes_the_demo_kit(kit):
    assert kit[2] == 0, "swift test --filter TinyModelTests/testWriteForPythonCheck failed (its output is above)"


def test_transformers_computes_the_swift_logits_and_loss(kit, model):
    swift = load_file(os.path.join(kit[0], "swift_logits.safetensors"))
    ids = swift["input_ids"]
    with torch.no_grad():
        result = model(input_ids=ids, labels=ids, use_cache=False)
    want, got = result.logits.float(), swift["logits"]
    err = ((got - want).abs().max() / want.abs().max()).item()
    loss_err = abs(swift["loss"].item() - result.loss.item()) / result.loss.item()
    print(f"tiny model vs transformers: logits max rel err {err:.2e}, loss {swift['loss'].item():.5f} vs "
          f"{result.loss.item():.5f} (rel err {loss_err:.1e}), vocab {model.config.vocab_size}")
    assert err < TOLERANCE and loss_err < 1e-5, f"logits max rel err {err:.2e} (< {TOLERANCE:g}), loss {loss_err:.1e} (< 1e-5)"


def test_tokenizers_tiktoken_and_swift_give_the_same_ids(kit):
    """HF tokenizers and tiktoken (ranks < K) against Swift's ids."""
    from tokenizers import Tokenizer as HFTokenizer
    out, sample, _ = kit
    hf = HFTokenizer.from_file(os.path.join(out, "tokenizer.json"))
    k, added = added_tokens(out)
    tk = tiktoken_subset(k, added)
    with open(os.path.join(out, "swift_tokens.json")) as f:
        swift_ids = json.load(f)
    mismatches = 0
    for text, ours in zip(sample, swift_ids):
        theirs_hf = hf.encode(text, add_special_tokens=False).ids
        theirs_tk = tk.encode(text, allowed_special="all")
        if not (ours == theirs_hf == theirs_tk):
            mismatches += 1
            if mismatches <= 5:
                print(f"  token mismatch {text[:60]!r}: swift {ours[:12]} hf {theirs_hf[:12]} tiktoken {theirs_tk[:12]}")
    print(f"tiny tokenizer (K={k}, {len(added)} specials): {len(sample) - mismatches}/{len(sample)} texts identical "
          f"in Swift, tokenizers and tiktoken")
    assert mismatches == 0, f"{mismatches} of {len(sample)} texts tokenized differently"


def test_eos_is_return(kit, model):
    _, added = added_tokens(kit[0])
    print(f"eos {model.config.eos_token_id} = <|return|> {added['<|return|>']}")
    assert model.config.eos_token_id == added["<|return|>"]
