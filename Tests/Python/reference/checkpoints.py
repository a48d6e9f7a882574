"""Checkpoints read as bytes, loaded the plain way, and MXFP4 quantization by the documented
rule (test_merge: what `tuna merge` writes)."""
import hashlib
import json
import os
import warnings

import torch
from transformers import GptOssForCausalLM


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def raw_tensors(path):
    """{name: (dtype string, shape, raw bytes)} straight from a safetensors file."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


def load_dense(directory, checks=None):
    """A dense-expert checkpoint, the plain way: no quantization config, fp32, eager. With
    `checks` (reference.checks.Checks): no missing/unexpected/mismatched keys or errors, fp32
    parameters only, no loading warnings about weights or keys."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = GptOssForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager",
                                                        output_loading_info=True)
    if checks is not None:
        name = os.path.basename(directory)
        for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
            checks.true(f"{name}: {key} {sorted(info.get(key) or [])}", not info.get(key))
        dtypes = sorted({str(p.dtype) for p in model.parameters()})
        checks.true(f"{name}: parameter dtypes {dtypes}", dtypes == ["torch.float32"])
        loud = [str(w.message) for w in caught if "weight" in str(w.message).lower() or "key" in str(w.message).lower()]
        checks.true(f"{name}: no loading warnings about weights/keys {loud}", not loud)
    return model.eval()


def mxfp4_quantize(w):
    """Re-quantization by the rule LoRAMerge documents (MXFP4.quantize), written independently:
    w [E, in, out] fp32 -> (blocks [E, out, in/32, 16], scales [E, out, in/32]) U8. Per block of
    32 inputs, the smallest 2^s with max|x| <= 6 * 2^s (s clamped to -127..126, byte s + 127),
    x / 2^s rounded to the nearest E2M1 value with ties to the even code, sign kept (also for 0)."""
    e, n_in, n_out = w.shape
    x = w.transpose(1, 2).reshape(e, n_out, n_in // 32, 32).double()
    amax = x.abs().amax(-1)
    s = torch.ceil(torch.log2(amax / 6))
    s = torch.where(amax > 6 * torch.exp2(s), s + 1, s)
    s = torch.where(amax <= 6 * torch.exp2(s - 1), s - 1, s)
    s = torch.where(amax == 0, torch.full_like(s, -127.0), s).clamp(-127, 126)
    y = (x / torch.exp2(s)[..., None]).abs()
    grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
    parity = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1], dtype=torch.float64)
    code = ((y[..., None] - grid).abs() + 1e-12 * parity).argmin(-1)  # a tie goes to the even code
    code = code + 8 * torch.signbit(x).long()
    blocks = (code[..., 0::2] | (code[..., 1::2] << 4)).to(torch.uint8)  # low nibble = even input
    return blocks.contiguous(), (s + 127).to(torch.uint8).contiguous()
