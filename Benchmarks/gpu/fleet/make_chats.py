"""Writes the GPU fleet check's data: harmony reasoning chats of varied lengths (JSONL with
`messages`; assistant turns carry `thinking`, the Multilingual-Thinking layout), generated
from a seed so every run trains on the same bytes. The words are made up from syllables: the
model is random, so what matters is that the token counts vary as real chats do (a few hundred
to about 1,800 tokens with the o200k tokenizer), and that packing has work to do.

    python3 Benchmarks/gpu/fleet/make_chats.py --out DIR/chats.jsonl [--count 2000] [--seed 0]
"""
import argparse
import json
import random

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qua", "pri", "sto", "gle", "ban", "dor",
             "fel", "hin", "jot", "mur", "pex", "wil", "yun", "tha", "shi", "cre", "blo", "nak", "ver"]


def word(rng):
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))


def sentence(rng, words):
    text = " ".join(word(rng) for _ in range(words))
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!"])


def paragraph(rng, lo, hi):
    n, out = rng.randint(lo, hi), []
    while n > 0:
        k = min(n, rng.randint(5, 18))
        out.append(sentence(rng, k))
        n -= k
    return " ".join(out)


def chat(rng):
    system = rng.random() < 0.3
    messages = []
    if system:
        messages.append({"role": "system", "content": "Reasoning language: " + word(rng).capitalize()})
    messages.append({"role": "user", "content": paragraph(rng, 10, 120)})
    messages.append({"role": "assistant", "thinking": paragraph(rng, 30, 420), "content": paragraph(rng, 10, 220)})
    return {"messages": messages}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with open(args.out, "w") as f:
        for _ in range(args.count):
            f.write(json.dumps(chat(rng)) + "\n")


if __name__ == "__main__":
    main()
