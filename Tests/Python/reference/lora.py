"""Reference side of TunaEngine's LoRA checks: PEFT on top of transformers' gpt-oss.

The base model is exactly what gptoss.load_reference gives (the MXFP4 checkpoint as
transformers loads it, fp32, eager attention, eager experts). On top of it PEFT 0.21.2
builds the LoRA model from a LoraConfig, so the reference covers PEFT's own module matching
("all-linear"), its ParamWrapper for expert parameters (`target_parameters`, including the
nesting when gate_up_proj and down_proj of one layer are both targeted), its scaling
(alpha / r, or alpha / sqrt(r) with use_rslora) and its save/load layout.

What is recorded for one batch (padded or packed, as gptoss.random_inputs builds them):
  - logits and loss (transformers' labels loss) with the initial adapter,
  - d(loss)/d(every LoRA tensor), keyed by the names PEFT saves them under,
  - 5 optimiser steps on that same batch: torch.nn.utils.clip_grad_norm_, then
    torch.optim.AdamW, then the transformers.get_scheduler scheduler (LambdaLR) step; per
    step the loss, the learning rate used and the gradient norm before clipping; the final
    adapter tensors,
  - the learning-rate curves of every scheduler kind the engine implements.

The initial adapter has random non-zero A *and* B (PEFT's default init has B = 0, which
would make every A gradient zero and LoRA a no-op on the first forward).

lora_files.py writes one reference directory from this and loads adapters others wrote.
"""
import math

import torch
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict
from transformers import get_scheduler

from reference import gptoss as ref

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]
# transformers.get_scheduler names. Note HF's "constant" ignores num_warmup_steps; warmup then
# constant is "constant_with_warmup". Both are recorded so the engine's choice is checked.
SCHEDULER_KINDS = ["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_min_lr"]


# ---------------------------------------------------------------------------------------------
# LoRA settings and the PEFT model
# ---------------------------------------------------------------------------------------------

def scaling(settings):
    """PEFT's LoraLayer.update_layer: alpha / sqrt(r) with rsLoRA, else alpha / r."""
    r, alpha = settings["r"], settings["lora_alpha"]
    return alpha / math.sqrt(r) if settings.get("use_rslora", False) else alpha / r


def lora_config(settings):
    """LoraConfig from our settings dict. Dropout is always 0: ParamWrapper (expert
    parameters) refuses anything else, and dropout would make the reference random."""
    return LoraConfig(
        r=settings["r"], lora_alpha=settings["lora_alpha"], lora_dropout=0.0,
        use_rslora=settings.get("use_rslora", False),
        target_modules=settings.get("target_modules"),
        target_parameters=settings.get("target_parameters") or None,
        bias="none")


def adapter_parameters(peft_model):
    """{saved name: trainable Parameter}, in a fixed (sorted) order.

    The saved name is what get_peft_model_state_dict / save_pretrained write: the parameter
    name without the adapter name (".default"). Checked against PEFT's own state dict by
    tensor identity, so a PEFT change in naming fails here rather than silently."""
    params = {}
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            params[name.replace(".default.", ".")] = p
    saved = get_peft_model_state_dict(peft_model)
    assert sorted(saved) == sorted(params), f"PEFT saved names differ: {sorted(set(saved) ^ set(params))}"
    for k, v in saved.items():
        assert v.data_ptr() == params[k].data_ptr(), f"{k}: saved tensor is not the trainable parameter"
    return dict(sorted(params.items()))


def b_init_std(settings):
    """Standard deviation of the random initial B: scaling * B @ A then changes each projection
    by roughly 30% of a unit-variance weight's output whatever r and alpha are (visible in the
    logits, without swamping the base weights). Learning rates are best chosen relative to it:
    Adam moves every element by ~lr per step, so lr >> this makes B all update and the final
    weights hypersensitive to gradient rounding (see test_lora_live.draw_hyperparameters)."""
    return 0.3 / (scaling(settings) * math.sqrt(settings["r"]))


def randomize_adapter(peft_model, seed, settings):
    """Random non-zero A ~ N(0, 1/in) and B ~ N(0, b_init_std^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in adapter_parameters(peft_model).items():
            if ".lora_A." in name:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * b_init_std(settings))


def build(model_dir, settings, seed, dtype=torch.float32):
    """PEFT model on transformers' reference gpt-oss, with a random initial adapter."""
    base = ref.load_reference(model_dir)
    model = get_peft_model(base, lora_config(settings))
    randomize_adapter(model, seed, settings)
    if dtype != torch.float32:
        model = model.to(dtype)
    model.eval()  # dropout is 0 anyway; eval keeps transformers' attention dropout off too
    return model


# ---------------------------------------------------------------------------------------------
# Forward, loss, gradients
# ---------------------------------------------------------------------------------------------

def forward(model, inputs, packed=None):
    """(logits [B, T, V], loss) with autograd enabled.

    padded: one transformers call with attention_mask and labels (its ForCausalLMLoss).
    packed: every packed sequence run alone and laid side by side, then transformers'
    loss_function over the packed labels. As in gptoss.packed_reference: transformers
    5.17 does not build a per-sequence mask from position_ids, so one call would attend
    across sequences."""
    ids = inputs["input_ids"]
    if packed is None:
        kwargs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "labels")}
        out = model(**kwargs, use_cache=False)
        return out.logits, out.loss
    rows = []
    for b, parts in enumerate(packed):
        start, pieces = 0, []
        for n in parts:
            pieces.append(model(input_ids=ids[b:b + 1, start:start + n], use_cache=False).logits[0])
            start += n
        rows.append(torch.cat(pieces, dim=0))
    logits = torch.stack(rows)
    base = model.get_base_model()
    loss = base.loss_function(logits, inputs["labels"], base.config.vocab_size)
    return logits, loss


def scored_tokens(labels):
    """Number of positions transformers' loss averages over (targets labels[:, 1:] != -100)."""
    return int((labels[:, 1:] != -100).sum())


def schedule_curve(kind, peak, warmup, total, min_lr_ratio):
    """Learning rate the optimiser uses at steps 0..total (LambdaLR: the lr in the param
    group before optimizer step s is peak * lambda(s))."""
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    extra = {"min_lr_rate": min_lr_ratio} if kind == "cosine_with_min_lr" else None
    sched = get_scheduler(kind, dummy, num_warmup_steps=warmup, num_training_steps=total,
                          scheduler_specific_kwargs=extra)
    rates = []
    for _ in range(total + 1):
        rates.append(dummy.param_groups[0]["lr"])
        dummy.step()
        sched.step()
    return rates


def train(model, inputs, packed, hp):
    """The reference run. Returns initial logits/loss/grads, per-step records and the final
    adapter tensors (all keyed by PEFT's saved names).

    One step, in the order a HF Trainer does it: forward + backward on the batch, record the
    loss, clip_grad_norm_ (the norm it returns is the one before clipping), AdamW step,
    scheduler step."""
    params = adapter_parameters(model)
    opt = torch.optim.AdamW(list(params.values()), lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"],
                            weight_decay=hp["weight_decay"])
    extra = {"min_lr_rate": hp["min_lr_ratio"]} if hp["scheduler"] == "cosine_with_min_lr" else None
    sched = get_scheduler(hp["scheduler"], opt, num_warmup_steps=hp["warmup_steps"],
                          num_training_steps=hp["total_steps"], scheduler_specific_kwargs=extra)
    record = {"losses": [], "lrs": [], "grad_norms": []}
    for step in range(hp["steps"]):
        opt.zero_grad(set_to_none=True)
        logits, loss = forward(model, inputs, packed)
        loss.backward()
        if step == 0:
            record["logits"] = logits.detach().clone()
            record["loss"] = loss.detach().clone()
            record["grads"] = {k: p.grad.detach().clone() for k, p in params.items()}
        record["losses"].append(loss.item())
        record["lrs"].append(opt.param_groups[0]["lr"])
        record["grad_norms"].append(torch.nn.utils.clip_grad_norm_(list(params.values()), hp["max_grad_norm"]).item())
        opt.step()
        sched.step()
    record["final"] = {k: p.detach().clone() for k, p in params.items()}
    with torch.no_grad():  # logits with the final adapter (the live check compares Swift's against them)
        record["final_logits"] = forward(model, inputs, packed)[0].detach().clone()
    return record


def max_rel(got, want):
    """max|got - want| / max|want| (as the Swift tests' maxRelativeError)."""
    got, want = got.double(), want.double()
    scale = want.abs().max().item()
    diff = (got - want).abs().max().item()
    return diff / scale if scale > 0 else diff


def noise_estimate(record32, record64):
    """How far fp32 PyTorch is from (mostly) fp64 PyTorch on the same run: the spread two
    correct fp32 implementations can show. Printed so a tolerance failure can be told apart
    from an ill-conditioned draw (e.g. a near-tie in top-k routing after an update)."""
    worst = {"loss": abs(record32["loss"].item() - record64["loss"].item()) / abs(record64["loss"].item()),
             "grads": max(max_rel(record32["grads"][k], record64["grads"][k]) for k in record32["grads"]),
             "final": max(max_rel(record32["final"][k], record64["final"][k]) for k in record32["final"]),
             "losses": max(abs(a - b) / abs(b) for a, b in zip(record32["losses"], record64["losses"]))}
    return worst
