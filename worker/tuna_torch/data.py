"""The data side: what `tuna prepare` writes, turned into torch batches.

The torch trainer must train on exactly what the native trainer trains on, so it does not
render templates, tokenize, split, shuffle or pack anything itself. `tuna prepare JOB --out DIR`
(Sources/TunaTrain/TrainingPlan.swift) writes:

    train.jsonl, validation.jsonl   one example per line: {"tokens": [...], "mask": [0|1, ...]}
                                    (mask 1 = a token the loss scores: the assistant's reply)
    plan.json                       {"format": "tuna-plan-1", "packing", "steps_per_epoch",
                                     "total_steps", "warmup_steps", "learning_rates": [per step],
                                     "steps": [per optimizer step: [micro-batch: [row: [example
                                     indices into train.jsonl]]]]}
    init_adapter/                   the initial LoRA in PEFT layout (the native trainer's draw)

and this module builds the tensors the same way Sources/TunaTrain/Batching.swift does:
right-padding with token 0, labels = tokens where mask is 1 and -100 elsewhere (the model
side shifts them, as transformers does), packed rows with positions restarting at 0 for each
sequence (and for the padding tail).
"""
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

import torch

from . import spec

IGNORE = -100


@dataclass
class Example:
    """One rendered example. Kept as compact tensors (int32 ids, bool mask), not Python lists:
    a large data set is tens of millions of tokens, and every rank holds all of it."""
    tokens: torch.Tensor  # int32 [n]
    mask: torch.Tensor    # bool [n]

    def __len__(self):
        return self.tokens.numel()


@dataclass
class Prepared:
    train: list          # [Example]
    validation: list     # [Example]
    plan: dict           # plan.json
    init_adapter: str    # directory (PEFT layout)
    eval: dict = None    # eval.json (a job with an `eval` section): prompts, stop_tokens, pad_token

    @property
    def total_steps(self):
        return self.plan["total_steps"]

    @property
    def steps_per_epoch(self):
        return self.plan["steps_per_epoch"]

    def step_micro_batches(self, step):
        """Micro-batches of optimizer step `step` (0-based): [micro-batch][row][example index]."""
        return self.plan["steps"][step]

    def learning_rate(self, step):
        return self.plan["learning_rates"][step]

    def micro_batches_per_epoch(self):
        """Known only when the plan covers a whole epoch (plan.json does not carry it)."""
        if self.total_steps < self.steps_per_epoch:
            return None
        return sum(len(self.plan["steps"][s]) for s in range(self.steps_per_epoch))


def find_tuna(explicit=None):
    """--tuna, else $TUNA_BIN, else `tuna` on PATH."""
    candidate = explicit or os.environ.get("TUNA_BIN") or shutil.which("tuna")
    if not candidate or not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise RuntimeError(f"tuna CLI not found ({candidate or 'no --tuna, no $TUNA_BIN, not on PATH'}); "
                           "pass --tuna PATH or set TUNA_BIN")
    return candidate


def run_prepare(tuna, job_path, out_dir, root):
    """Runs `tuna prepare` into a fresh `out_dir`. Its stdout (a one-line summary that is not an
    event) is captured, not passed through; its stderr is the error when it fails."""
    shutil.rmtree(out_dir, ignore_errors=True)
    cmd = [tuna, "prepare", job_path, "--out", out_dir, "--root", root]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def run_grade(tuna, job_path, root, replies, step, base, work):
    """`tuna grade`: the job's own template, parser and answer rule on `replies` ([(tokens,
    finish)], one per eval.json prompt), written to WORK/replies-STEP-base|adapter.jsonl (kept
    with the attempt). Returns (the sample events, {exact_match, answered, graded})."""
    lines = "".join(json.dumps({"tokens": list(map(int, tokens)), "finish": finish}) + "\n" for tokens, finish in replies)
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, f"replies-{step}-{'base' if base else 'adapter'}.jsonl")
    with open(path, "w") as f:
        f.write(lines)
    cmd = [tuna, "grade", job_path, "--replies", path, "--step", str(step), "--root", root] + (["--base"] if base else [])
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"tuna grade failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return out[:-1], out[-1]


def _read_examples(path):
    out = []
    with open(path) as f:
        for n, line in enumerate(f):
            o = json.loads(line)
            if len(o["tokens"]) != len(o["mask"]):
                raise ValueError(f"{path}:{n + 1}: {len(o['tokens'])} tokens but {len(o['mask'])} mask entries")
            out.append(Example(torch.tensor(o["tokens"], dtype=torch.int32), torch.tensor(o["mask"], dtype=torch.bool)))
    return out


def load_prepared(directory):
    plan = spec.read_plan(directory, "lora")
    prepared = Prepared(train=_read_examples(os.path.join(directory, "train.jsonl")),
                        validation=_read_examples(os.path.join(directory, "validation.jsonl")),
                        plan=plan, init_adapter=os.path.join(directory, "init_adapter"),
                        eval=spec.read_plan(directory, "eval") if os.path.exists(os.path.join(directory, "eval.json")) else None)
    n = plan["total_steps"]
    if len(plan["steps"]) != n or len(plan["learning_rates"]) != n:
        raise ValueError(f"{directory}/plan.json: {n} steps but {len(plan['steps'])} step entries and "
                         f"{len(plan['learning_rates'])} learning rates")
    return prepared


# ---------------------------------------------------------------------------------------------
# Batches (as Batching.swift builds them)
# ---------------------------------------------------------------------------------------------

def labels_of(example):
    return torch.where(example.mask, example.tokens.long(), IGNORE)


def padded_batch(examples):
    """One example per row, right-padded to the longest; padding is masked out of attention."""
    t = max(len(e) for e in examples)
    ids = torch.zeros(len(examples), t, dtype=torch.long)
    att = torch.zeros(len(examples), t, dtype=torch.long)
    lab = torch.full((len(examples), t), IGNORE, dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e)
        ids[r, :n] = e.tokens
        att[r, :n] = 1
        lab[r, :n] = labels_of(e)
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def packed_batch(rows):
    """Several sequences per row that must not attend to each other. There is no attention
    mask: the sequences are told apart by position_ids restarting at 0 (the padding tail gets
    its own run of positions, so it is a separate "sequence" that only sees itself, and its
    labels are -100). forward_pass.py turns position_ids into the block-diagonal causal mask."""
    t = max(sum(len(e) for e in row) for row in rows)
    ids = torch.zeros(len(rows), t, dtype=torch.long)
    pos = torch.zeros(len(rows), t, dtype=torch.long)
    lab = torch.full((len(rows), t), IGNORE, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for e in row:
            n = len(e)
            ids[r, start:start + n] = e.tokens
            pos[r, start:start + n] = torch.arange(n)
            lab[r, start:start + n] = labels_of(e)
            start += n
        pos[r, start:] = torch.arange(t - start)
    return {"input_ids": ids, "position_ids": pos, "labels": lab}


def build_batch(rows, train, packing):
    """rows: [row][example index], as in plan.json."""
    if packing:
        return packed_batch([[train[i] for i in row] for row in rows])
    return padded_batch([train[row[0]] for row in rows])


def scored_tokens(batch):
    """Positions the loss scores: labels[:, 1:] != -100 (labels are shifted by one)."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def real_tokens(rows, train):
    """Non-padding tokens of a micro-batch (the `tokens` field of the step event)."""
    return sum(len(train[i]) for row in rows for i in row)


def validation_batches(examples, batch_size):
    """In file order, batch_size examples each, padded; examples of fewer than 2 tokens are
    dropped (nothing to predict), exactly as Batching.validation does."""
    kept = [e for e in examples if len(e) >= 2]
    return [padded_batch(kept[i:i + batch_size]) for i in range(0, len(kept), batch_size)]


# ---------------------------------------------------------------------------------------------
# Data parallelism: which rows of a step this rank trains on
# ---------------------------------------------------------------------------------------------

def rank_micro_batches(step_micro, rank, world, batch_size):
    """This rank's share of one optimizer step, as micro-batches of at most batch_size rows.

    The split is by *row*, not by micro-batch: the step's rows in plan order are dealt round
    robin (rank r takes rows r, r + W, r + 2W, ...), then cut into micro-batches of batch_size
    rows. Every row is trained on by exactly one rank, a rank never holds more than batch_size
    rows at once (the single-GPU memory bound), and a step with fewer micro-batches than GPUs
    (grad_accum 1 on 4 GPUs) still keeps every GPU busy. The step's loss is a token-weighted
    sum over rows divided by the step's total scored tokens, so how rows are grouped into
    micro-batches changes nothing but rounding. With one process this is exactly the plan's
    micro-batches (only an epoch's last micro-batch can be short, and it is a step's last)."""
    if world == 1:
        return [list(m) for m in step_micro]
    rows = [row for micro in step_micro for row in micro]
    mine = rows[rank::world]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]
