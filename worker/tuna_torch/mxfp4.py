"""gpt-oss experts kept in MXFP4 on the device, with LoRA on experts as per-expert low-rank products
(the torch section's `experts: mxfp4`, the fast path's memory half).

Why: transformers' way to train gpt-oss (Mxfp4Config(dequantize=True)) turns the 24 layers x 32
experts into bf16 at load, 39 GiB for gpt-oss-20b; PEFT's LoRA on expert parameters then builds
`W + scaling * B A` for the whole expert stack of a targeted layer on every forward (about 1.6 GB
a layer). Here the checkpoint's `*_blocks` / `*_scales` bytes stay on the device as they are
(10 GiB for gpt-oss-20b); each layer's experts are dequantized to the compute dtype when the layer
runs and dropped right after, in forward and again in backward (an autograd Function that saves
only the quantized bytes; with gradient checkpointing, the recomputed forward's stack instead), so
at most one layer's bf16 experts exist at any time. LoRA on an expert parameter is never merged:
expert e adds `scaling * (x A_e^T) B_e^T`, two grouped GEMMs of rank r, over exactly the rows
routed to e.

The computation per layer (`QuantizedExperts.forward`), S = tokens x top-k rows:
  sort the (token, expert) pairs by expert -> gather the rows -> grouped GEMM gate_up (dequantized
  on the fly) [+ LoRA] -> bias + clamped SwiGLU on interleaved gate/up (one fused kernel) ->
  grouped GEMM down [+ LoRA] -> bias, times the routing weight (one fused kernel) -> back to
  token order by a gather with the inverse permutation, the k rows of a token summed.
The gathers have hand-written backwards that gather too: index_select's own backward scatters
with atomic adds into a zeroed tensor. "Fused" is torch.compile on CUDA (`fused.py`), the same
Python functions run eagerly on the CPU, where the tests run them.
It is transformers' GptOssExperts (same math, same interleaving, same clamp) in another order of
summation; `Tests/Python/test_torch_agreement.py` (CPU, fp32, against the native trainer) and the GPU
benchmark (bf16, against the plain recipe) check the losses.

Tensor layouts (those of the checkpoint, which is why the state dict names match it and a
strict `load_state_dict` accounts for every byte):
  gate_up_proj_blocks [E, 2I, H/32, 16] u8, gate_up_proj_scales [E, 2I, H/32] u8 (e8m0),
  gate_up_proj_bias [E, 2I]; down_proj_* the same with (H, I). A row of blocks is one output
  feature; its 16 bytes hold 32 e2m1 values, the low nibble first.
LoRA (PEFT 0.21 ParamWrapper on gpt-oss's [E, in, out] parameters; the adapter file is PEFT's):
  lora_A [r*E, in] read as (E, r, in); lora_B [out, r*E] read as (out, r, E).
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fused import fused

# e2m1 code -> value (sign bit 3, exponent bits 1-2, mantissa bit 0), the order of the nibbles'
# integer values; identical to transformers' FP4_VALUES.
FP4_VALUES = (+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)
PROJECTIONS = ("gate_up_proj", "down_proj")


def dequantize_eager(blocks, scales, dtype):
    """[..., out, G, 16] u8 blocks and [..., out, G] u8 scales -> [..., out, G*32] in `dtype`:
    value * 2^(scale - 127), computed in fp32 (exact: a power of two times a 3-bit significand)
    and rounded once, so the result equals transformers' ldexp in bf16 bit for bit."""
    lut = torch.tensor(FP4_VALUES, dtype=torch.float32, device=blocks.device)
    lo = lut[(blocks & 0x0F).int()]
    hi = lut[(blocks >> 4).int()]
    values = torch.stack((lo, hi), dim=-1).flatten(-3)  # [..., out, G*32]: low nibble first
    factor = torch.exp2(scales.float() - 127.0).repeat_interleave(32, dim=-1)
    return (values * factor).to(dtype)


def swiglu(gate_up, limit, alpha):
    """gpt-oss's gated activation on interleaved [gate, up] columns (transformers'
    GptOssExperts._apply_gate): gate clamped above at `limit`, up to [-limit, limit],
    (up + 1) * gate * sigmoid(alpha * gate)."""
    gate, up = gate_up[..., ::2], gate_up[..., 1::2]
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    return (up + 1) * (gate * torch.sigmoid(gate * alpha))


def gate_activation(gate_up, bias, expert_of_row, limit, alpha):
    """swiglu of the gate_up projection plus each row's expert bias."""
    return swiglu(gate_up + bias.index_select(0, expert_of_row), limit, alpha)


def weighted_output(y, bias, expert_of_row, weights):
    """The down projection plus each row's expert bias, times the row's routing weight."""
    return (y + bias.index_select(0, expert_of_row)) * weights.unsqueeze(-1)


def rms_norm(x, weight, eps):
    """transformers' GptOssRMSNorm.forward, as a function: in fp32, weight applied before the
    cast back."""
    h = x.to(torch.float32)
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * h).to(x.dtype)


dequantize = fused(dequantize_eager, dynamic=False)  # two shapes per model: gate_up and down
fused_gate_activation = fused(gate_activation)
fused_weighted_output = fused(weighted_output)
fused_rms_norm = fused(rms_norm)


def fuse_norms(model):
    """Every GptOssRMSNorm of `model` through `fused_rms_norm` (same math; on CUDA one kernel each
    way instead of about seven passes over the activations)."""
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRMSNorm

    for m in model.modules():
        if isinstance(m, GptOssRMSNorm):
            m.forward = (lambda norm: (lambda x: fused_rms_norm(x, norm.weight, norm.variance_epsilon)))(m)


_grouped_mm_op = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)
_contiguous_b = [False]  # set once a kernel refused a transposed right operand


def grouped_mm(a, b, offsets):
    """a [S, K] rows grouped by `offsets` (int32 cumulative ends), b [E, K, N] -> [S, N]. Tries
    b as given (a transposed view saves copying a layer's weights) and, if this torch's kernel
    wants a row-major b, copies it from then on."""
    if not _contiguous_b[0]:
        try:
            return _grouped_mm_op(a, b, offs=offsets)
        except RuntimeError as e:
            if b.is_contiguous() or isinstance(e, torch.OutOfMemoryError):
                raise
            _contiguous_b[0] = True
            print(f"tuna_torch: grouped_mm wants a contiguous right operand here ({str(e)[:120]}); copying it",
                  file=sys.stderr, flush=True)
    return _grouped_mm_op(a, b.contiguous(), offs=offsets)


class _QuantizedGroupedLinear(torch.autograd.Function):
    """y[rows of expert e] = x[rows of e] @ W_e^T with W dequantized from MXFP4 when needed. The
    weights are frozen, so backward needs no activations, only W again for the input gradient:
    either the quantized bytes are saved and W dequantized again in backward, or (`keep_weights`)
    the dequantized W itself is saved. The second is for gradient checkpointing: the checkpoint
    drops whatever the first forward saves and recomputes the layer right before its backward,
    so W lives only through that layer's backward (+1.6 GB at gpt-oss-20b) and one of the three
    dequantizations per step is saved (H200 profile: 144 -> 96 dequantization kernels, 53 -> 35 ms
    a step; peak 16.4 -> 17.6 GiB). Without checkpointing it would keep every layer's bf16
    experts until backward, so it is off there."""

    @staticmethod
    def forward(ctx, x, blocks, scales, offsets, keep_weights):
        w = dequantize(blocks, scales, x.dtype)  # [E, out, in]
        ctx.keep_weights = keep_weights
        if keep_weights:
            ctx.save_for_backward(w, offsets)
        else:
            ctx.save_for_backward(blocks, scales, offsets)
        return grouped_mm(x, w.transpose(1, 2), offsets)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.keep_weights:
            w, offsets = ctx.saved_tensors
        else:
            blocks, scales, offsets = ctx.saved_tensors
            w = dequantize(blocks, scales, grad_out.dtype)
        return grouped_mm(grad_out.contiguous(), w, offsets), None, None, None, None


class _GatherTokenRows(torch.autograd.Function):
    """x[i] = hidden[order[i] // k]: each token's row, once per routed expert, in expert order.
    Backward without atomics: the row gradients back to (token, k) order by the inverse
    permutation (a gather), then each token's k rows summed. (index_select's own backward
    scatters with atomic adds into a zeroed tensor: 0.78 ms a call against 0.11 for a gather
    in the H200 profiles of Benchmarks/gpu/results, runs 2 and 3.)"""

    @staticmethod
    def forward(ctx, hidden, order, inverse, k):
        ctx.save_for_backward(inverse)
        ctx.k = k
        return hidden.index_select(0, order // k)

    @staticmethod
    def backward(ctx, grad):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(0, inverse).view(-1, ctx.k, grad.shape[-1]).sum(dim=1), None, None, None


class _PermuteRows(torch.autograd.Function):
    """y = x[inverse], `inverse` the inverse of the permutation `perm` (so y[perm[i]] = x[i]);
    backward gathers with `perm` (no scatter)."""

    @staticmethod
    def forward(ctx, x, perm, inverse):
        ctx.save_for_backward(perm)
        return x.index_select(0, inverse)

    @staticmethod
    def backward(ctx, grad):
        (perm,) = ctx.saved_tensors
        return grad.index_select(0, perm), None, None


def _aligned_rank(r, dtype):
    # grouped_mm wants every row of a matrix to start on 16 bytes (CUDA and CPU alike): a rank
    # of 8 in bf16, 4 in fp32.
    multiple = max(1, 16 // torch.tensor([], dtype=dtype).element_size())
    return -(-r // multiple) * multiple


class ExpertLoRA(nn.Module):
    """LoRA on one expert parameter, PEFT's tensors: lora_A [r*E, in], lora_B [out, r*E] (fp32, as
    PEFT's autocast_adapter_dtype keeps them), applied as per-expert low-rank products."""

    def __init__(self, experts, in_features, out_features, rank, scaling, device):
        super().__init__()
        self.experts, self.rank, self.scaling = experts, rank, scaling
        self.lora_A = nn.Parameter(torch.zeros(rank * experts, in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank * experts, device=device))

    def delta(self, x, offsets):
        e, r = self.experts, self.rank
        a = self.lora_A.view(e, r, -1).transpose(1, 2).to(x.dtype)  # [E, in, r]
        b = self.lora_B.view(-1, r, e).permute(2, 1, 0).to(x.dtype)  # [E, r, out]
        pad = _aligned_rank(r, x.dtype) - r
        if pad:  # zero columns / rows: the same product, aligned for the kernel
            a, b = F.pad(a, (0, pad)), F.pad(b, (0, 0, 0, pad))
        # An expert no row was routed to gets zero gradients for its A and B from grouped_mm's
        # backward (an empty group) on the CPU and on Hopper; pytorch/pytorch#172439 reports
        # non-zero ones on B200 (not tested here).
        u = grouped_mm(x, a.contiguous(), offsets)  # [S, r]
        return grouped_mm(u, b.contiguous(), offsets) * self.scaling


class QuantizedExperts(nn.Module):
    """Drop-in for transformers' GptOssExperts (same forward signature: hidden states [N, H],
    router indices [N, k], routing weights [N, k]) holding the checkpoint's MXFP4 tensors."""

    def __init__(self, config, device=None, dtype=None):
        super().__init__()
        e, h, i = config.num_local_experts, config.hidden_size, config.intermediate_size
        if h % 32 or i % 32:
            raise ValueError(f"MXFP4 experts need hidden_size and intermediate_size divisible by 32 (got {h}, {i})")
        self.num_experts, self.hidden_size, self.intermediate_size = e, h, i
        # gpt-oss's config says 7.0; transformers hard-codes 7.0, the native engine reads the config
        self.limit, self.alpha = float(getattr(config, "swiglu_limit", 7.0)), 1.702
        u8 = dict(dtype=torch.uint8, device=device)
        self.register_buffer("gate_up_proj_blocks", torch.empty(e, 2 * i, h // 32, 16, **u8))
        self.register_buffer("gate_up_proj_scales", torch.empty(e, 2 * i, h // 32, **u8))
        self.register_buffer("down_proj_blocks", torch.empty(e, h, i // 32, 16, **u8))
        self.register_buffer("down_proj_scales", torch.empty(e, h, i // 32, **u8))
        self.gate_up_proj_bias = nn.Parameter(torch.empty(e, 2 * i, device=device, dtype=dtype), requires_grad=False)
        self.down_proj_bias = nn.Parameter(torch.empty(e, h, device=device, dtype=dtype), requires_grad=False)
        self.lora = nn.ModuleDict()  # projection name -> ExpertLoRA
        self.lora_enabled = True  # off inside `model.adapter_disabled` (the baseline evaluation)
        self.keep_weights_for_backward = False  # see _QuantizedGroupedLinear; on with gradient checkpointing

    def features(self, projection):
        h, i = self.hidden_size, self.intermediate_size
        return (h, 2 * i) if projection == "gate_up_proj" else (i, h)

    def add_lora(self, projection, rank, scaling):
        in_f, out_f = self.features(projection)
        self.lora[projection] = ExpertLoRA(self.num_experts, in_f, out_f, rank, scaling, self.down_proj_bias.device)
        return self.lora[projection]

    def _project(self, name, x, offsets):
        """x @ W_e^T for each row's expert e [+ the LoRA delta]; the bias is added by the caller,
        fused with what follows."""
        y = _QuantizedGroupedLinear.apply(x, getattr(self, name + "_blocks"), getattr(self, name + "_scales"), offsets,
                                          self.keep_weights_for_backward)
        if self.lora_enabled and name in self.lora:
            y = y + self.lora[name].delta(x, offsets)
        return y

    def forward(self, hidden_states, router_indices=None, routing_weights=None):
        n, k = router_indices.shape
        flat = router_indices.reshape(-1)
        expert_of_row, order = torch.sort(flat, stable=True)  # rows grouped by expert
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        offsets = torch.cumsum(torch.bincount(flat, minlength=self.num_experts), 0).to(torch.int32)
        x = _GatherTokenRows.apply(hidden_states, order, inverse, k)
        h = fused_gate_activation(self._project("gate_up_proj", x, offsets), self.gate_up_proj_bias, expert_of_row,
                                  self.limit, self.alpha)
        weights = routing_weights.reshape(-1).index_select(0, order).to(h.dtype)
        y = fused_weighted_output(self._project("down_proj", h, offsets), self.down_proj_bias, expert_of_row, weights)
        # Back to (token, k) order, then each token's k rows summed: no atomics, deterministic.
        return _PermuteRows.apply(y, order, inverse).view(n, k, -1).sum(dim=1).to(hidden_states.dtype)


def parse_target_parameter(name):
    """(layer or None, parameter) for a `target_parameters` entry, PEFT's suffix rule on
    `model.layers.<L>.mlp.experts.<param>` (LoRASettings.parseParameter in Swift); None if it
    does not name a gpt-oss expert parameter."""
    parts = name.split(".")
    template = ["model", "layers", "#", "mlp", "experts"]
    if not parts or parts[-1] not in PROJECTIONS or len(parts) > len(template) + 1:
        return None
    layer = None
    for i, part in enumerate(parts[:-1]):
        slot = template[len(template) - (len(parts) - 1) + i]
        if slot == "#":
            if not part.isdigit() or str(int(part)) != part:
                return None
            layer = int(part)
        elif part != slot:
            return None
    return layer, parts[-1]


def expert_lora_names(layer, targeted):
    """{projection: (A name, B name)} as PEFT saves them: with both projections of a layer
    targeted, PEFT nests its wrappers and gate_up_proj's tensors get a `base_layer.` infix."""
    out = {}
    for p in PROJECTIONS:
        if p in targeted:
            base = f"base_model.model.model.layers.{layer}.mlp.experts." + ("base_layer." if p == "gate_up_proj" and len(targeted) == 2 else "")
            out[p] = (base + "lora_A.weight", base + "lora_B.weight")
    return out


def add_expert_lora(model, target_parameters, rank, scaling, dropout=0.0):
    """LoRA modules on the targeted expert parameters of a model whose experts are
    QuantizedExperts; returns {saved name: parameter}. Dropout is refused, as PEFT's
    ParamWrapper refuses it (x cannot be factored out of B A dropout(x) W)."""
    if target_parameters and dropout:
        raise ValueError("lora.dropout: LoRA on expert parameters (target_parameters) cannot use dropout (PEFT refuses it too)")
    layers = model.model.layers
    wanted = {}
    for t in target_parameters or []:
        parsed = parse_target_parameter(t)
        if parsed is None:
            raise ValueError(f"lora.target_parameters: {t!r} is not a gpt-oss expert parameter "
                             "(…mlp.experts.gate_up_proj or …mlp.experts.down_proj)")
        layer, p = parsed
        if layer is not None and layer >= len(layers):
            raise ValueError(f"lora.target_parameters: {t!r} names a layer the model ({len(layers)} layers) does not have")
        for l in ([layer] if layer is not None else range(len(layers))):
            wanted.setdefault(l, set()).add(p)
    params = {}
    for l, targeted in sorted(wanted.items()):
        experts = layers[l].mlp.experts
        if not isinstance(experts, QuantizedExperts):
            raise TypeError(f"layer {l}: experts are {type(experts).__name__}, not QuantizedExperts")
        for p, (a_name, b_name) in expert_lora_names(l, targeted).items():
            lora = experts.add_lora(p, rank, scaling)
            params[a_name], params[b_name] = lora.lora_A, lora.lora_B
    return params


def quantized_experts(model):
    return [m for m in model.modules() if isinstance(m, QuantizedExperts)]
