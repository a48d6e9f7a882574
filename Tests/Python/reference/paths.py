"""The repository's paths and the tuna binary, for the tests and the scripts that import this
package."""
import os
import subprocess

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
WORKER = os.path.join(REPO, "worker")
TEXT_FIXTURES = os.path.join(REPO, "Tests", "TunaTextTests", "Fixtures")
ENGINE_FIXTURES = os.path.join(REPO, "Tests", "TunaEngineTests", "Fixtures")
VOCAB = os.path.join(TEXT_FIXTURES, "o200k_base.tiktoken")
DATA = os.path.join(REPO, "jobs", "demo", "arithmetic.csv")


def tuna_binary(given=None):
    """The tuna CLI as an absolute path: `given`, else $TUNA_BIN, else the debug build's
    (`swift build --show-bin-path`, which prints the path without building)."""
    given = given or os.environ.get("TUNA_BIN")
    if not given:
        bin_path = subprocess.run(["swift", "build", "--show-bin-path"], cwd=REPO, capture_output=True,
                                  text=True).stdout.strip()
        given = os.path.join(bin_path, "tuna")
    return os.path.abspath(given)
