"""The one conftest of the Python reference checks: the tuna binary, the seed, the tiny models,
the Swift tests some checks drive, and the `checks` harness.

    python3 -m pytest Tests/Python [--tuna PATH] [--seed N] [--full]

Options: --tuna the CLI (default $TUNA_BIN, else the debug build's); --seed the seed of every
random draw (default the clock; the header prints it with the command that reruns it); --full
the long torch-trainer runs too (gradient checkpointing, DDP, SIGTERM, a corrupt checkpoint).
"""
import os
import random
import shlex
import subprocess
import time

import pytest

from reference.checks import Checks
from reference.paths import REPO, VOCAB, tuna_binary

# Every check runs offline: nothing here may reach the Hugging Face hub. One tokenizers thread
# pool, so the trainers the checks start as subprocesses after a tokenizer ran do not warn.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED = pytest.StashKey[int]()
COMPARISONS = pytest.StashKey[dict]()

# scripts/test.sh's order: the quick checks first, the long torch-trainer runs last, so that a
# quick failure shows early. A file not named here runs just before the torch-trainer ones.
ORDER = ["test_text_goldens.py", "test_engine_live.py", "test_tiny_model.py", "test_demo_data.py", "test_eval.py",
         "test_lora_goldens.py", "test_lora_live.py", "test_merge.py", "test_generate.py", "test_prune.py", "test_mxfp4.py",
         "test_torch_agreement.py", "test_prune_agreement.py"]


def pytest_addoption(parser):
    parser.addoption("--tuna", default=None, help="the tuna CLI (default: $TUNA_BIN, else the debug build's)")
    parser.addoption("--seed", type=int, default=None, help="the seed of the random draws (default: the clock)")
    parser.addoption("--full", action="store_true",
                     help="also the long torch-trainer runs: gradient checkpointing, DDP, SIGTERM, a corrupt checkpoint")


def pytest_configure(config):
    seed = config.getoption("--seed")
    config.stash[SEED] = seed if seed is not None else int(time.time())
    config.stash[COMPARISONS] = {}


def pytest_report_header(config):
    args = list(config.invocation_params.args)
    if config.getoption("--seed") is None:
        args += ["--seed", str(config.stash[SEED])]
    return f"seed {config.stash[SEED]} (rerun: cd {config.invocation_params.dir} && python3 -m pytest {shlex.join(args)})"


def pytest_collection_modifyitems(config, items):
    last = ORDER.index("test_torch_agreement.py") - 0.5
    items.sort(key=lambda item: ORDER.index(item.path.name) if item.path.name in ORDER else last)
    if not config.getoption("--full"):
        skip = pytest.mark.skip(reason="a long run: give --full")
        for item in items:
            if item.get_closest_marker("full"):
                item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A test that used `checks` fails, naming every failed comparison, if any failed (all of
    them were made and printed: one wrong number does not hide the others)."""
    result = yield
    c = item.funcargs.get("checks")
    if isinstance(c, Checks):
        counts = item.config.stash[COMPARISONS].setdefault(item.path.name, [0, 0])
        counts[0] += c.passed
        counts[1] += len(c.failed)
        if c.failed:
            pytest.fail(f"{len(c.failed)} of {c.passed + len(c.failed)} comparisons failed: " + "; ".join(c.failed),
                        pytrace=False)
    return result


def pytest_terminal_summary(terminalreporter, config):
    counts = config.stash[COMPARISONS]
    if counts:
        terminalreporter.section("comparisons (the checks fixture)")
        for name, (passed, failed) in counts.items():
            terminalreporter.write_line(f"{name}: {passed} passed, {failed} failed")


@pytest.fixture
def checks():
    """Named comparisons, each printed; the test fails after its body if any failed."""
    return Checks()


@pytest.fixture(scope="session")
def tuna(pytestconfig):
    """The tuna CLI, an absolute path."""
    path = tuna_binary(pytestconfig.getoption("--tuna"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"no tuna binary at {path}: build it (swift build), or pass --tuna PATH or set TUNA_BIN", pytrace=False)
    return path


@pytest.fixture(scope="session")
def seed(pytestconfig):
    return pytestconfig.stash[SEED]


@pytest.fixture(scope="module")
def rng(seed):
    """A generator drawn from the seed, fresh in every test file: a file's draws do not depend
    on which other files ran."""
    return random.Random(seed)


@pytest.fixture(scope="session")
def full(pytestconfig):
    return pytestconfig.getoption("--full")


@pytest.fixture(scope="session")
def tiny_model(tuna, tmp_path_factory):
    """`tiny_model(layers=2, seed=9, ...)`: a small random gpt-oss written by `tuna init-model`
    (MXFP4 experts, a 1088-token cut of o200k), one per set of options in a session."""
    made = {}

    def make(**options):
        key = tuple(sorted(options.items()))
        if key not in made:
            out = str(tmp_path_factory.mktemp("tiny-model") / "model")
            flags = [x for k, v in key for x in (f"--{k.replace('_', '-')}", str(v))]
            subprocess.run([tuna, "init-model", "--out", out, "--vocabulary", VOCAB, *flags], check=True,
                           stdout=subprocess.DEVNULL)
            made[key] = out
        return made[key]

    return make


@pytest.fixture(scope="session")
def swift_test():
    """`swift_test(filter, **env)`: runs the already-built Swift tests matching `filter` (the
    suite builds them first: `swift build --build-tests`) with `env` added; their exit code."""

    def run(test_filter, **env):
        cmd = ["swift", "test", "--package-path", REPO, "--skip-build", "--filter", test_filter]
        print("running:", " ".join(cmd), " ".join(f"{k}={v}" for k, v in env.items()), flush=True)
        return subprocess.run(cmd, env=dict(os.environ, **env)).returncode

    return run
