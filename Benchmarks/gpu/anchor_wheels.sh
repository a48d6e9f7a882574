#!/usr/bin/env bash
# The anchors' Python packages (Benchmarks/gpu/anchors.py: Unsloth, Liger) as wheels for the
# `device` machine, which has no network: downloaded here for its Python 3.12, in two groups
# that each fit one call's 64 MiB carry (bitsandbytes alone is 43 MB). Pinned to what was
# resolved on 2026-12-05 against the device image's torch 2.11 / transformers 5.17: Unsloth
# and unsloth-zoo 2026.10.9 (the versions the issue's probe ran), Liger 0.8.5, and what they
# import that the image lacks (KINDS.md's package list): trl <= 1.15, datasets < 5 and its
# dill / multiprocess, bitsandbytes (Unsloth's 4-bit path), xformers, torchao,
# cut_cross_entropy, tyro and its docstring-parser / typeguard, diffusers, hf_transfer,
# msgspec, json5, nest-asyncio.
#
#   Benchmarks/gpu/anchor_wheels.sh            # -> .whl/anchors-1/ and .whl/anchors-2/ (git-ignored via .git/info/exclude)
#
# On the device, one group per call while the machine stays warm (carry `.whl/anchors-N`):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/anchors-N/*.whl
#   export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
fetch() {
    local dir=$1; shift
    mkdir -p "$dir"
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" -d "$dir" "$@"
}
fetch .whl/anchors-1 bitsandbytes==0.50.2 liger-kernel==0.8.5 trl==1.15.0 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 \
    cut_cross_entropy==25.1.1 tyro==1.0.17 docstring-parser==0.18.0 typeguard==4.6.1 json5==0.17.3 nest-asyncio==1.6.0 msgspec==0.23.0
fetch .whl/anchors-2 unsloth==2026.10.9 unsloth-zoo==2026.10.9 xformers==0.0.35 torchao==0.18.0 diffusers==0.42.1 hf_transfer==0.1.9
du -sh .whl/anchors-1 .whl/anchors-2
