#!/usr/bin/env python3
"""tiktoken side of the tokenizer benchmark: encode one text file single-threaded with
o200k_harmony (encode_ordinary, the same work as Swift's Tokenizer.encode) and print one
JSON line. Offline: loads the encoding from a local o200k_base.tiktoken (see
Tests/Python/reference/text_goldens.py for the cache trick). Usage: bench_tiktoken.py <ranks> <text> [repeats]"""
import hashlib, json, os, shutil, sys, tempfile, time

ranks, text_path = sys.argv[1], sys.argv[2]
repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
cache = tempfile.mkdtemp(prefix="tuna-bench-")
url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
shutil.copy(ranks, os.path.join(cache, hashlib.sha1(url.encode()).hexdigest()))
os.environ["TIKTOKEN_CACHE_DIR"] = cache
import tiktoken

t0 = time.perf_counter()
enc = tiktoken.get_encoding("o200k_harmony")
load = time.perf_counter() - t0
shutil.rmtree(cache, ignore_errors=True)
with open(text_path, encoding="utf-8", newline="") as f:  # keep CR and CRLF as they are
    text = f.read()
best, tokens = float("inf"), 0
for _ in range(repeats):
    t0 = time.perf_counter()
    ids = enc.encode_ordinary(text)
    best = min(best, time.perf_counter() - t0)
    tokens = len(ids)
print(json.dumps({"impl": "tiktoken " + tiktoken.__version__, "bytes": len(text.encode()),
                  "tokens": tokens, "seconds": best, "load_seconds": load}))
