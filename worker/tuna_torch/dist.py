"""Data parallelism under torchrun (WORLD_SIZE > 1); a no-op for one process.

Not torch's DistributedDataParallel wrapper, on purpose: DDP synchronises gradients inside
every backward and expects every rank to run the same number of backwards per step, but a
step's rows do not always divide evenly (an epoch's last step is short; a rank can get no rows
at all). Instead each rank accumulates the gradients of its own rows, already scaled by
1 / (scored tokens of the whole step), and `GradientReducer` sums the LoRA gradients over
ranks the way DDP's reducer does, in buckets launched while the rank's *last* backward of the
step still runs: every rank ends with the gradient of the global token-weighted mean loss,
takes the same optimizer step, and the replicas stay identical.
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

    def close(self):
        if self.enabled:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()


class GradientReducer:
    """Sums the LoRA gradients over ranks, overlapping the backward (as DDP's reducer does).

    `params` in the model's order (`in_model_order`): they are cut into buckets of about
    `bucket_mb` MiB from the last, since the last layers' gradients are ready first in a
    backward. `arm()` before a rank's last backward of the step: each parameter's
    post-accumulate hook then counts it ready, and once every parameter of a bucket is ready
    the bucket's flattened gradients go out in an asynchronous all-reduce while the backward
    carries on with earlier layers. `finish()` after that backward (or instead of it: a rank
    with no rows this step) launches what is left: buckets with a parameter that took no part
    in the last backward, with zeros where a parameter has no gradient at all. Buckets always
    go out in index order, on every rank, so the collectives match across ranks however the
    hooks fire; `finish` waits for them and writes the sums back. A hook that fires twice in
    one backward (a parameter reused under reentrant checkpointing, which the trainer does not
    use) is refused: its second gradient would be lost. One process: no hooks, `finish` fills
    the missing gradients with zeros.
    """

    def __init__(self, params, dist, bucket_mb=25.0):
        self.params = list(params)
        self.dist = dist
        self.buckets, size, cap = [[]], 0, bucket_mb * 2**20
        for i in reversed(range(len(self.params))):
            nbytes = self.params[i].numel() * self.params[i].element_size()
            if self.buckets[-1] and size + nbytes > cap:
                self.buckets.append([])
                size = 0
            self.buckets[-1].append(i)
            size += nbytes
        self.bucket_of = {i: b for b, members in enumerate(self.buckets) for i in members}
        self.armed = False
        self.launched_in_backward = 0  # how many buckets the last step sent during its backward
        self._pending, self._next, self._inflight = [], 0, []
        if dist.enabled:
            for i, p in enumerate(self.params):
                p.register_post_accumulate_grad_hook(lambda _p, i=i: self._ready(i))

    def arm(self):
        self.armed = True
        self._pending = [len(m) for m in self.buckets]
        self._next, self._inflight, self._seen = 0, [], set()
        self.launched_in_backward = 0

    def _ready(self, i):
        if not self.armed:
            return
        if i in self._seen:
            raise RuntimeError(f"parameter {i}'s gradient hook fired twice in one backward (reentrant checkpointing?): "
                               "its bucket may already be summed without the second gradient")
        self._seen.add(i)
        self._pending[self.bucket_of[i]] -= 1
        while self._next < len(self.buckets) and self._pending[self._next] == 0:
            self._launch(self._next)
            self.launched_in_backward += 1

    def _launch(self, b):
        import torch.distributed as dist
        grads = []
        for i in self.buckets[b]:
            p = self.params[i]
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._inflight.append((dist.all_reduce(flat, async_op=True), flat, grads))
        self._next += 1

    def finish(self):
        """Every parameter's gradient summed over ranks (zeros where no rank had one)."""
        if not self.dist.enabled:
            for p in self.params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            return
        if not self.armed:
            self.arm()  # no backward on this rank this step: its zeros still take part
        self.armed = False
        while self._next < len(self.buckets):
            self._launch(self._next)
        for handle, flat, grads in self._inflight:
            handle.wait()
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        self._inflight = []


def in_model_order(model, params):
    """`params` (a dict by name, as the adapters keep them: sorted by name, so layer 10 before
    layer 2) in the order the model registers them: layer 0 first, so the reducer's reversed
    buckets follow the backward."""
    order = {id(p): k for k, (_, p) in enumerate(model.named_parameters())}
    return sorted(params.values(), key=lambda p: order.get(id(p), -1))
