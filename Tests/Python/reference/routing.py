"""Logits with the experts every token was routed to, and the logits error of a model whose
routing may differ from the reference's at near ties (test_merge: merged checkpoints within
rounding of base + adapter)."""
import torch
from peft import PeftModel

from reference.lora import max_rel


@torch.no_grad()
def logits_of(model, inputs):
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False).logits.float()


@torch.no_grad()
def routed_logits(model, inputs):
    """(logits, per layer (router logits [B*T, E], chosen experts [B*T, k] sorted)) of one forward."""
    layers = model.get_base_model().model.layers if isinstance(model, PeftModel) else model.model.layers
    routes = []
    hooks = [layer.mlp.router.register_forward_hook(lambda mod, args, out: routes.append((out[0].float(), out[2].sort(-1).values)))
             for layer in layers]
    try:
        logits = logits_of(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    return logits, routes


def routing_aware_error(label, got, got_routes, want, want_routes, k):
    """Max rel logits error over the positions the top-k routing cannot explain.

    A merged model whose weights differ from base + adapter by rounding (bf16, MXFP4) can send
    a token whose router logits nearly tie to another expert: that token's output then differs
    by O(1) although nothing is wrong with the merge. Such a token, and (through attention) every
    later position of its row, is left out of the bounded error; each flip is printed with the
    reference's router margin (k-th minus (k+1)-th logit) to show it is a near tie. Returns
    (error over the kept positions, error over all positions, fraction of positions kept)."""
    b, t, _ = want.shape
    keep = torch.ones(b, t, dtype=torch.bool)
    for layer, ((ref_logits, ref_idx), (_, got_idx)) in enumerate(zip(want_routes, got_routes)):
        for tok in (ref_idx != got_idx).any(-1).nonzero().flatten().tolist():
            row, pos = divmod(tok, t)
            top = ref_logits[tok].topk(k + 1).values
            print(f"    {label}: layer {layer} routes row {row} position {pos} to experts {got_idx[tok].tolist()}, "
                  f"the reference to {ref_idx[tok].tolist()} (reference router margin {(top[k - 1] - top[k]).item():.3e})")
            keep[row, pos:] = False
    scale = want.abs().max().item()
    kept = (got - want).abs()[keep].max().item() / scale if keep.any() else float("nan")
    return kept, max_rel(got, want), keep.float().mean().item()
