"""torch.compile for the few small functions the fast path fuses (elementwise chains over large
activations: SwiGLU with its bias, the routing-weighted expert output, RMSNorm, MXFP4
dequantization, the cross-entropy's statistics and gradient)."""
import os
import sys

import torch


def fused(fn, dynamic=True):
    """`fn` compiled by torch.compile when its first argument is on CUDA (one kernel forward and
    one backward instead of a pass over memory per elementwise op), eager elsewhere or with
    TUNA_NO_COMPILE=1. The compiled code computes in fp32 registers and rounds once, so on the
    GPU it is not bit-identical to the eager ops (which round after each op), only closer to exact.
    A compile that fails in forward falls back to eager for the rest of the run, with a message
    (out of memory is raised, not taken for a compile failure; inductor compiles the backward
    when it first runs, so a failure there is raised from `.backward()`)."""
    state = {}

    def call(*args):
        if args[0].device.type != "cuda" or os.environ.get("TUNA_NO_COMPILE") == "1" or state.get("failed"):
            return fn(*args)
        if "compiled" not in state:
            state["compiled"] = torch.compile(fn, dynamic=dynamic)
        try:
            return state["compiled"](*args)
        except torch.OutOfMemoryError:
            raise
        except Exception as e:  # an inductor limitation must not stop a training run
            state["failed"] = True
            print(f"tuna_torch: torch.compile of {fn.__name__} failed, running it eagerly: {str(e)[:300]}",
                  file=sys.stderr, flush=True)
            return fn(*args)
    call.__name__ = f"fused_{fn.__name__}"
    return call
