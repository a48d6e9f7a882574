"""How the torch trainer computes, and where: the job's `torch` section resolved for a device
(`torch_options`), the device and the compute dtype.

  - attention: "eager" (transformers' reference) or "flex_attention" (CUDA only: gpt-oss's
    attention sinks are applied through flex attention's returned log-sum-exp, which transformers
    does not support on the CPU);
  - experts: "eager" (transformers: a loop over the experts), "grouped_mm" (transformers: one
    grouped GEMM per projection; `torch.nn.functional.grouped_mm`, also on the CPU with
    torch >= 2.9) -- both on experts dequantized to bf16 at load (Mxfp4Config(dequantize=True)) --
    or "mxfp4" (Tuna's: the checkpoint's MXFP4 bytes stay on the device, each layer's experts are
    dequantized on the fly in forward and backward, LoRA on experts as per-expert low-rank
    products; `mxfp4.py`, loaded by `loading.load_quantized_model`);
  - the loss: full [tokens, vocab] logits then cross-entropy in fp32, or `chunked_loss`: the
    final hidden states of the scored positions, `loss_chunk_rows` at a time through lm_head and
    the fp32 cross-entropy (`loss.py`), so the whole logits tensor never exists.
  `auto` is the fast choice on CUDA (flex attention, mxfp4 experts for an MXFP4 checkpoint,
  grouped_mm otherwise) and eager on the CPU.
"""
import json
import os

import torch


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
