"""Loading gpt-oss strictly: every weight of the checkpoint accounted for, with the attention and
experts implementations `compute.torch_options` resolved (`load_base_model`: transformers;
`load_quantized_model`: MXFP4 experts kept packed, `mxfp4.py`)."""
import json
import os

import torch

from . import mxfp4
from .compute import checkpoint_is_mxfp4
from .forward_pass import _allow_flex_recompiles


class ModelLoadError(RuntimeError):
    pass


def resolve(path, root):
    """Relative `model` / `dataset` paths are resolved against the data root, as `tuna train
    --root` and `tuna prepare --root` do (TrainJob.swift)."""
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(root, path))


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
