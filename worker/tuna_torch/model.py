"""The model side: transformers' gpt-oss with PEFT's LoRA, loaded strictly.

Baseline path, chosen for being transformers' own reference computation rather than fast:
  - MXFP4 expert weights dequantized at load (Mxfp4Config(dequantize=True)),
  - eager attention and eager (per-expert loop) MoE,
  - full logits, cross-entropy in fp32.
The fast path (flex attention, grouped GEMM experts, chunked cross-entropy, MXFP4 kept on the
GPU) plugs in at three seams, all in this file: `load_base_model` (attn/experts implementation
and quantization), `attention_masks` (a packed batch's mask; transformers builds a BlockMask
instead of a dense mask for flex attention from the same call), and `token_loss_sum` (the only
place that sees logits).
"""
import json
import os

import torch
import torch.nn.functional as F

from .data import IGNORE

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


class ModelLoadError(RuntimeError):
    pass


def resolve(path, root):
    """Relative `model` / `dataset` paths are resolved against the data root, as `tuna train
    --root` and `tuna prepare --root` do (TrainJob.swift)."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


def pick_device(local_rank=0):
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def compute_dtype(device):
    # bf16 on the GPU (gpt-oss ships bf16 outside the experts; dequantized MXFP4 is exact in
    # bf16). fp32 on the CPU: that is what the native trainer computes in, so the agreement
    # check can be tight.
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_base_model(model_dir, device, dtype):
    """GptOssForCausalLM from a local checkpoint, every weight accounted for.

    transformers only *warns* about weights it did not find and initialises them randomly;
    a gpt-oss whose experts silently came out random would train and report losses, just
    wrong ones. So any missing or mismatched weight, or a conversion error (an MXFP4 tensor
    whose _blocks or _scales is absent), is a hard error here."""
    from transformers import GptOssForCausalLM, Mxfp4Config

    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_path):
        raise ModelLoadError(f"{model_dir}: no config.json (the job's `model` must be a local checkpoint directory)")
    with open(config_path) as f:
        quant = (json.load(f).get("quantization_config") or {}).get("quant_method")
    kwargs = {}
    if quant == "mxfp4":
        kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
    elif quant is not None:
        raise ModelLoadError(f"{config_path}: quantization {quant!r} is not supported (mxfp4 or none)")
    if device.type == "cuda":
        kwargs["device_map"] = {"": device}  # load (and dequantize) straight onto this rank's GPU
    try:
        model, info = GptOssForCausalLM.from_pretrained(
            model_dir, dtype=dtype, attn_implementation="eager", experts_implementation="eager",
            output_loading_info=True, local_files_only=True, **kwargs)
    except Exception as e:  # transformers raises on MXFP4 conversion errors
        raise ModelLoadError(f"{model_dir}: transformers could not load the checkpoint: {e}") from e
    problems = []
    for key in ("missing_keys", "mismatched_keys", "error_msgs"):
        if info.get(key):
            problems.append(f"{key}: {sorted(map(str, info[key]))}")
    if problems:
        raise ModelLoadError(f"{model_dir}: weights not loaded from the checkpoint (they would be random): "
                             + "; ".join(problems))
    # transformers 5.17 leaves dequantized MXFP4 experts in bf16 whatever `dtype` says; the
    # upcast is exact and makes the model one dtype end to end.
    model = model.to(dtype)
    model.config.output_router_logits = False  # no router aux loss: the native trainer has none
    model.config.use_cache = False
    return model, sorted(map(str, info.get("unexpected_keys") or []))


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------

def target_modules(lora):
    """The job's target_modules as PEFT gets them. "all-linear" is q, k, v and o in gpt-oss
    (the router is a bare parameter, not an nn.Linear; PEFT skips the output layer) and is
    expanded to those names, as the native trainer does, so the adapter's names and config
    match the native one's. Empty → None (only target_parameters)."""
    modules = lora.get("target_modules", ATTENTION_MODULES)
    if isinstance(modules, str):
        modules = [modules]
    out = []
    for m in modules:
        for name in (ATTENTION_MODULES if m == "all-linear" else [m]):
            if name not in out:
                out.append(name)
    return out or None


def lora_config(lora):
    from peft import LoraConfig

    r = int(lora.get("rank", 8))
    return LoraConfig(
        r=r, lora_alpha=float(lora.get("alpha", 2 * r)), lora_dropout=float(lora.get("dropout", 0.0)),
        use_rslora=bool(lora.get("use_rslora", False)), target_modules=target_modules(lora),
        target_parameters=list(lora.get("target_parameters") or []) or None, bias="none", task_type="CAUSAL_LM")


def adapter_parameters(peft_model):
    """{saved name: trainable parameter}, sorted by name. The saved name is what save_pretrained
    writes (no ".default."); checked against PEFT's own state dict by tensor identity, so a
    PEFT naming change fails here instead of training something else."""
    from peft.utils import get_peft_model_state_dict

    params = {n.replace(".default.", "."): p for n, p in peft_model.named_parameters() if p.requires_grad}
    saved = get_peft_model_state_dict(peft_model)
    if sorted(saved) != sorted(params):
        raise ModelLoadError(f"PEFT's trainable parameters and saved names differ: {sorted(set(saved) ^ set(params))}")
    for k, v in saved.items():
        if v.data_ptr() != params[k].data_ptr():
            raise ModelLoadError(f"{k}: PEFT saves a tensor that is not the trainable parameter")
    return dict(sorted(params.items()))


def _check_adapter_config(init_dir, cfg):
    """init_adapter/adapter_config.json (written by `tuna prepare`) must describe the same LoRA as
    the LoraConfig built here from the job; anything else means the two trainers disagree."""
    with open(os.path.join(init_dir, "adapter_config.json")) as f:
        c = json.load(f)
    want = {"r": cfg.r, "lora_alpha": float(cfg.lora_alpha), "use_rslora": cfg.use_rslora,
            "lora_dropout": float(cfg.lora_dropout),
            "target_modules": sorted(cfg.target_modules or []), "target_parameters": sorted(cfg.target_parameters or [])}
    tm = c.get("target_modules") or []
    got = {"r": c.get("r"), "lora_alpha": float(c.get("lora_alpha", 0)), "use_rslora": bool(c.get("use_rslora")),
           "lora_dropout": float(c.get("lora_dropout") or 0),
           "target_modules": sorted([tm] if isinstance(tm, str) else tm),
           "target_parameters": sorted(c.get("target_parameters") or [])}
    if got != want:
        raise ModelLoadError(f"{init_dir}/adapter_config.json {got} does not match the job's LoRA {want}")


def build_lora_model(base, lora, init_adapter_dir, gradient_checkpointing):
    """PEFT model from the job's lora section, with the initial adapter from `tuna prepare`
    loaded strictly: every tensor of the file into a parameter of the same name and shape,
    every trainable parameter from the file. (PEFT's own loaders leave a missing tensor at its
    init and ignore extra ones; here either is an error.)"""
    from peft import get_peft_model
    from safetensors.torch import load_file

    if gradient_checkpointing:
        # Non-reentrant: works with frozen inputs (no enable_input_require_grads hack) and with
        # PEFT's expert-parameter wrappers, which are re-entered on recompute.
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    cfg = lora_config(lora)
    _check_adapter_config(init_adapter_dir, cfg)
    # autocast_adapter_dtype (default): LoRA weights in fp32 even on a bf16 base.
    model = get_peft_model(base, cfg)
    params = adapter_parameters(model)
    weights_path = os.path.join(init_adapter_dir, "adapter_model.safetensors")
    weights = load_file(weights_path)
    missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
    if missing or extra:
        raise ModelLoadError(f"{weights_path}: does not fit the PEFT model: missing {missing}, not in the model {extra}")
    with torch.no_grad():
        for name, p in params.items():
            w = weights[name]
            if tuple(w.shape) != tuple(p.shape):
                raise ModelLoadError(f"{weights_path}: {name} has shape {tuple(w.shape)}, the model's is {tuple(p.shape)}")
            p.copy_(w.to(p.dtype))
    return model, params


# ---------------------------------------------------------------------------------------------
# Forward and loss
# ---------------------------------------------------------------------------------------------

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

    config = model.get_base_model().config
    ids = batch["input_ids"]
    # The builders read only the shape, dtype and device of inputs_embeds.
    shape_only = torch.empty(ids.shape[0], ids.shape[1], 0, dtype=next(model.parameters()).dtype, device=device)
    kwargs = dict(config=config, inputs_embeds=shape_only, attention_mask=None, past_key_values=None,
                  position_ids=batch["position_ids"].to(device))
    return {"full_attention": create_causal_mask(**kwargs),
            "sliding_attention": create_sliding_window_causal_mask(**kwargs)}


def token_loss_sum(model, batch, device):
    """Sum over scored positions of the next-token cross-entropy (fp32), and their count.
    labels[t] is predicted from position t - 1, as in transformers' ForCausalLMLoss."""
    ids = batch["input_ids"].to(device)
    kwargs = {"input_ids": ids, "attention_mask": attention_masks(model, batch, device), "use_cache": False}
    if "position_ids" in batch:
        kwargs["position_ids"] = batch["position_ids"].to(device)
    logits = model(**kwargs).logits
    labels = batch["labels"][:, 1:]
    scored = int((labels != IGNORE).sum())  # counted on the CPU copy: no device sync
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.to(device).reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, scored
