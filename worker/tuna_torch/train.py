"""The training loop: docs/trainer-contract.md for `trainer: torch` jobs, mirroring the
native trainer (Sources/TunaTrain/NativeTrainer.swift) step for step:

  tuna prepare → load model + initial adapter → (resume) → config → baseline eval →
  per optimizer step: this rank's rows of the plan's micro-batches, backward of
  sum(token losses) / (scored tokens of the whole step), the gradients summed over ranks
  during the last backward (dist.GradientReducer), clip, the plan's lr,
  AdamW → eval every eval_every_steps and at each epoch's end → checkpoints → adapter → done.
"""
import argparse
import math
import os
import signal
import sys
import time

import torch

from . import adapters, checkpoint, compute, data, forward_pass, generation, loading, spec
from .dist import Distributed, GradientReducer, in_model_order
from .events import Emitter, log, peak_gpu_mem_gb, peak_rss_mb

EXIT_INTERRUPTED = 143  # 128 + SIGTERM, as the contract and the native trainer use


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python3 -m tuna_torch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job", help="the job JSON (what the worker writes; TUNA_JOB)")
    ap.add_argument("--out", required=True, help="where the adapter goes (PEFT layout)")
    ap.add_argument("--root", default=None,
                    help="relative model and data paths are resolved against this directory (default: the current one)")
    ap.add_argument("--tuna", default=None,
                    help="the tuna CLI, for `tuna prepare` and, for a job with eval, `tuna grade` (default: $TUNA_BIN, else tuna on PATH)")
    ap.add_argument("--work-dir", default=None,
                    help="where `tuna prepare` writes (WORK_DIR/prepared; default: the current directory, "
                         "which for the worker is the attempt directory)")
    ap.add_argument("--checkpoint-dir", default=None, help="default: $TUNA_CHECKPOINT_DIR (none: no checkpoints)")
    ap.add_argument("--resume-dir", default=None, help="default: $TUNA_RESUME_DIR")
    ap.add_argument("--prepared", default=None,
                    help="a directory `tuna prepare` already wrote for this job (then tuna prepare is not run; "
                         "a job with eval still runs tuna grade, on the job's data and tokenizer)")
    return ap.parse_args(argv)


class StopFlag:
    """SIGTERM during training: finish the step, checkpoint, exit 143. Before the loop has
    started there is nothing to save, so it exits at once."""

    def __init__(self):
        self.requested = False
        self.in_loop = False
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True
        if not self.in_loop:
            raise SystemExit(EXIT_INTERRUPTED)


def dropout_seed(seed, step, rank, micro):
    # Distinct per (step, rank, micro-batch) and a function of them only, so a resumed run
    # draws the same LoRA dropout masks as an uninterrupted one (nothing to store).
    return (seed * 0x2545F4914F6CDD1D + step * 131 + rank * 7919 + micro) % (2**63)


def evaluate(model, batches, dist, device, chunk_rows, adapter=True):
    """Token-weighted mean loss over the validation batches (this rank's share, then summed)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        ctx = adapters.adapter_disabled(model) if not adapter else _Null()
        with ctx:
            for b in batches[dist.rank::dist.world]:
                s, n = forward_pass.token_loss_sum(model, b, device, chunk_rows)
                if n > 0:
                    total += s.item()
                    count += n
    total, count = dist.sum(total, count)
    if was_training:
        model.train()
    return (total / count if count > 0 else math.nan), int(count)


def task_eval(model, prep, job, step, base, device, dist, emit, grade, decode):
    """The job's `eval` at `step`: rank 0 answers eval.json's prompts (the base model with the
    adapter disabled) and has `tuna grade` grade them, printing each `sample` event; returns the
    summary fields (exact_match, answered, graded) for the baseline or eval event. The other
    ranks wait on the slow group (generation can outlast NCCL's collective timeout)."""
    fields = {}
    if dist.is_main:
        with adapters.adapter_disabled(model) if base else _Null():
            replies = generation.answer(model, prep.eval["prompts"], job.eval.generate, prep.eval, device, decode)
        samples, fields = grade(replies, step, base)
        for event in samples:
            emit(event.pop("event"), **event)
    dist.wait_for_main()
    return fields


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def run(args, emit, dist, stop):
    from . import prune  # `task: prune` jobs (expert pruning) are prune.py's, not this loop's
    job = spec.load(args.job)
    if job.task == "prune":
        return prune.run(job, args, emit, dist, stop)
    started = time.time()
    job_path = os.path.abspath(args.job)
    root = os.path.abspath(args.root or os.getcwd())
    work = os.path.abspath(args.work_dir or os.getcwd())
    out_dir = os.path.abspath(args.out)
    ckpt_dir = args.checkpoint_dir or os.environ.get("TUNA_CHECKPOINT_DIR") or None
    resume_dir = args.resume_dir or os.environ.get("TUNA_RESUME_DIR") or None

    t, lora = job.train, job.lora
    seed, batch_size, max_grad_norm = t.seed, t.batch_size, t.max_grad_norm
    eval_every, ckpt_every = t.eval_every_steps, t.checkpoint_every_steps

    device = compute.pick_device(dist.local_rank)
    dist.init(device)
    dtype = compute.compute_dtype(device)
    # How it computes (attention / experts implementation, chunked loss): the job's `torch`
    # section. Resolved before anything runs, so an explicit choice this device cannot run
    # fails at once.
    model_dir = loading.resolve(job.model, root)
    topts = compute.torch_options(job.torch, device, compute.checkpoint_is_mxfp4(model_dir))
    chunk_rows = topts.chunk_rows

    # 1. The data, exactly as the native trainer sees it (rank 0 prepares, the others wait),
    # or `--prepared`: what `tuna prepare` wrote for this job elsewhere (a GPU box without tuna,
    # unless the job has an eval section: `tuna grade` grades its answers).
    prepared_dir = os.path.abspath(args.prepared) if getattr(args, "prepared", None) else os.path.join(work, "prepared")
    if dist.is_main and not getattr(args, "prepared", None):
        os.makedirs(work, exist_ok=True)
        data.run_prepare(data.find_tuna(args.tuna), job_path, prepared_dir, root)
    dist.wait_for_main()
    prep = data.load_prepared(prepared_dir)
    packing = bool(prep.plan["packing"])
    grade = None
    if job.eval is not None:
        if prep.eval is None:
            raise ValueError(f"{prepared_dir}: no eval.json for a job with an eval section (an older tuna prepare?)")
        tuna = data.find_tuna(args.tuna)  # `tuna grade` grades the replies with the job's own rules
        decode = generation.text_decoder(loading.resolve(job.model, root), prep.eval["stop_texts"])

        def grade(replies, at, base):
            return data.run_grade(tuna, job_path, root, replies, at, base, work)

        def graded(at, base):
            return task_eval(model, prep, job, at, base, device, dist, emit, grade, decode)
    validation = data.validation_batches(prep.validation, batch_size)

    # 2. Model and the initial adapter.
    torch.manual_seed(seed)
    base, unexpected = loading.load_base_model(model_dir, device, dtype,
                                                attention=topts.attention, experts=topts.experts)
    if unexpected and dist.is_main:
        log(f"checkpoint tensors transformers did not use: {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
    model, params = adapters.build_lora_model(base, lora, prep.init_adapter, t.gradient_checkpointing)
    plist = list(params.values())
    reducer = GradientReducer(in_model_order(model, params), dist)
    optimizer = torch.optim.AdamW(plist, lr=t.learning_rate, betas=(t.adam_beta1, t.adam_beta2),
                                  eps=t.adam_eps, weight_decay=t.weight_decay)

    step = 0
    if resume_dir:
        try:
            restored = checkpoint.load(resume_dir, params, optimizer)
        except Exception as e:  # a checkpoint that does not fit: start over, keep the file
            emit("resume_failed", reason=str(e))
            restored = None
        if restored is not None:
            step = restored
            emit("resumed", step=step)

    total_steps, per_epoch = prep.total_steps, prep.steps_per_epoch
    emit("config", trainable_parameters=sum(p.numel() for p in plist), train_examples=len(prep.train),
         validation_examples=len(prep.validation), micro_batches_per_epoch=prep.micro_batches_per_epoch(),
         steps=total_steps, steps_per_epoch=per_epoch, warmup_steps=prep.plan["warmup_steps"], packing=packing,
         device=str(device.type), dtype=str(dtype).replace("torch.", ""), world_size=dist.world,
         gradient_checkpointing=t.gradient_checkpointing, **topts.event_fields())

    baseline = None
    if step == 0 and validation:
        baseline, _ = evaluate(model, validation, dist, device, chunk_rows, adapter=False)
        task = graded(0, True) if grade and job.eval.baseline else {}
        emit("baseline", loss=baseline, step=0, **task)

    saved_at = [None]  # a new attempt's checkpoint directory starts empty, even after a resume

    def save_checkpoint(at):
        if saved_at[0] == at:
            return  # this step's checkpoint is already there (every-N steps, then SIGTERM)
        if ckpt_dir and dist.is_main:
            checkpoint.save(ckpt_dir, at, params, optimizer)
            emit("checkpoint", step=at)
        saved_at[0] = at

    last_train = last_val = None
    if job.pause_at_step is not None and job.pause_at_step <= step < total_steps:
        # Resumed at or past where this attempt is to pause: pause here, with the rung's eval.
        if validation:
            v, n = evaluate(model, validation, dist, device, chunk_rows)
            task = graded(step, False) if grade and job.eval.every_eval else {}
            emit("eval", step=step, epoch=step / per_epoch, loss=v, tokens=n, **task)
        if not ckpt_dir:
            raise ValueError("pause_at_step needs a checkpoint directory ($TUNA_CHECKPOINT_DIR)")
        save_checkpoint(step)
        dist.barrier()
        emit("paused", step=step)
        return 0
    model.train()
    stop.in_loop = True
    while step < total_steps:
        # 3. One optimizer step. All ranks agree on stopping (the signal reaches each rank at a
        # slightly different moment; a rank that left alone would hang the others' collectives).
        if dist.any(stop.requested):
            save_checkpoint(step)
            dist.barrier()  # rank 0's file is complete before any rank exits
            return EXIT_INTERRUPTED
        step_start = time.time()
        mine = data.rank_micro_batches(prep.step_micro_batches(step), dist.rank, dist.world, batch_size)
        batches = [data.build_batch(rows, prep.train, packing) for rows in mine]
        scored_each = [data.scored_tokens(b) for b in batches]
        local_scored = sum(scored_each)
        local_tokens = sum(data.real_tokens(rows, prep.train) for rows in mine)
        scored, tokens = dist.sum(local_scored, local_tokens)
        scored, tokens = int(scored), int(tokens)

        optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        # Micro-batches with nothing to learn from are skipped (their gradient is zero).
        learn = [(i, b) for i, b in enumerate(batches) if scored_each[i] > 0] if scored > 0 else []
        for n, (i, b) in enumerate(learn):
            if n == len(learn) - 1:
                reducer.arm()  # the last backward: its gradients go out to the other ranks as they are ready
            torch.manual_seed(dropout_seed(seed, step, dist.rank, i))
            s, _ = forward_pass.token_loss_sum(model, b, device, chunk_rows)
            # Scale by the whole step's scored tokens: gradient accumulation (and the
            # ranks' sum) is then exactly one big batch's token-weighted mean.
            (s / scored).backward()
            loss_sum += s.detach().double()
        reducer.finish()
        loss_sum = dist.sum(loss_sum.item())
        loss = loss_sum / scored if scored > 0 else math.nan
        # clip_grad_norm_ returns the norm before clipping; max_grad_norm 0 disables clipping
        # (an infinite bound: the norm is still computed and reported).
        norm = torch.nn.utils.clip_grad_norm_(plist, max_grad_norm if max_grad_norm > 0 else math.inf).item()
        lr = prep.learning_rate(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if scored > 0:
            optimizer.step()
        step += 1
        last_train = loss
        seconds = time.time() - step_start
        fields = dict(step=step, epoch=step / per_epoch, loss=loss, lr=lr, grad_norm=norm, tokens=tokens,
                      scored_tokens=scored, tokens_per_s=tokens / max(seconds, 1e-9), peak_rss_mb=peak_rss_mb())
        gpu = peak_gpu_mem_gb(device)
        if gpu is not None:
            fields["peak_gpu_mem_gb"] = dist.max(gpu)
        emit("step", **fields)

        end_of_epoch = step % per_epoch == 0 or step == total_steps
        pausing = step == job.pause_at_step and step < total_steps
        if validation and (end_of_epoch or pausing or (eval_every > 0 and step % eval_every == 0)):
            v, n = evaluate(model, validation, dist, device, chunk_rows)
            last_val = v
            task = graded(step, False) if grade and (step == total_steps or job.eval.every_eval) else {}
            emit("eval", step=step, epoch=step / per_epoch, loss=v, tokens=n, **task)
        if pausing:
            # The checkpoint is the next attempt's start: it resumes the same curve.
            if not ckpt_dir:
                raise ValueError("pause_at_step needs a checkpoint directory ($TUNA_CHECKPOINT_DIR)")
            save_checkpoint(step)
            dist.barrier()
            emit("paused", step=step)
            return 0
        if ckpt_every > 0 and step % ckpt_every == 0 and step < total_steps:
            save_checkpoint(step)
    stop.in_loop = False

    # 4. The adapter, in PEFT layout (what `PeftModel.from_pretrained` loads).
    if dist.is_main:
        adapters.save_adapter(model, params, prep.init_adapter, out_dir)
    dist.barrier()
    done = dict(steps=step, seconds=time.time() - started, final_train_loss=last_train, final_val_loss=last_val,
                baseline_val_loss=baseline, peak_rss_mb=peak_rss_mb())
    gpu = peak_gpu_mem_gb(device)
    if gpu is not None:
        done["peak_gpu_mem_gb"] = dist.max(gpu)
    emit("done", **done)
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    dist = Distributed()
    emit = Emitter(enabled=dist.is_main)
    stop = StopFlag()
    try:
        code = run(args, emit, dist, stop)
    except SystemExit:
        raise
    except BrokenPipeError:
        # The worker is gone (contract §4); nobody reads us any more.
        code = 1
    except Exception as e:
        # Bad job, data or model: one line on stderr, exit 1 (as `tuna train`). The traceback
        # helps with the unexpected ones.
        import traceback
        traceback.print_exc(file=sys.stderr)
        log(f"error: {e}")
        code = 1
    finally:
        dist.close()
    return code
