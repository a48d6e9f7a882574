"""Unit checks of the torch trainer's fast-path pieces (worker/tuna_torch: mxfp4.py, loss.py,
lora_linear.py) against transformers, PEFT and torch autograd, on the CPU:

  * MXFP4 dequantization: bit-identical to transformers' convert_moe_packed_tensors in bf16 and
    fp32, over every nibble and every scale exponent 0..254;
  * the hand-written backwards (_GatherTokenRows, _PermuteRows, _QuantizedGroupedLinear with and
    without kept weights): torch.autograd.gradcheck in float64;
  * LinearCrossEntropySum: loss and input gradient against F.cross_entropy through autograd
    (fp32), with the step's 1/scored scale, and the no-grad (evaluation) path;
  * QuantizedExperts (+ ExpertLoRA) against transformers' GptOssExperts with PEFT's ParamWrapper
    LoRA on both projections (fp32): outputs, input gradient, LoRA gradients, for ranks 3, 4 and
    8 (3 exercises the alignment padding), with routing that leaves experts empty;
  * LoRALinear against PEFT's lora.Linear (fp32): output and gradients, rsLoRA scaling.
"""
import pytest
import torch
import torch.nn.functional as F

from tuna_torch import adapters, loss as ce_loss, lora_linear, mxfp4


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_dequantize_is_transformers_bit_for_bit(dtype):
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    blocks = torch.arange(256, dtype=torch.uint8).repeat(255, 1).reshape(255, 16, 16)  # every byte
    scales = torch.arange(255, dtype=torch.uint8).reshape(255, 1).repeat(1, 16)  # every exponent
    want = convert_moe_packed_tensors(blocks.unsqueeze(0), scales.unsqueeze(0), dtype=dtype)[0].transpose(0, 1)
    got = mxfp4.dequantize_eager(blocks.unsqueeze(0), scales.unsqueeze(0), dtype)[0]
    same = torch.equal(got.view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                       want.view(torch.int16 if dtype == torch.bfloat16 else torch.int32))
    assert same, f"{dtype}: not bit-identical over every byte and scale"


def test_hand_written_backwards_pass_gradcheck(checks):
    """float64 gradcheck of _GatherTokenRows, _PermuteRows and _QuantizedGroupedLinear."""
    g = torch.Generator().manual_seed(0)
    n, k, h = 5, 2, 3
    flat = torch.randint(0, 4, (n * k,), generator=g)
    _, order = torch.sort(flat, stable=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    hidden = torch.randn(n, h, dtype=torch.float64, requires_grad=True, generator=g)
    checks.true("_GatherTokenRows", torch.autograd.gradcheck(
        lambda x: mxfp4._GatherTokenRows.apply(x, order, inverse, k), (hidden,)))
    rows = torch.randn(n * k, h, dtype=torch.float64, requires_grad=True, generator=g)
    checks.true("_PermuteRows", torch.autograd.gradcheck(lambda y: mxfp4._PermuteRows.apply(y, order, inverse), (rows,)))
    e, out_f, in_f = 3, 8, 64
    blocks = torch.randint(0, 256, (e, out_f, in_f // 32, 16), dtype=torch.uint8, generator=g)
    scales = torch.randint(120, 130, (e, out_f, in_f // 32), dtype=torch.uint8, generator=g)
    offsets = torch.tensor([2, 2, 6], dtype=torch.int32)  # an empty group in the middle
    x = torch.randn(6, in_f, dtype=torch.float64, requires_grad=True, generator=g)
    mm = mxfp4.grouped_mm
    mxfp4.grouped_mm = lambda a, b, offs: _reference_grouped_mm(a, b, offs)  # float64: no kernel on the CPU
    try:
        for keep in (False, True):
            checks.true(f"_QuantizedGroupedLinear (keep_weights={keep})", torch.autograd.gradcheck(
                lambda t: mxfp4._QuantizedGroupedLinear.apply(t, blocks, scales, offsets, keep), (x,)))
    finally:
        mxfp4.grouped_mm = mm


def _reference_grouped_mm(a, b, offsets):
    out, start = [], 0
    for i, end in enumerate(offsets.tolist()):
        out.append(a[start:end] @ b[i])
        start = end
    return torch.cat(out)


def test_linear_cross_entropy_against_autograd(checks):
    """LinearCrossEntropySum vs F.cross_entropy through autograd (fp32)."""
    g = torch.Generator().manual_seed(1)
    rows, hdim, vocab, scored = 37, 16, 300, 1007
    head = torch.nn.Linear(hdim, vocab, bias=False)
    head.weight.data = torch.randn(vocab, hdim, generator=g)
    head.requires_grad_(False)
    labels = torch.randint(0, vocab, (rows,), generator=g)
    h1 = torch.randn(rows, hdim, generator=g, requires_grad=True)
    h2 = h1.detach().clone().requires_grad_(True)
    got = ce_loss.linear_cross_entropy_sum(h1, head, labels)
    want = F.cross_entropy(head(h2).float(), labels, reduction="sum")
    (got / scored).backward()
    (want / scored).backward()
    checks.close("loss", got.detach(), want.detach(), 1e-6)
    checks.close("input gradient, scaled by 1/scored", h1.grad, h2.grad, 1e-5)
    with torch.no_grad():
        checks.close("no-grad path (evaluation)", ce_loss.linear_cross_entropy_sum(h1, head, labels), want.detach(), 1e-6)


class _Config:
    def __init__(self, e=6, h=64, i=64, top_k=2):
        self.num_local_experts, self.hidden_size, self.intermediate_size = e, h, i
        self.num_experts_per_tok, self.swiglu_limit = top_k, 7.0
        self._experts_implementation = "eager"  # transformers' loop over the experts


def test_quantized_experts_against_transformers_and_peft(checks):
    """QuantizedExperts + ExpertLoRA vs transformers GptOssExperts + PEFT ParamWrapper (fp32)."""
    from peft import LoraConfig, get_peft_model
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    g = torch.Generator().manual_seed(2)
    cfg = _Config()
    e, h, i = cfg.num_local_experts, cfg.hidden_size, cfg.intermediate_size
    q = mxfp4.QuantizedExperts(cfg, dtype=torch.float32)
    with torch.no_grad():
        q.gate_up_proj_blocks.copy_(torch.randint(0, 256, q.gate_up_proj_blocks.shape, dtype=torch.uint8, generator=g))
        q.down_proj_blocks.copy_(torch.randint(0, 256, q.down_proj_blocks.shape, dtype=torch.uint8, generator=g))
        q.gate_up_proj_scales.fill_(123)
        q.down_proj_scales.fill_(123)
        q.gate_up_proj_bias.copy_(0.1 * torch.randn(e, 2 * i, generator=g))
        q.down_proj_bias.copy_(0.1 * torch.randn(e, h, generator=g))

    class Holder(torch.nn.Module):  # PEFT wraps parameters of a submodule named like gpt-oss's
        def __init__(self):
            super().__init__()
            self.experts = GptOssExperts(cfg)

        def forward(self, x, idx, w):
            return self.experts(x, idx, w)

    for rank in (3, 4, 8):
        ref = Holder()
        with torch.no_grad():
            ref.experts.gate_up_proj.copy_(mxfp4.dequantize_eager(q.gate_up_proj_blocks, q.gate_up_proj_scales,
                                                                  torch.float32).transpose(1, 2))
            ref.experts.down_proj.copy_(mxfp4.dequantize_eager(q.down_proj_blocks, q.down_proj_scales,
                                                               torch.float32).transpose(1, 2))
            ref.experts.gate_up_proj_bias.copy_(q.gate_up_proj_bias)
            ref.experts.down_proj_bias.copy_(q.down_proj_bias)
        peft_model = get_peft_model(ref, LoraConfig(r=rank, lora_alpha=2 * rank,
                                                    target_parameters=["experts.gate_up_proj", "experts.down_proj"]))
        q.lora = torch.nn.ModuleDict()
        ours = {p: q.add_lora(p, rank, 2.0) for p in ("gate_up_proj", "down_proj")}
        theirs = {}
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                which = "gate_up_proj" if ".base_layer." in name else "down_proj"  # PEFT nests gate_up inside
                theirs[(which, "A" if "lora_A" in name else "B")] = p
        with torch.no_grad():
            for (which, ab), p in theirs.items():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
                getattr(ours[which], f"lora_{ab}").copy_(p)
        n, k = 11, cfg.num_experts_per_tok
        logits = torch.randn(n, e, generator=g)
        logits[:, e - 1] = -1e9  # the last expert never chosen: an empty group
        weights, idx = torch.topk(logits, k, dim=-1)
        weights = torch.softmax(weights, dim=-1)
        x1 = torch.randn(n, h, generator=g, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        y1 = q(x1, idx, weights)
        y2 = peft_model(x2, idx, weights)
        checks.close(f"rank {rank}: output", y1.detach(), y2.detach(), 1e-5)
        grad = torch.randn(y1.shape, generator=g)
        y1.backward(grad)
        y2.backward(grad)
        checks.close(f"rank {rank}: input gradient", x1.grad, x2.grad, 1e-5)
        for (which, ab), p in theirs.items():
            checks.close(f"rank {rank}: {which} lora_{ab} gradient", getattr(ours[which], f"lora_{ab}").grad, p.grad, 1e-5)


def test_lora_linear_against_peft(checks):
    """LoRALinear vs PEFT lora.Linear (fp32)."""
    from peft import LoraConfig, get_peft_model

    g = torch.Generator().manual_seed(3)
    for rslora in (False, True):
        base = torch.nn.Sequential(torch.nn.Linear(32, 48))
        torch.nn.init.normal_(base[0].weight, generator=g)
        ref = get_peft_model(torch.nn.Sequential(torch.nn.Linear(32, 48)), LoraConfig(r=4, lora_alpha=12, target_modules=["0"],
                                                                                     use_rslora=rslora))
        ref.base_model.model[0].base_layer.load_state_dict(base[0].state_dict())
        cfg = LoraConfig(r=4, lora_alpha=12, target_modules=["0"], use_rslora=rslora)
        scaling = adapters._scaling(cfg)  # the trainer's: alpha / r, alpha / sqrt(r) with rsLoRA
        params = lora_linear.add_linear_lora(base, cfg, scaling)
        with torch.no_grad():
            for name, p in ref.named_parameters():
                if p.requires_grad:
                    p.copy_(torch.randn(p.shape, generator=g))
                    params["base_model.model." + name.replace(".default", "").replace("base_model.model.", "")].copy_(p)
        x1 = torch.randn(2, 5, 32, generator=g, requires_grad=True)
        x2 = x1.detach().clone().requires_grad_(True)
        y1, y2 = base(x1), ref(x2)
        checks.close(f"rslora={rslora}: output", y1.detach(), y2.detach(), 1e-6)
        grad = torch.randn(y1.shape, generator=g)
        y1.backward(grad)
        y2.backward(grad)
        checks.close(f"rslora={rslora}: input gradient", x1.grad, x2.grad, 1e-6)
        for name, p in ref.named_parameters():
            if p.requires_grad:
                mine = params["base_model.model." + name.replace(".default", "").replace("base_model.model.", "")]
                checks.close(f"rslora={rslora}: {name.split('.')[-3]} gradient", mine.grad, p.grad, 1e-5)
