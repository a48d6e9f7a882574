"""The trainers on one job, as the worker runs them: job files made the way the coordinator
leases them (`tuna submit --dry-run`), the torch trainer's command and environment, and the
JSON events both trainers print (test_torch_agreement, test_prune_agreement and
Benchmarks/gpu/gpu_check.py use them)."""
import json
import os
import subprocess
import sys
import tempfile
import time

from reference.paths import DATA, WORKER


def job_spec(name, model_dir, packing, **train):
    """The fields of a LoRA job the agreement checks set; `write_job` makes the rest what the
    coordinator would fill in."""
    t = {"adam_eps": 1e-08, "batch_size": 4, "grad_accum": 2, "learning_rate": 5e-3, "max_seq_len": 96,
         "max_steps": 5, "packing": packing, "scheduler": "constant", "seed": 3, "weight_decay": 0.01}
    t.update(train)
    return {"name": name, "trainer": "torch", "model": model_dir,
            "dataset": {"path": DATA, "format": "csv", "fields": {"prompt": "problem", "response": "solution"},
                        "template": "im_start", "val_fraction": 0.1},
            "lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                     "target_parameters": ["1.mlp.experts.gate_up_proj", "1.mlp.experts.down_proj"]},
            "train": t}


def write_job(tuna, path, job):
    """Writes `job` to `path` as the coordinator would lease it: checked, and every default
    filled in, by `tuna submit --dry-run` (the trainer reads a validated spec strictly, and no
    check restates a default). Returns `path`."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        json.dump(job, f)
        f.flush()
        p = subprocess.run([tuna, "submit", "--dry-run", "--json", f.name], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"tuna submit --dry-run refused the check's own job: {p.stderr.strip()}")
    (planned,) = json.loads(p.stdout)
    with open(path, "w") as f:
        json.dump(planned["params"], f)
    return path


def job_variant(job, path, **changes):
    """The validated `job` with some fields overridden (`changes`: a value, or for a section the
    fields to change, e.g. torch={"experts": "eager"}; `train_fields` for train's), written to
    `path`; returns `path`."""
    with open(job) as f:
        spec = json.load(f)
    changes["train"] = changes.pop("train_fields", {})
    for key, value in changes.items():
        if isinstance(value, dict):
            spec[key].update(value)
        else:
            spec[key] = value
    with open(path, "w") as f:
        json.dump(spec, f)
    return path


def events_of(stdout):
    out = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            o = json.loads(line)  # must parse: a NaN would not
            if isinstance(o.get("event"), str):
                out.append(o)
    return out


def by(events, name):
    return [e for e in events if e["event"] == name]


def run(cmd, env=None, what=""):
    """Runs a trainer (or any command printing events) to the end; its events. A failed run
    raises, with the end of its stderr."""
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    print(f"  ran {what or cmd[0]} in {time.time() - t0:.1f}s (exit {p.returncode})", flush=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return events_of(p.stdout)


def torch_env():
    """The torch trainer's environment as a CPU fp32 check wants it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = WORKER + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("TUNA_CHECKPOINT_DIR", None)
    env.pop("TUNA_RESUME_DIR", None)
    env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU fp32 check, also on a box with GPUs
    env["TUNA_PYTHON"] = sys.executable  # for the launcher worker/tuna-torch
    return env


def torch_cmd(tuna, job, out, work, *extra, launcher=None):
    """The torch trainer on `job` (`launcher`: how it is started; default python3 -m tuna_torch)."""
    launcher = launcher or [sys.executable, "-m", "tuna_torch"]
    return launcher + [job, "--out", out, "--tuna", tuna, "--work-dir", work, *extra]
