"""TunaEngine against transformers on a freshly drawn random gpt-oss.

Draws a random small config (layers, heads/GQA, head_dim, experts, top-k, sizes, window,
layer types, RoPE default/YaRN with random factor/betas/truncate, hub-style or transformers-5
config.json, 1-3 shards) and random inputs from the seed (--seed N reproduces). Writes the MXFP4
checkpoint + reference.safetensors (transformers' logits and loss for a single, a padded and a
packed batch), runs the Swift test `LiveCheckTests` on it (env TUNA_LIVE_CHECK_DIR), then reads
back the logits the Swift side wrote with its own SafeTensorsWriter and compares them here too.
"""
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from reference import gptoss as ref

TOLERANCE = 1e-4
CASES = ("single", "padded", "packed")


@pytest.fixture(scope="module")
def live_dir(tmp_path_factory, seed, rng):
    """The checkpoint and transformers' reference.safetensors; returns (directory, record)."""
    kwargs = ref.draw_config(rng)
    shards, hub = rng.randint(1, 3), rng.random() < 0.5
    print(f"config {kwargs} shards={shards} hub_style={hub}", flush=True)
    out = str(tmp_path_factory.mktemp("live"))
    tensors = ref.write_checkpoint(out, kwargs, seed, shards=shards, hub_style_config=hub)
    model = ref.load_reference(out, tensors)
    gen = torch.Generator().manual_seed(seed)
    seq = rng.randint(6, 24)
    batch = rng.randint(2, 3)
    lengths = [seq] + [rng.randint(1, seq) for _ in range(batch - 1)]
    packed = [ref.split(rng, seq, rng.randint(1, min(3, seq))) for _ in range(batch)]
    cases = ref.random_cases(gen, kwargs["vocab_size"], seq, lengths, packed)
    record, _ = ref.reference_record(model, cases, packed)
    save_file(record, os.path.join(out, "reference.safetensors"), metadata={"cases": ",".join(cases)})
    print(f"wrote {out} (padded lengths {lengths}, packed {packed})", flush=True)
    return out, record


@pytest.fixture(scope="module")
def swift_run(live_dir, swift_test):
    """LiveCheckTests on the directory: its exit code (it writes swift_logits.safetensors)."""
    return swift_test("LiveCheckTests", TUNA_LIVE_CHECK_DIR=live_dir[0])


def test_swift_engine_matches_transformers(swift_run):
    assert swift_run == 0, "swift test --filter LiveCheckTests failed (its output is above)"


@pytest.mark.parametrize("case", CASES)
def test_python_reads_swift_logits_equal_to_transformers(live_dir, swift_run, case):
    """Independent of the Swift test's own comparison; also proves Python reads our writer's files."""
    out, record = live_dir
    swift_path = os.path.join(out, "swift_logits.safetensors")
    assert os.path.exists(swift_path), "the Swift side wrote no swift_logits.safetensors"
    want, got = record[f"{case}.logits"], load_file(swift_path)[f"{case}.logits"]
    err = ((got - want).abs().max() / want.abs().max()).item()
    print(f"python-side {case}: max rel err {err:.2e}")
    assert err < TOLERANCE, f"{case}: Swift's logits max rel err {err:.2e} (>= {TOLERANCE:g})"
