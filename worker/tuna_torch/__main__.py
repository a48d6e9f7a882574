"""python3 -m tuna_torch JOB.json --out DIR  (see train.py and worker/README.md)."""
import os
import sys

# Offline, always: the model is a local checkpoint, and a trainer on a GPU box must never
# stall on (or be changed by) the Hugging Face hub. Set before transformers is imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# A rank under torchrun asks to die with it before anything slow (importing torch takes seconds).
from .rank_lifetime import die_with_parent, started_by_torchrun  # noqa: E402

if started_by_torchrun():
    die_with_parent()

from .train import main  # noqa: E402

sys.exit(main())
