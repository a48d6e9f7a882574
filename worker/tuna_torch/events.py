"""Events on stdout, one JSON object per line (docs/trainer-contract.md §3 and §8).

Only rank 0 prints (under torchrun every rank runs this code). NaN and infinities are not
JSON: they are printed as null, so the line still parses as an event. Every line is flushed,
since stdout is a pipe to the worker and would otherwise be block-buffered.
"""
import json
import math
import resource
import sys

import torch

from . import spec


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def published_events():
    """{kind: [required fields]}: contract/trainer-events.json, written from the Swift
    `TrainerEvent` (the coordinator summarises these kinds)."""
    return spec.contract("trainer-events.json")


def check(event, fields):
    """An event this trainer prints must be one the contract names, with its required fields
    (a trainer bug, not bad input: it stops the run rather than feed the coordinator a line it
    cannot summarise)."""
    required = published_events()
    if event not in required:
        raise ValueError(f"event {event!r} is not one of contract/trainer-events.json's: {', '.join(sorted(required))}")
    missing = [f for f in required[event] if f not in fields]
    if missing:
        raise ValueError(f"event {event!r} lacks {', '.join(missing)} (contract/trainer-events.json)")


class Emitter:
    def __init__(self, enabled=True, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stdout

    def __call__(self, event, **fields):
        check(event, fields)
        if not self.enabled:
            return
        line = json.dumps(_clean({"event": event, **fields}), allow_nan=False, sort_keys=True)
        # One write per line, then flush: the worker reads line by line as it happens.
        self.stream.write(line + "\n")
        self.stream.flush()


def log(message):
    """Free text for humans: stderr (the worker stores it as a log event)."""
    print(f"tuna_torch: {message}", file=sys.stderr, flush=True)


def peak_rss_mb():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def peak_gpu_mem_gb(device):
    """Peak memory allocated by torch on this rank's GPU, in GiB; None off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30
