"""The torch trainer (worker/tuna_torch) against the native trainer, PEFT and autograd."""
