"""The reference side of Tuna's Python checks: what transformers, PEFT, torch, tiktoken and
openai-harmony compute, on models and data built here.

  paths        the repository's paths and the tuna binary
  checks       the pass/fail harness (named comparisons, each printed) and rel_err
  gptoss       small random gpt-oss checkpoints as openai ships them, loaded by transformers
  lora         PEFT LoRA on that model: gradients, AdamW + scheduler steps, strict adapter loads
  jobs         the trainers on one job: job files (via `tuna submit --dry-run`), runs, events
  splitmix64   an independent Python SplitMix64 (Sources/TunaRandom)

and the writers of the committed fixtures the Swift tests read (the tests in Tests/Python
regenerate them and compare):

  PYTHONPATH=Tests/Python python3 -m reference.text_goldens     # Tests/TunaTextTests/Fixtures
  PYTHONPATH=Tests/Python python3 -m reference.engine_goldens   # Tests/TunaEngineTests/Fixtures
  PYTHONPATH=Tests/Python python3 -m reference.lora_goldens     # .../Fixtures/lora-attn, lora-experts
  PYTHONPATH=Tests/Python python3 -m reference.demo_data        # jobs/demo/arithmetic.csv
"""
