#!/usr/bin/env python3
"""Agreement check: the torch trainer (worker/tuna_torch) against the native one (`tuna train`).

Both trainers get the same job. The torch trainer trains on what `tuna prepare` writes (the
native trainer's token ids, loss masks, micro-batches, learning rates and initial adapter), so
on the CPU in fp32 the only differences left are floating-point ones: the summation order of
two different implementations of the same model. The check builds a tiny gpt-oss with
`tuna init-model` (MXFP4 experts, 2 layers), then for each variant runs both trainers and
compares, printing every number:

  * config: examples, steps, warmup, trainable parameters (equal);
  * baseline validation loss, every step's loss and grad norm, every eval loss
    (relative difference < LOSS_TOLERANCE), every step's lr, tokens and scored tokens (equal);
  * the final adapters: same tensor names and shapes, worst tensor's max relative difference
    < ADAPTER_TOLERANCE, same r / alpha / targets in adapter_config.json;
  * the torch adapter loaded back with PeftModel.from_pretrained, strictly (every tensor
    loaded bit for bit, nothing missing or extra), and its validation loss recomputed through
    plain transformers + PEFT equal to the torch trainer's last eval.

Variants: `padded` (one example per row; a job without a `torch` section, so the trainer's
defaults) and `packed` (several examples per row, no attention between them; an explicit `torch`
section with a small `loss_chunk_rows`, so the chunked loss runs over several chunks). The padded
run also writes checkpoints every 2 steps; a second torch run resumes from its step-4 checkpoint
and must finish exactly like the uninterrupted run. The job's `torch` section (how the torch
trainer computes): on the CPU `auto` must resolve to eager attention and eager experts (the
config event says so); `chunked_loss: false` (full logits) must give the chunked run's losses
(< SAME_TOLERANCE) and agree with the native trainer; `experts: grouped_mm` (transformers'
grouped-GEMM experts, which torch >= 2.9 runs on the CPU) must agree with the native trainer
(< LOSS_TOLERANCE) -- or, with a torch that has no CPU grouped_mm, be refused with a clear error;
`attention: flex_attention` on the CPU must be refused (exit 1, a clear error: its sinks need CUDA),
and the padding the trainer gives batches for flex attention (to a multiple of 128 positions)
must leave the loss sums unchanged (checked with eager attention, packed and padded batches).
A checkpoint with one layer's expert weights missing must be refused (exit 1, the weight named).
--full adds: gradient checkpointing (same losses as without), DDP with 2 CPU processes under
torchrun (gloo; same losses as the native trainer), SIGTERM (exit 143 with a checkpoint at a
step boundary; resuming from it finishes like the uninterrupted run), and a corrupt checkpoint
in the resume directory (resume_failed, then the whole run, same losses).

    python3 -m scripts.torch.agreement_check --tuna "$(swift build --show-bin-path)/tuna" [--full] [--keep]

Last line: `N passed, M failed`; exit 1 on any failure.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from scripts.lib.checks import DATA, VOCAB, WORKER, Checks, add_tuna, tuna_path


# Same ids, batches, initial adapter and fp32 on both sides: the losses differ only by
# summation order (observed ~1e-7 relative).
LOSS_TOLERANCE = 1e-5
# The adapters after 5 AdamW steps differ more (observed 3e-5 .. 2.5e-4 worst tensor, from a
# single entry): Adam's update g / (sqrt(v) + eps) with eps = 1e-8 divides out the gradient's
# size, so for an entry whose gradient is tiny (an expert that saw one token), rounding-level
# gradient differences become a visible difference in its update.
ADAPTER_TOLERANCE = 1e-3
# Same implementation, same machine, same ops (resume, gradient checkpointing): bit-level.
SAME_TOLERANCE = 1e-6
# Rows a loss chunk in the packed variant (chunked loss over several chunks; the default, 4096,
# is one chunk at this size).
PACKED_CHUNK_ROWS = 50

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def job_spec(name, model_dir, packing, **train):
    """The fields of a job this check sets; `write_job` makes the rest what the coordinator
    would fill in."""
    t = {"adam_eps": 1e-08, "batch_size": 4, "grad_accum": 2, "learning_rate": 5e-3, "max_seq_len": 96,
         "max_steps": 5, "packing": packing, "scheduler": "constant", "seed": 3, "weight_decay": 0.01}
    t.update(train)
    return {"name": name, "trainer": "torch", "model": model_dir,
            "dataset": {"path": DATA, "format": "csv", "fields": {"prompt": "problem", "response": "solution"},
                        "template": "im_start", "val_fraction": 0.1},
            "lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                     "target_parameters": ["1.mlp.experts.gate_up_proj", "1.mlp.experts.down_proj"]},
            "train": t}


def write_job(tuna, path, job):
    """Writes `job` to `path` as the coordinator would lease it: checked, and every default
    filled in, by `tuna submit --dry-run` (the trainer reads a validated spec strictly, and no
    check restates a default). Returns `path`."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        json.dump(job, f)
        f.flush()
        p = subprocess.run([tuna, "submit", "--dry-run", "--json", f.name], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"tuna submit --dry-run refused the check's own job: {p.stderr.strip()}")
    (planned,) = json.loads(p.stdout)
    with open(path, "w") as f:
        json.dump(planned["params"], f)
    return path


def events_of(stdout):
    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            o = json.loads(line)  # must parse: a NaN would not
            if isinstance(o.get("event"), str):
                out.append(o)
    return out


def run(cmd, env=None, what=""):
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    print(f"  ran {what or cmd[0]} in {time.time() - t0:.1f}s (exit {p.returncode})", flush=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return events_of(p.stdout)


def torch_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = WORKER + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("TUNA_CHECKPOINT_DIR", None)
    env.pop("TUNA_RESUME_DIR", None)
    env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU fp32 check, also on a box with GPUs
    env["TUNA_PYTHON"] = sys.executable  # for the launcher worker/tuna-torch
    return env


def torch_cmd(args, job, out, work, *extra, launcher=None):
    launcher = launcher or [sys.executable, "-m", "tuna_torch"]
    return launcher + [job, "--out", out, "--tuna", args.tuna, "--work-dir", work, *extra]


def by(events, name):
    return [e for e in events if e["event"] == name]


def compare_runs(c, torch_events, native_events, label="torch"):
    tc, nc = by(torch_events, "config")[0], by(native_events, "config")[0]
    for k in ("train_examples", "validation_examples", "steps", "warmup_steps", "trainable_parameters"):
        c.equal(f"config.{k}", tc[k], nc[k])
    tb, nb = by(torch_events, "baseline"), by(native_events, "baseline")
    if nb:
        c.rel("baseline validation loss", tb[0]["loss"] if tb else None, nb[0]["loss"], LOSS_TOLERANCE)
    ts, ns = by(torch_events, "step"), by(native_events, "step")
    c.equal("step numbers", [e["step"] for e in ts], [e["step"] for e in ns])
    c.equal("scored tokens per step", [e["scored_tokens"] for e in ts], [e["scored_tokens"] for e in ns])
    c.equal("tokens per step", [e["tokens"] for e in ts], [e["tokens"] for e in ns])
    c.equal("lr per step", [e["lr"] for e in ts], [e["lr"] for e in ns])
    c.equal("epoch per step", [e["epoch"] for e in ts], [e["epoch"] for e in ns])
    for a, b in zip(ts, ns):
        c.rel(f"step {b['step']} loss", a["loss"], b["loss"], LOSS_TOLERANCE)
    c.rel("grad norms (all steps)", [e["grad_norm"] for e in ts], [e["grad_norm"] for e in ns], LOSS_TOLERANCE)
    te, ne = by(torch_events, "eval"), by(native_events, "eval")
    c.equal("eval steps", [e["step"] for e in te], [e["step"] for e in ne])
    c.equal("eval tokens", [e["tokens"] for e in te], [e["tokens"] for e in ne])
    for a, b in zip(te, ne):
        c.rel(f"eval loss at step {b['step']}", a["loss"], b["loss"], LOSS_TOLERANCE)
    c.true("done event", bool(by(torch_events, "done")))


def compare_adapters(c, got_dir, want_dir, tol, what="adapter"):
    from safetensors.torch import load_file

    got = load_file(os.path.join(got_dir, "adapter_model.safetensors"))
    want = load_file(os.path.join(want_dir, "adapter_model.safetensors"))
    short = lambda k: k.replace("base_model.model.model.layers.", "L").replace(".weight", "")  # noqa: E731
    c.equal(f"{what}: same tensor names ({len(want)})", sorted(map(short, got)), sorted(map(short, want)))
    shapes_got = {k: tuple(v.shape) for k, v in got.items()}
    c.equal(f"{what}: same shapes", shapes_got == {k: tuple(v.shape) for k, v in want.items()}, True)
    worst, worst_name = 0.0, None
    for k in sorted(set(got) & set(want)):
        g, w = got[k].double(), want[k].double()
        scale = w.abs().max().item()
        err = (g - w).abs().max().item() / (scale if scale > 0 else 1.0)
        print(f"    {short(k)} {list(shapes_got[k])}: max rel diff {err:.2e}")
        if err >= worst:
            worst, worst_name = err, k
    ok = worst < tol
    print(f"  {what}: worst tensor {worst_name and short(worst_name)}: max rel diff {worst:.2e} (< {tol:g})"
          f"{'' if ok else '  FAIL'}")
    c.count(ok, f"{what} max rel diff")
    gc, wc = (json.load(open(os.path.join(d, "adapter_config.json"))) for d in (got_dir, want_dir))
    for k in ("r", "lora_alpha", "lora_dropout"):
        c.equal(f"{what}: adapter_config {k}", float(gc[k]), float(wc[k]))
    c.equal(f"{what}: adapter_config use_rslora", bool(gc["use_rslora"]), bool(wc["use_rslora"]))
    for k in ("target_modules", "target_parameters"):
        c.equal(f"{what}: adapter_config {k}", sorted(gc[k] or []), sorted(wc[k] or []))


def peft_load_check(c, model_dir, adapter_dir, prepared_dir, batch_size, trained_val_loss):
    """PeftModel.from_pretrained on the torch adapter, the way a user loads it, strictly; then
    the validation loss through plain transformers (its own labels loss) must be what the
    trainer reported at its last eval."""
    import torch
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import GptOssForCausalLM, Mxfp4Config

    from tuna_torch import data

    base = GptOssForCausalLM.from_pretrained(model_dir, quantization_config=Mxfp4Config(dequantize=True),
                                             dtype=torch.float32, attn_implementation="eager",
                                             experts_implementation="eager", local_files_only=True).float()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    warned = [str(w.message) for w in caught if "key" in str(w.message).lower() or "adapter" in str(w.message).lower()]
    c.true("PEFT load: no warnings about keys", not warned, "; ".join(warned))
    file_tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model)
    c.equal("PEFT load: tensors in the model but not the file (left at init)", sorted(set(loaded) - set(file_tensors)), [])
    c.equal("PEFT load: tensors in the file PEFT did not load", sorted(set(file_tensors) - set(loaded)), [])
    bad = [k for k in set(loaded) & set(file_tensors) if not torch.equal(loaded[k].float(), file_tensors[k].float())]
    c.equal("PEFT load: tensors not loaded bit for bit", sorted(bad), [])
    prep = data.load_prepared(prepared_dir)
    total, count = 0.0, 0
    with torch.no_grad():
        for b in data.validation_batches(prep.validation, batch_size):
            n = data.scored_tokens(b)
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"], use_cache=False)
            total += out.loss.item() * n
            count += n
    c.rel("validation loss through PeftModel.from_pretrained(torch adapter)", total / count, trained_val_loss, LOSS_TOLERANCE,
          names=("PEFT", "trainer's last eval"))


def variant(c, args, work, model_dir, name, packing, torch_section=None, **train):
    print(f"\n== {name}: native vs torch (torch section {json.dumps(torch_section)})", flush=True)
    d = os.path.join(work, name)
    os.makedirs(d)
    spec = job_spec(name, model_dir, packing, **train)
    if torch_section is not None:
        spec["torch"] = torch_section
    job = write_job(args.tuna, os.path.join(d, "job.json"), spec)
    native = run([args.tuna, "train", job, "--out", os.path.join(d, "native")], what="tuna train")
    torch_events = run(torch_cmd(args, job, os.path.join(d, "torch"), d, "--checkpoint-dir", os.path.join(d, "ckpt")),
                       env=torch_env(), what="python3 -m tuna_torch")
    check_resolved(c, name, torch_events, "eager", "eager", (torch_section or {}).get("chunked_loss", True))
    compare_runs(c, torch_events, native)
    compare_adapters(c, os.path.join(d, "torch"), os.path.join(d, "native"), ADAPTER_TOLERANCE)
    peft_load_check(c, model_dir, os.path.join(d, "torch"), os.path.join(d, "prepared"), train.get("batch_size", 4),
                    by(torch_events, "eval")[-1]["loss"])
    return d, job, torch_events, native


def check_resume(c, args, d, job, full_events, resume_from, what):
    """A torch run resumed from `resume_from` must continue the uninterrupted run exactly."""
    out = os.path.join(d, f"torch-{what}")
    events = run(torch_cmd(args, job, out, os.path.join(d, f"work-{what}"), "--resume-dir", resume_from),
                 env=torch_env(), what=f"python3 -m tuna_torch --resume-dir ({what})")
    resumed = by(events, "resumed")
    c.true(f"{what}: resumed event", bool(resumed), json.dumps(resumed[0]) if resumed else "")
    c.true(f"{what}: no baseline after a resume", not by(events, "baseline"))
    steps = by(events, "step")
    want = {e["step"]: e for e in by(full_events, "step")}
    c.equal(f"{what}: steps run after the resume", [e["step"] for e in steps],
            [s for s in sorted(want) if s > resumed[0]["step"]] if resumed else None)
    for e in steps:
        c.rel(f"{what}: step {e['step']} loss", e["loss"], want[e["step"]]["loss"], SAME_TOLERANCE,
              names=("resumed", "uninterrupted"))
    compare_adapters(c, out, os.path.join(d, "torch"), SAME_TOLERANCE, what=f"{what}: adapter vs uninterrupted")


def check_resolved(c, what, events, attention, experts, chunked_loss):
    """The config event names what the trainer resolved the job's `torch` section to."""
    cfg = by(events, "config")[0]
    c.equal(f"{what}: config attention / experts / chunked_loss",
            (cfg.get("attention"), cfg.get("experts"), cfg.get("chunked_loss")), (attention, experts, chunked_loss))


def job_variant(job, path, **changes):
    """The validated `job` with some fields overridden (`changes`: a value, or for a section the
    fields to change, e.g. torch={"experts": "eager"}; `train_fields` for train's), written to
    `path`; returns `path`."""
    with open(job) as f:
        spec = json.load(f)
    changes["train"] = changes.pop("train_fields", {})
    for key, value in changes.items():
        if isinstance(value, dict):
            spec[key].update(value)
        else:
            spec[key] = value
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def torch_section_run(c, args, d, job, label, section, native_events):
    """The variant's job with another `torch` section, torch trainer only; it must still agree
    with the native trainer (its events from the variant's run). Returns its events."""
    sjob = job_variant(job, os.path.join(d, f"job-{label}.json"), torch=section)
    events = run(torch_cmd(args, sjob, os.path.join(d, f"torch-{label}"), os.path.join(d, f"work-{label}")),
                 env=torch_env(), what=f"python3 -m tuna_torch (torch: {json.dumps(section)})")
    compare_runs(c, events, native_events)
    compare_adapters(c, os.path.join(d, f"torch-{label}"), os.path.join(d, "native"), ADAPTER_TOLERANCE,
                     what=f"{label} adapter vs native")
    return events


def compare_torch_runs(c, what, got, want, tol, names):
    """Two torch runs of one job that must compute the same numbers (baseline, steps, evals)."""
    c.rel(f"{what}: baseline", [e["loss"] for e in by(got, "baseline")], [e["loss"] for e in by(want, "baseline")],
          tol, names=names)
    c.rel(f"{what}: step losses", [e["loss"] for e in by(got, "step")], [e["loss"] for e in by(want, "step")], tol,
          names=names)
    c.rel(f"{what}: grad norms", [e["grad_norm"] for e in by(got, "step")], [e["grad_norm"] for e in by(want, "step")],
          tol, names=names)
    c.rel(f"{what}: eval losses", [e["loss"] for e in by(got, "eval")], [e["loss"] for e in by(want, "eval")], tol,
          names=names)


def refused(c, args, work, job, label, expect, **changes):
    """The job with `changes` (see job_variant) must stop the torch trainer before training: exit
    1, an error line containing every string of `expect`, no step event, no adapter."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    rjob = job_variant(job, os.path.join(work, f"job-{slug}.json"), **changes)
    out = os.path.join(work, f"out-{slug}")
    p = subprocess.run(torch_cmd(args, rjob, out, os.path.join(work, f"work-{slug}")),
                       env=torch_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    last = [l for l in p.stderr.splitlines() if l.startswith("tuna_torch: error")]
    print(f"  stderr: {last[-1][:300] if last else p.stderr[-300:]}")
    c.equal(f"{label}: exit code", p.returncode, 1)
    c.true(f"{label}: the error says why ({expect})", all(e in "".join(last) for e in expect))
    c.true(f"{label}: no step event, no adapter", not by(events_of(p.stdout), "step") and not os.path.exists(out))


def torch_refused(c, args, work, job, label, section, expect):
    """A `torch` section this machine cannot run: exit 1 before training, a clear error."""
    refused(c, args, work, job, label, [expect], torch=section)


def check_flex_padding(c, model_dir, d, batch_size):
    """Flex attention (CUDA only) runs on batches padded to a multiple of 128 positions
    (tuna_torch.model.pad_for_flex). That padding must not change a loss sum: checked here with
    eager attention, on packed training batches and padded validation batches of the variant in
    `d`, with its trained torch adapter."""
    import torch
    from safetensors.torch import load_file
    from tuna_torch import adapters, data, forward_pass, loading, spec as job_file

    prep = data.load_prepared(os.path.join(d, "prepared"))
    job = job_file.load(os.path.join(d, "job.json"))
    cpu = torch.device("cpu")
    base, _ = loading.load_base_model(model_dir, cpu, torch.float32)
    peft_model, params = adapters.build_lora_model(base, job.lora, prep.init_adapter, False)
    trained = load_file(os.path.join(d, "torch", "adapter_model.safetensors"))
    peft_model.eval()
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(trained[name])
        batches = [data.build_batch(rows, prep.train, True) for rows in prep.step_micro_batches(0)]
        batches += data.validation_batches(prep.validation, batch_size)[:2]
        got, want, shapes = [], [], []
        for b in batches:
            padded = forward_pass.pad_for_flex(b)
            shapes.append(f"{b['input_ids'].shape[1]}->{padded['input_ids'].shape[1]}")
            s1, n1 = forward_pass.token_loss_sum(peft_model, b, cpu)
            s2, n2 = forward_pass.token_loss_sum(peft_model, padded, cpu, PACKED_CHUNK_ROWS)
            c.equal(f"flex padding: scored tokens unchanged ({shapes[-1]} positions)", n2, n1)
            got.append(s2.item())
            want.append(s1.item())
    c.rel(f"flex padding: loss sums, padded to 128s vs not ({', '.join(shapes)})", got, want, SAME_TOLERANCE,
          names=("padded", "as built"))


def experts_only(c, args, work, model_dir):
    """LoRA on expert parameters only (every layer's gate_up_proj and down_proj, by PEFT's suffix
    rule), `experts: mxfp4`: the torch trainer runs without any PEFT wrapper; it must agree with
    the native trainer, and PEFT must load its adapter."""
    d = os.path.join(work, "experts-only")
    os.makedirs(d)
    spec = job_spec("experts-only", model_dir, True, max_seq_len=256, eval_every_steps=2)
    spec["lora"]["target_modules"] = []
    spec["lora"]["target_parameters"] = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    spec["torch"] = {"experts": "mxfp4", "loss_chunk_rows": PACKED_CHUNK_ROWS}
    job = write_job(args.tuna, os.path.join(d, "job.json"), spec)
    native = run([args.tuna, "train", job, "--out", os.path.join(d, "native")], what="tuna train")
    events = run(torch_cmd(args, job, os.path.join(d, "torch"), d), env=torch_env(), what="python3 -m tuna_torch")
    check_resolved(c, "experts only", events, "eager", "mxfp4", True)
    compare_runs(c, events, native)
    compare_adapters(c, os.path.join(d, "torch"), os.path.join(d, "native"), ADAPTER_TOLERANCE, what="experts-only adapter")
    peft_load_check(c, model_dir, os.path.join(d, "torch"), os.path.join(d, "prepared"), 4, by(events, "eval")[-1]["loss"])


def check_missing_weights(c, args, work, model_dir, job, experts="eager"):
    """A checkpoint without one layer's expert weights must stop the trainer (exit 1, naming
    the weight) instead of training on random initialisation, whichever loader runs."""
    import torch  # noqa: F401  (safetensors.torch needs it)
    from safetensors.torch import load_file, save_file

    broken = os.path.join(work, f"model-missing-experts-{experts}")
    shutil.copytree(model_dir, broken)
    path = os.path.join(broken, "model.safetensors")
    tensors = load_file(path)
    for k in ("model.layers.1.mlp.experts.down_proj_blocks", "model.layers.1.mlp.experts.down_proj_scales"):
        tensors.pop(k)
    save_file(tensors, path, metadata={"format": "pt"})
    refused(c, args, work, job, f"missing expert weights ({experts} experts)",
            ["model.layers.1.mlp.experts.down_proj", "missing"], model=broken, torch={"experts": experts})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_tuna(ap)
    ap.add_argument("--full", action="store_true",
                    help="also gradient checkpointing, DDP (2 CPU processes), SIGTERM, a corrupt checkpoint")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    args.tuna = tuna_path(args.tuna)
    work = tempfile.mkdtemp(prefix="tuna-torch-agree-")
    print(f"work dir {work}; tuna {args.tuna}", flush=True)
    c = Checks()
    try:
        model_dir = os.path.join(work, "model")
        subprocess.run([args.tuna, "init-model", "--out", model_dir, "--vocabulary", VOCAB, "--layers", "2"], check=True)

        # No torch section in what the check writes: the validator fills in the defaults.
        d, job, padded_events, native_padded = variant(c, args, work, model_dir, "padded", False, checkpoint_every_steps=2)
        ckpts = by(padded_events, "checkpoint")
        c.equal("padded: checkpoint events (every 2 steps, not at the end)", [e["step"] for e in ckpts], [2, 4])
        c.equal("padded: checkpoint directory holds one file", sorted(os.listdir(os.path.join(d, "ckpt"))), ["checkpoint.pt"])
        print("\n== padded: resume from the step-4 checkpoint", flush=True)
        check_resume(c, args, d, job, padded_events, os.path.join(d, "ckpt"), "resume")

        packed_torch = {"attention": "auto", "experts": "auto", "chunked_loss": True, "loss_chunk_rows": PACKED_CHUNK_ROWS}
        p, pjob, packed_events, packed_native = variant(c, args, work, model_dir, "packed", True, packed_torch,
                                                        max_seq_len=256, eval_every_steps=2)
        mb = max(e["scored_tokens"] for e in by(packed_events, "step")) // 2  # a step is grad_accum (2) micro-batches
        c.true(f"packed: the chunked loss ran in several chunks (~{mb} scored tokens a micro-batch, "
               f"{PACKED_CHUNK_ROWS} rows a chunk)", mb > 2 * PACKED_CHUNK_ROWS)

        print("\n== packed, chunked_loss: false (full logits) vs chunked, and vs native", flush=True)
        full_events = torch_section_run(c, args, p, pjob, "full-logits", dict(packed_torch, chunked_loss=False),
                                        packed_native)
        check_resolved(c, "full logits", full_events, "eager", "eager", False)
        compare_torch_runs(c, "chunked vs full logits", packed_events, full_events, SAME_TOLERANCE,
                           ("chunked", "full logits"))

        print("\n== padded, experts: grouped_mm on the CPU", flush=True)
        import torch
        from tuna_torch import compute
        if compute.grouped_mm_available(torch.device("cpu")):
            ge = torch_section_run(c, args, d, job, "grouped-mm", {"experts": "grouped_mm"}, native_padded)
            check_resolved(c, "grouped_mm", ge, "eager", "grouped_mm", True)
            compare_torch_runs(c, "grouped_mm vs eager experts", ge, padded_events, LOSS_TOLERANCE,
                               ("grouped_mm", "eager"))
        else:
            print(f"  torch {torch.__version__} has no CPU grouped_mm: an explicit grouped_mm must be refused")
            torch_refused(c, args, work, job, "grouped-mm-refused", {"experts": "grouped_mm"}, "grouped_mm is not available")

        print("\n== padded, experts: mxfp4 (MXFP4 kept, dequantized per layer, per-expert low-rank LoRA) on the CPU", flush=True)
        if compute.grouped_mm_available(torch.device("cpu")):
            me = torch_section_run(c, args, d, job, "mxfp4", {"experts": "mxfp4"}, native_padded)
            check_resolved(c, "mxfp4", me, "eager", "mxfp4", True)
            compare_torch_runs(c, "mxfp4 vs eager experts", me, padded_events, LOSS_TOLERANCE, ("mxfp4", "eager"))
            # Tuna writes this adapter itself (PEFT never saw the expert LoRA): PEFT must load it.
            peft_load_check(c, model_dir, os.path.join(d, "torch-mxfp4"), os.path.join(d, "prepared"), 4,
                            by(me, "eval")[-1]["loss"])
            print("\n== experts only (no target_modules: no PEFT wrapper at all), experts: mxfp4, packed", flush=True)
            experts_only(c, args, work, model_dir)
        else:
            torch_refused(c, args, work, job, "mxfp4-refused", {"experts": "mxfp4"}, "mxfp4 is not available")

        print("\n== flex attention's padding to 128 positions changes no loss (eager attention, CPU)", flush=True)
        check_flex_padding(c, model_dir, p, 4)

        print("\n== attention: flex_attention on the CPU is refused", flush=True)
        torch_refused(c, args, work, job, "flex-refused", {"attention": "flex_attention"}, "flex_attention needs a CUDA device")

        print("\n== a checkpoint with missing expert weights is refused", flush=True)
        check_missing_weights(c, args, work, model_dir, job)
        if compute.grouped_mm_available(torch.device("cpu")):
            check_missing_weights(c, args, work, model_dir, job, "mxfp4")

        if args.full:
            print("\n== gradient checkpointing (torch only): same as without", flush=True)
            gjob = job_variant(job, os.path.join(d, "job-gc.json"), train_fields={"gradient_checkpointing": True})
            ge = run(torch_cmd(args, gjob, os.path.join(d, "torch-gc"), os.path.join(d, "work-gc")), env=torch_env(),
                     what="python3 -m tuna_torch (gradient checkpointing)")
            c.equal("gradient checkpointing: config says so", by(ge, "config")[0]["gradient_checkpointing"], True)
            c.rel("gradient checkpointing: step losses", [e["loss"] for e in by(ge, "step")],
                  [e["loss"] for e in by(padded_events, "step")], SAME_TOLERANCE, names=("with", "without"))
            compare_adapters(c, os.path.join(d, "torch-gc"), os.path.join(d, "torch"), 1e-5, what="gradient checkpointing adapter")

            if compute.grouped_mm_available(torch.device("cpu")):
                print("\n== experts: mxfp4 with gradient checkpointing, packed, vs native", flush=True)
                mjob = job_variant(pjob, os.path.join(work, "packed", "job-mxfp4-gc.json"),
                                   train_fields={"gradient_checkpointing": True})
                torch_section_run(c, args, os.path.join(work, "packed"), mjob, "mxfp4-gc",
                                  dict(packed_torch, experts="mxfp4"), packed_native)

            print("\n== DDP: 2 CPU processes under torchrun (gloo) vs native, packed", flush=True)
            p = os.path.join(work, "packed")
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tuna_torch"]
            de = run(torch_cmd(args, os.path.join(p, "job.json"), os.path.join(p, "torch-ddp"), os.path.join(p, "work-ddp"),
                               launcher=launcher), env=torch_env(), what="torchrun -m tuna_torch (2 processes)")
            c.equal("DDP: world_size", by(de, "config")[0]["world_size"], 2)
            c.equal("DDP: only rank 0 prints (one done event)", len(by(de, "done")), 1)
            native_packed = run([args.tuna, "train", os.path.join(p, "job.json"), "--out", os.path.join(p, "native2")],
                                what="tuna train (again, for the events)")
            compare_runs(c, de, native_packed)
            compare_adapters(c, os.path.join(p, "torch-ddp"), os.path.join(p, "native"), ADAPTER_TOLERANCE, what="DDP adapter")

            print("\n== SIGTERM (through worker/tuna-torch): checkpoint at a step boundary, exit 143, resume", flush=True)
            sig_out, sig_ckpt = os.path.join(d, "torch-sig"), os.path.join(d, "ckpt-sig")
            # through the worker's launcher (one process: no GPU visible), as the worker runs it
            proc = subprocess.Popen(torch_cmd(args, job, sig_out, os.path.join(d, "work-sig"), "--checkpoint-dir", sig_ckpt,
                                              launcher=[os.path.join(WORKER, "tuna-torch")]),
                                    env=torch_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if '"event": "step"' in line:
                    proc.send_signal(signal.SIGTERM)
                    break
            rest, _ = proc.communicate(timeout=600)
            se = events_of("".join(lines) + rest)
            c.equal("SIGTERM: exit code", proc.returncode, 143)
            ck = by(se, "checkpoint")
            c.true("SIGTERM: one checkpoint event per step, the last at a step boundary",
                   bool(ck) and ck[-1]["step"] >= 1 and len({e["step"] for e in ck}) == len(ck), json.dumps(ck))
            c.true("SIGTERM: no done event and no adapter", not by(se, "done") and not os.path.exists(sig_out))
            check_resume(c, args, d, job, padded_events, sig_ckpt, "sigterm-resume")

            print("\n== a checkpoint that does not fit: resume_failed, then the whole run", flush=True)
            bad = os.path.join(d, "ckpt-bad")
            os.makedirs(bad)
            with open(os.path.join(bad, "checkpoint.pt"), "wb") as f:
                f.write(b"not a checkpoint")
            be = run(torch_cmd(args, job, os.path.join(d, "torch-bad"), os.path.join(d, "work-bad"), "--resume-dir", bad),
                     env=torch_env(), what="python3 -m tuna_torch --resume-dir (corrupt)")
            rf = by(be, "resume_failed")
            c.true("corrupt checkpoint: resume_failed event", bool(rf), json.dumps(rf[0])[:200] if rf else "")
            c.equal("corrupt checkpoint: every step run", [e["step"] for e in by(be, "step")], [1, 2, 3, 4, 5])
            c.rel("corrupt checkpoint: step losses", [e["loss"] for e in by(be, "step")],
                  [e["loss"] for e in by(padded_events, "step")], SAME_TOLERANCE, names=("after resume_failed", "uninterrupted"))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return c.finish()


if __name__ == "__main__":
    sys.exit(main())
