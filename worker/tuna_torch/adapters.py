"""The LoRA adapter: PEFT's LoRA on transformers' gpt-oss, or Tuna's LoRA layers with PEFT's names
on the quantized model (`lora_linear`, `mxfp4`); the initial adapter from `tuna prepare` loaded
strictly (`build_lora_model`), the base model without it (`adapter_disabled`), and the trained
adapter saved in PEFT's layout (`save_adapter`)."""
import json
import os

import torch

from . import lora_linear, mxfp4
from .loading import ModelLoadError

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


def target_modules(lora):
    """The job's target_modules as PEFT gets them. "all-linear" is q, k, v and o in gpt-oss
    (the router is a bare parameter, not an nn.Linear; PEFT skips the output layer) and is
    expanded to those names, as the native trainer does, so the adapter's names and config
    match the native one's. Empty → None (only target_parameters)."""
    out = []
    for m in lora.target_modules:
        for name in (ATTENTION_MODULES if m == "all-linear" else [m]):
            if name not in out:
                out.append(name)
    return out or None


def lora_config(lora):
    from peft import LoraConfig

    return LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, use_rslora=lora.use_rslora,
        target_modules=target_modules(lora), target_parameters=list(lora.target_parameters) or None,
        bias="none", task_type="CAUSAL_LM")


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
    """The LoRA model from the job's lora section (a `spec.LoRA`), with the initial adapter from `tuna prepare`
    loaded strictly: every tensor of the file into a parameter of the same name and shape,
    every trainable parameter from the file. (PEFT's own loaders leave a missing tensor at its
    init and ignore extra ones; here either is an error.)

    Linear layers (target_modules) get PEFT's LoRA. Expert parameters (target_parameters) get
    PEFT's ParamWrapper on transformers' experts, or, when the experts are quantized
    (`mxfp4.QuantizedExperts`), Tuna's per-expert low-rank LoRA with PEFT's tensor names and
    shapes. With only expert targets on quantized experts there is no PEFT wrapper at all: the
    returned model is then the base model itself."""
    from safetensors.torch import load_file

    if gradient_checkpointing:
        enable_gradient_checkpointing(base)
    cfg = lora_config(lora)
    _check_adapter_config(init_adapter_dir, cfg)
    model, params = attach_lora(base, cfg)
    weights_path = os.path.join(init_adapter_dir, "adapter_model.safetensors")
    weights = load_file(weights_path)
    missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
    if missing or extra:
        raise ModelLoadError(f"{weights_path}: does not fit the LoRA model: missing {missing}, not in the model {extra}")
    with torch.no_grad():
        for name, p in params.items():
            w = weights[name]
            if tuple(w.shape) != tuple(p.shape):
                raise ModelLoadError(f"{weights_path}: {name} has shape {tuple(w.shape)}, the model's is {tuple(p.shape)}")
            p.copy_(w.to(p.dtype))
    return model, params


def enable_gradient_checkpointing(base):
    """transformers' per-decoder-layer checkpointing, non-reentrant: works with frozen inputs (no
    enable_input_require_grads hack) and with PEFT's expert-parameter wrappers, which are
    re-entered on recompute. Quantized experts then keep their dequantized weights from the
    recomputed forward for the layer's backward (see mxfp4._QuantizedGroupedLinear)."""
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for e in mxfp4.quantized_experts(base):
        e.keep_weights_for_backward = True


def attach_lora(base, cfg):
    """(model, {saved name: trainable parameter}) for LoraConfig `cfg` on `base`, the adapter at
    its fresh initialisation (zeros; the initial adapter is copied in by the caller).

    transformers' experts (dequantized): PEFT, for linear layers and expert parameters. Quantized
    experts (`mxfp4.QuantizedExperts`, the fast path): no PEFT wrapper; Tuna's LoRA layers with
    PEFT's names, shapes and target matching (`lora_linear.LoRALinear`, computing in the
    activations' dtype; `mxfp4.ExpertLoRA`, per-expert low-rank products), and the returned
    model is `base` itself."""
    from peft import get_peft_model

    if mxfp4.quantized_experts(base):
        scaling = _scaling(cfg)
        params = lora_linear.add_linear_lora(base, cfg, scaling) if cfg.target_modules else {}
        params.update(mxfp4.add_expert_lora(base, cfg.target_parameters or [], cfg.r, scaling,
                                            float(cfg.lora_dropout or 0.0)))
        if not params:
            raise ValueError("lora: nothing to train (no target_modules and no target_parameters)")
        base.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        return base, dict(sorted(params.items()))
    # autocast_adapter_dtype (default): LoRA weights in fp32 even on a bf16 base.
    model = get_peft_model(base, cfg)
    return model, adapter_parameters(model)


def detach_lora(model):
    """The base model back from `attach_lora`'s model, every adapter removed."""
    base = model.unload() if hasattr(model, "unload") else model
    lora_linear.remove_linear_lora(base)
    for e in mxfp4.quantized_experts(base):
        e.lora = torch.nn.ModuleDict()
    return base


def _scaling(cfg):
    # PEFT's LoraLayer.update_layer: alpha / r, or alpha / sqrt(r) with rsLoRA.
    return cfg.lora_alpha / (cfg.r ** 0.5 if cfg.use_rslora else cfg.r)


class adapter_disabled:
    """`with adapter_disabled(model):` the base model's outputs (the baseline evaluation): PEFT's
    disable_adapter for its layers, and Tuna's LoRA layers (fast path) switched off."""

    def __init__(self, model):
        self.model = model
        self.experts = mxfp4.quantized_experts(model) + lora_linear.lora_linears(model)
        self.peft = model.disable_adapter() if hasattr(model, "disable_adapter") else None

    def __enter__(self):
        if self.peft is not None:
            self.peft.__enter__()
        for e in self.experts:
            e.lora_enabled = False
        return self.model

    def __exit__(self, *exc):
        for e in self.experts:
            e.lora_enabled = True
        return self.peft.__exit__(*exc) if self.peft is not None else False


def save_adapter(model, params, init_adapter_dir, out_dir):
    """The trained adapter in PEFT layout (what `PeftModel.from_pretrained` loads). PEFT's own
    save_pretrained for a PEFT model; for the quantized-experts model (Tuna's LoRA layers, no
    PEFT wrapper) the same two files written here: the initial adapter's config (checked equal
    to the job's LoRA at load) and every adapter tensor under PEFT's name, fp32, each file
    through a temporary name and a rename."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    if not mxfp4.quantized_experts(model):
        model.save_pretrained(out_dir)
        readme = os.path.join(out_dir, "README.md")  # PEFT's model-card boilerplate; not a result
        if os.path.exists(readme):
            os.remove(readme)
        return
    weights = os.path.join(out_dir, "adapter_model.safetensors")
    save_file({n: p.detach().to("cpu", torch.float32).contiguous() for n, p in params.items()}, weights + ".tmp",
              metadata={"format": "pt"})
    os.replace(weights + ".tmp", weights)
    with open(os.path.join(init_adapter_dir, "adapter_config.json")) as f:
        config = f.read()
    with open(os.path.join(out_dir, "adapter_config.json.tmp"), "w") as f:
        f.write(config)
    os.replace(os.path.join(out_dir, "adapter_config.json.tmp"), os.path.join(out_dir, "adapter_config.json"))
