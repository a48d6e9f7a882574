"""How test_torch_agreement compares two trainer runs of one job: their events, their adapters,
the torch adapter loaded back by PEFT, and the runs a `torch` section, a resume or a refusal
makes. Every function makes named comparisons on a reference.checks.Checks (the `checks`
fixture), printing each number.
"""
import json
import os
import re
import subprocess
import warnings

from reference.jobs import by, events_of, job_variant, run, torch_cmd, torch_env

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


def compare_runs(c, torch_events, native_events):
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


def check_resolved(c, what, events, attention, experts, chunked_loss):
    """The config event names what the trainer resolved the job's `torch` section to."""
    cfg = by(events, "config")[0]
    c.equal(f"{what}: config attention / experts / chunked_loss",
            (cfg.get("attention"), cfg.get("experts"), cfg.get("chunked_loss")), (attention, experts, chunked_loss))


def check_resume(c, tuna, d, job, full_events, resume_from, what, tol=SAME_TOLERANCE, adapter_tol=SAME_TOLERANCE):
    """A torch run resumed from `resume_from` must continue the uninterrupted run (d/torch):
    exactly, unless the checkpoint came from a run of another number of processes, whose sums
    were added in another order (then `tol` for losses, `adapter_tol` for the adapter: AdamW
    turns rounding in near-zero gradients into whole update steps)."""
    out = os.path.join(d, f"torch-{what}")
    events = run(torch_cmd(tuna, job, out, os.path.join(d, f"work-{what}"), "--resume-dir", resume_from),
                 env=torch_env(), what=f"python3 -m tuna_torch --resume-dir ({what})")
    resumed = by(events, "resumed")
    c.true(f"{what}: resumed event", bool(resumed), json.dumps(resumed[0]) if resumed else "")
    c.true(f"{what}: no baseline after a resume", not by(events, "baseline"))
    steps = by(events, "step")
    want = {e["step"]: e for e in by(full_events, "step")}
    c.equal(f"{what}: steps run after the resume", [e["step"] for e in steps],
            [s for s in sorted(want) if s > resumed[0]["step"]] if resumed else None)
    for e in steps:
        c.rel(f"{what}: step {e['step']} loss", e["loss"], want[e["step"]]["loss"], tol,
              names=("resumed", "uninterrupted"))
    compare_adapters(c, out, os.path.join(d, "torch"), adapter_tol, what=f"{what}: adapter vs uninterrupted")


def torch_section_run(c, tuna, d, job, label, section, native_events):
    """The variant's job with another `torch` section, torch trainer only; it must still agree
    with the native trainer (its events from the variant's run). Returns its events."""
    sjob = job_variant(job, os.path.join(d, f"job-{label}.json"), torch=section)
    events = run(torch_cmd(tuna, sjob, os.path.join(d, f"torch-{label}"), os.path.join(d, f"work-{label}")),
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


def refused(c, tuna, work, job, label, expect, **changes):
    """The job with `changes` (see job_variant) must stop the torch trainer before training: exit
    1, an error line containing every string of `expect`, no step event, no adapter."""
    slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    rjob = job_variant(job, os.path.join(work, f"job-{slug}.json"), **changes)
    out = os.path.join(work, f"out-{slug}")
    p = subprocess.run(torch_cmd(tuna, rjob, out, os.path.join(work, f"work-{slug}")),
                       env=torch_env(), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    last = [l for l in p.stderr.splitlines() if l.startswith("tuna_torch: error")]
    print(f"  stderr: {last[-1][:300] if last else p.stderr[-300:]}")
    c.equal(f"{label}: exit code", p.returncode, 1)
    c.true(f"{label}: the error says why ({expect})", all(e in "".join(last) for e in expect))
    c.true(f"{label}: no step event, no adapter", not by(events_of(p.stdout), "step") and not os.path.exists(out))
