"""Checkpoints: one file, `checkpoint.pt`, in $TUNA_CHECKPOINT_DIR.

It holds the adapter (PEFT names), the AdamW state and the optimizer step. That is all a
resumed run needs: the data order is the plan's (step N's micro-batches are plan.json's
steps[N]), the learning rate is the plan's, and dropout masks are seeded from (seed, step),
so a resumed run continues the same curve. Written to a temporary name in the same directory
and renamed, so a kill at any moment leaves the previous checkpoint or the new one, never a
torn file; the one file is always the latest (the whole directory is uploaded).
"""
import os

import torch

FILE = "checkpoint.pt"
FORMAT = "tuna-torch-checkpoint-1"


def save(directory, step, params, optimizer):
    os.makedirs(directory, exist_ok=True)
    state = {"format": FORMAT, "step": step,
             "adapter": {k: p.detach().to("cpu", copy=True) for k, p in params.items()},
             "optimizer": _to_cpu(optimizer.state_dict())}
    path = os.path.join(directory, FILE)
    tmp = os.path.join(directory, "." + FILE + ".tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(directory, params, optimizer):
    """Restores adapter and optimizer from `directory`; returns the step, or None when there is
    no checkpoint. Raises ValueError when the checkpoint does not fit this job (the caller
    reports resume_failed and starts over, as the native trainer does)."""
    path = os.path.join(directory, FILE)
    if not os.path.exists(path):
        return None
    try:
        # weights_only: tensors and plain containers only, never arbitrary pickled objects
        # (the file comes from the coordinator, written by an earlier attempt).
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    adapter = state["adapter"]
    if sorted(adapter) != sorted(params):
        raise ValueError(f"{path}: adapter tensors differ from this job's: {sorted(set(adapter) ^ set(params))[:8]}")
    for k, p in params.items():
        if tuple(adapter[k].shape) != tuple(p.shape):
            raise ValueError(f"{path}: {k} has shape {tuple(adapter[k].shape)}, this job needs {tuple(p.shape)}")
    # The optimizer first: load_state_dict checks before it changes anything, so a checkpoint
    # that fails here leaves adapter and optimizer as they were (the run starts over cleanly).
    optimizer.load_state_dict(state["optimizer"])  # moves the moments to the parameters' device
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(adapter[k].to(p.dtype))
    return int(state["step"])


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
