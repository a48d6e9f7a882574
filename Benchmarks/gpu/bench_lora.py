"""Issue 5's GPU measurement: LoRA training throughput of the torch trainer on a gpt-oss-20b-shaped
model with random weights (see README.md beside this file).

One process does everything:
  1. writes a random checkpoint with gpt-oss-20b's real config.json (24 layers, 32 experts top-4,
     hidden 2880, ...) the way real checkpoints ship: experts as MXFP4 `*_blocks` / `*_scales` U8,
     everything else BF16 (~13 GB, generated on the GPU, written to local disk);
  2. loads it once through the worker's own loader (`tuna_torch.model.load_base_model`:
     Mxfp4Config(dequantize=True), every weight accounted for), wraps it with PEFT LoRA r=64 /
     alpha=128 on q,k,v,o (fp32 adapter on a bf16 base) and gradient checkpointing;
  3. checks each fast-path piece for equal loss against the plain recipe on the same batch
     (forward only, the same initial adapter, with non-zero B so LoRA is in the computation);
  4. times optimizer steps (forward + backward of the token-mean loss, clip_grad_norm_(1.0),
     AdamW) for each variant, switching the attention / experts implementation in place
     (`set_attn_implementation`, `set_experts_implementation`) and resetting the adapter and the
     optimizer before each, so every variant's first step sees the same weights and batch:
       a       eager attention + eager experts + full-vocab logits -> fp32 CE (the worker's
               `token_loss_sum` without chunks: the torch section `eager` / `eager` / `chunked_loss: false`)
       b       a with attn_implementation="flex_attention" (sinks applied by transformers through
               the returned LSE; CUDA only)
       c       flex attention + experts_implementation="grouped_mm" + chunked cross-entropy from
               the final hidden states (lm_head + CE per row chunk under torch.utils.checkpoint;
               no [tokens, vocab] logits tensor ever exists): the worker's `token_loss_sum` with
               chunk_rows, i.e. the torch trainer's defaults on CUDA
       c-8k    c at batch 1 x seq 8192
       c-eager c with eager attention (attribution: what flex adds on top of grouped_mm + chunked CE)
     Any failure (OOM, unsupported) is caught, reported, and the next variant runs.

    python3 Benchmarks/gpu/bench_lora.py                      # the real shape, on the GPU
    python3 Benchmarks/gpu/bench_lora.py --small --ckpt /tmp/x  # tiny config, CPU smoke test

Results: a table on stdout (last), and results.json / table.md under $OUT (or --out) after every
variant, so a run cut short still leaves what it measured.
"""
import argparse
import concurrent.futures as cf
import gc
import json
import math
import os
import shutil
import sys
import time
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "worker"))
from tuna_torch import model as modeling  # noqa: E402

T0 = time.time()

# openai/gpt-oss-20b config.json, as shipped (transformers 4.55 layout: rope_scaling + rope_theta).
GPT_OSS_20B = {
    "architectures": ["GptOssForCausalLM"],
    "attention_bias": True,
    "attention_dropout": 0.0,
    "eos_token_id": 200002,
    "experts_per_token": 4,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2880,
    "initial_context_length": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 2880,
    "layer_types": ["sliding_attention", "full_attention"] * 12,
    "max_position_embeddings": 131072,
    "model_type": "gpt_oss",
    "num_attention_heads": 64,
    "num_experts_per_tok": 4,
    "num_hidden_layers": 24,
    "num_key_value_heads": 8,
    "num_local_experts": 32,
    "output_router_logits": False,
    "pad_token_id": 199999,
    "quantization_config": {
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"],
        "quant_method": "mxfp4",
    },
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                     "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": False},
    "rope_theta": 150000,
    "router_aux_loss_coef": 0.9,
    "sliding_window": 128,
    "swiglu_limit": 7.0,
    "tie_word_embeddings": False,
    "transformers_version": "4.55.0.dev0",
    "use_cache": True,
    "vocab_size": 201088,
}

SMALL = dict(hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
             experts_per_token=2, vocab_size=1024, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
             eos_token_id=1000, pad_token_id=999)


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def gib(n):
    return n / 2**30


# ---------------------------------------------------------------------------------------------
# 1. The checkpoint
# ---------------------------------------------------------------------------------------------

def write_checkpoint(directory, cfg, device, seed=1234):
    """Random weights in the real checkpoint layout. Generated on `device` (fast on a GPU),
    written as shards of two layers (plus one for embeddings / lm_head / final norm) by a small
    thread pool while the next shard is being generated."""
    from safetensors.torch import save_file
    from transformers import GptOssConfig, GptOssForCausalLM

    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    config = GptOssConfig.from_pretrained(directory)
    with torch.device("meta"):
        meta = GptOssForCausalLM(config)
    shapes = {n: tuple(p.shape) for n, p in meta.state_dict().items()}
    del meta
    g = torch.Generator(device=device).manual_seed(seed)
    h, i, e = config.hidden_size, config.intermediate_size, config.num_local_experts

    def bf16(name, shape):
        if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
            t = 1.0 + 0.1 * torch.randn(shape, generator=g, device=device)
        elif name.endswith("embed_tokens.weight"):
            t = torch.randn(shape, generator=g, device=device)
        elif name.endswith("sinks"):
            t = torch.randn(shape, generator=g, device=device)
        elif name.endswith("bias"):
            t = 0.02 * torch.randn(shape, generator=g, device=device)
        else:  # [out, in] projections, router, lm_head: unit-variance outputs for unit inputs
            t = torch.randn(shape, generator=g, device=device) / math.sqrt(shape[-1])
        return t.to(torch.bfloat16)

    def mxfp4(out_f, in_f):
        # blocks [E, out, in/32, 16] (two e2m1 nibbles a byte), scales [E, out, in/32] (e8m0,
        # bias 127). Random nibbles have RMS ~2.9; scales 2^-8..2^-7 give weights of RMS
        # ~0.017 ~ 1/sqrt(2880), like a trained layer's, so activations stay O(1).
        gr = in_f // 32
        blocks = torch.randint(0, 256, (e, out_f, gr, 16), generator=g, device=device, dtype=torch.uint8)
        scales = torch.randint(119, 121, (e, out_f, gr), generator=g, device=device, dtype=torch.uint8)
        return blocks, scales

    groups = [[n for n in shapes if not n.startswith("model.layers.")]]
    layers = config.num_hidden_layers
    for start in range(0, layers, 2):
        groups.append([n for n in shapes if any(n.startswith(f"model.layers.{j}.") for j in range(start, min(start + 2, layers)))])
    nshards = len(groups)
    weight_map, total = {}, 0
    pool = cf.ThreadPoolExecutor(max_workers=3)
    futures = []
    for s, names in enumerate(groups):
        tensors = {}
        for n in names:
            if ".mlp.experts." in n and not n.endswith("_bias"):
                continue  # the bf16 expert weights: written as MXFP4 below
            tensors[n] = bf16(n, shapes[n])
        for n in names:
            if n.endswith(".mlp.experts.gate_up_proj"):
                prefix = n[: -len("gate_up_proj")]
                for proj, (out_f, in_f) in (("gate_up_proj", (2 * i, h)), ("down_proj", (h, i))):
                    b, sc = mxfp4(out_f, in_f)
                    tensors[prefix + proj + "_blocks"] = b
                    tensors[prefix + proj + "_scales"] = sc
        tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
        fname = f"model-{s:05d}-of-{nshards - 1:05d}.safetensors"
        for k, v in tensors.items():
            weight_map[k] = fname
            total += v.numel() * v.element_size()
        futures.append(pool.submit(save_file, tensors, os.path.join(directory, fname), {"format": "pt"}))
        if len(futures) > 3:  # bound host memory
            futures.pop(0).result()
    for fu in futures:
        fu.result()
    pool.shutdown()
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    return total


# ---------------------------------------------------------------------------------------------
# 2. Losses
# ---------------------------------------------------------------------------------------------

def full_loss(model, batch, device):
    """(a)/(b): the worker's own loss: full [B, T, vocab] logits, fp32 cross-entropy."""
    return modeling.token_loss_sum(model, batch, device)


def make_chunked_loss(chunk_rows):
    def chunked_loss(model, batch, device):
        """(c): the trainer's chunked loss (`torch.chunked_loss`): summed next-token CE from the
        final hidden states of the scored positions, `chunk_rows` rows at a time, each chunk's
        lm_head + CE recomputed in backward (torch.utils.checkpoint), so at most one chunk's
        logits exist at any time."""
        return modeling.token_loss_sum(model, batch, device, chunk_rows)
    return chunked_loss


# ---------------------------------------------------------------------------------------------
# 3. Variants
# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.device = modeling.pick_device()
        self.dtype = modeling.compute_dtype(self.device)
        self.cuda = self.device.type == "cuda"
        self.results = {"variants": {}, "checks": {}, "errors": [], "env": {}}
        self.out = args.out or os.environ.get("OUT")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def save(self, table=None):
        if not self.out:
            return
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.results, f, indent=2, default=str)
        if table:
            with open(os.path.join(self.out, "table.md"), "w") as f:
                f.write(table + "\n")

    def setup(self):
        a = self.args
        env = self.results["env"]
        import transformers
        import peft
        env.update(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                   device=torch.cuda.get_device_name(0) if self.cuda else "cpu",
                   date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        log(f"env {env}")
        cfg = json.loads(json.dumps(GPT_OSS_20B))
        if a.small:
            cfg.update(SMALL)
        t = time.time()
        nbytes = write_checkpoint(a.ckpt, cfg, self.device)
        self.results["checkpoint"] = {"dir": a.ckpt, "bytes": nbytes, "write_s": round(time.time() - t, 1)}
        log(f"checkpoint written: {gib(nbytes):.2f} GiB in {time.time() - t:.1f}s -> {a.ckpt}")
        t = time.time()
        base, unexpected = modeling.load_base_model(a.ckpt, self.device, self.dtype)
        self.results["checkpoint"]["load_s"] = round(time.time() - t, 1)
        self.results["checkpoint"]["unexpected_keys"] = unexpected[:8]
        log(f"loaded (worker's load_base_model, MXFP4 dequantized) in {time.time() - t:.1f}s; "
            f"unexpected keys: {len(unexpected)}; GPU {gib(torch.cuda.memory_allocated()) if self.cuda else 0:.1f} GiB")
        from peft import get_peft_model
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        lcfg = modeling.lora_config({"rank": a.rank, "alpha": a.alpha, "target_modules": modeling.ATTENTION_MODULES})
        self.model = get_peft_model(base, lcfg)
        self.model.train()
        self.params = modeling.adapter_parameters(self.model)
        self.plist = list(self.params.values())
        g = torch.Generator().manual_seed(7)
        with torch.no_grad():  # non-zero B: the adapter takes part in the checked losses
            for n, p in self.params.items():
                if "lora_B" in n:
                    p.copy_((0.01 * torch.randn(p.shape, generator=g)).to(p.device, p.dtype))
        self.init_state = [p.detach().clone() for p in self.plist]
        self.results["trainable_parameters"] = sum(p.numel() for p in self.plist)
        self.vocab = cfg["vocab_size"]
        self.base = base
        if self.cuda:
            import torch._dynamo as dynamo
            dynamo.config.cache_size_limit = 64
            if hasattr(dynamo.config, "recompile_limit"):
                dynamo.config.recompile_limit = 64
            if hasattr(dynamo.config, "accumulated_recompile_limit"):
                dynamo.config.accumulated_recompile_limit = 512
        self.save()

    def batches(self, batch, seq, n, seed=99):
        g = torch.Generator().manual_seed(seed + seq)
        out = []
        for _ in range(n):
            ids = torch.randint(0, self.vocab, (batch, seq), generator=g)
            out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
        return out

    def configure(self, attn, experts):
        self.base.set_attn_implementation(attn)
        self.base.set_experts_implementation(experts)
        got = (self.base.config._attn_implementation, self.base.config._experts_implementation)
        if got != (attn, experts):
            raise RuntimeError(f"asked for attention {attn} / experts {experts}, the model reports {got}")

    def reset_adapter(self):
        with torch.no_grad():
            for p, s in zip(self.plist, self.init_state):
                p.copy_(s)
                p.grad = None

    def free(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def check_losses(self, batch):
        """Forward-only loss of each piece alone and all together, on one batch, vs the plain recipe."""
        chunked = make_chunked_loss(self.args.chunk_rows)
        pieces = [("a: eager attn + eager experts + full CE", "eager", "eager", full_loss),
                  ("flex attention only", "flex_attention", "eager", full_loss),
                  ("grouped_mm experts only", "eager", "grouped_mm", full_loss),
                  ("chunked CE only", "eager", "eager", chunked),
                  ("c: flex + grouped_mm + chunked CE", "flex_attention", "grouped_mm", chunked)]
        ref = None
        for name, attn, experts, fn in pieces:
            if time.time() - T0 > self.args.deadline:
                self.results["checks"][name] = {"error": "skipped: out of time"}
                continue
            self.reset_adapter()
            try:
                self.configure(attn, experts)
                t = time.time()
                with torch.no_grad():
                    s, n = fn(self.model, batch, self.device)
                    loss = s.item() / n
                self.sync()
                rec = {"loss": loss, "seconds": round(time.time() - t, 2)}
                if ref is None:
                    ref = loss
                rec["rel_diff_vs_a"] = abs(loss - ref) / abs(ref)
                log(f"check  {name:42s} loss {loss:.6f}  rel diff {rec['rel_diff_vs_a']:.2e}  ({rec['seconds']}s)")
            except Exception as e:
                rec = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
                self.results["errors"].append(f"check {name}: {rec['error']}")
                log(f"check  {name}: FAILED {rec['error']}")
                traceback.print_exc()
            self.results["checks"][name] = rec
            self.free()
            self.save()

    def run_variant(self, key, attn, experts, loss_fn, batch, seq, ref_loss=None):
        a = self.args
        rec = {"attn": attn, "experts": experts, "loss": loss_fn.__name__, "batch": batch, "seq": seq}
        self.results["variants"][key] = rec
        if time.time() - T0 > a.deadline - 45:
            rec["error"] = "skipped: out of time"
            log(f"{key}: skipped (past the {a.deadline}s deadline)")
            self.save()
            return rec
        self.reset_adapter()
        data = self.batches(batch, seq, a.warmup + a.steps)
        try:
            self.configure(attn, experts)
            opt = torch.optim.AdamW(self.plist, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            times, losses = [], []
            budget_start = time.time()
            for i, b in enumerate(data):
                self.sync()
                t = time.perf_counter()
                s, n = loss_fn(self.model, b, self.device)
                (s / n).backward()
                gn = torch.nn.utils.clip_grad_norm_(self.plist, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                loss = s.item() / n
                self.sync()
                dt = time.perf_counter() - t
                losses.append(loss)
                if i >= a.warmup:
                    times.append(dt)
                log(f"{key}: step {i} {'(warmup) ' if i < a.warmup else ''}{dt:.3f}s loss {loss:.5f} grad_norm {gn.item():.4g}")
                if not math.isfinite(loss):
                    raise RuntimeError(f"non-finite loss at step {i}")
                if times and (time.time() - budget_start > a.variant_budget or time.time() - T0 > a.deadline):
                    log(f"{key}: stopping after {len(times)} timed steps (time budget)")
                    break
            if not times:
                raise RuntimeError("no timed step completed")
            tokens = batch * seq
            rec.update(first_loss=losses[0], losses=losses, step_s=times, timed_steps=len(times),
                       tokens_per_s=tokens * len(times) / sum(times),
                       median_step_s=sorted(times)[len(times) // 2],
                       peak_gib=gib(torch.cuda.max_memory_allocated()) if self.cuda else None)
            if ref_loss is not None:
                rec["first_loss_rel_diff_vs_a"] = abs(losses[0] - ref_loss) / abs(ref_loss)
            log(f"{key}: {rec['tokens_per_s']:.0f} tokens/s, peak {rec['peak_gib'] or 0:.1f} GiB")
        except Exception as e:
            rec["error"] = f"{type(e).__name__}: {str(e)[:400]}"
            self.results["errors"].append(f"{key}: {rec['error']}")
            log(f"{key}: FAILED {rec['error']}")
            traceback.print_exc()
            if self.cuda:
                rec["peak_gib_at_failure"] = gib(torch.cuda.max_memory_allocated())
        finally:
            opt = None
            for p in self.plist:
                p.grad = None
            self.free()
        self.save(self.table())
        return rec

    def table(self):
        v = self.results["variants"]
        a, b = self.args.batch, self.args.seq
        rows = ["| variant | attention | experts | loss | batch x seq | tokens/s | peak GiB | first-step loss | rel diff vs (a) |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for k, r in v.items():
            if "error" in r:
                rows.append(f"| {k} | {r['attn']} | {r['experts']} | {r['loss']} | {r['batch']}x{r['seq']} | "
                            f"failed: {r['error'][:120]} | {r.get('peak_gib_at_failure', 0) or 0:.1f} | | |")
                continue
            rd = r.get("first_loss_rel_diff_vs_a")
            rows.append(f"| {k} | {r['attn']} | {r['experts']} | {r['loss']} | {r['batch']}x{r['seq']} | "
                        f"{r['tokens_per_s']:,.0f} | {r['peak_gib'] or 0:.1f} | {r['first_loss']:.6f} | "
                        f"{'%.1e' % rd if rd is not None else ('reference' if k == 'a' else 'n/a (other batch)')} |")

        def tps(k):
            r = v.get(k) or {}
            return r.get("tokens_per_s")
        ratios = []
        for num, den in (("b", "a"), ("c", "a"), ("c", "b")):
            x, y = tps(num), tps(den)
            ratios.append(f"({num})/({den}) = {x / y:.2f}x" if x and y else f"({num})/({den}) = n/a")
        lines = rows + ["", "ratios (tokens/s, same run): " + ", ".join(ratios)]
        if self.results["checks"]:
            lines += ["", "| loss check (forward only, batch 0, %dx%d) | loss | rel diff vs (a) |" % (a, b), "| --- | --- | --- |"]
            for k, r in self.results["checks"].items():
                if "error" in r:
                    lines.append(f"| {k} | failed: {r['error'][:120]} | |")
                else:
                    lines.append(f"| {k} | {r['loss']:.6f} | {r['rel_diff_vs_a']:.1e} |")
        return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="/tmp/tuna-gptoss-20b-random", help="where the random checkpoint is written")
    ap.add_argument("--small", action="store_true", help="tiny config (CPU smoke test)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--long-seq", type=int, default=8192, help="(c) at batch 1 x this; 0: skip")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (fewer if its time budget runs out)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=128)
    ap.add_argument("--chunk-rows", type=int, default=4096, help="rows per lm_head+CE chunk in (c)")
    ap.add_argument("--variant-budget", type=float, default=60, help="seconds of timed steps per variant at most")
    ap.add_argument("--deadline", type=float, default=520, help="start nothing new after this many seconds")
    ap.add_argument("--out", default=None, help="results.json / table.md here (default: $OUT)")
    ap.add_argument("--keep-ckpt", action="store_true")
    args = ap.parse_args()
    if args.small:
        args.seq, args.long_seq = min(args.seq, 64), min(args.long_seq, 128)
        args.chunk_rows = min(args.chunk_rows, 50)

    bench = Bench(args)
    bench.setup()
    batch0 = bench.batches(args.batch, args.seq, 1)[0]
    chunked = make_chunked_loss(args.chunk_rows)
    chunked.__name__ = f"chunked CE ({args.chunk_rows} rows)"
    full_loss.__name__ = "full logits + CE"

    # Timed variants first (the headline numbers), then the per-piece loss checks.
    ra = bench.run_variant("a", "eager", "eager", full_loss, args.batch, args.seq)
    ref = ra.get("first_loss")
    bench.run_variant("b", "flex_attention", "eager", full_loss, args.batch, args.seq, ref)
    bench.run_variant("c", "flex_attention", "grouped_mm", chunked, args.batch, args.seq, ref)
    bench.check_losses(batch0)
    if args.long_seq:
        bench.run_variant(f"c-{args.long_seq}", "flex_attention", "grouped_mm", chunked, 1, args.long_seq)
    bench.run_variant("c-eager-attn", "eager", "grouped_mm", chunked, args.batch, args.seq, ref)

    table = bench.table()
    bench.results["total_s"] = round(time.time() - T0, 1)
    bench.save(table)
    if not args.keep_ckpt:
        shutil.rmtree(args.ckpt, ignore_errors=True)
    print("\n" + json.dumps(bench.results["env"]))
    print(f"checkpoint: {json.dumps(bench.results.get('checkpoint'))}; trainable LoRA parameters "
          f"{bench.results['trainable_parameters']:,}; total {bench.results['total_s']}s")
    if bench.results["errors"]:
        print("errors:\n  " + "\n  ".join(bench.results["errors"]))
    print("\n" + table, flush=True)


if __name__ == "__main__":
    main()
