#!/usr/bin/env python3
"""Checks the demo kit's Swift-written files with the real Python libraries.

Runs the Swift test `TinyModelTests/testWriteForPythonCheck` (env TUNA_TINY_MODEL_DIR), which
writes the demo gpt-oss (`TinyModel.write`, MXFP4 experts by `MXFP4.quantize`) and its
tokenizer (`TinyTokenizer.write`) into a temp dir, plus its own logits for a fixed batch and
its token ids for a list of texts. Then, here:
  - transformers loads the checkpoint (Mxfp4Config(dequantize=True)); its experts equal
    convert_moe_packed_tensors of the bytes, and its logits match Swift's (max rel err < 1e-4);
  - `tokenizers` loads tokenizer.json, and it, tiktoken with o200k's ranks cut at K and the
    Swift tokenizer give the same ids for the demo data set and the tokenizer corpus.

    python3 -m scripts.engine.tiny_model_check            # from the repo root; exit 0 = pass
    python3 -m scripts.engine.tiny_model_check --keep --out /tmp/tiny
"""
import argparse
import base64
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file

from scripts.engine import gptoss_ref as ref
from scripts.lib.checks import REPO

TIKTOKEN = os.path.join(REPO, "Tests", "TunaTextTests", "Fixtures", "o200k_base.tiktoken")
TOLERANCE = 1e-4


def texts():
    with open(os.path.join(REPO, "jobs", "demo", "arithmetic.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(REPO, "Tests", "TunaTextTests", "Fixtures", "tokenizer_corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)
    chat = [f"<|start|>user<|message|>{r['problem']}<|end|><|start|>assistant<|channel|>final<|message|>{r['solution']}<|return|>"
            for r in rows[:20]]
    return [r["problem"] for r in rows] + [r["solution"] for r in rows] + chat + corpus


def tiktoken_subset(k, added):
    import tiktoken
    ranks = {}
    with open(TIKTOKEN, "rb") as f:
        for line in f:
            if line.strip():
                tok, r = line.split()
                if int(r) < k:
                    ranks[base64.b64decode(tok)] = int(r)
    pattern = json.load(open(os.path.join(REPO, "Tests", "TunaTextTests", "Fixtures", "subset_tokenizer.json")))
    pat = pattern["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    return tiktoken.Encoding(name="o200k_tiny", pat_str=pat, mergeable_ranks=ranks, special_tokens=added)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None, help="directory to write (default: a temp dir)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--package-path", default=REPO, help="Swift package whose TunaEngineTests to run")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="tuna-tiny-")
    os.makedirs(out, exist_ok=True)
    sample = texts()
    with open(os.path.join(out, "texts.json"), "w", encoding="utf-8") as f:
        json.dump(sample, f)

    env = dict(os.environ, TUNA_TINY_MODEL_DIR=out, TUNA_O200K_TIKTOKEN=TIKTOKEN)
    cmd = ["swift", "test", "--package-path", args.package_path, "--filter", "TinyModelTests/testWriteForPythonCheck"]
    print("running:", " ".join(cmd), flush=True)
    failed = subprocess.run(cmd, env=env).returncode != 0
    if not os.path.exists(os.path.join(out, "swift_logits.safetensors")):
        print("Swift side wrote no swift_logits.safetensors")
        return 1

    # model: transformers from the same files
    tensors = load_file(os.path.join(out, "model.safetensors"))
    model = ref.load_reference(out, tensors)  # also asserts experts == convert_moe_packed_tensors(bytes)
    swift = load_file(os.path.join(out, "swift_logits.safetensors"))
    ids = swift["input_ids"]
    with torch.no_grad():
        result = model(input_ids=ids, labels=ids, use_cache=False)
    want, got = result.logits.float(), swift["logits"]
    err = ((got - want).abs().max() / want.abs().max()).item()
    loss_err = abs(swift["loss"].item() - result.loss.item()) / result.loss.item()
    print(f"tiny model vs transformers: logits max rel err {err:.2e}, loss {swift['loss'].item():.5f} vs "
          f"{result.loss.item():.5f} (rel err {loss_err:.1e}), vocab {model.config.vocab_size}")
    failed |= not (err < TOLERANCE and loss_err < 1e-5)

    # tokenizer: HF tokenizers and tiktoken (ranks < K) against Swift's ids
    from tokenizers import Tokenizer as HFTokenizer
    hf = HFTokenizer.from_file(os.path.join(out, "tokenizer.json"))
    spec = json.load(open(os.path.join(out, "tokenizer.json")))
    k = len(spec["model"]["vocab"])
    added = {t["content"]: t["id"] for t in spec["added_tokens"]}
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
          f"in Swift, tokenizers and tiktoken; eos {model.config.eos_token_id} = <|return|> {added['<|return|>']}")
    failed |= mismatches > 0 or model.config.eos_token_id != added["<|return|>"]

    if not (args.keep or args.out):
        shutil.rmtree(out, ignore_errors=True)
    print("tiny_model_check:", "FAILED" if failed else "passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
