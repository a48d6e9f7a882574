"""`tuna eval` against transformers, end to end.

A random gpt-oss checkpoint with the real o200k_harmony vocabulary size (201,088) and the real
tokenizer file beside it, then:
  * text:  `tuna eval --text` (every next token, windows of --max-seq-len) against
           transformers' loss on the same windows;
  * data:  `tuna eval --data` on a chat JSONL (harmony, assistant tokens only) against
           transformers' loss with the same labels masked.
Token ids and masks come from `tuna tokenize` (whose tokenizer and templates are checked
against tiktoken and openai-harmony elsewhere); this checks the engine's loss and eval's
aggregation over examples.
"""
import json
import os
import shutil
import subprocess

import pytest
import torch

from reference import gptoss as ref
from reference.paths import VOCAB

TOLERANCE = 1e-4
TEXT = ("The quick brown fox jumps over the lazy dog. 1234567 + 89 = 1234656.\n"
        "Le renard brun saute par-dessus le chien paresseux. 素早い茶色の狐が怠惰な犬を飛び越える。\n"
        "def add(a, b):\n    return a + b  # 🦊🐶\n") * 3
CHATS = [
    {"messages": [{"role": "user", "content": "What is 2 + 3?"},
                  {"role": "assistant", "thinking": "Two plus three is five.", "content": "5"}]},
    {"messages": [{"role": "system", "content": "Answer in French."},
                  {"role": "user", "content": "Capital of Italy?"},
                  {"role": "assistant", "thinking": "Rome.", "content": "Rome."}]},
    {"messages": [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]},
]


def run(cmd, stdin=None):
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}"
    return p.stdout


def reference_loss(model, sequences):
    """Token-weighted mean of transformers' loss over (ids, labels) sequences."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, labels in sequences:
            n = sum(1 for x in labels[1:] if x != -100)
            if n == 0:
                continue
            out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
            total += out.loss.item() * n
            count += n
    return total / count, count


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, seed, rng):
    """(directory, transformers' model, text window) of a random model with the o200k vocabulary."""
    out = str(tmp_path_factory.mktemp("eval"))
    kwargs = ref.config_kwargs(hidden=32, layers=2, heads=2, kv_heads=1, head_dim=16, experts=4, top_k=2,
                               intermediate=32, vocab=201088, sliding_window=rng.randint(3, 8),
                               layer_types=["sliding_attention", "full_attention"], original_max=256, max_pos=4096)
    tensors = ref.write_checkpoint(out, kwargs, seed)
    shutil.copy(VOCAB, os.path.join(out, "o200k_base.tiktoken"))
    return out, ref.load_reference(out, tensors), rng.randint(24, 64)


def assert_matches(name, got, want, want_n):
    err = abs(got["loss"] - want) / abs(want)
    print(f"{name}: tuna eval {got['loss']:.7f} over {got['tokens']} tokens, transformers {want:.7f} over {want_n}; "
          f"relative error {err:.2e}")
    assert err < TOLERANCE and got["tokens"] == want_n, \
        f"{name}: relative error {err:.2e} (< {TOLERANCE:g}), tokens {got['tokens']} (want {want_n})"


def test_text_eval_matches_transformers(tuna, checkpoint):
    """Plain text: every next token, in windows of `window` tokens."""
    out, model, window = checkpoint
    text_file = os.path.join(out, "text.txt")
    open(text_file, "w", encoding="utf-8").write(TEXT)
    ids = json.loads(run([tuna, "tokenize", "--model", out], stdin=TEXT))
    windows = [ids[i:i + window] for i in range(0, len(ids), window)]
    want, want_n = reference_loss(model, [(w, w) for w in windows if len(w) >= 2])
    got = json.loads(run([tuna, "eval", "--model", out, "--text", text_file, "--max-seq-len", str(window), "--json"]))
    assert_matches("text", got, want, want_n)


def test_chat_data_eval_matches_transformers(tuna, checkpoint):
    """A chat data set: harmony, loss on the assistant's tokens only."""
    out, model, _ = checkpoint
    data_file = os.path.join(out, "chats.jsonl")
    with open(data_file, "w", encoding="utf-8") as f:
        for c in CHATS:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    rendered = [json.loads(line) for line in run([tuna, "tokenize", "--model", out, "--data", data_file, "--format", "chat"]).splitlines()]
    assert len(rendered) == len(CHATS), rendered
    seqs = [(r["tokens"], [t if m else -100 for t, m in zip(r["tokens"], r["loss_mask"])]) for r in rendered]
    want, want_n = reference_loss(model, seqs)
    got = json.loads(run([tuna, "eval", "--model", out, "--data", data_file, "--format", "chat", "--json"]))
    assert_matches("chat data", got, want, want_n)
