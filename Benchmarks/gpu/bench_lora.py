"""Issue 5's GPU measurement: LoRA training throughput and peak memory of the torch trainer's model
code on a gpt-oss-20b-shaped model with random weights (README.md beside this file says more).

One process does everything:
  1. writes a random checkpoint with gpt-oss-20b's real config.json (24 layers, 32 experts top-4,
     hidden 2880, ...) the way real checkpoints ship: experts as MXFP4 `*_blocks` / `*_scales` U8,
     everything else BF16 (~13 GB, generated on the GPU, written to local disk);
  2. loads it through the worker's own loader (`tuna_torch.model.load_base_model`) twice, one
     model at a time: `mxfp4` (Tuna's fast path: experts kept MXFP4, Tuna's LoRA layers) and
     `dequantized` (the plain recipe: Mxfp4Config(dequantize=True), PEFT), with gradient
     checkpointing as the worker enables it;
  3. for two LoRA recipes (`qkvo`: r=64/alpha=128 on q,k,v,o; `experts`: r=8 all linear + the
     expert parameters of layers 7, 15, 23), from the same initial adapter on every model, times
     optimizer steps (forward + backward of the token-mean loss, clip_grad_norm_(1.0), AdamW):
       a, a-experts   dequantized, eager attention + eager experts + full-vocab logits, fp32 CE
       b              a with flex attention (sinks through the returned LSE; CUDA only)
       c, c-experts   dequantized, flex attention + grouped_mm experts + chunked CE
       d, d-experts   mxfp4: flex attention + quantized experts + chunked CE (the trainer's
                      defaults on CUDA); d-BxS at other shapes; d-1xN: the --probe lengths
     and compares each variant's first-step loss with its reference's (same weights and batch);
  4. optionally (--profile) one d step under torch.profiler.
     Any failure (OOM, unsupported) is caught, reported, and the next variant runs.

    python3 Benchmarks/gpu/bench_lora.py --profile --probe 16384,32768,65536,131072   # on the GPU
    python3 Benchmarks/gpu/bench_lora.py --small --ckpt /tmp/x                          # CPU smoke test

Results: a table on stdout (last), and results.json / table.md under $OUT (or --out) after every
variant, so a run cut short still leaves what it measured.
"""
import argparse
import concurrent.futures as cf
import dataclasses
import gc
import json
import math
import os
import shutil
import sys
import time
import traceback
import zlib

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "worker"))
from tuna_torch import adapters, compute, forward_pass, loading, spec  # noqa: E402
sys.path.insert(0, HERE)
import anchors  # noqa: E402  (its module level imports nothing heavy; the tools load in subprocesses)
import flops  # noqa: E402

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


def write_bf16_checkpoint(model, mxfp4_dir, directory):
    """The weights of `model` (the MXFP4 checkpoint `mxfp4_dir`, loaded dequantized) as a plain
    bf16 checkpoint (no quantization_config) under transformers' own parameter names, plus a
    tokenizer (the o200k subset of the tests: the real special-token ids): what Unsloth's loader
    takes. The same weights as the MXFP4 checkpoint, dequantized exactly
    (Tests/Python/test_gpu_bench.py)."""
    from safetensors.torch import save_file
    if os.path.exists(os.path.join(directory, "model.safetensors.index.json")):
        return
    os.makedirs(directory, exist_ok=True)
    cfg = json.load(open(os.path.join(mxfp4_dir, "config.json")))
    cfg.pop("quantization_config", None)
    cfg["torch_dtype"] = "bfloat16"
    weight_map, shard, size, n, total = {}, {}, 0, 0, 0

    def flush():
        nonlocal shard, size, n
        if shard:
            name = f"model-{n:05d}.safetensors"
            save_file(shard, os.path.join(directory, name), {"format": "pt"})
            weight_map.update({k: name for k in shard})
            shard, size, n = {}, 0, n + 1
    for k, v in model.state_dict().items():
        t = v.detach().to("cpu", torch.bfloat16 if v.is_floating_point() else v.dtype).contiguous()
        shard[k] = t
        size += t.numel() * t.element_size()
        total += t.numel() * t.element_size()
        if size > 4 * 2**30:
            flush()
    flush()
    with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    shutil.copy(os.path.join(HERE, "..", "..", "Tests", "TunaTextTests", "Fixtures", "subset_tokenizer.json"),
                os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|return|>", "pad_token": "<|endoftext|>",
                   "model_max_length": cfg["max_position_embeddings"]}, f)
    log(f"bf16 checkpoint for the anchors: {gib(total):.1f} GiB in {directory}")



# ---------------------------------------------------------------------------------------------
# 2. Losses and adapters
# ---------------------------------------------------------------------------------------------

def full_loss(model, batch, device):
    """The worker's own loss with full [B, T, vocab] logits and one fp32 cross-entropy."""
    return forward_pass.token_loss_sum(model, batch, device)


def make_chunked_loss(chunk_rows):
    def chunked_loss(model, batch, device):
        """The trainer's chunked loss (`torch.chunked_loss`): summed next-token CE from the final
        hidden states of the scored positions, `chunk_rows` rows at a time, each chunk's lm_head +
        CE recomputed in backward, so at most one chunk's logits exist at any time."""
        return forward_pass.token_loss_sum(model, batch, device, chunk_rows)
    chunked_loss.__name__ = f"chunked CE ({chunk_rows} rows)"
    return chunked_loss


full_loss.__name__ = "full logits + CE"


def recipes(args):
    """The two LoRA recipes of the issue: r=64/alpha=128 on q,k,v,o (the NuminaMath recipe) and
    r=8/alpha=16 on all linear layers plus the expert parameters of a few layers (the MXFP4 /
    harmony recipe; OpenAI's gpt-oss-20b fine-tuning cookbook targets layers 7, 15, 23)."""
    layers = [int(x) for x in args.expert_layers.split(",") if x]
    lora = spec.golden("lora-torch").lora  # the published defaults; each recipe sets what it varies
    return {
        "qkvo": dataclasses.replace(lora, rank=args.rank, alpha=args.alpha, target_modules=list(adapters.ATTENTION_MODULES)),
        "experts": dataclasses.replace(lora, rank=8, alpha=16.0, target_modules=["all-linear"],
                                       target_parameters=[f"{l}.mlp.experts.{p}" for l in layers for p in ("gate_up_proj", "down_proj")]),
    }


def initial_value(name, shape):
    """The same initial adapter for every model a recipe is put on, tensor by tensor from its
    name (not from the order parameters were created in): A ~ U(-1/sqrt(in), 1/sqrt(in)) as
    PEFT draws it, and B non-zero (0.01 N(0, 1)) so the adapter takes part in every checked loss."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if "lora_A" in name:
        return (torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(shape[-1])
    return 0.01 * torch.randn(shape, generator=g)


# ---------------------------------------------------------------------------------------------
# 3. Variants
# ---------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.device = compute.pick_device()
        self.dtype = compute.compute_dtype(self.device)
        self.cuda = self.device.type == "cuda"
        self.results = {"variants": {}, "loads": {}, "errors": [], "env": {}, "profile": None}
        self.out = args.out or os.environ.get("OUT")
        self.base = self.model = None
        self.first_losses = {}  # variant -> first-step loss, for the equal-loss column

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

    def write_checkpoint(self):
        a = self.args
        import transformers
        import peft
        self.results["env"].update(torch=torch.__version__, transformers=transformers.__version__, peft=peft.__version__,
                                   device=torch.cuda.get_device_name(0) if self.cuda else "cpu",
                                   date=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        log(f"env {self.results['env']}")
        cfg = json.loads(json.dumps(GPT_OSS_20B))
        if a.small:
            cfg.update(SMALL)
        self.vocab = cfg["vocab_size"]
        self.cfg = cfg
        t = time.time()
        existing = os.path.join(a.ckpt, "config.json")
        if a.reuse_ckpt and os.path.exists(existing) and json.load(open(existing)) == cfg:
            # the same random checkpoint another script wrote (Benchmarks/gpu/fleet_e2e.sh)
            nbytes = sum(os.path.getsize(os.path.join(a.ckpt, f)) for f in os.listdir(a.ckpt) if f.endswith(".safetensors"))
            self.results["checkpoint"] = {"dir": a.ckpt, "bytes": nbytes, "reused": True}
            log(f"checkpoint reused: {gib(nbytes):.2f} GiB in {a.ckpt}")
        else:
            nbytes = write_checkpoint(a.ckpt, cfg, self.device)
            self.results["checkpoint"] = {"dir": a.ckpt, "bytes": nbytes, "write_s": round(time.time() - t, 1)}
            log(f"checkpoint written: {gib(nbytes):.2f} GiB in {time.time() - t:.1f}s -> {a.ckpt}")
        if self.cuda:
            import torch._dynamo as dynamo
            dynamo.config.cache_size_limit = 64
            if hasattr(dynamo.config, "recompile_limit"):
                dynamo.config.recompile_limit = 64
            if hasattr(dynamo.config, "accumulated_recompile_limit"):
                dynamo.config.accumulated_recompile_limit = 512

    def load(self, kind):
        """kind "dequantized": the plain recipe's model (Mxfp4Config(dequantize=True), bf16 experts);
        "mxfp4": Tuna's (experts stay MXFP4 on the device). Both through the worker's loader."""
        self.drop()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        t = time.time()
        experts = "mxfp4" if kind == "mxfp4" else "eager"
        attention = "flex_attention" if (kind == "mxfp4" and self.cuda) else "eager"
        self.base, unexpected = loading.load_base_model(self.args.ckpt, self.device, self.dtype, attention, experts)
        adapters.enable_gradient_checkpointing(self.base)
        self.kind = kind
        rec = {"seconds": round(time.time() - t, 1), "unexpected_keys": unexpected[:8],
               "resident_gib": gib(torch.cuda.memory_allocated()) if self.cuda else None,
               "load_peak_gib": gib(torch.cuda.max_memory_allocated()) if self.cuda else None}
        self.results["loads"][kind] = rec
        log(f"loaded ({kind}) in {rec['seconds']}s; resident {rec['resident_gib'] or 0:.1f} GiB, "
            f"peak while loading {rec['load_peak_gib'] or 0:.1f} GiB")

    def wrap(self, recipe):
        if self.model is not None:
            self.base = adapters.detach_lora(self.model)
        lora = recipes(self.args)[recipe]
        self.model, self.params = adapters.attach_lora(self.base, adapters.lora_config(lora))
        self.model.train()
        self.plist = list(self.params.values())
        self.init_state = {n: initial_value(n, tuple(p.shape)) for n, p in self.params.items()}
        self.recipe = recipe
        self.results.setdefault("trainable_parameters", {})[recipe] = sum(p.numel() for p in self.plist)

    def drop(self):
        self.model = self.base = self.params = self.plist = None
        self.free()

    def batches(self, batch, seq, n, seed=99):
        return anchors.random_batches(self.vocab, batch, seq, n, seed)

    def chats(self, seq, count):
        return anchors.chat_examples(self.vocab, seq, count)

    def packing_check(self, key, loss_fn, batch, seq):
        """The same chats' summed loss packed (block-diagonal attention) and padded (one chat a
        row): equal if no chat attends to another's tokens. No training; recorded in `results`."""
        from tuna_torch.data import padded_batch
        chats = self.chats(seq, 4 * batch)
        packed = anchors.chat_batches(chats, batch, seq, True, 1)[0][0]
        used = int((packed["labels"] != -100).sum())
        with torch.no_grad():
            sp, n_p = loss_fn(self.model, packed, self.device)
            sd, n_d, k = 0.0, 0, 0
            while n_d < n_p and k < len(chats):  # the padded rows of the chats the packed batch holds
                s, n = loss_fn(self.model, padded_batch(chats[k:k + 1]), self.device)
                sd, n_d, k = sd + s.item(), n_d + n, k + 1
        rec = {"packed_loss_sum": sp.item(), "padded_loss_sum": sd, "scored": [n_p, n_d, used],
               "rel_diff": abs(sp.item() - sd) / abs(sd)}
        self.results.setdefault("packing_check", {})[key] = rec
        log(f"{key}: the same {k} chats packed vs one a row: loss sums {sp.item():.6f} vs {sd:.6f} "
            f"(rel diff {rec['rel_diff']:.1e}), scored {n_p} vs {n_d}")

    def transformers_defaults(self):
        """The attention and experts implementations transformers picks when a user names
        neither (5.17: eager attention for gpt-oss, grouped_mm experts), on this device."""
        from transformers import GptOssConfig, GptOssForCausalLM
        config = GptOssConfig.from_pretrained(self.args.ckpt)
        config.quantization_config = None
        with torch.device("meta"):
            m = GptOssForCausalLM._from_config(config)
        got = (m.config._attn_implementation, m.config._experts_implementation)
        self.results["transformers_defaults"] = {"attention": got[0], "experts": got[1]}
        return got

    def run_anchor(self, tool, batch, seq, recipe="qkvo", chats=False):
        """One anchor (anchors.py) in its own process; its JSON becomes a row."""
        import subprocess
        a = self.args
        key = f"{tool}-chats" if chats else tool
        rec = {"model": tool, "recipe": recipe, "attn": "(the tool's)", "experts": "(the tool's)", "loss": "(the tool's)",
               "batch": batch, "seq": seq, "ref": None, "anchor": True, "chats": "padded" if chats else None}
        self.results["variants"][key] = rec
        left = a.deadline - (time.time() - T0)
        if left < 120:
            rec["error"] = "skipped: out of time"
            self.save(self.table())
            return rec
        ckpt = a.bf16_ckpt if tool.startswith("unsloth") else a.ckpt
        cmd = [a.anchor_python, os.path.join(HERE, "anchors.py"), "--tool", tool, "--ckpt", ckpt, "--batch", str(batch),
               "--seq", str(seq), "--rank", str(a.rank), "--alpha", str(a.alpha), "--warmup", str(a.warmup),
               "--steps", str(a.steps), "--budget", str(a.variant_budget), "--probe", "" if chats else a.anchor_probe] + \
            (["--chats"] if chats else [])
        log(f"{key}: {' '.join(cmd)}")
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=left)
            for line in p.stdout.splitlines()[:-1]:
                log(f"{key}: {line}")
            got = json.loads(p.stdout.splitlines()[-1]) if p.stdout.strip() else {"error": f"exit {p.returncode}: {p.stderr[-400:]}"}
        except subprocess.TimeoutExpired:
            got = {"error": "timed out (deadline)"}
        rec.update({k: v for k, v in got.items() if k != "chats"})  # rec's "chats" says how: "padded"
        if "error" in got:
            self.results["errors"].append(f"{key}: {got['error']}")
            log(f"{key}: FAILED {got['error']}")
        else:
            # the anchors' recipe is q,k,v,o only: every adapter parameter is passed by every token
            rec["mfu"] = flops.mfu(got["tokens_per_s"], self.cfg, seq, {"adapter": got["trainable_parameters"]},
                                   got.get("chat_lengths"))
            log(f"{key}: {got['tokens_per_s']:.0f} tokens/s, peak {got['peak_gib']:.1f} GiB")
        self.save(self.table())
        return rec

    def configure(self, attn, experts):
        self.base.set_attn_implementation(attn)
        if experts != "mxfp4":
            self.base.set_experts_implementation(experts)
        got = (self.base.config._attn_implementation,
               "mxfp4" if self.kind == "mxfp4" else self.base.config._experts_implementation)
        if got != (attn, experts):
            raise RuntimeError(f"asked for attention {attn} / experts {experts}, the model reports {got}")

    def reset_adapter(self):
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(self.init_state[n].to(p.device, p.dtype))
                p.grad = None

    def free(self):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def step(self, opt, b, loss_fn):
        s, n = loss_fn(self.model, b, self.device)
        (s / n).backward()
        gn = torch.nn.utils.clip_grad_norm_(self.plist, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return s.item() / n, gn.item()

    def run_variant(self, key, attn, experts, loss_fn, batch, seq, ref=None, steps=None, warmup=None, chats=None):
        """Warm-up steps, then timed optimizer steps (forward, backward of the token-mean loss,
        clip_grad_norm_(1.0), AdamW), from the recipe's initial adapter. `ref`: the variant whose
        first-step loss (same batch, same adapter) this one's is compared with. `chats`: "packed"
        or "padded": the synthetic chats (anchors.chat_batches) instead of full random rows,
        tokens/s counting real tokens only."""
        a = self.args
        steps = a.steps if steps is None else steps
        warmup = a.warmup if warmup is None else warmup
        rec = {"model": self.kind, "recipe": self.recipe, "attn": attn, "experts": experts, "loss": loss_fn.__name__,
               "batch": batch, "seq": seq, "ref": ref, "chats": chats}
        self.results["variants"][key] = rec
        if time.time() - T0 > a.deadline - 30:
            rec["error"] = "skipped: out of time"
            log(f"{key}: skipped (past the {a.deadline}s deadline)")
            self.save(self.table())
            return rec
        self.reset_adapter()
        if chats:
            data = anchors.chat_batches(self.chats(seq, 64 * batch * (warmup + steps)), batch, seq, chats == "packed", warmup + steps)
        else:
            data = [(b, batch * seq, None) for b in self.batches(batch, seq, warmup + steps)]
        opt = None
        try:
            self.configure(attn, experts)
            opt = torch.optim.AdamW(self.plist, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            times, losses, counted, lengths = [], [], 0, []
            budget_start = None
            for i, (b, tokens, chat_lengths) in enumerate(data):
                if i == warmup:
                    budget_start = time.time()  # compiles happen in warm-up steps; not counted
                self.sync()
                t = time.perf_counter()
                loss, gn = self.step(opt, b, loss_fn)
                self.sync()
                dt = time.perf_counter() - t
                losses.append(loss)
                if i >= warmup:
                    times.append(dt)
                    counted += tokens
                    lengths += chat_lengths or []
                log(f"{key}: step {i} {'(warmup) ' if i < warmup else ''}{dt:.3f}s loss {loss:.5f} grad_norm {gn:.4g}")
                if not math.isfinite(loss):
                    raise RuntimeError(f"non-finite loss at step {i}")
                if times and (time.time() - budget_start > a.variant_budget or time.time() - T0 > a.deadline):
                    log(f"{key}: stopping after {len(times)} timed steps (time budget)")
                    break
            if not times:
                raise RuntimeError("no timed step completed")
            tokens_per_s = counted / sum(times)
            rec.update(first_loss=losses[0], losses=losses, step_s=times, timed_steps=len(times), tokens_per_s=tokens_per_s,
                       peak_gib=gib(torch.cuda.max_memory_allocated()) if self.cuda else None,
                       mfu=flops.mfu(tokens_per_s, self.cfg, seq, {n: p.numel() for n, p in self.params.items()}, lengths)
                       if self.cuda else None)
            self.first_losses[key] = losses[0]
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

    def profile(self, key, attn, experts, loss_fn, batch, seq):
        """One optimizer step under torch.profiler: the kernels that take the time, by total
        device time (after the variant's own warm-up, so no compile is in it)."""
        if not self.cuda or time.time() - T0 > self.args.deadline - 60:
            return
        from torch.profiler import ProfilerActivity, profile
        self.reset_adapter()
        self.configure(attn, experts)
        opt = torch.optim.AdamW(self.plist, lr=1e-4)
        b = self.batches(batch, seq, 1)[0]
        self.step(opt, b, loss_fn)
        self.sync()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            self.step(opt, b, loss_fn)
            self.sync()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90)
        self.results["profile"] = {"variant": key, "table": table}
        log(f"profile of one {key} step:\n{table}")
        opt = None
        for p in self.plist:
            p.grad = None
        self.free()
        self.save()

    def probe_longest(self, attn, experts, loss_fn, seqs):
        """The longest sequence that trains at batch 1: one warm-up and one timed step per length,
        shortest first, until one fails (out of memory)."""
        out = self.results.setdefault("longest", [])
        for seq in seqs:
            rec = self.run_variant(f"d-1x{seq}", attn, experts, loss_fn, 1, seq, steps=1, warmup=1)
            out.append({"seq": seq, "ok": "error" not in rec, "tokens_per_s": rec.get("tokens_per_s"),
                        "peak_gib": rec.get("peak_gib") or rec.get("peak_gib_at_failure"), "error": rec.get("error")})
            if "error" in rec:
                break

    def table(self):
        v = self.results["variants"]
        rows = ["| variant | model | recipe | attention | experts | loss | batch x seq | tokens/s | MFU | peak GiB | first-step loss | rel diff vs |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for k, r in v.items():
            shape = f"{r['batch']}x{r['seq']}" + (f" {r['chats']} chats" if r.get("chats") else "")
            head = f"| {k} | {r['model']} | {r['recipe']} | {r['attn']} | {r['experts']} | {r['loss']} | {shape} |"
            if "error" in r:
                rows.append(f"{head} failed: {r['error'][:120]} | | {r.get('peak_gib_at_failure', 0) or 0:.1f} | | |")
                continue
            ref = r.get("ref")
            rd = ""
            if ref and ref in self.first_losses:
                rd = f"{abs(r['first_loss'] - self.first_losses[ref]) / abs(self.first_losses[ref]):.1e} ({ref})"
            mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else ""
            rows.append(f"{head} {r['tokens_per_s']:,.0f} | {mfu} | {r['peak_gib'] or 0:.1f} | {r['first_loss']:.6f} | {rd} |")

        def tps(k):
            return (v.get(k) or {}).get("tokens_per_s")
        ratios = []
        for num, den in (("b", "a"), ("c", "a"), ("d", "a"), ("d", "b"), ("d", "c"), ("d", "a-eager-experts"),
                         ("d-experts", "a-experts"), ("d-experts", "c-experts")):
            x, y = tps(num), tps(den)
            if x and y:
                ratios.append(f"({num})/({den}) = {x / y:.2f}x")
        if tps("d-chats") and tps("c-chats"):
            ratios.append(f"(d-chats)/(c-chats) = {tps('d-chats') / tps('c-chats'):.2f}x (real tokens)")
        done = [k for k, r in v.items() if r.get("anchor") and r.get("tokens_per_s")]
        for k in done:
            ours = "d-chats" if k.endswith("-chats") else "d"
            ratios.append(f"({ours})/({k}) = {tps(ours) / tps(k):.2f}x at {v[ours]['peak_gib'] / v[k]['peak_gib']:.2f}x its memory"
                          if tps(ours) and v[ours].get("peak_gib") and v[k].get("peak_gib") else "")
        rows_done = [k for k in done if not k.endswith("-chats")]
        if rows_done:
            ratios.append(f"fastest anchor (random rows): {max(rows_done, key=tps)}")
        checks = [f"{k}: the same chats packed vs one a row, loss sums rel diff {c['rel_diff']:.1e}"
                  for k, c in self.results.get("packing_check", {}).items()]
        return "\n".join(rows + ["", "ratios (tokens/s, same run): " + ", ".join(r for r in ratios if r)]
                         + (["packing: " + "; ".join(checks)] if checks else []))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default="/tmp/tuna-gptoss-20b-random", help="where the random checkpoint is written")
    ap.add_argument("--small", action="store_true", help="tiny config (CPU smoke test)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--long-seq", type=int, default=8192, help="(d) also at batch x this; 0: skip")
    ap.add_argument("--probe", default="", help="comma-separated lengths for the longest-sequence probe at batch 1 "
                    "(e.g. 16384,32768,65536,131072); empty: skip")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (fewer if its time budget runs out)")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=128)
    ap.add_argument("--expert-layers", default="7,15,23", help="layers whose experts the `experts` recipe targets")
    ap.add_argument("--chunk-rows", type=int, default=spec.golden("lora-torch").torch.loss_chunk_rows,
                    help="rows per lm_head+CE chunk (the trainer's default)")
    ap.add_argument("--plain", default="a,b,c,a-experts,c-experts",
                    help="which transformers + PEFT variants to run (a, b, c, a-eager-experts, a-experts, c-experts)")
    ap.add_argument("--anchors", default="", help="comma-separated anchors (anchors.py: unsloth-bf16, unsloth-4bit, liger), "
                    "each in its own process after the other rows, recipe qkvo at --batch x --seq")
    ap.add_argument("--no-chats", dest="chats", action="store_false",
                    help="skip the rows of synthetic chats of varied lengths (d-chats packed as the trainer packs; "
                         "c-chats and each anchor's padded as transformers' collator does)")
    ap.add_argument("--anchor-probe", default="", help="the --probe lengths for each anchor too")
    ap.add_argument("--anchor-python", default=sys.executable, help="the interpreter with the anchors' packages")
    ap.add_argument("--bf16-ckpt", default="/tmp/tuna-gptoss-20b-random-bf16",
                    help="where the bf16 copy of the checkpoint (Unsloth's input) is written")
    ap.add_argument("--profile", action="store_true", help="profile one (d) step")
    ap.add_argument("--variant-budget", type=float, default=30, help="seconds of timed steps per variant at most")
    ap.add_argument("--deadline", type=float, default=540, help="start nothing new after this many seconds")
    ap.add_argument("--out", default=None, help="results.json / table.md here (default: $OUT)")
    ap.add_argument("--keep-ckpt", action="store_true")
    ap.add_argument("--reuse-ckpt", action="store_true", help="use the checkpoint at --ckpt if its config.json is this one's")
    args = ap.parse_args()
    if args.small:
        args.seq, args.long_seq = min(args.seq, 64), min(args.long_seq, 128)
        args.chunk_rows = min(args.chunk_rows, 50)
        args.expert_layers = "1"

    bench = Bench(args)
    bench.write_checkpoint()
    chunked = make_chunked_loss(args.chunk_rows)
    cuda = bench.cuda
    flex = "flex_attention" if cuda else "eager"
    fast_experts = "mxfp4" if compute.grouped_mm_available(bench.device) else None
    plain = set(args.plain.split(","))

    # Tuna's fast path: experts kept MXFP4 on the device, per-expert low-rank LoRA.
    if fast_experts:
        bench.load("mxfp4")
        bench.wrap("qkvo")
        bench.run_variant("d", flex, "mxfp4", chunked, args.batch, args.seq, ref="a")
        if args.chats:
            bench.packing_check("d", chunked, args.batch, args.seq)
            bench.run_variant("d-chats", flex, "mxfp4", chunked, args.batch, args.seq, chats="packed")
        if args.long_seq:
            bench.run_variant(f"d-{args.batch}x{args.long_seq}", flex, "mxfp4", chunked, args.batch, args.long_seq)
        if args.profile:
            bench.profile("d", flex, "mxfp4", chunked, args.batch, args.seq)
        if args.probe:
            bench.probe_longest(flex, "mxfp4", chunked, [int(x) for x in args.probe.split(",")])
        bench.wrap("experts")
        bench.run_variant("d-experts", flex, "mxfp4", chunked, args.batch, args.seq, ref="a-experts")
        bench.drop()

    # transformers + PEFT on the dequantized model: as a user gets it (a: transformers' defaults,
    # no implementation named), then transformers' own faster pieces.
    default_attn, default_experts = bench.transformers_defaults()
    grouped = "grouped_mm" if compute.grouped_mm_available(bench.device) else "eager"
    anchor_list = [x for x in args.anchors.split(",") if x]
    bench.load("dequantized")
    bench.wrap("qkvo")
    if "a" in plain:
        bench.run_variant("a", default_attn, default_experts, full_loss, args.batch, args.seq)
    if "a-eager-experts" in plain:
        bench.run_variant("a-eager-experts", "eager", "eager", full_loss, args.batch, args.seq, ref="a")
    if "b" in plain and cuda:
        bench.run_variant("b", "flex_attention", default_experts, full_loss, args.batch, args.seq, ref="a")
    if "c" in plain:
        bench.run_variant("c", flex, grouped, chunked, args.batch, args.seq, ref="a")
    if "c" in plain and args.chats:
        bench.run_variant("c-chats", flex, grouped, chunked, args.batch, args.seq, chats="padded")
    if plain & {"a-experts", "c-experts"}:
        bench.wrap("experts")
        if "a-experts" in plain:
            bench.run_variant("a-experts", default_attn, default_experts, full_loss, args.batch, args.seq)
        if "c-experts" in plain:
            bench.run_variant("c-experts", flex, grouped, chunked, args.batch, args.seq, ref="a-experts")
    if any(t.startswith("unsloth") for t in anchor_list):
        if bench.model is not None:
            bench.base, bench.model = adapters.detach_lora(bench.model), None
        write_bf16_checkpoint(bench.base, args.ckpt, args.bf16_ckpt)
    bench.drop()

    # The anchors, each in its own process on a free GPU.
    for tool in anchor_list:
        bench.run_anchor(tool, args.batch, args.seq)
        if args.chats:
            bench.run_anchor(tool, args.batch, args.seq, chats=True)

    table = bench.table()
    bench.results["total_s"] = round(time.time() - T0, 1)
    bench.save(table)
    if not args.keep_ckpt:
        shutil.rmtree(args.ckpt, ignore_errors=True)
        shutil.rmtree(args.bf16_ckpt, ignore_errors=True)
    print("\n" + json.dumps(bench.results["env"]))
    print(f"checkpoint: {json.dumps(bench.results.get('checkpoint'))}; loads: {json.dumps(bench.results['loads'])}; "
          f"trainable LoRA parameters {bench.results.get('trainable_parameters')}; total {bench.results['total_s']}s")
    if bench.results.get("longest"):
        print("longest sequence probe (batch 1): " + json.dumps(bench.results["longest"]))
    if bench.results["errors"]:
        print("errors:\n  " + "\n  ".join(bench.results["errors"]))
    print("\n" + table, flush=True)


if __name__ == "__main__":
    main()
