"""The model side: transformers' gpt-oss with PEFT's LoRA, loaded strictly.

How it computes is the job's `torch` section (`TorchOptions`, resolved per device):
  - attention: "eager" (transformers' reference) or "flex_attention" (CUDA only: gpt-oss's
    attention sinks are applied through flex attention's returned log-sum-exp, which transformers
    does not support on the CPU);
  - experts: "eager" (a loop over the experts) or "grouped_mm" (one grouped GEMM per projection;
    `torch.nn.functional.grouped_mm`, also on the CPU with torch >= 2.9);
  - the loss: full [tokens, vocab] logits then cross-entropy in fp32, or `chunked_loss`: the
    final hidden states of the scored positions, `loss_chunk_rows` at a time through lm_head and
    the fp32 cross-entropy, each chunk recomputed in backward, so the whole logits tensor never
    exists. Same sums, other summation order.
  `auto` is the fast choice on CUDA and eager on the CPU. MXFP4 expert weights are dequantized at
load (Mxfp4Config(dequantize=True)) either way. The seams: `load_base_model` (attention/experts
implementation, quantization), `attention_masks` (a packed batch's mask; transformers builds a
BlockMask instead of a dense mask for flex attention from the same call) and `token_loss_sum`
(the only place that sees logits).
"""
import json
import os

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .data import IGNORE

ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj"]


class ModelLoadError(RuntimeError):
    pass


# ---------------------------------------------------------------------------------------------
# The job's `torch` section
# ---------------------------------------------------------------------------------------------

ATTENTION_CHOICES = ("auto", "eager", "flex_attention")
EXPERTS_CHOICES = ("auto", "eager", "grouped_mm")
TORCH_DEFAULTS = {"attention": "auto", "experts": "auto", "chunked_loss": True, "loss_chunk_rows": 4096}


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


def torch_options(section, device):
    """The job's `torch` section (what JobValidator fills in for `trainer: torch` jobs) resolved
    for `device`. A job without one (an older job, a `tuna train`-style spec) gets the
    defaults: auto, auto, chunked loss, 4096 rows. An explicit choice this device cannot run is
    an error, not a silent fallback."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ValueError(f"torch: {section!r} is not an object")
    unknown = sorted(set(section) - set(TORCH_DEFAULTS))
    if unknown:
        raise ValueError(f"torch: unknown field(s) {unknown} (expected {sorted(TORCH_DEFAULTS)})")
    o = dict(TORCH_DEFAULTS, **section)
    attention, experts = o["attention"], o["experts"]
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"torch.attention: {attention!r} is not one of {list(ATTENTION_CHOICES)}")
    if experts not in EXPERTS_CHOICES:
        raise ValueError(f"torch.experts: {experts!r} is not one of {list(EXPERTS_CHOICES)}")
    if not isinstance(o["chunked_loss"], bool):
        raise ValueError(f"torch.chunked_loss: {o['chunked_loss']!r} is not true or false")
    rows = o["loss_chunk_rows"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"torch.loss_chunk_rows: {rows!r} is not a positive integer")
    cuda = device.type == "cuda"
    if attention == "auto":
        attention = "flex_attention" if cuda else "eager"
    elif attention == "flex_attention" and not cuda:
        raise ValueError(f"torch.attention: flex_attention needs a CUDA device (this run is on {device.type}): "
                         "transformers applies gpt-oss's attention sinks through flex attention's log-sum-exp, "
                         "which it does not support on the CPU; use eager (or auto)")
    if experts == "auto":
        experts = "grouped_mm" if cuda and grouped_mm_available(device) else "eager"
    elif experts == "grouped_mm" and not grouped_mm_available(device):
        raise ValueError(f"torch.experts: grouped_mm is not available on {device} with torch {torch.__version__} "
                         "(it needs torch.nn.functional.grouped_mm: CUDA compute capability 8.0+, or the CPU with "
                         "torch >= 2.9); use eager (or auto)")
    return TorchOptions(attention, experts, o["chunked_loss"], rows)


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
    # upcast is exact and makes the model one dtype end to end.
    model = model.to(dtype)
    model.config.output_router_logits = False  # no router aux loss: the native trainer has none
    model.config.use_cache = False
    got = (model.config._attn_implementation, getattr(model.config, "_experts_implementation", "eager"))
    if got != (attention, experts):
        raise ModelLoadError(f"asked transformers for attention {attention!r} / experts {experts!r}, the model reports {got}")
    if attention == "flex_attention":
        _allow_flex_recompiles()
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


def _ce_sum(head, hidden, labels):
    # lm_head in the model's dtype, the cross-entropy in fp32 (as the full-logits path).
    return F.cross_entropy(head(hidden).float(), labels, ignore_index=IGNORE, reduction="sum")


def token_loss_sum(model, batch, device, chunk_rows=None):
    """Sum over scored positions of the next-token cross-entropy (fp32), and their count.
    labels[t] is predicted from position t - 1, as in transformers' ForCausalLMLoss.

    chunk_rows None: the model's own forward, full [batch, seq, vocab] logits, one cross-entropy.
    chunk_rows N: the decoder's final hidden states; the rows of the scored positions (picked with
    indices from the CPU labels: no device sync) go through lm_head + fp32 cross-entropy N at a
    time, each chunk under torch.utils.checkpoint when training (its logits are recomputed in
    backward instead of kept), so at most one chunk's [N, vocab] logits exist at once. The same
    per-token terms; only the summation order differs (~1e-7 relative in fp32).

    With flex attention the batch is first padded to a multiple of 128 positions (`pad_for_flex`)."""
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
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
    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.model(**kwargs).last_hidden_state  # [B, T, H]
    b, t, h = hidden.shape
    keep = (labels != IGNORE).nonzero()  # [scored, 2]: (row, position) of labels[:, 1:]
    rows = (keep[:, 0] * t + keep[:, 1]).to(device)  # position p's hidden state predicts labels[:, p + 1]
    hs = hidden.reshape(b * t, h).index_select(0, rows)
    y = labels[keep[:, 0], keep[:, 1]].to(device)
    head = causal.get_output_embeddings()
    checkpointed = torch.is_grad_enabled() and (hs.requires_grad or any(p.requires_grad for p in head.parameters()))
    total = torch.zeros((), dtype=torch.float32, device=device)
    for s in range(0, scored, chunk_rows):
        if checkpointed:
            part = checkpoint(_ce_sum, head, hs[s:s + chunk_rows], y[s:s + chunk_rows],
                              use_reentrant=False, preserve_rng_state=False)  # no randomness inside
        else:
            part = _ce_sum(head, hs[s:s + chunk_rows], y[s:s + chunk_rows])
        total = total + part
    return total, scored
