"""The trainer holds to the published contract (contract/): it reads the job spec strictly and
applies no defaults of its own, and prints only the published events with their fields."""
import copy
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, WORKER
from tuna_torch import spec

CASES = sorted(glob.glob(os.path.join(REPO, "contract", "job-spec", "*.json")))
JOBS = {os.path.basename(p)[:-5]: json.load(open(p))["validated"] for p in CASES if not p.endswith("enums.json")}
TRAINED = {name: v for name, v in JOBS.items() if v["trainer"] != "command"}


def leaf_paths(v, prefix=()):
    if not isinstance(v, dict) or not v:
        return [prefix]
    out = []
    for k in sorted(v):
        out.append(prefix + (k,))
        if isinstance(v[k], dict) and v[k] and k != "fields":  # fields: role -> column, the user's keys
            out += [p for p in leaf_paths(v[k], prefix + (k,)) if len(p) > len(prefix) + 1]
    return out


def without(v, path):
    v = copy.deepcopy(v)
    d = v
    for k in path[:-1]:
        d = d[k]
    del d[path[-1]]
    return v


def test_the_contract_has_every_kind_of_job():
    assert {"lora-native", "lora-torch", "prune-native", "prune-torch", "command"} <= set(JOBS)


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_every_validated_case_reads_back_field_for_field(name):
    assert spec.to_json(spec.parse(TRAINED[name])) == TRAINED[name]


@pytest.mark.parametrize("name", ["lora-torch", "prune-torch", "lora-torch-every-field", "prune-native-every-field",
                                  "lora-native-eval-every-field"])
def test_a_missing_field_is_an_error_naming_it(name):
    job = TRAINED[name]
    optional = {"fields", "prompt_template", "response_template", "system", "val_path", "reasoning_effort", "date",
                "general", "also_evaluate", "eval", "pattern"}
    checked = 0
    for path in leaf_paths(job):
        if path[-1] in optional:
            spec.parse(without(job, path))  # an optional field may be left out
            continue
        with pytest.raises(spec.SpecError, match=re.escape(f"job: {'.'.join(path)}: missing")):
            spec.parse(without(job, path))
        checked += 1
    assert checked >= 10


def test_unknown_fields_wrong_types_and_values_outside_the_lists_are_refused():
    job = TRAINED["lora-torch"]
    bad = copy.deepcopy(job)
    bad["train"]["learning_rat"] = 1e-3
    with pytest.raises(spec.SpecError, match=r"train\.learning_rat: unknown field"):
        spec.parse(bad)
    bad = copy.deepcopy(job)
    bad["train"]["seed"] = True  # a bool is not an int in the contract
    with pytest.raises(spec.SpecError, match=r"train\.seed: True is not int"):
        spec.parse(bad)
    bad = copy.deepcopy(job)
    bad["lora"]["alpha"] = "16"
    with pytest.raises(spec.SpecError, match=r"lora\.alpha: '16' is not float"):
        spec.parse(bad)
    bad = copy.deepcopy(job)
    bad["torch"]["experts"] = "triton"
    allowed = ", ".join(json.load(open(os.path.join(REPO, "contract", "job-spec", "enums.json")))["torch.experts"])
    with pytest.raises(spec.SpecError, match=r"torch\.experts: 'triton' is not one of " + allowed):
        spec.parse(bad)
    bad = copy.deepcopy(job)
    bad["lora"]["target_modules"] = ["router"]
    with pytest.raises(spec.SpecError, match=r"lora\.target_modules\[0\]: 'router'"):
        spec.parse(bad)


def test_sections_follow_the_trainer_and_the_task():
    with pytest.raises(spec.SpecError, match=r"torch: missing \(a torch lora job has one\)"):
        spec.parse(without(TRAINED["lora-torch"], ("torch",)))
    with pytest.raises(spec.SpecError, match=r"prune: a torch lora job has none"):
        spec.parse(dict(TRAINED["lora-torch"], prune=TRAINED["prune-torch"]["prune"]))
    with pytest.raises(spec.SpecError, match=r"torch: a native lora job has none"):
        spec.parse(dict(TRAINED["lora-native"], torch=TRAINED["lora-torch"]["torch"]))
    with pytest.raises(spec.SpecError, match=r"eval: a torch prune job has none"):
        spec.parse(dict(TRAINED["prune-torch"], eval=TRAINED["lora-native-eval"]["eval"]))
    assert spec.parse(dict(TRAINED["lora-torch"], eval=TRAINED["lora-native-eval"]["eval"])).eval.answer.extract == "boxed"


def test_a_job_file_is_the_spec_and_the_attempts_fields():
    job_file = json.load(open(os.path.join(REPO, "contract", "job-file.json")))
    job = spec.parse(job_file)
    assert (job.job_id, job.sweep_id, job.attempt, job.pause_at_step) == (41, 7, 2, 90)
    bare = {k: v for k, v in job_file.items() if k not in ("job_id", "sweep_id", "attempt", "pause_at_step")}
    assert bare == TRAINED["lora-torch"]
    assert spec.to_json(job) == job_file


def test_integral_numbers_are_read_as_floats():
    # The coordinator's JSON reader writes 16.0 back as 16: a float field takes either.
    job = copy.deepcopy(TRAINED["lora-torch"])
    job["lora"]["alpha"] = 16
    parsed = spec.parse(job)
    assert parsed.lora.alpha == 16.0 and isinstance(parsed.lora.alpha, float)


def test_the_trainer_refuses_a_job_missing_a_field(tmp_path):
    job = without(TRAINED["lora-torch"], ("train", "seed"))
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    p = subprocess.run([sys.executable, "-m", "tuna_torch", str(path), "--out", str(tmp_path / "out")],
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=WORKER), capture_output=True, text=True, timeout=300)
    assert p.returncode == 1
    assert "job: train.seed: missing" in p.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_contract_is_found_from_a_release_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNA_CONTRACT_DIR", str(tmp_path))
    with pytest.raises(spec.SpecError, match="the published job-spec contract is missing"):
        spec.parse(TRAINED["lora-torch"])


def test_the_emitter_prints_only_published_events_with_their_fields():
    import io
    from tuna_torch.events import Emitter, published_events
    out = io.StringIO()
    emit = Emitter(stream=out)
    required = published_events()
    emit("step", **{f: 1 for f in required["step"]}, peak_rss_mb=10.0)  # a trainer may add fields
    assert json.loads(out.getvalue())["event"] == "step"
    with pytest.raises(ValueError, match="'stepp' is not one of"):
        emit("stepp", step=1)
    with pytest.raises(ValueError, match="'eval' lacks tokens"):
        emit("eval", step=1, loss=0.5)
    quiet = Emitter(enabled=False, stream=out)  # ranks other than 0 print nothing but are held to it too
    with pytest.raises(ValueError):
        quiet("done")


def test_a_prepared_plan_is_read_against_the_published_layout(tmp_path):
    layouts = json.load(open(os.path.join(REPO, "contract", "prepared-plan.json")))
    assert set(layouts) == {"lora", "prune", "eval"}
    for task, layout in layouts.items():
        name = "eval.json" if task == "eval" else "plan.json"
        plan = {k: 0 for k in layout["fields"]}
        plan["format"] = layout["format"]
        (tmp_path / name).write_text(json.dumps(plan))
        assert spec.read_plan(str(tmp_path), task) == plan
        for k in layout["fields"]:
            if k == "format":
                continue
            (tmp_path / name).write_text(json.dumps({f: v for f, v in plan.items() if f != k}))
            with pytest.raises(spec.SpecError, match=f"no {k} "):
                spec.read_plan(str(tmp_path), task)
        (tmp_path / name).write_text(json.dumps(dict(plan, format="tuna-plan-0")))
        with pytest.raises(spec.SpecError, match="format 'tuna-plan-0', expected"):
            spec.read_plan(str(tmp_path), task)
