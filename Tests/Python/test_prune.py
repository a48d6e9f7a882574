"""`task: prune` jobs (the native prune runner, `tuna train`) against transformers.

A small random gpt-oss from `tuna init-model` (MXFP4 experts), prune jobs keeping 8 (all), 5
and 2 experts on the demo data, each pruned checkpoint loaded with transformers (fp32, eager,
MXFP4 dequantized):
  * the config says num_local_experts = N and the tensors' leading dimension is N;
  * the MXFP4 blocks/scales and biases of the kept experts are byte-identical to the base's
    rows (no requantization), in the order prune_report.json lists;
  * transformers' loss on token windows equals `tuna eval`'s on the same checkpoint;
  * keeping every expert gives transformers logits identical to the base model's.
"""
import json
import os
import subprocess

import pytest
import torch
from safetensors import safe_open

from reference import gptoss as ref
from reference.paths import DATA

TOLERANCE = 1e-4
KEEPS = (8, 5, 2)
TEXT = "What is 17 + 25? 17 + 25 = 42. The answer is 42. Then 3 * 14 = 42 as well.\n" * 4
ROWS = ("router.weight", "router.bias", "experts.gate_up_proj_blocks", "experts.gate_up_proj_scales",
        "experts.gate_up_proj_bias", "experts.down_proj_blocks", "experts.down_proj_scales", "experts.down_proj_bias")


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


@pytest.fixture(scope="module")
def base(tiny_model, tuna, tmp_path_factory):
    """(base directory, work directory, TEXT's file and ids)."""
    base_dir = tiny_model(layers=2, experts=8, top_k=2, seed=9)
    work = str(tmp_path_factory.mktemp("prune"))
    text_file = os.path.join(work, "text.txt")
    with open(text_file, "w") as f:
        f.write(TEXT)
    tok = subprocess.run([tuna, "tokenize", "--model", base_dir], input=TEXT, capture_output=True, text=True, check=True)
    return base_dir, work, text_file, torch.tensor([json.loads(tok.stdout)])


@pytest.fixture(scope="module")
def pruned(base, tuna):
    """`pruned(keep)`: the prune job's output directory (run once per keep) and its report."""
    base_dir, work, _, _ = base
    done = {}

    def prune(keep):
        if keep not in done:
            job = {"name": "p", "trainer": "native", "task": "prune", "model": base_dir,
                   "dataset": {"path": DATA, "format": "csv", "fields": {"prompt": "problem", "response": "solution"},
                               "template": "im_start", "val_fraction": 0.1},
                   "prune": {"keep": keep, "score": "easy_ep", "calibration_examples": 48, "max_seq_len": 96}}
            job_file = os.path.join(work, f"job-{keep}.json")
            with open(job_file, "w") as f:
                json.dump(job, f)
            out = os.path.join(work, f"out-{keep}")
            run([tuna, "train", job_file, "--out", out])
            report = json.load(open(os.path.join(out, "prune_report.json")))
            print(f"  keep {keep}: params {report.get('parameters_before')} -> {report.get('parameters_after')}, "
                  f"bytes {report.get('bytes_before')} -> {report.get('bytes_after')}, "
                  f"routing mass kept {[round(l['routing_mass_share'], 3) for l in report['layers']]}")
            done[keep] = os.path.join(out, "model"), report
        return done[keep]

    return prune


@pytest.mark.parametrize("keep", KEEPS)
def test_config_names_the_kept_experts(pruned, keep):
    cfg = json.load(open(os.path.join(pruned(keep)[0], "config.json")))
    assert cfg["num_local_experts"] == keep, f"keep {keep}: config num_local_experts = {cfg['num_local_experts']}"


@pytest.mark.parametrize("keep", KEEPS)
def test_kept_rows_are_the_base_rows_byte_for_byte(base, pruned, keep):
    """Router rows and expert tensors (MXFP4 blocks/scales, biases): the base's kept rows."""
    pruned_dir, report = pruned(keep)
    base_file = safe_open(os.path.join(base[0], "model.safetensors"), "pt")
    pruned_file = safe_open(os.path.join(pruned_dir, "model.safetensors"), "pt")
    different = []
    for layer in report["layers"]:
        for suffix in ROWS:
            name = f"model.layers.{layer['layer']}.mlp.{suffix}"
            got, want = pruned_file.get_tensor(name), base_file.get_tensor(name)[layer["kept"]]
            if not (got.shape[0] == keep and torch.equal(got, want)):
                different.append(name)
    assert not different, f"keep {keep}: not the base's kept rows: {different}"


@pytest.mark.parametrize("keep", KEEPS)
def test_tuna_eval_matches_transformers(base, pruned, tuna, keep):
    _, _, text_file, ids = base
    pruned_dir = pruned(keep)[0]
    with torch.no_grad():
        loss = ref.load_reference(pruned_dir)(ids, labels=ids).loss.item()
    native = json.loads(run([tuna, "eval", "--model", pruned_dir, "--text", text_file, "--json",
                             "--max-seq-len", str(ids.shape[1])]))
    err = abs(native["loss"] - loss) / abs(loss)
    print(f"keep {keep}: tuna eval loss {native['loss']:.7f} vs transformers {loss:.7f} (rel err {err:.2e})")
    assert err < TOLERANCE, f"keep {keep}: rel err {err:.2e} (>= {TOLERANCE:g})"


def test_keeping_every_expert_is_the_base_model(base, pruned):
    base_dir, _, _, ids = base
    with torch.no_grad():
        logits = ref.load_reference(pruned(8)[0])(ids).logits
        base_logits = ref.load_reference(base_dir)(ids).logits
    assert torch.equal(logits, base_logits), "keep 8 (all): transformers logits differ from the base model's"
