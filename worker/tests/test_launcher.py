"""worker/tuna-torch with several (fake) GPUs: torchrun's ranks run in sessions of their own,
out of reach of the worker's signals to the attempt's process group, so the launcher must make
sure none outlives the attempt. A stand-in tuna_torch (the real launch.py and the real
rank_lifetime.die_with_parent; its ranks ignore SIGTERM, the worst case: a rank stuck in a collective)
under a copy of the launcher:

  * SIGTERM to the process group, as the worker sends it: torchrun waits its shutdown timeout
    (the worker's grace minus 3 s), SIGKILLs the ranks, and exits 143, all within the grace;
  * torchrun SIGKILLed (the worker's SIGKILL after its grace, or kill -9): every rank dies with it.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import WORKER

RANK = '''
import importlib.util, os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(os.path.join(os.environ["PIDS"], os.environ["RANK"]), "w") as f:
    f.write(str(os.getpid()))
time.sleep(float(os.environ.get("RANK_DELAY", "0")))  # a slow start (imports) before it asks
spec = importlib.util.spec_from_file_location("real_lifetime", os.environ["REAL_LIFETIME"])
real = importlib.util.module_from_spec(spec); spec.loader.exec_module(real)
if real.started_by_torchrun():  # as tuna_torch/__main__.py does
    real.die_with_parent()
with open(os.path.join(os.environ["PIDS"], os.environ["RANK"] + ".ready"), "w") as f:
    f.write("")
time.sleep(300)
'''


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(params=[0.0])
def launcher(tmp_path, request):
    root = tmp_path / "worker"
    pkg = root / "tuna_torch"
    pkg.mkdir(parents=True)
    shutil.copy(os.path.join(WORKER, "tuna-torch"), root / "tuna-torch")
    shutil.copy(os.path.join(WORKER, "tuna_torch", "launch.py"), pkg / "launch.py")
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(RANK)
    pids = tmp_path / "pids"
    pids.mkdir()
    env = dict(os.environ, TUNA_PYTHON=sys.executable, REAL_LIFETIME=os.path.join(WORKER, "tuna_torch", "rank_lifetime.py"),
               PIDS=str(pids), CUDA_VISIBLE_DEVICES="GPU-00000000-fake-a,GPU-00000000-fake-b", TUNA_STOP_GRACE_SECONDS="6",
               RANK_DELAY=str(request.param))
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.Popen([str(root / "tuna-torch"), "job.json"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    want = 2 if request.param else 4  # a slow start: killed before it is ready
    while len(os.listdir(pids)) < want and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    ranks = [int((pids / name).read_text()) for name in os.listdir(pids) if not name.endswith(".ready")]
    assert len(ranks) == 2, f"ranks did not start: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
    yield proc, ranks
    for pid in ranks:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def test_sigterm_ends_every_rank_within_the_grace_and_exits_143(launcher):
    proc, ranks = launcher
    sent = time.time()
    os.killpg(proc.pid, signal.SIGTERM)  # what the worker does first
    code = proc.wait(timeout=30)
    took = time.time() - sent
    assert code == 143, proc.stderr.read()[-800:]
    assert took < 6, f"{took:.1f} s: past the worker's grace, which would SIGKILL torchrun and orphan the ranks"
    time.sleep(0.5)
    assert not any(alive(p) for p in ranks), "a rank outlived torchrun"


def test_ranks_die_with_torchrun(launcher):
    proc, ranks = launcher
    os.kill(proc.pid, signal.SIGKILL)  # the launcher exec'd torchrun: this pid is torchrun
    proc.wait(timeout=10)
    deadline = time.time() + 5
    while any(alive(p) for p in ranks) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in ranks), "ranks outlived a killed torchrun"


@pytest.mark.parametrize("launcher", [2.0], indirect=True)
def test_a_rank_that_asks_after_torchrun_died_exits(launcher):
    """torchrun killed while its ranks still start (importing torch takes seconds): by the time
    a rank asks to die with its parent it is init's child; it must see that and exit."""
    proc, ranks = launcher
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.time() + 10
    while any(alive(p) for p in ranks) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in ranks), "a rank that started before torchrun died outlived it"
