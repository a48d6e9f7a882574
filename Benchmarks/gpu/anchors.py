"""The anchors of Benchmarks/gpu/bench_lora.py (issue 17): the tools a user would pick instead
of Tuna, each run as its users run it, each in a process of its own (Unsloth patches
transformers when it is imported, Liger patches gpt-oss's modeling module), on the benchmark's
checkpoint, LoRA recipe (r, alpha on q,k,v,o) and random batches (`random_batches`, which
bench_lora.py uses too):

  unsloth-bf16   Unsloth's gpt-oss path as its documentation recommends: FastLanguageModel.
                 from_pretrained(load_in_16bit=True) on a local bf16 checkpoint, get_peft_model
                 with use_gradient_checkpointing="unsloth", the loss its patched forward computes
  unsloth-4bit   the same with load_in_4bit=True: Unsloth quantizes the bf16 weights to NF4 as
                 it loads (bitsandbytes), so it trains a re-quantized copy of the model, not the
                 checkpoint's own MXFP4 weights (Tuna's fast path does)
  liger          transformers + PEFT with Liger's gpt-oss kernels (apply_liger_kernel_to_gpt_oss
                 with its defaults: rope, RMSNorm, fused linear cross-entropy), flex attention,
                 transformers' default experts implementation (grouped_mm), transformers'
                 gradient checkpointing (non-reentrant), the MXFP4 checkpoint dequantized on load

A timed step is bench_lora.py's: forward and backward of the model's mean loss,
clip_grad_norm_(1.0), AdamW, zero_grad; `--warmup` untimed steps first; tokens/s = batch x seq x
timed steps / their time; peak = torch.cuda.max_memory_allocated since the process started (the
resident model included). `--probe` lengths: one warm-up and one timed step at batch 1 each,
shortest first, until one fails. The adapters start as PEFT starts them (B = 0), so first-step
losses are the base model's and are not compared with Tuna's rows (speed and memory are).

Needs CUDA and the tools' wheels (Benchmarks/gpu/anchor_wheels.sh); prints one JSON line last.

    python3 Benchmarks/gpu/anchors.py --tool unsloth-bf16 --ckpt BF16_DIR --batch 4 --seq 2048
    python3 Benchmarks/gpu/anchors.py --tool liger --ckpt MXFP4_DIR --probe 16384,32768
"""
import argparse
import json
import math
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "worker"))  # tuna_torch.data

TOOLS = ("unsloth-bf16", "unsloth-4bit", "liger")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def random_batches(vocab, batch, seq, n, seed=99):
    """The benchmark's batches: random token ids, labels = inputs, every position scored."""
    import torch
    g = torch.Generator().manual_seed(seed + seq * 7 + batch)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, seq), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()})
    return out


def chat_examples(vocab, seq, count, seed=7):
    """Synthetic chats for the "real sequences" rows: random token ids with lengths spread as
    fleet/make_chats.py's harmony chats are under the o200k tokenizer (a few hundred to ~1,800
    tokens at seq 2048: 15% to 88% of `seq`), the first 30-60% a prompt the loss does not score,
    the rest the reply it does (tuna prepare's masks). tuna_torch.data.Example objects."""
    import torch
    from tuna_torch.data import Example
    g = torch.Generator().manual_seed(seed)
    lo, hi = max(4, int(0.15 * seq)), max(5, int(0.88 * seq))
    out = []
    for _ in range(count):
        n = int(torch.randint(lo, hi + 1, (1,), generator=g))
        prompt = int(n * (0.3 + 0.3 * float(torch.rand(1, generator=g))))
        mask = torch.zeros(n, dtype=torch.bool)
        mask[prompt:] = True
        out.append(Example(torch.randint(0, vocab, (n,), generator=g, dtype=torch.int32), mask))
    return out


def chat_batches(examples, batch, seq, packed, n):
    """`n` micro-batches of the chats, in order, each with its real (non-padding) token count
    and its chats' lengths.
    packed: the torch trainer's packing (rows of at most `seq` tokens filled in order; position
    ids restart per chat; tuna_torch.data.packed_batch); padded: `batch` chats per micro-batch,
    right-padded to the longest (what transformers' default collator does; tuna_torch.data.
    padded_batch)."""
    from tuna_torch.data import packed_batch, padded_batch
    out, it = [], iter(examples)
    pending = next(it)
    while len(out) < n:
        if not packed:
            chats = [pending] + [next(it) for _ in range(batch - 1)]
            pending = next(it)
            out.append((padded_batch(chats), sum(len(e) for e in chats), [len(e) for e in chats]))
            continue
        rows = []
        for _ in range(batch):
            row, used = [], 0
            while used + len(pending) <= seq:
                row.append(pending)
                used += len(pending)
                pending = next(it)
            rows.append(row)
        out.append((packed_batch(rows), sum(len(e) for row in rows for e in row), [len(e) for row in rows for e in row]))
    return out


def offline_environment():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")  # Unsloth would otherwise call home
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def load_unsloth(args, four_bit):
    import unsloth  # noqa: F401  (first: it patches transformers and peft on import)
    import torch
    from unsloth import FastLanguageModel
    model, _ = FastLanguageModel.from_pretrained(
        model_name=args.ckpt, max_seq_length=max([args.seq] + args.probe), dtype=torch.bfloat16,
        load_in_4bit=four_bit, load_in_16bit=not four_bit, full_finetuning=False, local_files_only=True,
        use_gradient_checkpointing="unsloth")
    model = FastLanguageModel.get_peft_model(
        model, r=args.rank, lora_alpha=args.alpha, lora_dropout=0, bias="none", target_modules=TARGETS,
        use_gradient_checkpointing="unsloth", random_state=3407)
    versions = {"unsloth": unsloth.__version__}
    return model, versions


def load_liger(args):
    import torch
    from importlib.metadata import version
    from liger_kernel.transformers import apply_liger_kernel_to_gpt_oss
    apply_liger_kernel_to_gpt_oss()  # before the model exists: its defaults
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Mxfp4Config
    model = AutoModelForCausalLM.from_pretrained(
        args.ckpt, dtype=torch.bfloat16, quantization_config=Mxfp4Config(dequantize=True),
        attn_implementation="flex_attention", device_map={"": 0}, local_files_only=True)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0,
                                             target_modules=TARGETS, bias="none", task_type="CAUSAL_LM"))
    return model, {"liger_kernel": version("liger-kernel"), "experts": model.config._experts_implementation}


def timed_steps(model, params, vocab, batch, seq, warmup, steps, budget, chats=False):
    import torch
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    times, losses, counted, lengths = [], [], 0, []
    started = None
    if chats:
        data = chat_batches(chat_examples(vocab, seq, 64 * batch * (warmup + steps)), batch, seq, False, warmup + steps)
    else:
        data = [(b, batch * seq, None) for b in random_batches(vocab, batch, seq, warmup + steps)]
    for i, (b, tokens, chat_lengths) in enumerate(data):
        if i == warmup:
            started = time.time()
        torch.cuda.synchronize()
        t = time.perf_counter()
        out = model(**{k: v.cuda() for k, v in b.items()})
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        loss = out.loss.item()
        losses.append(loss)
        print(f"step {i} {'(warmup) ' if i < warmup else ''}{dt:.3f}s loss {loss:.5f}", flush=True)
        if not math.isfinite(loss):
            raise RuntimeError(f"non-finite loss at step {i}")
        if i >= warmup:
            times.append(dt)
            counted += tokens
            lengths += chat_lengths or []
            if time.time() - started > budget:
                break
    return {"tokens_per_s": counted / sum(times), "step_s": times, "losses": losses,
            "first_loss": losses[0], "timed_steps": len(times), "chat_lengths": lengths or None}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, choices=TOOLS)
    ap.add_argument("--ckpt", required=True, help="unsloth-*: a bf16 checkpoint with a tokenizer; liger: the MXFP4 one")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=128)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--budget", type=float, default=30, help="seconds of timed steps at most")
    ap.add_argument("--probe", default="", help="comma-separated lengths at batch 1")
    ap.add_argument("--chats", action="store_true",
                    help="synthetic chats of varied lengths, `batch` a micro-batch, padded as transformers' collator does; "
                         "tokens/s counts real tokens")
    args = ap.parse_args()
    args.probe = [int(x) for x in args.probe.split(",") if x]
    offline_environment()
    result = {"tool": args.tool, "batch": args.batch, "seq": args.seq, "rank": args.rank, "alpha": args.alpha}
    try:
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("the anchors need CUDA (Unsloth and Liger's kernels are GPU-only)")
        if args.tool == "liger":
            model, versions = load_liger(args)
        else:
            model, versions = load_unsloth(args, four_bit=args.tool == "unsloth-4bit")
        import transformers
        result["versions"] = dict(versions, torch=torch.__version__, transformers=transformers.__version__)
        params = [p for p in model.parameters() if p.requires_grad]
        result["trainable_parameters"] = sum(p.numel() for p in params)
        result["resident_gib"] = torch.cuda.memory_allocated() / 2**30
        vocab = model.config.vocab_size
        model.train()
        result.update(timed_steps(model, params, vocab, args.batch, args.seq, args.warmup, args.steps, args.budget,
                                  chats=args.chats))
        result["chats"] = args.chats
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        longest = []
        for seq in args.probe:
            torch.cuda.reset_peak_memory_stats()
            try:
                r = timed_steps(model, params, vocab, 1, seq, 1, 1, 0)
                longest.append({"seq": seq, "ok": True, "tokens_per_s": r["tokens_per_s"],
                                "peak_gib": torch.cuda.max_memory_allocated() / 2**30})
            except Exception as e:  # out of memory, most likely: the longest is the one before
                longest.append({"seq": seq, "ok": False, "error": f"{type(e).__name__}: {str(e)[:200]}",
                                "peak_gib": torch.cuda.max_memory_allocated() / 2**30})
                break
            finally:
                torch.cuda.empty_cache()
        result["longest"] = longest
    except Exception as e:
        traceback.print_exc()
        result["error"] = f"{type(e).__name__}: {str(e)[:400]}"
    print(json.dumps(result), flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
