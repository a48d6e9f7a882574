"""LoRA on linear layers for the quantized-experts model (`experts: mxfp4`), in place of PEFT's.

PEFT keeps the adapter in fp32 on a bf16 model (autocast_adapter_dtype) and computes the LoRA
branch in fp32: each targeted layer casts its [tokens, in] input to fp32, multiplies in fp32
(no tensor cores) and adds an fp32 [tokens, out] result to the bf16 output, then casts back:
extra passes over the activations on every forward and backward (part of what run 2 of
docs/performance.md's bench_lora history removed; not measured on its own).
Here the weights stay fp32 (what AdamW updates) and are cast to the activations' dtype at use
(a few MB), and the branch runs in that dtype, the way autocast-based bf16 trainers compute it:

    y = base(x) + scaling * (dropout(x) @ A^T) @ B^T     (the second GEMM adds into y: addmm)

Names and shapes are PEFT's (lora_A [r, in], lora_B [out, r]; saved as
`base_model.model.<module>.lora_A.weight`), and which modules are targeted is decided by PEFT's
own matcher, so the adapter file and its config are exactly what PEFT writes and loads. On the
CPU in fp32 the computation is PEFT's to rounding (Tests/Python/test_torch_agreement.py).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class LoRALinear(nn.Module):
    def __init__(self, base, rank, scaling, dropout):
        super().__init__()
        self.base_layer = base
        self.rank, self.scaling = rank, scaling
        self.dropout = dropout
        device = base.weight.device
        self.lora_A = nn.Parameter(torch.zeros(rank, base.in_features, device=device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=device))
        self.lora_enabled = True  # off inside `model.adapter_disabled` (the baseline evaluation)

    def forward(self, x):
        y = self.base_layer(x)
        if not self.lora_enabled:
            return y
        h = F.dropout(x, self.dropout, self.training) if self.dropout > 0 else x
        u = h @ self.lora_A.to(x.dtype).t()
        shape = y.shape
        y = torch.addmm(y.reshape(-1, shape[-1]), u.reshape(-1, self.rank), self.lora_B.to(x.dtype).t(),
                        alpha=self.scaling)
        return y.view(shape)


def add_linear_lora(model, cfg, scaling):
    """LoRALinear on every nn.Linear of `model` (a GptOssForCausalLM) that LoraConfig `cfg`'s
    target_modules select by PEFT's rule (the output layer excluded, as PEFT excludes it);
    returns {saved name: parameter}."""
    from peft.tuners.tuners_utils import check_target_module_exists

    params = {}
    output_layer = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or module is output_layer:
            continue
        if not check_target_module_exists(cfg, name):
            continue
        parent_name, _, child = name.rpartition(".")
        lora = LoRALinear(module, cfg.r, scaling, float(cfg.lora_dropout or 0.0))
        setattr(model.get_submodule(parent_name), child, lora)
        params[f"base_model.model.{name}.lora_A.weight"] = lora.lora_A
        params[f"base_model.model.{name}.lora_B.weight"] = lora.lora_B
    if cfg.target_modules and not params:
        raise ValueError(f"lora.target_modules {cfg.target_modules!r} matches no linear layer of the model")
    return params


def remove_linear_lora(model):
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, module.base_layer)


def lora_linears(model):
    return [m for m in model.modules() if isinstance(m, LoRALinear)]
