"""The committed LoRA goldens (Tests/TunaEngineTests/Fixtures/lora-attn, lora-experts) are
still what PEFT + transformers + torch compute: both regenerated into a temp dir and compared
(reference/lora_goldens.py: checkpoints, adapters and configs byte for byte, computed floats
within 1e-4 of their scale), and each still exercises what it claims to (clipping, warmup and
decay visible, a well-conditioned run).

Stale goldens: rewrite them with `PYTHONPATH=Tests/Python python3 -m reference.lora_goldens`.
"""
import pytest

from reference import lora_goldens
from reference.paths import ENGINE_FIXTURES


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """{fixture name: its lora_reference.json}, under one temp root."""
    root = str(tmp_path_factory.mktemp("lora-goldens"))
    return root, {name: lora_goldens.make(root, name) for name in lora_goldens.CASES}


@pytest.mark.parametrize("name", list(lora_goldens.CASES))
def test_fixture_exercises_what_it_claims(regenerated, name):
    lora_goldens.sanity(name, regenerated[1][name])


@pytest.mark.parametrize("name", list(lora_goldens.CASES))
def test_committed_fixture_is_what_peft_computes(regenerated, name):
    stale = lora_goldens.compare_tree(name, regenerated[0], ENGINE_FIXTURES)
    assert not stale, "stale LoRA goldens (rerun PYTHONPATH=Tests/Python python3 -m reference.lora_goldens): " + "; ".join(stale)
