"""Data parallelism under torchrun (WORLD_SIZE > 1); a no-op for one process.

Not torch's DistributedDataParallel wrapper, on purpose: DDP synchronises gradients inside
backward and expects every rank to run the same number of backwards per step, but a step's
rows do not always divide evenly (an epoch's last step is short; a rank can get no rows at
all). Instead each rank accumulates the gradients of its own rows, already scaled by
1 / (scored tokens of the whole step), and one all-reduce (sum) of the flattened LoRA
gradients per step gives every rank the gradient of the global token-weighted mean loss.
LoRA gradients are small, so one flat all-reduce per step costs little. Every rank then
takes the same optimizer step and the replicas stay identical.
"""
import datetime
import os

import torch


class Distributed:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world > 1
        self.device = None
        self._slow_group = None

    @property
    def is_main(self):
        return self.rank == 0

    def init(self, device):
        self.device = device
        if not self.enabled:
            return
        import torch.distributed as dist

        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=device
                                if device.type == "cuda" else None)
        # A gloo group with a long timeout for the one wait that can take minutes: the other
        # ranks waiting for rank 0's `tuna prepare` (NCCL's default timeout is 10 minutes).
        self._slow_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(hours=2))

    def wait_for_main(self):
        if self.enabled:
            import torch.distributed as dist
            dist.barrier(group=self._slow_group)

    def barrier(self):
        if self.enabled:
            import torch.distributed as dist
            dist.barrier()

    def sum(self, *values):
        """Sums of numbers over ranks (float64, exact for token counts)."""
        if not self.enabled:
            return values if len(values) > 1 else values[0]
        import torch.distributed as dist
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        out = tuple(t.tolist())
        return out if len(out) > 1 else out[0]

    def max(self, value):
        if not self.enabled:
            return value
        import torch.distributed as dist
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.item()

    def any(self, flag):
        return bool(self.max(1.0 if flag else 0.0))

    def sum_gradients(self, params):
        """Every parameter gets a gradient (zeros where this rank had no rows), summed over ranks."""
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not self.enabled:
            return
        import torch.distributed as dist
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def close(self):
        if self.enabled:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
