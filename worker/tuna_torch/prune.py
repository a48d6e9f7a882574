"""`task: prune` jobs on the torch trainer: the GPU counterpart of the native prune runner
(Sources/TunaTrain/PruneRunner.swift), step for step and event for event:

  tuna prepare (the native runner's own data: calibration / held-out / general rows and the
  prune settings) → load the model (`load_for_pruning`) → profile the router and the expert
  outputs on the calibration batches (or reuse the profile cached in $TUNA_CACHE_DIR) → the
  kept experts of every N (`ExpertProfile.keep`) → one pass over the held-out (and general)
  batches evaluating the unpruned model and every N by masking → expert_profile.safetensors,
  the pruned checkpoint (expert_pruner.py), prune_report.json → done.

Events (stdout, as the native runner's, same names and fields): `prune_profile` (tokens,
cached, seconds when computed), `baseline` (loss, general_loss), `eval` for the job's own N and
`prune_eval` for each `also_evaluate` N (keep, loss, tokens, kl, top1_agreement,
pruned_hit_share, routing_mass_kept, and general_loss / general_kl / general_top1_agreement with
a general set), `done` (the report without its per-layer list, seconds; on CUDA also
peak_gpu_mem_gb).

Removing an expert = setting its router logit to -inf before the top-k (here: its router bias
entry, so the logit is -inf whatever the input): transformers' GptOssTopKRouter takes the
softmax over the chosen k logits only, so the other experts' gate weights are exactly those of
the model with the expert cut out. One loaded model evaluates every N.

Runs in one process on one device; under torchrun (several GPUs) rank 0 runs the job and the
other ranks exit at once (the whole model fits one GPU: data parallelism would only split a
few minutes of forward passes).

    PYTHONPATH=worker python3 -m tuna_torch JOB.json --out DIR [--root R] [--tuna T]   # the worker's way
    PYTHONPATH=worker python3 -m tuna_torch.prune JOB.json --out DIR --prepared DIR     # data already prepared
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import torch

from . import compute, data, expert_pruner, forward_pass, loading, spec
from .data import IGNORE
from .events import log, peak_gpu_mem_gb
from .expert_profile import SCORES, ExpertProfile

NOTE = ("expert LoRA adapters of the base model are tied to its expert order and do not apply to this checkpoint; "
        "attention adapters do")
# Evaluation turns final hidden states into float64 log-probabilities (the native runner's
# Doubles) a chunk of rows at a time: a float64 [rows, vocab] tensor of at most this many bytes
# (gpt-oss's vocabulary of 201088: 667 rows per GiB), never the whole [tokens, vocab].
EVAL_CHUNK_BYTES = 1 << 30


# ---------------------------------------------------------------------------------------------
# The data: what `tuna prepare` writes for a prune job (Sources/TunaTrain/PrunePlan.swift)
# ---------------------------------------------------------------------------------------------

class PrunePrepared:
    """plan.json (the prune settings, defaults filled in by the native side) and the rows of
    calibration.jsonl / validation.jsonl / general.jsonl ({"tokens", "mask"} per line, as the
    LoRA plan's rows)."""

    def __init__(self, directory):
        self.directory = directory
        self.plan = spec.read_plan(directory, "prune")
        self.calibration = data._read_examples(os.path.join(directory, "calibration.jsonl"))
        self.held_out = data._read_examples(os.path.join(directory, "validation.jsonl"))
        self.general = data._read_examples(os.path.join(directory, "general.jsonl"))
        p = self.plan
        if p["score"] not in SCORES:
            raise ValueError(f"prune.score: {p['score']!r} is not frequency, reap or easy_ep")
        if not self.calibration or not self.held_out:
            raise ValueError(f"{directory}: pruning needs calibration and held-out rows")

    def batches(self, rows):
        """Batching.validation: file order, batch_size rows each, right-padded, rows of fewer
        than 2 tokens dropped."""
        return data.validation_batches(rows, int(self.plan["batch_size"]))


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

def load_for_pruning(model_dir, device, dtype, attention="eager", experts="eager"):
    """THE one place a prune job gets its model. Today the worker's LoRA loader,
    `model.load_base_model`: GptOssForCausalLM, every weight accounted for or a hard error, the
    MXFP4 experts dequantized (experts "eager" / "grouped_mm") or, for experts "mxfp4", kept
    quantized on the device (`mxfp4.QuantizedExperts`, through the same function).

    What the rest of this file needs from the model: `model.model.layers[i]` with
    `post_attention_layernorm` (its input is the residual stream entering the MoE block),
    `mlp` (input: the normed hidden states, output[0]: the block's output), `mlp.router`
    (output: logits, gate weights [N, k], expert indices [N, k]; a `bias` [E] parameter) and
    `mlp.experts(hidden [M, C], indices [M, k], weights [M, k])` (the weighted sum of the chosen
    experts' outputs); `model.model(...)` → last_hidden_state; `get_output_embeddings()`."""
    model, unexpected = loading.load_base_model(model_dir, device, dtype, attention=attention, experts=experts)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, unexpected


def _layers(model):
    return model.model.layers


def _prepare_batch(model, batch):
    # flex attention compiles per shape and refuses short sequences: pad like the LoRA path
    # (token 0, attention mask 0, labels -100: no profile or evaluation term changes)
    if model.config._attn_implementation == "flex_attention":
        batch = forward_pass.pad_for_flex(batch)
    return batch


def final_hidden(model, batch, device):
    """The decoder's final (normed) hidden states [B, T, C]: what lm_head turns into logits."""
    out = model.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                      use_cache=False)
    return out.last_hidden_state


class expert_masks:
    """Within the block, experts with keep[layer][e] False are removed: their router bias is
    -inf, so their logit is -inf for every token and the top-k never picks them (the native
    engine sets the logits to -inf the same way). The biases are restored on exit."""

    def __init__(self, model, keep):
        self.model, self.keep = model, keep

    def __enter__(self):
        self.saved = []
        if self.keep is None:
            return self
        with torch.no_grad():
            for layer, mask in zip(_layers(self.model), self.keep):
                bias = layer.mlp.router.bias
                self.saved.append((bias, bias.detach().clone()))
                bias.masked_fill_(~mask.to(bias.device), float("-inf"))
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for bias, original in self.saved:
                bias.copy_(original)
        return False


class _Hooks:
    """Forward hooks on every decoder layer, removed on exit."""

    def __init__(self):
        self.handles = []

    def add(self, module, fn):
        self.handles.append(module.register_forward_hook(fn))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return False


# ---------------------------------------------------------------------------------------------
# 1. The profile (ExpertProfile.add per layer and batch)
# ---------------------------------------------------------------------------------------------

def profile(model, batches, device):
    cfg = model.config
    prof = ExpertProfile(cfg.num_hidden_layers, cfg.num_local_experts, device=device)
    state = {}

    with torch.no_grad(), _Hooks() as hooks:
        for i, layer in enumerate(_layers(model)):
            def keep_residual(module, inputs, output, i=i):
                state[("h", i)] = inputs[0]  # the residual stream entering the MoE block

            def keep_routing(module, inputs, output, i=i):
                state[("route", i)] = (output[1], output[2])  # gate weights [N, k], experts [N, k]

            def on_moe(module, inputs, output, i=i):
                x = inputs[0]
                c = x.shape[-1]
                x = x.reshape(-1, c)
                weights, indices = state.pop(("route", i))
                h = state.pop(("h", i)).reshape(-1, c)
                n, k = indices.shape
                # Each chosen expert's output on its token before the gate weight: the block's
                # own experts module on every (token, slot) pair as a top-1 routing with weight
                # 1 (exact: y * 1.0, summed into zeros), so whatever implementation computes the
                # experts (eager, grouped_mm, quantized) computes these too. Row t * k + j is
                # expert indices[t, j] on token t.
                y = module.experts(x.repeat_interleave(k, dim=0), indices.reshape(-1, 1),
                                   torch.ones(n * k, 1, dtype=x.dtype, device=x.device))
                norms = torch.linalg.vector_norm(y.float(), dim=-1).view(n, k)
                prof.add(i, h, output[0].reshape(-1, c), indices, weights, norms, state["real"])

            hooks.add(layer.post_attention_layernorm, keep_residual)
            hooks.add(layer.mlp.router, keep_routing)
            hooks.add(layer.mlp, on_moe)
        for b in batches:
            b = _prepare_batch(model, b)
            state["real"] = b["attention_mask"].reshape(-1).to(device).bool()
            final_hidden(model, b, device)
    return prof.to_cpu()


# ---------------------------------------------------------------------------------------------
# 2. Evaluation (PruneRunner.scores)
# ---------------------------------------------------------------------------------------------

def scores(model, masks, batches, device):
    """For each entry of `masks` (the first None: the unpruned model; the others bool
    [layers, experts], True = kept): the mean next-token loss over the scored positions, and
    against the unpruned model the mean KL(base || pruned) and top-1 agreement there, and the
    share of the base model's expert choices (real tokens, every layer) that hit removed
    experts. Returns one dict per mask: loss, tokens, kl, top1, pruned_hits."""
    assert masks and masks[0] is None and all(m is not None for m in masks[1:])
    m_count = len(masks)
    loss, kl = [0.0] * m_count, [0.0] * m_count
    agree, hits = [0] * m_count, [0] * m_count
    tokens = choices = 0
    head = model.get_output_embeddings()
    chunk = max(1, EVAL_CHUNK_BYTES // (8 * model.config.vocab_size))
    routing = {}
    with torch.no_grad(), _Hooks() as hooks:
        for i, layer in enumerate(_layers(model)):
            def keep_experts(module, inputs, output, i=i):
                if routing.get("record"):
                    routing[i] = output[2]
            hooks.add(layer.mlp.router, keep_experts)
        for b in batches:
            b = _prepare_batch(model, b)
            t = b["input_ids"].shape[1]
            labels = b["labels"][:, 1:]
            pos = (labels != IGNORE).nonzero()  # (row, t): position t predicts labels[row, t + 1]
            rows = (pos[:, 0] * t + pos[:, 1]).to(device)
            targets = labels[pos[:, 0], pos[:, 1]].to(device)
            real = b["attention_mask"].reshape(-1).to(device).bool()
            routing.clear()
            routing["record"] = True
            base = final_hidden(model, b, device)
            routing["record"] = False
            k = routing[0].shape[1]
            layers = [routing[i] for i in range(len(_layers(model)))]
            choices += int(real.sum()) * k * len(layers)
            tokens += rows.numel()
            hidden = []  # per mask: the final hidden states at the scored positions [S, C]
            for m, mask in enumerate(masks):
                if mask is None:
                    hidden.append(base.reshape(-1, base.shape[-1]).index_select(0, rows))
                    continue
                with expert_masks(model, mask):
                    h = final_hidden(model, b, device)
                hidden.append(h.reshape(-1, h.shape[-1]).index_select(0, rows))
                # the base model's choices (real tokens, every layer) that this N removes
                removed = ~mask.to(device)
                hits[m] += int(sum((removed[l][idx] & real[:, None]).sum() for l, idx in enumerate(layers)))
            for s in range(0, rows.numel(), chunk):
                y = targets[s:s + chunk]
                p = torch.log_softmax(head(hidden[0][s:s + chunk]).double(), dim=-1)
                p_top = p.argmax(dim=-1)
                p_prob = torch.where(p > -80, p.exp(), torch.zeros_like(p))  # the native sum skips p <= -80
                for m in range(m_count):
                    q = p if masks[m] is None else torch.log_softmax(head(hidden[m][s:s + chunk]).double(), dim=-1)
                    loss[m] -= q.gather(1, y[:, None]).sum().item()
                    kl[m] += (p_prob * (p - q)).sum().item() if q is not p else 0.0
                    agree[m] += int((q.argmax(dim=-1) == p_top).sum())
    n = max(tokens, 1)
    return [{"loss": loss[m] / n if tokens > 0 else math.nan, "tokens": tokens, "kl": kl[m] / n, "top1": agree[m] / n,
             "pruned_hits": hits[m] / choices if choices > 0 else 0.0} for m in range(m_count)]


# ---------------------------------------------------------------------------------------------
# The profile cache ($TUNA_CACHE_DIR: another N of the same sweep on this worker reuses it)
# ---------------------------------------------------------------------------------------------

def cache_key(model_dir, prepared_dir, dtype, device, topts):
    """The model's files (names, sizes, mtimes), the calibration rows themselves, and how the
    profile was computed (dtype, device type, attention and experts implementations: a bf16
    GPU profile is not an fp32 CPU one, and in bf16 two implementations can order near-tied
    experts differently). Not the native runner's key (that hashes Swift's description of the
    data set), so the two never share an entry, but the file format is the same."""
    h = hashlib.sha256()
    h.update(f"torch|{dtype}|{device.type}|{topts.attention}|{topts.experts}|".encode())
    with open(os.path.join(prepared_dir, "calibration.jsonl"), "rb") as f:
        h.update(hashlib.sha256(f.read()).digest())
    for name in sorted(os.listdir(model_dir)):
        st = os.stat(os.path.join(model_dir, name))
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}|".encode())
    return h.hexdigest()[:16]


def load_or_profile(model, batches, device, cache_path, emit):
    if cache_path and os.path.exists(cache_path):
        try:
            p = ExpertProfile.load(cache_path)
        except Exception as e:
            log(f"ignoring the cached profile {cache_path}: {e}")
        else:
            cfg = model.config
            if (p.layers, p.experts) == (cfg.num_hidden_layers, cfg.num_local_experts):
                emit("prune_profile", tokens=p.tokens, cached=True)
                return p
    start = time.time()
    p = profile(model, batches, device)
    emit("prune_profile", tokens=p.tokens, cached=False, seconds=time.time() - start)
    if cache_path:
        tmp = os.path.join(os.path.dirname(cache_path), f".{os.path.basename(cache_path)}.{os.getpid()}")
        try:
            os.makedirs(os.path.dirname(cache_path), exist_ok=True)
            p.save(tmp)
            os.replace(tmp, cache_path)  # atomic: a concurrent job never reads half a file
        except Exception as e:  # OSError, safetensors' own errors (a full disk): the job goes on
            log(f"could not cache the profile at {cache_path}: {e}")
            try:
                os.remove(tmp)
            except OSError:
                pass
    return p


# ---------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------

class _Phases:
    """Wall time per phase, for the benchmark (`timings` of `run`); a CUDA sync before each
    reading so queued kernels count toward the phase that queued them."""

    def __init__(self, timings, device):
        self.timings, self.device = timings, device
        self.last = time.time()

    def done(self, name):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.time()
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


def run(job, args, emit, dist, stop, timings=None):
    """One prune job, `job` (a `spec.Job`; train.py hands `task: prune` jobs here). `args`: train.py's options
    (job, out, root, tuna, work_dir), plus `prepared` (a directory already holding what `tuna
    prepare` writes: then tuna is not run). `timings`: a dict to receive the seconds of each
    phase (prepare, load, profile, evaluate, write). `stop` is not consulted: a prune job has
    nothing to checkpoint, so SIGTERM ends it at once (train.StopFlag exits 143 outside a
    training loop), as it ends the native runner; the next attempt starts over (with the
    profile from the cache, if it got that far)."""
    started = time.time()
    if dist.world > 1 and not dist.is_main:
        return 0  # one process does the job (see the module docstring)
    if dist.world > 1:
        log(f"prune jobs run on one device; ranks 1..{dist.world - 1} have nothing to do")
    job_path = os.path.abspath(args.job)
    root = os.path.abspath(args.root or os.getcwd())
    work = os.path.abspath(args.work_dir or os.getcwd())
    out_dir = os.path.abspath(args.out)
    model_dir = loading.resolve(job.model, root)
    device = compute.pick_device(dist.local_rank)
    dtype = compute.compute_dtype(device)
    # How the forward passes compute: the job's `torch` section, resolved as for LoRA jobs
    # (auto on CUDA: flex attention, and MXFP4 experts kept quantized for an MXFP4 checkpoint).
    topts = compute.torch_options(job.torch, device, compute.checkpoint_is_mxfp4(model_dir))
    phases = _Phases(timings, device)

    # 1. The data, exactly as the native runner sees it.
    prepared_dir = getattr(args, "prepared", None)
    if prepared_dir:
        prepared_dir = os.path.abspath(prepared_dir)
    else:
        prepared_dir = os.path.join(work, "prepared")
        os.makedirs(work, exist_ok=True)
        data.run_prepare(data.find_tuna(getattr(args, "tuna", None)), job_path, prepared_dir, root)
    prep = PrunePrepared(prepared_dir)
    p = prep.plan
    keep_n, score = int(p["keep"]), p["score"]
    evaluations = [int(n) for n in p["evaluations"]]
    write_checkpoint = bool(p["write_checkpoint"])
    if write_checkpoint:  # before minutes of work, not after
        expert_pruner.refuse_base(os.path.join(out_dir, "model"), model_dir)
    phases.done("prepare")

    # 2. The model.
    model, unexpected = load_for_pruning(model_dir, device, dtype, attention=topts.attention, experts=topts.experts)
    if unexpected:
        log(f"checkpoint tensors transformers did not use: {unexpected[:8]}{' …' if len(unexpected) > 8 else ''}")
    cfg = model.config
    top_k, experts = cfg.num_experts_per_tok, cfg.num_local_experts
    for n in [keep_n] + [int(x) for x in p.get("also_evaluate") or []]:
        if n < top_k or n > experts:
            raise ValueError(f"job: prune.keep: {n} must be between the experts per token ({top_k}) and the experts per "
                             f"layer ({experts})")
    phases.done("load")

    # 3. The profile (cached per model, calibration rows and dtype) and every N's experts.
    cache_dir = os.environ.get("TUNA_CACHE_DIR")
    cache_path = (os.path.join(cache_dir, f"expert-profile-{cache_key(model_dir, prepared_dir, dtype, device, topts)}.safetensors")
                  if cache_dir else None)
    prof = load_or_profile(model, prep.batches(prep.calibration), device, cache_path, emit)
    keeps = [prof.keep(n, score, top_k, bool(p["keep_super_experts"]), float(p["super_expert_ratio"]))
             for n in evaluations]
    phases.done("profile")

    # 4. One pass over the evaluation data for the unpruned model (index 0) and every N.
    masks = [None] + [torch.tensor([[e in k for e in range(experts)] for k in keep]) for keep in keeps]
    domain = scores(model, masks, prep.batches(prep.held_out), device)
    general_batches = prep.batches(prep.general)
    general = scores(model, masks, general_batches, device) if general_batches else None
    emit("baseline", loss=domain[0]["loss"], general_loss=general[0]["loss"] if general else None)
    kept = None
    for i, n in enumerate(evaluations):
        d = domain[i + 1]
        share = prof.mass_share(keeps[i])
        mean_share = 0.0
        for v in share:  # in order, as the native reduce (Python >= 3.12's sum() compensates)
            mean_share += v
        event = dict(keep=n, loss=d["loss"], tokens=d["tokens"], kl=d["kl"], top1_agreement=d["top1"],
                     pruned_hit_share=d["pruned_hits"], routing_mass_kept=mean_share / max(len(share), 1))
        if general:
            g = general[i + 1]
            event.update(general_loss=g["loss"], general_kl=g["kl"], general_top1_agreement=g["top1"])
        emit("eval" if n == keep_n else "prune_eval", **event)
        if n == keep_n:
            kept = keeps[i]
    phases.done("evaluate")
    gpu = peak_gpu_mem_gb(device)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # 5. Files: the profile, the checkpoint, the report.
    os.makedirs(out_dir, exist_ok=True)
    prof.save(os.path.join(out_dir, "expert_profile.safetensors"))
    supers = prof.super_experts(float(p["super_expert_ratio"]))
    report = {
        "keep": keep_n, "score": score, "calibration_tokens": prof.tokens,
        "layers": [{"layer": layer, "kept": k, "routing_mass_share": share, "super_experts": supers[layer]}
                   for layer, (k, share) in enumerate(zip(kept, prof.mass_share(kept)))],
        "note": NOTE,
    }
    if write_checkpoint:
        before, after = expert_pruner.write(model_dir, kept, os.path.join(out_dir, "model"))
        report.update(parameters_before=before["parameters"], parameters_after=after["parameters"],
                      bytes_before=before["bytes"], bytes_after=after["bytes"])
    with open(os.path.join(out_dir, "prune_report.json"), "w") as f:
        f.write(json.dumps(report, sort_keys=True, separators=(",", ":"), allow_nan=False))
    phases.done("write")
    done = {k: v for k, v in report.items() if k != "layers"}
    done["seconds"] = time.time() - started
    if gpu is not None:
        done["peak_gpu_mem_gb"] = gpu
    emit("done", **done)
    return 0


# ---------------------------------------------------------------------------------------------
# python3 -m tuna_torch.prune: train.py's options plus --prepared
# ---------------------------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python3 -m tuna_torch.prune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("job", help="the job JSON (a `task: prune` job)")
    ap.add_argument("--out", required=True, help="prune_report.json, expert_profile.safetensors and model/ go here")
    ap.add_argument("--root", default=None, help="relative model paths are resolved against this directory")
    ap.add_argument("--tuna", default=None, help="the tuna CLI, for `tuna prepare` (default: $TUNA_BIN, else tuna on PATH)")
    ap.add_argument("--work-dir", default=None, help="where `tuna prepare` writes (WORK_DIR/prepared)")
    ap.add_argument("--prepared", default=None,
                    help="a directory holding what `tuna prepare` writes for this job (plan.json, calibration.jsonl, "
                         "validation.jsonl, general.jsonl): tuna is not run")
    return ap.parse_args(argv)


def main(argv=None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from .dist import Distributed
    from .events import Emitter

    args = parse_args(sys.argv[1:] if argv is None else argv)
    dist = Distributed()
    try:
        from . import spec
        return run(spec.load(args.job), args, Emitter(enabled=dist.is_main), dist, None)
    except BrokenPipeError:
        return 1
    except Exception as e:
        import traceback
        traceback.print_exc(file=sys.stderr)
        log(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
