"""The model side: transformers' gpt-oss with PEFT's LoRA, loaded strictly.

How it computes is the job's `torch` section (`TorchOptions`, resolved per device):
  - attention: "eager" (transformers' reference) or "flex_attention" (CUDA only: gpt-oss's
    attention sinks are applied through flex attention's returned log-sum-exp, which transformers
    does not support on the CPU);
  - experts: "eager" (transformers: a loop over the experts), "grouped_mm" (transformers: one
    grouped GEMM per projection; `torch.nn.functional.grouped_mm`, also on the CPU with
    torch >= 2.9) -- both on experts dequantized to bf16 at load (Mxfp4Config(dequantize=True)) --
    or "mxfp4" (Tuna's: the checkpoint's MXFP4 bytes stay on the device, each layer's experts are
    dequantized on the fly in forward and backward, LoRA on experts as per-expert low-rank
    products; `mxfp4.py`, loaded by `load_quantized_model`);
  - the loss: full [tokens, vocab] logits then cross-entropy in fp32, or `chunked_loss`: the
    final hidden states of the scored positions, `loss_chunk_rows` at a time through lm_head and
    the fp32 cross-entropy (`loss.py`: each chunk's input gradient computed while its logits
    exist), so the whole logits tensor never exists. Same sums, other summation order.
  `auto` is the fast choice on CUDA (flex attention, mxfp4 experts for an MXFP4 checkpoint,
grouped_mm otherwise) and eager on the CPU. The seams: `load_base_model` (attention/experts
implementation, quantization), `build_lora_model` / `attach_lora` (PEFT on transformers' experts;
Tuna's `lora_linear` and `mxfp4` LoRA layers on the quantized model), `attention_masks` (a packed batch's mask;
transformers builds a BlockMask instead of a dense mask for flex attention from the same call),
`token_loss_sum` (the only place that sees logits), `adapter_disabled` and `save_adapter`.
"""
import json
import os

import torch
import torch.nn.functional as F

from . import lora_linear, mxfp4
from . import loss as ce_loss
from .data import IGNORE

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


class ModelLoadError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# The job's `torch` section
# ---------------------------------------------------------------------------------------------

class TorchOptions:
    """The job's `torch` section resolved for one device: `attention` and `experts` are
    implementation names transformers takes (never "auto"); `chunk_rows` is what
    `token_loss_sum` takes (None: full logits)."""

    def __init__(self, attention, experts, chunked_loss, loss_chunk_rows):
        self.attention, self.experts = attention, experts
        self.chunked_loss, self.loss_chunk_rows = chunked_loss, loss_chunk_rows

    @property
    def chunk_rows(self):
        return self.loss_chunk_rows if self.chunked_loss else None

    def event_fields(self):
        return {"attention": self.attention, "experts": self.experts, "chunked_loss": self.chunked_loss}


def grouped_mm_available(device):
    """Whether transformers' grouped_mm experts can run on this device with this torch: CUDA
    (compute capability 8.0 or newer), or the CPU with torch >= 2.9 (older CPU builds have no
    grouped_mm kernel)."""
    if not (hasattr(torch.nn.functional, "grouped_mm") or hasattr(torch, "_grouped_mm")):
        return False
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
        return (major, minor) >= (2, 9)
    return False


def checkpoint_is_mxfp4(model_dir):
    """Whether the checkpoint's config.json says its experts are MXFP4 (quant_method mxfp4)."""
    try:
        with open(os.path.join(model_dir, "config.json")) as f:
            return (json.load(f).get("quantization_config") or {}).get("quant_method") == "mxfp4"
    except (OSError, ValueError):
        return False  # load_base_model reports the unreadable checkpoint


def torch_options(section, device, mxfp4_checkpoint=False):
    """The job's `torch` section (a validated `spec.Torch`: values from the published lists,
    defaults filled in by the coordinator) resolved for `device` and the checkpoint
    (`mxfp4_checkpoint`: its experts are MXFP4). An explicit choice this device or checkpoint
    cannot run is an error, not a silent fallback."""
    attention, experts, rows = section.attention, section.experts, section.loss_chunk_rows
    cuda = device.type == "cuda"
    if attention == "auto":
        attention = "flex_attention" if cuda else "eager"
    elif attention == "flex_attention" and not cuda:
        raise ValueError(f"torch.attention: flex_attention needs a CUDA device (this run is on {device.type}): "
                         "transformers applies gpt-oss's attention sinks through flex attention's log-sum-exp, "
                         "which it does not support on the CPU; use eager (or auto)")
    grouped = grouped_mm_available(device)
    if experts == "auto":
        experts = ("mxfp4" if mxfp4_checkpoint else "grouped_mm") if cuda and grouped else "eager"
    elif experts in ("grouped_mm", "mxfp4") and not grouped:
        raise ValueError(f"torch.experts: {experts} is not available on {device} with torch {torch.__version__} "
                         "(it needs torch.nn.functional.grouped_mm: CUDA compute capability 8.0+, or the CPU with "
                         "torch >= 2.9); use eager (or auto)")
    if experts == "mxfp4" and not mxfp4_checkpoint:
        raise ValueError("torch.experts: mxfp4 keeps a checkpoint's MXFP4 experts quantized, and this checkpoint's "
                         "config.json has no quantization_config with quant_method mxfp4; use grouped_mm (or auto)")
    return TorchOptions(attention, experts, section.chunked_loss, rows)


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


def load_base_model(model_dir, device, dtype, attention="eager", experts="eager"):
    """GptOssForCausalLM from a local checkpoint, every weight accounted for, with the given
    attention and experts implementations (resolved names, see `torch_options`).

    transformers only *warns* about weights it did not find and initialises them randomly;
    a gpt-oss whose experts silently came out random would train and report losses, just
    wrong ones. So any missing or mismatched weight, or a conversion error (an MXFP4 tensor
    whose _blocks or _scales is absent), is a hard error here.

    experts="mxfp4": `load_quantized_model` (the experts stay MXFP4)."""
    if experts == "mxfp4":
        return load_quantized_model(model_dir, device, dtype, attention)
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
            model_dir, dtype=dtype, attn_implementation=attention, experts_implementation=experts,
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
    # upcast is exact and makes the model one dtype end to end. Parameters only: the rotary
    # tables (buffers) stay in fp32 as transformers computes them (`model.to(bf16)` would round
    # the inverse frequencies to bf16 and move every attention score).
    for p in model.parameters():
        if p.dtype != dtype:
            p.data = p.data.to(dtype)
    model.config.output_router_logits = False  # no router aux loss: the native trainer has none
    model.config.use_cache = False
    got = (model.config._attn_implementation, getattr(model.config, "_experts_implementation", "eager"))
    if got != (attention, experts):
        raise ModelLoadError(f"asked transformers for attention {attention!r} / experts {experts!r}, the model reports {got}")
    if attention == "flex_attention":
        _allow_flex_recompiles()
    return model, sorted(map(str, info.get("unexpected_keys") or []))


def checkpoint_files(model_dir):
    """The checkpoint's safetensors files, found as the native engine finds them
    (`expert_pruner.checkpoint_shards`: the index's shards, else model.safetensors, else every
    *.safetensors)."""
    from .expert_pruner import CheckpointError, checkpoint_shards

    try:
        _, shards = checkpoint_shards(model_dir)
    except CheckpointError as e:
        raise ModelLoadError(str(e)) from e
    paths = [os.path.join(model_dir, n) for n in shards]
    for path in paths:
        if not os.path.isfile(path):
            raise ModelLoadError(f"{path}: listed by the index but not there")
    return paths


def load_quantized_model(model_dir, device, dtype, attention="eager"):
    """GptOssForCausalLM whose experts are `mxfp4.QuantizedExperts` holding the checkpoint's
    MXFP4 bytes as they are (no dequantization at load), built on the meta device and filled
    straight from the safetensors files onto `device`; every tensor of the model from the
    checkpoint (a missing, misshapen or mistyped one is an error), and the checkpoint's tensors
    the model has no place for returned, as `load_base_model` does. gpt-oss-20b: 12.8 GiB on the
    device instead of 39 GiB."""
    from safetensors import safe_open
    from transformers import GptOssConfig, GptOssForCausalLM
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise ModelLoadError(f"{model_dir}: no config.json (the job's `model` must be a local checkpoint directory)")
    if not checkpoint_is_mxfp4(model_dir):
        raise ModelLoadError(f"{model_dir}: experts mxfp4 needs an MXFP4 checkpoint (quantization_config.quant_method mxfp4)")
    config = GptOssConfig.from_pretrained(model_dir, local_files_only=True)
    with torch.device("meta"):
        model = GptOssForCausalLM._from_config(config, attn_implementation=attention, dtype=dtype)
        for layer in model.model.layers:
            layer.mlp.experts = mxfp4.QuantizedExperts(config, dtype=dtype)
    expected = model.state_dict()
    state = {}
    for path in checkpoint_files(model_dir):
        try:
            with safe_open(path, framework="pt", device=str(device)) as f:
                for name in f.keys():
                    if name in state:
                        raise ModelLoadError(f"{path}: {name} is in more than one file")
                    if name not in expected:
                        state[name] = None  # not the model's: reported, never loaded
                        continue
                    t = f.get_tensor(name)
                    want = expected[name]
                    if tuple(t.shape) != tuple(want.shape):
                        raise ModelLoadError(f"{path}: {name} has shape {tuple(t.shape)}, the model's is {tuple(want.shape)}")
                    if want.dtype == torch.uint8:
                        if t.dtype != torch.uint8:
                            raise ModelLoadError(f"{path}: {name} is {t.dtype}, MXFP4 blocks and scales are uint8")
                    elif not t.is_floating_point():
                        raise ModelLoadError(f"{path}: {name} is {t.dtype}, expected a floating-point tensor")
                    else:
                        t = t.to(dtype)
                    state[name] = t
        except ModelLoadError:
            raise
        except Exception as e:  # a truncated or corrupt file
            raise ModelLoadError(f"{path}: cannot read: {e}") from e
    if config.tie_word_embeddings and "lm_head.weight" not in state and "model.embed_tokens.weight" in state:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    missing = sorted(n for n in expected if state.get(n) is None)
    if missing:
        raise ModelLoadError(f"{model_dir}: missing weights (not in the checkpoint; they would be random): {missing[:12]}"
                             + (f" and {len(missing) - 12} more" if len(missing) > 12 else ""))
    model.load_state_dict({n: state[n] for n in expected}, strict=True, assign=True)
    # Non-persistent buffers are not in any checkpoint: the rotary tables, computed as
    # transformers computes them (in fp32 on the CPU), then moved.
    model.model.rotary_emb = GptOssRotaryEmbedding(config).to(device)
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise ModelLoadError(f"{model_dir}: no values for {left[:8]}")
    model.requires_grad_(False)
    model.config.output_router_logits = False
    model.config.use_cache = False
    mxfp4.fuse_norms(model)  # compiled on CUDA; the same function, eager, on the CPU
    if attention == "flex_attention":
        _allow_flex_recompiles()
    return model, sorted(n for n, t in state.items() if t is None)


# ---------------------------------------------------------------------------------------------
# LoRA
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Forward and loss
# ---------------------------------------------------------------------------------------------

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
