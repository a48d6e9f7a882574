"""Answers to a job's evaluation prompts (eval.json from `tuna prepare`) with transformers'
`generate` on the trainer's own model: the base model (adapter disabled) before training, the
adapter after. The replies go to `tuna grade` (data.run_grade), which parses and grades them
with the job's template and answer rule, as the native trainer does.

Batches of `eval.generate.batch_size` prompts, left-padded, with the KV cache; greedy at
temperature 0, else sampled (temperature, top-p, top-k; torch's generator seeded with
`seed + the batch's first prompt`: reproducible on one device, not equal to the native
trainer's draws). Attention runs eager while generating: flex attention compiles per key
length, which a growing cache changes at every token.
"""
import contextlib

import torch


@contextlib.contextmanager
def eager_attention(model):
    """The model's attention implementation switched to eager for the block (and back)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = base.config._attn_implementation
    if before != "eager":
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before != "eager":
            base.set_attn_implementation(before)


@torch.no_grad()
def answer(model, prompts, settings, stop_tokens, pad_token, device):
    """[(new tokens, "stop" | "length")] for each prompt, in order. A reply ends at (and keeps)
    its first stop token, as transformers' generate and the native Generator do."""
    was_training = model.training
    model.eval()  # no LoRA dropout, and gradient checkpointing's layers keep the cache
    stops = set(int(t) for t in stop_tokens)
    replies = []
    try:
        with eager_attention(model):
            for start in range(0, len(prompts), settings.batch_size):
                group = prompts[start:start + settings.batch_size]
                t = max(map(len, group))
                ids = torch.full((len(group), t), int(pad_token), dtype=torch.long)
                mask = torch.zeros(len(group), t, dtype=torch.long)
                for b, p in enumerate(group):
                    ids[b, t - len(p):] = torch.tensor(p, dtype=torch.long)
                    mask[b, t - len(p):] = 1
                sampled = settings.temperature > 0
                if sampled:
                    torch.manual_seed(settings.seed + start)
                out = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=settings.max_new_tokens,
                    do_sample=sampled, temperature=settings.temperature if sampled else None,
                    top_p=settings.top_p if sampled else None, top_k=settings.top_k if sampled else None,
                    eos_token_id=sorted(stops) or None, pad_token_id=int(pad_token), use_cache=True)
                for row in out[:, t:].tolist():
                    cut = next((i for i, tok in enumerate(row) if tok in stops), None)
                    replies.append((row[:cut + 1], "stop") if cut is not None else (row, "length"))
    finally:
        if was_training:
            model.train()
    return replies
