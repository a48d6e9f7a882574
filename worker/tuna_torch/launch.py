"""torchrun as worker/tuna-torch runs it for a job on several GPUs: torch.distributed.run's own
`main`, in this process (the launcher `exec`s it, so the worker's pid and process group are
torchrun's), with one difference: a run stopped by a signal exits 128 + the signal (143 for
SIGTERM, the trainer contract's "interrupted" code) instead of torchrun's 1 and a traceback.

torchrun handles the signal itself: it sends it on to the ranks (which run in sessions of their
own, so the worker's signal to its process group does not reach them directly), waits for them
up to TORCH_ELASTIC_SHUTDOWN_TIMEOUT seconds (the launcher sets it below the worker's grace, so
torchrun's SIGKILL to the ranks comes before the worker's to torchrun), then raises
SignalException, which is caught here. Each rank also dies with torchrun whatever kills it
(`rank_lifetime.die_with_parent`).

    python3 -m tuna_torch.launch --standalone --nproc_per_node=N -m tuna_torch JOB.json --out DIR
"""
import os
import sys


def main(argv=None):
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun

    # The ranks check that their parent is this process when they ask to die with it: one
    # started just before torchrun died is already someone else's child (rank_lifetime.die_with_parent).
    os.environ["TUNA_TORCHRUN_PID"] = str(os.getpid())
    try:
        torchrun(sys.argv[1:] if argv is None else argv)
    except SignalException as e:
        print(f"tuna-torch: stopped by {e.sigval.name}", file=sys.stderr, flush=True)
        return 128 + int(e.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
