"""A torchrun rank's lifetime tied to torchrun's. Imports nothing but the standard library, so
a rank asks for it before the seconds it takes to import torch (tuna_torch/__main__.py)."""
import os


def die_with_parent():
    """Under torchrun each rank runs in a session of its own, out of reach of the worker's
    signals to the attempt's process group. PR_SET_PDEATHSIG has the kernel SIGKILL this rank
    when torchrun dies, however it dies (the worker's SIGKILL after its grace, kill -9), so no
    rank outlives its attempt holding a GPU and the worker's output pipes. (The signal comes
    when the thread that started the rank ends; torchrun starts ranks from its main thread.)
    Called first thing (tuna_torch/__main__.py). `TUNA_TORCHRUN_PID` (tuna_torch.launch sets
    it) is the parent this rank must have: if torchrun died before the request took effect,
    the rank is already someone else's child and exits at once."""
    import ctypes
    import signal
    import sys

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
        print(f"tuna_torch: prctl(PR_SET_PDEATHSIG) failed (errno {ctypes.get_errno()}): this rank may outlive torchrun",
              file=sys.stderr, flush=True)
        return False
    expected = os.environ.get("TUNA_TORCHRUN_PID")
    if expected and os.getppid() != int(expected):
        os._exit(1)
    return True


def started_by_torchrun():
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "TORCHELASTIC_RUN_ID" in os.environ
