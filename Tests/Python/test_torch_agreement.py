"""The torch trainer (worker/tuna_torch) against the native one (`tuna train`) on the same job.

The torch trainer trains on what `tuna prepare` writes (the native trainer's token ids, loss
masks, micro-batches, learning rates and initial adapter), so on the CPU in fp32 the only
differences left are the summation orders of two implementations of the same model. A tiny
gpt-oss from `tuna init-model` (MXFP4 experts, 2 layers); each run's numbers are compared and
printed (agreement.py): config (examples, steps, warmup, trainable parameters), baseline, every
step's loss / grad norm / lr / tokens, every eval; the final adapters (names, shapes, worst
tensor, adapter_config.json); the torch adapter loaded back by PeftModel.from_pretrained,
strictly, its validation loss recomputed through transformers + PEFT.

Variants: `padded` (one example per row, no `torch` section: the validator's defaults;
checkpoints every 2 steps, and a run resumed from the step-4 one finishes like the
uninterrupted run) and `packed` (several examples per row; a small `loss_chunk_rows`, so the
chunked loss runs over several chunks). Then the job's `torch` section: on the CPU `auto` is
eager attention and eager experts; `chunked_loss: false` gives the chunked losses;
`experts: grouped_mm` and `mxfp4` agree with the native trainer (or, with a torch that has no
CPU grouped_mm, are refused); `attention: flex_attention` is refused on the CPU, and the padding
the trainer gives flex-attention batches leaves the loss sums unchanged; a checkpoint missing
one layer's expert weights is refused, naming the weight.

--full adds: gradient checkpointing (same losses as without), DDP with 2 CPU processes under
torchrun (gloo; same losses as the native trainer and as one process), 2 ranks stopped by
SIGTERM through the launcher (exit 143, one checkpoint, resumed on one process), SIGTERM (exit 143 with a checkpoint at a
step boundary; resuming from it finishes like the uninterrupted run), and a corrupt checkpoint
in the resume directory (resume_failed, then the whole run, same losses).
"""
import json
import os
import shutil
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from agreement import (ADAPTER_TOLERANCE, LOSS_TOLERANCE, SAME_TOLERANCE, check_resolved, check_resume,
                       compare_adapters, compare_runs, compare_torch_runs, peft_load_check, refused,
                       torch_section_run)
from reference.jobs import by, events_of, job_spec, job_variant, run, torch_cmd, torch_env, write_job
from reference.paths import WORKER
from tuna_torch import compute

# Rows a loss chunk in the packed variant (chunked loss over several chunks; the default, 4096,
# is one chunk at this size).
PACKED_CHUNK_ROWS = 50
PACKED_TORCH = {"attention": "auto", "experts": "auto", "chunked_loss": True, "loss_chunk_rows": PACKED_CHUNK_ROWS}
# One process against two on the same global batch: the same sums added in another order (fp32);
# losses within this, adapters within ADAPTER_TOLERANCE (as against the native trainer).
DDP_TOLERANCE = 1e-5
GROUPED_MM = compute.grouped_mm_available(torch.device("cpu"))
needs_grouped_mm = pytest.mark.skipif(not GROUPED_MM, reason=f"torch {torch.__version__} has no CPU grouped_mm")


@pytest.fixture(scope="module")
def work(tiny_model, tmp_path_factory):
    """(work directory, the base model)."""
    return str(tmp_path_factory.mktemp("torch-agree")), tiny_model(layers=2)


def run_variant(tuna, work, name, packing, torch_section=None, **train):
    """Both trainers on one job (the torch one checkpointing into d/ckpt)."""
    work, model_dir = work
    print(f"\n== {name}: native vs torch (torch section {json.dumps(torch_section)})", flush=True)
    d = os.path.join(work, name)
    os.makedirs(d)
    spec = job_spec(name, model_dir, packing, **train)
    if torch_section is not None:
        spec["torch"] = torch_section
    job = write_job(tuna, os.path.join(d, "job.json"), spec)
    native = run([tuna, "train", job, "--out", os.path.join(d, "native")], what="tuna train")
    events = run(torch_cmd(tuna, job, os.path.join(d, "torch"), d, "--checkpoint-dir", os.path.join(d, "ckpt")),
                 env=torch_env(), what="python3 -m tuna_torch")
    return SimpleNamespace(name=name, d=d, job=job, events=events, native=native, model_dir=model_dir,
                           chunked=(torch_section or {}).get("chunked_loss", True), batch_size=train.get("batch_size", 4))


def check_variant(c, v):
    check_resolved(c, v.name, v.events, "eager", "eager", v.chunked)
    compare_runs(c, v.events, v.native)
    compare_adapters(c, os.path.join(v.d, "torch"), os.path.join(v.d, "native"), ADAPTER_TOLERANCE)
    peft_load_check(c, v.model_dir, os.path.join(v.d, "torch"), os.path.join(v.d, "prepared"), v.batch_size,
                    by(v.events, "eval")[-1]["loss"])


@pytest.fixture(scope="module")
def padded(tuna, work):
    # No torch section in what the check writes: the validator fills in the defaults.
    return run_variant(tuna, work, "padded", False, checkpoint_every_steps=2)


@pytest.fixture(scope="module")
def packed(tuna, work):
    return run_variant(tuna, work, "packed", True, PACKED_TORCH, max_seq_len=256, eval_every_steps=2)


def test_padded_agrees_with_native(padded, checks):
    check_variant(checks, padded)


def test_padded_checkpoints_every_two_steps(padded, checks):
    checks.equal("padded: checkpoint events (every 2 steps, not at the end)", [e["step"] for e in by(padded.events, "checkpoint")],
                 [2, 4])
    checks.equal("padded: checkpoint directory holds one file", sorted(os.listdir(os.path.join(padded.d, "ckpt"))),
                 ["checkpoint.pt"])


def test_resume_from_the_step_4_checkpoint(tuna, padded, checks):
    check_resume(checks, tuna, padded.d, padded.job, padded.events, os.path.join(padded.d, "ckpt"), "resume")


def test_paused_at_step_3_then_resumed_is_the_uninterrupted_run(tuna, padded, checks):
    """ASHA's promotion mode (docs/trainer-contract.md section 5): the job file's `pause_at_step`
    makes the trainer evaluate and checkpoint at step 3, print `paused` and exit 0 without an
    adapter; resumed from that checkpoint it finishes like the uninterrupted run."""
    with open(padded.job) as f:
        job = json.load(f)
    job["pause_at_step"] = 3
    pjob = os.path.join(padded.d, "job-paused.json")
    with open(pjob, "w") as f:
        json.dump(job, f)
    out, ckpt = os.path.join(padded.d, "torch-paused"), os.path.join(padded.d, "ckpt-paused")
    events = run(torch_cmd(tuna, pjob, out, os.path.join(padded.d, "work-paused"), "--checkpoint-dir", ckpt),
                 env=torch_env(), what="python3 -m tuna_torch (pause_at_step 3)")
    checks.equal("paused: the last event", events[-1], {"event": "paused", "step": 3})
    checks.equal("paused: steps run", [e["step"] for e in by(events, "step")], [1, 2, 3])
    checks.true("paused: an eval at step 3 (the rung's value)", any(e.get("step") == 3 for e in by(events, "eval")))
    checks.true("paused: no adapter", not os.path.exists(os.path.join(out, "adapter_model.safetensors")))
    want = {e["step"]: e["loss"] for e in by(padded.events, "step")}
    for e in by(events, "step"):
        checks.rel(f"paused: step {e['step']} loss", e["loss"], want[e["step"]], SAME_TOLERANCE, names=("paused", "uninterrupted"))
    check_resume(checks, tuna, padded.d, padded.job, padded.events, ckpt, "after-pause")
    # Resumed past the step it is to pause at (the step-3 checkpoint, asked to pause at 2): it
    # pauses at once, with an eval there and no step trained.
    job["pause_at_step"] = 2
    with open(pjob, "w") as f:
        json.dump(job, f)
    late = run(torch_cmd(tuna, pjob, os.path.join(padded.d, "torch-late"), os.path.join(padded.d, "work-late"),
                         "--checkpoint-dir", os.path.join(padded.d, "ckpt-late"), "--resume-dir", ckpt),
               env=torch_env(), what="python3 -m tuna_torch (resumed at 3, pause_at_step 2)")
    checks.equal("resumed past the pause: the last event", late[-1], {"event": "paused", "step": 3})
    checks.equal("resumed past the pause: steps trained", by(late, "step"), [])
    checks.equal("resumed past the pause: evals", [e["step"] for e in by(late, "eval")], [3])


def test_packed_agrees_with_native(packed, checks):
    check_variant(checks, packed)
    mb = max(e["scored_tokens"] for e in by(packed.events, "step")) // 2  # a step is grad_accum (2) micro-batches
    checks.true(f"packed: the chunked loss ran in several chunks (~{mb} scored tokens a micro-batch, "
                f"{PACKED_CHUNK_ROWS} rows a chunk)", mb > 2 * PACKED_CHUNK_ROWS)


def test_full_logits_give_the_chunked_losses(tuna, packed, checks):
    """chunked_loss: false (full logits) against the chunked run, and against native."""
    full_events = torch_section_run(checks, tuna, packed.d, packed.job, "full-logits", dict(PACKED_TORCH, chunked_loss=False),
                                    packed.native)
    check_resolved(checks, "full logits", full_events, "eager", "eager", False)
    compare_torch_runs(checks, "chunked vs full logits", packed.events, full_events, SAME_TOLERANCE, ("chunked", "full logits"))


@pytest.mark.parametrize("experts", ["grouped_mm", "mxfp4"])
def test_experts_implementation_agrees_with_native(tuna, work, padded, checks, experts):
    """experts: grouped_mm (transformers' grouped-GEMM experts) or mxfp4 (MXFP4 kept, dequantized
    per layer, per-expert low-rank LoRA) on the CPU; refused where torch has no CPU grouped_mm."""
    if not GROUPED_MM:
        print(f"  torch {torch.__version__} has no CPU grouped_mm: an explicit {experts} must be refused")
        refused(checks, tuna, work[0], padded.job, f"{experts.replace('_', '-')}-refused", [f"{experts} is not available"],
                torch={"experts": experts})
        return
    label = experts.replace("_", "-")
    events = torch_section_run(checks, tuna, padded.d, padded.job, label, {"experts": experts}, padded.native)
    check_resolved(checks, experts, events, "eager", experts, True)
    compare_torch_runs(checks, f"{experts} vs eager experts", events, padded.events, LOSS_TOLERANCE, (experts, "eager"))
    if experts == "mxfp4":  # Tuna writes this adapter itself (PEFT never saw the expert LoRA): PEFT must load it.
        peft_load_check(checks, padded.model_dir, os.path.join(padded.d, "torch-mxfp4"), os.path.join(padded.d, "prepared"), 4,
                        by(events, "eval")[-1]["loss"])


@needs_grouped_mm
def test_experts_only_lora_agrees_with_native(tuna, work, checks):
    """LoRA on expert parameters only (every layer's gate_up_proj and down_proj, by PEFT's suffix
    rule), `experts: mxfp4`: the torch trainer runs without any PEFT wrapper; it must agree with
    the native trainer, and PEFT must load its adapter."""
    d = os.path.join(work[0], "experts-only")
    os.makedirs(d)
    spec = job_spec("experts-only", work[1], True, max_seq_len=256, eval_every_steps=2)
    spec["lora"]["target_modules"] = []
    spec["lora"]["target_parameters"] = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
    spec["torch"] = {"experts": "mxfp4", "loss_chunk_rows": PACKED_CHUNK_ROWS}
    job = write_job(tuna, os.path.join(d, "job.json"), spec)
    native = run([tuna, "train", job, "--out", os.path.join(d, "native")], what="tuna train")
    events = run(torch_cmd(tuna, job, os.path.join(d, "torch"), d), env=torch_env(), what="python3 -m tuna_torch")
    check_resolved(checks, "experts only", events, "eager", "mxfp4", True)
    compare_runs(checks, events, native)
    compare_adapters(checks, os.path.join(d, "torch"), os.path.join(d, "native"), ADAPTER_TOLERANCE, what="experts-only adapter")
    peft_load_check(checks, work[1], os.path.join(d, "torch"), os.path.join(d, "prepared"), 4, by(events, "eval")[-1]["loss"])


def test_flex_attention_padding_changes_no_loss(packed, checks):
    """Flex attention (CUDA only) runs on batches padded to a multiple of 128 positions
    (forward_pass.pad_for_flex). That padding must not change a loss sum: checked with eager
    attention, on the packed variant's training batches and validation batches, with its
    trained torch adapter."""
    from safetensors.torch import load_file
    from tuna_torch import adapters, data, forward_pass, loading, spec as job_file

    prep = data.load_prepared(os.path.join(packed.d, "prepared"))
    job = job_file.load(os.path.join(packed.d, "job.json"))
    cpu = torch.device("cpu")
    base, _ = loading.load_base_model(packed.model_dir, cpu, torch.float32)
    peft_model, params = adapters.build_lora_model(base, job.lora, prep.init_adapter, False)
    trained = load_file(os.path.join(packed.d, "torch", "adapter_model.safetensors"))
    peft_model.eval()
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(trained[name])
        batches = [data.build_batch(rows, prep.train, True) for rows in prep.step_micro_batches(0)]
        batches += data.validation_batches(prep.validation, 4)[:2]
        got, want, shapes = [], [], []
        for b in batches:
            padded = forward_pass.pad_for_flex(b)
            shapes.append(f"{b['input_ids'].shape[1]}->{padded['input_ids'].shape[1]}")
            s1, n1 = forward_pass.token_loss_sum(peft_model, b, cpu)
            s2, n2 = forward_pass.token_loss_sum(peft_model, padded, cpu, PACKED_CHUNK_ROWS)
            checks.equal(f"flex padding: scored tokens unchanged ({shapes[-1]} positions)", n2, n1)
            got.append(s2.item())
            want.append(s1.item())
    checks.rel(f"flex padding: loss sums, padded to 128s vs not ({', '.join(shapes)})", got, want, SAME_TOLERANCE,
               names=("padded", "as built"))


def test_flex_attention_is_refused_on_the_cpu(tuna, work, padded, checks):
    refused(checks, tuna, work[0], padded.job, "flex-refused", ["flex_attention needs a CUDA device"],
            torch={"attention": "flex_attention"})


@pytest.mark.parametrize("experts", ["eager", pytest.param("mxfp4", marks=needs_grouped_mm)])
def test_missing_expert_weights_are_refused(tuna, work, padded, checks, experts):
    """A checkpoint without one layer's expert weights must stop the trainer (exit 1, naming
    the weight) instead of training on random initialisation, whichever loader runs."""
    from safetensors.torch import load_file, save_file

    broken = os.path.join(work[0], f"model-missing-experts-{experts}")
    shutil.copytree(work[1], broken)
    path = os.path.join(broken, "model.safetensors")
    tensors = load_file(path)
    for k in ("model.layers.1.mlp.experts.down_proj_blocks", "model.layers.1.mlp.experts.down_proj_scales"):
        tensors.pop(k)
    save_file(tensors, path, metadata={"format": "pt"})
    refused(checks, tuna, work[0], padded.job, f"missing expert weights ({experts} experts)",
            ["model.layers.1.mlp.experts.down_proj", "missing"], model=broken, torch={"experts": experts})


@pytest.mark.full
def test_gradient_checkpointing_changes_nothing(tuna, padded, checks):
    d = padded.d
    gjob = job_variant(padded.job, os.path.join(d, "job-gc.json"), train_fields={"gradient_checkpointing": True})
    ge = run(torch_cmd(tuna, gjob, os.path.join(d, "torch-gc"), os.path.join(d, "work-gc")), env=torch_env(),
             what="python3 -m tuna_torch (gradient checkpointing)")
    checks.equal("gradient checkpointing: config says so", by(ge, "config")[0]["gradient_checkpointing"], True)
    checks.rel("gradient checkpointing: step losses", [e["loss"] for e in by(ge, "step")],
               [e["loss"] for e in by(padded.events, "step")], SAME_TOLERANCE, names=("with", "without"))
    compare_adapters(checks, os.path.join(d, "torch-gc"), os.path.join(d, "torch"), 1e-5, what="gradient checkpointing adapter")


@pytest.mark.full
@needs_grouped_mm
def test_mxfp4_experts_with_gradient_checkpointing_agree_with_native(tuna, packed, checks):
    mjob = job_variant(packed.job, os.path.join(packed.d, "job-mxfp4-gc.json"), train_fields={"gradient_checkpointing": True})
    torch_section_run(checks, tuna, packed.d, mjob, "mxfp4-gc", dict(PACKED_TORCH, experts="mxfp4"), packed.native)


@pytest.mark.full
def test_ddp_on_two_cpu_processes_agrees_with_native(tuna, packed, checks):
    """torchrun (gloo) with 2 processes, packed, against a native run of the same job."""
    p = packed.d
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tuna_torch"]
    de = run(torch_cmd(tuna, packed.job, os.path.join(p, "torch-ddp"), os.path.join(p, "work-ddp"), launcher=launcher),
             env=torch_env(), what="torchrun -m tuna_torch (2 processes)")
    checks.equal("DDP: world_size", by(de, "config")[0]["world_size"], 2)
    checks.equal("DDP: only rank 0 prints (one done event)", len(by(de, "done")), 1)
    native_packed = run([tuna, "train", packed.job, "--out", os.path.join(p, "native2")], what="tuna train (again, for the events)")
    compare_runs(checks, de, native_packed)
    compare_adapters(checks, os.path.join(p, "torch-ddp"), os.path.join(p, "native"), ADAPTER_TOLERANCE, what="DDP adapter")
    # The same global batch on one process and on two: the same losses but for summation order.
    checks.rel("DDP: step losses, 2 processes vs 1", [e["loss"] for e in by(de, "step")],
               [e["loss"] for e in by(packed.events, "step")], DDP_TOLERANCE, names=("2 processes", "1 process"))
    checks.rel("DDP: eval losses, 2 processes vs 1", [e["loss"] for e in by(de, "eval")],
               [e["loss"] for e in by(packed.events, "eval")], DDP_TOLERANCE, names=("2 processes", "1 process"))
    compare_adapters(checks, os.path.join(p, "torch-ddp"), os.path.join(p, "torch"), ADAPTER_TOLERANCE,
                     what="DDP adapter vs 1 process")


def fake_gpus(n):
    """CUDA_VISIBLE_DEVICES naming n GPUs that do not exist: the launcher starts n ranks under
    torchrun, and CUDA (if this box has any) sees no device, so each rank runs on the CPU."""
    return ",".join(f"GPU-00000000-0000-0000-0000-00000000000{i}" for i in range(n))


@pytest.mark.full
def test_sigterm_with_two_ranks_checkpoints_once_and_resumes_on_one(tuna, padded, checks):
    """Two ranks through the worker's launcher, as the worker runs a 2-GPU job: SIGTERM to the
    process group after the first step event (as the worker sends it). The ranks stop at one
    step, rank 0 writes one checkpoint, the launcher exits 143 (not torchrun's 1); the
    checkpoint, resumed by one process, finishes like the uninterrupted one-process run."""
    d = padded.d
    out, ckpt = os.path.join(d, "torch-sig2"), os.path.join(d, "ckpt-sig2")
    env = dict(torch_env(), CUDA_VISIBLE_DEVICES=fake_gpus(2), TUNA_STOP_GRACE_SECONDS="60")
    err_file = open(os.path.join(d, "sig2.stderr"), "w+")  # a file, not a pipe nobody reads while stdout is read
    proc = subprocess.Popen(torch_cmd(tuna, padded.job, out, os.path.join(d, "work-sig2"), "--checkpoint-dir", ckpt,
                                      launcher=[os.path.join(WORKER, "tuna-torch")]),
                            env=env, stdout=subprocess.PIPE, stderr=err_file, text=True, start_new_session=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"event": "step"' in line:
            os.killpg(proc.pid, signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=600)
    err_file.seek(0)
    err = err_file.read()
    se = events_of("".join(lines) + rest)
    checks.equal("2 ranks: world_size", by(se, "config")[0]["world_size"], 2)
    checks.true("2 ranks, SIGTERM: the launcher's exit code is 143", proc.returncode == 143, f"exit {proc.returncode}; {err[-600:]}")
    ck = by(se, "checkpoint")
    checks.true("2 ranks, SIGTERM: one checkpoint event per step (rank 0 alone writes), the last at a step boundary",
                bool(ck) and ck[-1]["step"] >= 1 and len({e["step"] for e in ck}) == len(ck), json.dumps(ck))
    checks.equal("2 ranks, SIGTERM: the checkpoint directory", sorted(os.listdir(ckpt)), ["checkpoint.pt"])
    checks.true("2 ranks, SIGTERM: no done event and no adapter", not by(se, "done") and not os.path.exists(out))
    check_resume(checks, tuna, d, padded.job, padded.events, ckpt, "sigterm-2-ranks-resume-on-1", tol=DDP_TOLERANCE,
                 adapter_tol=ADAPTER_TOLERANCE)


@pytest.mark.full
def test_sigterm_checkpoints_at_a_step_and_resumes(tuna, padded, checks):
    """Through the worker's launcher worker/tuna-torch (one process: no GPU visible), as the
    worker runs it: SIGTERM after the first step event."""
    d = padded.d
    sig_out, sig_ckpt = os.path.join(d, "torch-sig"), os.path.join(d, "ckpt-sig")
    proc = subprocess.Popen(torch_cmd(tuna, padded.job, sig_out, os.path.join(d, "work-sig"), "--checkpoint-dir", sig_ckpt,
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
    checks.equal("SIGTERM: exit code", proc.returncode, 143)
    ck = by(se, "checkpoint")
    checks.true("SIGTERM: one checkpoint event per step, the last at a step boundary",
                bool(ck) and ck[-1]["step"] >= 1 and len({e["step"] for e in ck}) == len(ck), json.dumps(ck))
    checks.true("SIGTERM: no done event and no adapter", not by(se, "done") and not os.path.exists(sig_out))
    check_resume(checks, tuna, d, padded.job, padded.events, sig_ckpt, "sigterm-resume")


@pytest.mark.full
def test_a_corrupt_checkpoint_is_reported_and_the_whole_run_made(tuna, padded, checks):
    d = padded.d
    bad = os.path.join(d, "ckpt-bad")
    os.makedirs(bad)
    with open(os.path.join(bad, "checkpoint.pt"), "wb") as f:
        f.write(b"not a checkpoint")
    be = run(torch_cmd(tuna, padded.job, os.path.join(d, "torch-bad"), os.path.join(d, "work-bad"), "--resume-dir", bad),
             env=torch_env(), what="python3 -m tuna_torch --resume-dir (corrupt)")
    rf = by(be, "resume_failed")
    checks.true("corrupt checkpoint: resume_failed event", bool(rf), json.dumps(rf[0])[:200] if rf else "")
    checks.equal("corrupt checkpoint: every step run", [e["step"] for e in by(be, "step")], [1, 2, 3, 4, 5])
    checks.rel("corrupt checkpoint: step losses", [e["loss"] for e in by(be, "step")],
               [e["loss"] for e in by(padded.events, "step")], SAME_TOLERANCE, names=("after resume_failed", "uninterrupted"))


STOPPING_STEPS = 60  # enough for the tiny model to learn to close its answers with <|im_end|>


@pytest.mark.parametrize("experts", ["eager", pytest.param("mxfp4", marks=needs_grouped_mm)])
def test_task_evaluation_agrees_with_native(tuna, work, checks, experts):
    """A job with an `eval` section: the torch trainer answers eval.json's prompts with
    transformers' generate (greedy, fp32, KV cache; the base model with the adapter disabled,
    then the trained adapter; with the plain model and with the fast path's quantized experts
    and Tuna's LoRA layers) and `tuna grade` grades them; the native trainer answers with its
    own engine. The same replies, graded the same, and the same exact_match in the baseline and
    the last eval event. Trained long enough that some adapter replies end at the im_start
    template's `<|im_end|>` (several ordinary tokens: the stop-text rule of eval.json)."""
    d = os.path.join(work[0], f"task-eval-{experts}")
    os.makedirs(d)
    spec = job_spec("task-eval", work[1], False, max_steps=STOPPING_STEPS, learning_rate=1e-2)
    spec["torch"] = {"experts": experts}
    spec["eval"] = {"generate": {"count": 6, "max_new_tokens": 24, "batch_size": 4},
                    "answer": {"extract": "regex", "compare": "math", "pattern": r"(?<== )-?\d+|^\d+(?= is)"}}
    job = write_job(tuna, os.path.join(d, "job.json"), spec)
    native = run([tuna, "train", job, "--out", os.path.join(d, "native")], what="tuna train")
    events = run(torch_cmd(tuna, job, os.path.join(d, "torch"), d), env=torch_env(), what="python3 -m tuna_torch")
    for model in ("base", "adapter"):
        mine = [e for e in by(events, "sample") if e["model"] == model]
        theirs = [e for e in by(native, "sample") if e["model"] == model]
        checks.true(f"{model}: 6 samples from each trainer ({len(mine)}, {len(theirs)})", len(mine) == len(theirs) == 6)
        keys = ("index", "step", "prompt", "reference", "final", "answer", "expected", "correct", "completion_tokens", "finish")
        for a, b in zip(mine, theirs):
            same = {k: a.get(k) == b.get(k) for k in keys}
            checks.true(f"{model} sample {a['index']}: the same reply, graded the same ({a.get('final')!r:.60})"
                        + ("" if all(same.values()) else f"; differs in {[k for k, v in same.items() if not v]}"),
                        all(same.values()))
    stopped = [e["index"] for e in by(events, "sample") if e["model"] == "adapter" and e["finish"] == "stop"]
    checks.true(f"adapter replies that ended at <|im_end|> before the token limit: {stopped} (at least one)", len(stopped) >= 1)
    for kind in ("baseline", "eval"):
        mine, theirs = by(events, kind)[-1], by(native, kind)[-1]
        checks.true(f"{kind}: exact_match {mine.get('exact_match')} and answered {mine.get('answered')} as the native "
                    f"trainer's ({theirs.get('exact_match')}, {theirs.get('answered')})",
                    "exact_match" in mine and mine.get("exact_match") == theirs.get("exact_match")
                    and mine.get("answered") == theirs.get("answered"))
