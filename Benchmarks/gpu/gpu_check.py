#!/usr/bin/env python3
"""The torch trainer end to end on a GPU: a real job through `python3 -m tuna_torch` (the loop,
events, checkpoints-free run, the adapter files) with each way of computing, on a tiny gpt-oss.

The GPU machine has no Swift toolchain, so the work is split:

  here (CPU, with tuna):   python3 Benchmarks/gpu/gpu_check.py make DIR [--tuna BIN]
      a tiny random gpt-oss (`tuna init-model`, MXFP4 experts), a LoRA job on q,k,v,o plus both
      expert parameters of layer 1 (gradient checkpointing, packing, evals), `tuna prepare` of it,
      and the native trainer's events for the same job (CPU, fp32) as the reference;
  there (CUDA):            python3 Benchmarks/gpu/gpu_check.py run DIR
      the torch trainer on DIR/prepared (`--prepared`: tuna is not needed) three times, with the
      job's `torch` section set to
        fast   auto                         (flex attention, mxfp4 experts, chunked loss),
        mxfp4  eager attention, mxfp4 experts,
        plain  eager attention, grouped_mm experts (transformers + PEFT);
      checks each run's resolved section, that every loss is finite, that its baseline and
      step-1 loss are within bf16 rounding of the native fp32 run (BF16_TOLERANCE), that it
      learns (last eval below the baseline), and loads each adapter with
      PeftModel.from_pretrained on transformers' dequantized model (bf16, GPU), strictly, whose
      validation loss must be the trainer's last eval (BF16_TOLERANCE).

Last line: `N passed, M failed`; exit 1 on any failure. Results (every event) in DIR/results.json.
The job, its events and the pass/fail harness come from the tests' reference package
(Tests/Python/reference), the trainer from worker/.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import warnings

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path[:0] = [os.path.join(REPO, "Tests", "Python"), os.path.join(REPO, "worker")]
from reference.checks import Checks  # noqa: E402
from reference.jobs import by, events_of, job_spec, job_variant, write_job  # noqa: E402
from reference.paths import DATA, VOCAB, WORKER, tuna_binary  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"

# bf16 (GPU) against fp32 (the native reference), and bf16 implementations against each other:
# a tiny model's losses agree to ~1e-3 relative after one step.
BF16_TOLERANCE = 1e-2

SECTIONS = {
    "fast": {"attention": "auto", "experts": "auto", "chunked_loss": True, "loss_chunk_rows": 64},
    "mxfp4": {"attention": "eager", "experts": "mxfp4", "chunked_loss": True, "loss_chunk_rows": 64},
    "plain": {"attention": "eager", "experts": "grouped_mm", "chunked_loss": True, "loss_chunk_rows": 64},
}
RESOLVED = {"fast": ("flex_attention", "mxfp4"), "mxfp4": ("eager", "mxfp4"), "plain": ("eager", "grouped_mm")}


def make(args):
    d = os.path.abspath(args.dir)
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)
    model = os.path.join(d, "model")
    subprocess.run([args.tuna, "init-model", "--out", model, "--vocabulary", VOCAB, "--layers", "2"], check=True)
    spec = job_spec("gpu-check", "model", True, max_seq_len=256, eval_every_steps=5, max_steps=10,
                    gradient_checkpointing=True)
    spec["dataset"]["path"] = "arithmetic.csv"
    shutil.copy(DATA, os.path.join(d, "arithmetic.csv"))
    write_job(args.tuna, os.path.join(d, "job.json"), spec)
    subprocess.run([args.tuna, "prepare", os.path.join(d, "job.json"), "--out", os.path.join(d, "prepared"),
                    "--root", d], check=True)
    p = subprocess.run([args.tuna, "train", os.path.join(d, "job.json"), "--out", os.path.join(d, "native"),
                        "--root", d], capture_output=True, text=True, check=True)
    with open(os.path.join(d, "native_events.json"), "w") as f:
        json.dump(events_of(p.stdout), f)
    shutil.rmtree(os.path.join(d, "native"))
    print(f"wrote {d}: model, job.json, prepared/, native_events.json")


def run(args):
    import torch

    d = os.path.abspath(args.dir)
    c = Checks()
    native = json.load(open(os.path.join(d, "native_events.json")))
    results = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "runs": {}}
    c.true("a CUDA device", torch.cuda.is_available())
    for label, section in SECTIONS.items():
        print(f"\n== {label}: torch {json.dumps(section)}", flush=True)
        job = job_variant(os.path.join(d, "job.json"), os.path.join(d, f"job-{label}.json"), torch=section)
        with open(job) as f:
            spec = json.load(f)
        out = os.path.join(d, f"out-{label}")
        shutil.rmtree(out, ignore_errors=True)
        env = dict(os.environ, PYTHONPATH=WORKER)
        p = subprocess.run([sys.executable, "-m", "tuna_torch", job, "--out", out, "--root", d, "--work-dir",
                            os.path.join(d, f"work-{label}"), "--prepared", os.path.join(d, "prepared")],
                           capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        events = events_of(p.stdout)
        results["runs"][label] = {"exit": p.returncode, "events": events, "stderr_tail": p.stderr[-3000:]}
        c.equal(f"{label}: exit code", p.returncode, 0)
        if p.returncode != 0:
            print(p.stderr[-3000:])
            continue
        cfg = by(events, "config")[0]
        c.equal(f"{label}: resolved attention / experts", (cfg["attention"], cfg["experts"]), RESOLVED[label])
        steps = by(events, "step")
        c.true(f"{label}: every step loss finite", all(e["loss"] is not None and math.isfinite(e["loss"]) for e in steps))
        c.rel(f"{label}: baseline vs native fp32", by(events, "baseline")[0]["loss"], by(native, "baseline")[0]["loss"],
              BF16_TOLERANCE, names=(label, "native"))
        c.rel(f"{label}: step 1 loss vs native fp32", steps[0]["loss"], by(native, "step")[0]["loss"], BF16_TOLERANCE,
              names=(label, "native"))
        evals = by(events, "eval")
        c.true(f"{label}: learns (last eval {evals[-1]['loss']:.4f} < baseline {by(events, 'baseline')[0]['loss']:.4f})",
               evals[-1]["loss"] < by(events, "baseline")[0]["loss"])
        print(f"  peak GPU memory {by(events, 'done')[0].get('peak_gpu_mem_gb')} GB, "
              f"tokens/s {[round(e['tokens_per_s']) for e in steps]}")
        peft_check(c, label, d, out, spec, evals[-1]["loss"])
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    if os.environ.get("OUT"):
        shutil.copy(os.path.join(d, "results.json"), os.path.join(os.environ["OUT"], "gpu_check.json"))
    return c.finish()


def peft_check(c, label, d, adapter_dir, spec, trained_val_loss):
    """The adapter as a user loads it: transformers' dequantized model + PeftModel.from_pretrained,
    strictly; its validation loss (transformers' own labels loss) = the trainer's last eval."""
    import torch
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import GptOssForCausalLM, Mxfp4Config
    from tuna_torch import data

    dev = torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")  # CPU: a dry run of the script
    base = GptOssForCausalLM.from_pretrained(os.path.join(d, "model"), quantization_config=Mxfp4Config(dequantize=True),
                                             dtype=torch.bfloat16 if dev.type == "cuda" else torch.float32,
                                             attn_implementation="eager", device_map={"": dev}, local_files_only=True)
    if dev.type == "cpu":
        base = base.float()  # transformers leaves dequantized experts in bf16 whatever dtype says
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    file_tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model)
    c.equal(f"{label}: PEFT load, tensors missing or extra", sorted(set(loaded) ^ set(file_tensors)), [])
    warned = [str(w.message) for w in caught if "key" in str(w.message).lower()]
    c.true(f"{label}: PEFT load, no warnings about keys", not warned, "; ".join(warned))
    prep = data.load_prepared(os.path.join(d, "prepared"))
    total, count = 0.0, 0
    with torch.no_grad():
        for b in data.validation_batches(prep.validation, spec["train"]["batch_size"]):
            n = data.scored_tokens(b)
            out = model(input_ids=b["input_ids"].to(dev), attention_mask=b["attention_mask"].to(dev),
                        labels=b["labels"].to(dev), use_cache=False)
            total += out.loss.float().item() * n
            count += n
    c.rel(f"{label}: validation loss through PeftModel.from_pretrained", total / count, trained_val_loss,
          BF16_TOLERANCE, names=("PEFT", "trainer's last eval"))
    del model, base
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("make", "run"))
    ap.add_argument("dir")
    ap.add_argument("--tuna", default=None, help="the tuna CLI (default: $TUNA_BIN, else the debug build's)")
    args = ap.parse_args()
    if args.mode == "make":
        args.tuna = tuna_binary(args.tuna)
        make(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
