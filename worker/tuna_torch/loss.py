"""The chunked cross-entropy's kernel: lm_head and the next-token cross-entropy of a chunk of
rows, with the gradient computed while the chunk's logits exist.

The loss needs, per row, log-sum-exp over the vocabulary (201,088 entries for gpt-oss) minus the
target's logit, in fp32. Through autograd (F.cross_entropy on `logits.float()` under
torch.utils.checkpoint, the earlier way) a chunk costs an fp32 copy of its logits, log-softmax,
a dense one-hot gradient, a second lm_head GEMM to recompute the logits in backward, and the
casts back. Here forward computes the logits once in the compute dtype, reduces them to
(lse, target logit) in fp32, and, when a gradient is wanted, turns them into
d loss / d logits = softmax - one_hot (fp32 math, stored in the compute dtype, as autograd's
cast back would) and multiplies by the lm_head weight right away: what backward keeps is the
[rows, hidden] input gradient. lm_head must be frozen and bias-free (gpt-oss's is; LoRA never
targets it); `token_loss_sum` refuses another.
"""
import torch

from .fused import fused


def ce_stats(logits, labels):
    """(log-sum-exp, the target's logit) per row, in fp32."""
    x = logits.float()
    return torch.logsumexp(x, dim=-1), x.gather(1, labels.unsqueeze(1)).squeeze(1)


def ce_grad(logits, lse, labels):
    """softmax(logits) - one_hot(labels), computed in fp32, returned in the logits' dtype."""
    p = torch.exp(logits.float() - lse.unsqueeze(1))
    hit = torch.arange(logits.shape[1], device=logits.device).unsqueeze(0) == labels.unsqueeze(1)
    return (p - hit.to(p.dtype)).to(logits.dtype)


fused_ce_stats = fused(ce_stats)
fused_ce_grad = fused(ce_grad)


class LinearCrossEntropySum(torch.autograd.Function):
    """sum over rows of CE(hidden @ weight^T, labels); hidden [R, H], weight [V, H], labels [R]
    (every row scored)."""

    @staticmethod
    def forward(ctx, hidden, weight, labels):
        logits = hidden @ weight.t()
        lse, target = fused_ce_stats(logits, labels)
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward(fused_ce_grad(logits, lse, labels) @ weight)
        return (lse - target).sum()

    @staticmethod
    def backward(ctx, grad_loss):
        (grad_hidden,) = ctx.saved_tensors
        # The scale (1 / the step's scored tokens) applied in fp32: rounded to bf16 first it
        # would shift every gradient by up to 0.4%.
        return (grad_hidden.float() * grad_loss.float()).to(grad_hidden.dtype), None, None


def linear_cross_entropy_sum(hidden, head, labels):
    if not torch.is_grad_enabled():  # evaluation: the statistics only, no gradient
        lse, target = fused_ce_stats(hidden @ head.weight.t(), labels)
        return (lse - target).sum()
    return LinearCrossEntropySum.apply(hidden, head.weight, labels)


def supported(head):
    return isinstance(head, torch.nn.Linear) and head.bias is None and not head.weight.requires_grad
