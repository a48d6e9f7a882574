"""TunaText's committed goldens (Tests/TunaTextTests/Fixtures) are still what tiktoken,
openai-harmony and the independent SplitMix64 split give: all of them regenerated into a temp
dir (offline, from the committed o200k_base.tiktoken) and compared byte for byte.

Stale goldens: rewrite them with `PYTHONPATH=Tests/Python python3 -m reference.text_goldens`.
"""
import os

import pytest

from reference import text_goldens
from reference.paths import TEXT_FIXTURES


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("text-goldens")
    text_goldens.write_goldens(str(out))
    return out


@pytest.mark.parametrize("name", text_goldens.GOLDENS)
def test_committed_golden_is_what_the_reference_libraries_give(regenerated, name):
    with open(regenerated / name, "rb") as a, open(os.path.join(TEXT_FIXTURES, name), "rb") as b:
        same = a.read() == b.read()
    assert same, f"{name} is stale: rerun PYTHONPATH=Tests/Python python3 -m reference.text_goldens"
