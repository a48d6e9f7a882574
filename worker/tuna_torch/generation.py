"""Answers to a job's evaluation prompts (eval.json from `tuna prepare`) with transformers'
`generate` on the trainer's own model: the base model (adapter disabled) before training, the
adapter after. The replies go to `tuna grade` (data.run_grade), which parses and grades them
with the job's template and answer rule, as the native trainer does.

Batches of `eval.generate.batch_size` prompts, left-padded, with the KV cache; greedy at
temperature 0, else sampled (temperature, top-p, top-k; torch's generator seeded with
`seed + the batch's first prompt`: reproducible on one device, not equal to the native
trainer's draws). Attention runs eager while generating: flex attention compiles per key
length, which a growing cache changes at every token.

A reply ends at its first stop token, or once the decoded text of its last `stop_text_window`
tokens contains one of eval.json's `stop_texts` (the im_start template's `<|im_end|>`, which
no single token spells): Tuna's rule (`ChatTemplate.replyIsComplete`), read from eval.json and
applied with the checkpoint's tokenizer.json.
"""
import contextlib
import os

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from .events import log


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


def text_decoder(model_dir, stop_texts):
    """A function from token ids to text (the checkpoint's tokenizer.json), when eval.json has
    stop texts; None when it has none. Without a tokenizer.json a reply runs to
    max_new_tokens (`tuna grade` still cuts it at the stop text: the same verdict, more time)."""
    if not stop_texts:
        return None
    path = os.path.join(model_dir, "tokenizer.json")
    if not os.path.exists(path):
        log(f"eval: no {path}: replies run to max_new_tokens instead of stopping at {stop_texts}")
        return None
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(path)
    return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False)


class _StopTexts(StoppingCriteria):
    """Rows whose last `window` new tokens decode to a text containing a stop text are done."""

    def __init__(self, decode, texts, window, prompt_length):
        self.decode, self.texts, self.window, self.start = decode, texts, window, prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        done = [any(t in self.decode(row[self.start:][-self.window:].tolist()) for t in self.texts) for row in input_ids]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _end(row, stops, decode, texts, window):
    """Where a reply ends: (length, finish) by the first stop token or the first token that
    completes a stop text."""
    for i, tok in enumerate(row):
        if tok in stops:
            return i + 1, "stop"
        if decode and any(t in decode(row[max(0, i + 1 - window):i + 1]) for t in texts):
            return i + 1, "stop"
    return len(row), "length"


@torch.no_grad()
def answer(model, prompts, settings, stops_json, device, decode=None):
    """[(new tokens, "stop" | "length")] for each prompt, in order. A reply ends at (and keeps)
    its first stop token, as transformers' generate and the native Generator do, or at the
    token that completes a stop text (`decode`: see `text_decoder`). `stops_json` is eval.json."""
    was_training = model.training
    model.eval()  # no LoRA dropout, and gradient checkpointing's layers keep the cache
    stops = set(int(t) for t in stops_json["stop_tokens"])
    texts, window, pad_token = stops_json["stop_texts"], int(stops_json["stop_text_window"]), stops_json["pad_token"]
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
                criteria = StoppingCriteriaList([_StopTexts(decode, texts, window, t)]) if decode and texts else None
                out = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=settings.max_new_tokens,
                    do_sample=sampled, temperature=settings.temperature if sampled else None,
                    top_p=settings.top_p if sampled else None, top_k=settings.top_k if sampled else None,
                    eos_token_id=sorted(stops) or None, pad_token_id=int(pad_token), use_cache=True,
                    stopping_criteria=criteria)
                for row in out[:, t:].tolist():
                    n, finish = _end(row, stops, decode, texts, window)
                    replies.append((row[:n], finish))
    finally:
        if was_training:
            model.train()
    return replies
