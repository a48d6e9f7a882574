"""tuna_torch: the torch trainer (issue 5), the GPU counterpart of `tuna train`.

It implements docs/trainer-contract.md for `trainer: torch` jobs. To train on exactly what the
native trainer trains on, it does not tokenize or batch anything itself: `tuna prepare` writes
the token ids, loss masks, per-step micro-batches, learning rates and initial adapter
(data.py reads them), transformers + PEFT provide the model (compute.py: how and where it
computes; loading.py: the checkpoint; adapters.py: the LoRA; forward_pass.py: masks and loss), spec.py
reads the job strictly against contract/, and train.py runs the loop (AdamW, clipping, evals, checkpoints, events; DDP under torchrun).

    PYTHONPATH=worker python3 -m tuna_torch JOB.json --out DIR [--root DATA_ROOT] [--tuna TUNA]

See worker/README.md.
"""
