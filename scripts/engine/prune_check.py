#!/usr/bin/env python3
"""End-to-end check of `task: prune` jobs against transformers.

Makes a small random gpt-oss with `tuna init-model` (MXFP4 experts), runs prune jobs with
`tuna train` (the worker's native trainer) on the demo data, then loads each pruned
checkpoint with transformers (fp32, eager, MXFP4 dequantized) and checks:
  * the config says num_local_experts = N and the tensors' leading dimension is N;
  * the MXFP4 blocks/scales and biases of the kept experts are byte-identical to the base's
    rows (no requantization), in the order prune_report.json lists;
  * transformers' loss on token windows equals `tuna eval`'s on the same checkpoint;
  * keeping every expert gives transformers logits identical to the base model's.
Last line: `N passed, M failed`; exit 1 on any failure.

    python3 -m scripts.engine.prune_check [--tuna .build/debug/tuna] [--keep-dir]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import torch
from safetensors import safe_open

from scripts.engine import gptoss_ref as ref
from scripts.lib.checks import DATA, VOCAB, add_tuna, tuna_path

TOLERANCE = 1e-4


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    add_tuna(ap)
    ap.add_argument("--keep-dir", action="store_true")
    args = ap.parse_args()
    args.tuna = tuna_path(args.tuna)
    work = tempfile.mkdtemp(prefix="tuna-prune-check-")
    passed = failed = 0

    def check(ok, what):
        nonlocal passed, failed
        print(("ok    " if ok else "FAIL  ") + what)
        passed, failed = passed + bool(ok), failed + (not ok)

    base_dir = os.path.join(work, "model")
    run([args.tuna, "init-model", "--out", base_dir, "--vocabulary", VOCAB, "--layers", "2", "--experts", "8",
         "--top-k", "2", "--seed", "9"])
    base = ref.load_reference(base_dir)
    text = "What is 17 + 25? 17 + 25 = 42. The answer is 42. Then 3 * 14 = 42 as well.\n" * 4
    text_file = os.path.join(work, "text.txt")
    with open(text_file, "w") as f:
        f.write(text)
    tok = subprocess.run([args.tuna, "tokenize", "--model", base_dir], input=text, capture_output=True, text=True, check=True)
    ids = torch.tensor([json.loads(tok.stdout)])

    base_file = safe_open(os.path.join(base_dir, "model.safetensors"), "pt")
    for keep in (8, 5, 2):
        job = {"name": "p", "trainer": "native", "task": "prune", "model": base_dir,
               "dataset": {"path": DATA, "format": "csv", "fields": {"prompt": "problem", "response": "solution"},
                           "template": "im_start", "val_fraction": 0.1},
               "prune": {"keep": keep, "score": "easy_ep", "calibration_examples": 48, "max_seq_len": 96}}
        job_file = os.path.join(work, f"job-{keep}.json")
        with open(job_file, "w") as f:
            json.dump(job, f)
        out = os.path.join(work, f"out-{keep}")
        run([args.tuna, "train", job_file, "--out", out])
        pruned_dir = os.path.join(out, "model")
        report = json.load(open(os.path.join(out, "prune_report.json")))
        cfg = json.load(open(os.path.join(pruned_dir, "config.json")))
        check(cfg["num_local_experts"] == keep, f"keep {keep}: config num_local_experts = {cfg['num_local_experts']}")
        pruned_file = safe_open(os.path.join(pruned_dir, "model.safetensors"), "pt")
        identical = True
        for layer in report["layers"]:
            kept = layer["kept"]
            for suffix in ("router.weight", "router.bias", "experts.gate_up_proj_blocks", "experts.gate_up_proj_scales",
                           "experts.gate_up_proj_bias", "experts.down_proj_blocks", "experts.down_proj_scales",
                           "experts.down_proj_bias"):
                name = f"model.layers.{layer['layer']}.mlp.{suffix}"
                got, want = pruned_file.get_tensor(name), base_file.get_tensor(name)[kept]
                identical &= got.shape[0] == keep and torch.equal(got, want)
        check(identical, f"keep {keep}: router rows and expert tensors are the base's kept rows, byte for byte")

        model = ref.load_reference(pruned_dir)
        with torch.no_grad():
            logits = model(ids).logits
            loss = model(ids, labels=ids).loss.item()
        native = json.loads(run([args.tuna, "eval", "--model", pruned_dir, "--text", text_file, "--json",
                                 "--max-seq-len", str(ids.shape[1])]))
        err = abs(native["loss"] - loss) / abs(loss)
        check(err < TOLERANCE, f"keep {keep}: tuna eval loss {native['loss']:.7f} vs transformers {loss:.7f} (rel err {err:.2e})")
        if keep == 8:
            with torch.no_grad():
                base_logits = base(ids).logits
            check(torch.equal(logits, base_logits), "keep 8 (all): transformers logits identical to the base model's")
        print(f"  keep {keep}: params {report.get('parameters_before')} -> {report.get('parameters_after')}, "
              f"bytes {report.get('bytes_before')} -> {report.get('bytes_after')}, "
              f"routing mass kept {[round(l['routing_mass_share'], 3) for l in report['layers']]}")
    if not args.keep_dir:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
