#!/usr/bin/env bash
# What the GPU fleet runs work on, each made only if missing (so a later call on a warm machine
# reuses it): the release tarball unpacked to STATE/tuna; bench_lora.py's random
# gpt-oss-20b-shaped MXFP4 checkpoint in STATE/ckpt, plus the real o200k vocabulary (the native
# tokenizer of `tuna prepare` loads it); 1,200 harmony chats in STATE/data/chats.jsonl.
#   Benchmarks/gpu/fleet/inputs.sh STATE TARBALL     (from the repository root; needs CUDA)
set -euo pipefail
S=${1:?usage: inputs.sh STATE TARBALL}
tarball=${2:-}
mkdir -p "$S/data"
if [ ! -x "$S/tuna/bin/tuna" ]; then
    [ -n "$tarball" ] || { echo "inputs.sh: $S/tuna is missing: give the release TARBALL" >&2; exit 2; }
    tar -C "$S" -xzf "$tarball"
    mv "$S"/tuna-*-linux-x86_64 "$S/tuna"
fi
if [ ! -s "$S/ckpt/config.json" ]; then
    python3 -c "
import json, sys, torch
sys.path.insert(0, 'Benchmarks/gpu')
import bench_lora
n = bench_lora.write_checkpoint('$S/ckpt', json.loads(json.dumps(bench_lora.GPT_OSS_20B)), torch.device('cuda'))
print(f'checkpoint: {n / 2**30:.2f} GiB')"
    cp Tests/TunaTextTests/Fixtures/o200k_base.tiktoken "$S/ckpt/"
fi
[ -s "$S/data/chats.jsonl" ] || python3 Benchmarks/gpu/fleet/make_chats.py --out "$S/data/chats.jsonl" --count 1200
