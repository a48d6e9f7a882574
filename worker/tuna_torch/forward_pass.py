"""The forward pass and the loss: a batch's attention masks (a packed batch's block-diagonal
mask; transformers builds a BlockMask for flex attention from the same call), padding for flex
attention's block size, and `token_loss_sum`, the only place that sees logits (full logits, or
`loss.py`'s chunked lm_head + cross-entropy)."""
import torch
import torch.nn.functional as F

from . import loss as ce_loss
from .data import IGNORE


def causal_lm(model):
    """The GptOssForCausalLM under a PEFT wrapper, or the model itself when there is none
    (quantized experts with expert-only LoRA)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def attention_masks(model, batch, device):
    """The attention mask argument for one batch.

    Padded batches: the 2-D padding mask; transformers combines it with causal (and sliding
    window) masking itself. Packed batches: transformers 5.17's GptOssModel does not pass
    position_ids to its mask builders, so it would let packed sequences attend to each other.
    We call the same builders with position_ids (their packed-sequence detection: a new sequence
    wherever the position does not go up by one) and hand GptOssModel the finished per-layer-type
    masks, which it accepts as a dict."""
    if "position_ids" not in batch:
        return batch["attention_mask"].to(device)
    from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

    config = causal_lm(model).config
    ids = batch["input_ids"]
    # The builders read only the shape, dtype and device of inputs_embeds.
    shape_only = torch.empty(ids.shape[0], ids.shape[1], 0, dtype=next(model.parameters()).dtype, device=device)
    kwargs = dict(config=config, inputs_embeds=shape_only, attention_mask=None, past_key_values=None,
                  position_ids=batch["position_ids"].to(device))
    return {"full_attention": create_causal_mask(**kwargs),
            "sliding_attention": create_sliding_window_causal_mask(**kwargs)}


def _allow_flex_recompiles():
    """transformers wraps flex attention in torch.compile, which compiles again for a new batch
    shape (until dynamo makes the dimension dynamic) and for each train/eval switch. Batches are
    padded to multiples of 128 positions (`pad_for_flex`), so a run sees few shapes, but a long
    run must never reach torch's default limit (8), past which it would fall back to the
    unfused flex path (the whole score matrix materialised). Raise the limits."""
    import torch._dynamo as dynamo

    for name, floor in (("cache_size_limit", 256), ("recompile_limit", 256), ("accumulated_recompile_limit", 4096),
                        ("accumulated_cache_size_limit", 4096)):
        if hasattr(dynamo.config, name) and getattr(dynamo.config, name) < floor:
            setattr(dynamo.config, name, floor)


FLEX_BLOCK = 128  # flex attention's block size


def pad_for_flex(batch, multiple=FLEX_BLOCK):
    """The batch right-padded to a multiple of `multiple` positions, for flex attention. torch's
    compiled flex kernels are built per batch shape, so rounding the lengths up keeps a run's
    compiles few; and sequences shorter than 128 do not compile at all with torch 2.11 on an H200
    (inductor: NoValidChoicesError; 200 or 255 compile). The added positions change no loss
    term: token 0, labels -100, and no real position attends to them (padded rows: attention
    mask 0, after every real token; packed rows: position_ids restarting at 0, a sequence of
    their own)."""
    t = batch["input_ids"].shape[1]
    extra = -t % multiple
    if extra == 0:
        return batch
    n = batch["input_ids"].shape[0]
    out = {"input_ids": torch.cat([batch["input_ids"], batch["input_ids"].new_zeros(n, extra)], 1),
           "labels": torch.cat([batch["labels"], batch["labels"].new_full((n, extra), IGNORE)], 1)}
    if "attention_mask" in batch:
        out["attention_mask"] = torch.cat([batch["attention_mask"], batch["attention_mask"].new_zeros(n, extra)], 1)
    if "position_ids" in batch:
        tail = torch.arange(extra, dtype=batch["position_ids"].dtype).expand(n, extra)
        out["position_ids"] = torch.cat([batch["position_ids"], tail], 1)
    return out


def _forward_kwargs(model, batch, device):
    kwargs = {"input_ids": batch["input_ids"].to(device), "attention_mask": attention_masks(model, batch, device),
              "use_cache": False}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"].to(device)
    return kwargs


def token_loss_sum(model, batch, device, chunk_rows=None):
    """Sum over scored positions of the next-token cross-entropy (fp32), and their count.
    labels[t] is predicted from position t - 1, as in transformers' ForCausalLMLoss.

    chunk_rows None: the model's own forward, full [batch, seq, vocab] logits, one cross-entropy.
    chunk_rows N: the decoder's final hidden states; the rows of the scored positions (picked with
    indices from the CPU labels: no device sync) go through lm_head + fp32 cross-entropy N at a
    time through `loss.LinearCrossEntropySum` (the chunk's input gradient computed in forward,
    while its logits exist; gpt-oss's lm_head is frozen and bias-free, which it needs), so at
    most one chunk's [N, vocab] logits exist at once. The same per-token terms; only the
    summation order differs (~1e-7 relative in fp32).

    With flex attention the batch is first padded to a multiple of 128 positions (`pad_for_flex`)."""
    config = causal_lm(model).config
    if config._attn_implementation == "flex_attention":
        batch = pad_for_flex(batch)
    labels = batch["labels"][:, 1:]
    scored = int((labels != IGNORE).sum())  # counted on the CPU copy: no device sync
    kwargs = _forward_kwargs(model, batch, device)
    if chunk_rows is None:
        logits = model(**kwargs).logits
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.to(device).reshape(-1),
                               ignore_index=IGNORE, reduction="sum")
        return loss, scored
    causal = causal_lm(model)
    hidden = causal.model(**kwargs).last_hidden_state  # [B, T, H]
    b, t, h = hidden.shape
    keep = (labels != IGNORE).nonzero()  # [scored, 2]: (row, position) of labels[:, 1:]
    rows = (keep[:, 0] * t + keep[:, 1]).to(device)  # position p's hidden state predicts labels[:, p + 1]
    hs = hidden.reshape(b * t, h).index_select(0, rows)
    y = labels[keep[:, 0], keep[:, 1]].to(device)
    head = causal.get_output_embeddings()
    if not ce_loss.supported(head):  # gpt-oss's lm_head has no bias, and no LoRA targets it
        raise ValueError("chunked_loss needs a frozen, bias-free output layer; use chunked_loss: false")
    total = torch.zeros((), dtype=torch.float32, device=device)
    for s in range(0, scored, chunk_rows):
        total = total + ce_loss.linear_cross_entropy_sum(hs[s:s + chunk_rows], head, y[s:s + chunk_rows])
    return total, scored
