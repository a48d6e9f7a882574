"""The validated job spec, read strictly (docs/job-spec.md, contract/job-spec/).

The coordinator's validator (Swift, `JobSpec`) fills in every default before a job is stored,
so a job file holds every field. This module applies none of its own: a missing field, an
unknown one, a value of the wrong type, or an enumerated value not in the published list
(contract/job-spec/enums.json, written from the Swift types by `tuna contract --write`) is a
`SpecError` naming the field. The dataclasses are this trainer's typed view of the contract;
the tests load every case of contract/job-spec/ through them and back, field for field.

    job = spec.load("job.json")        # a Job
    job.train.seed, job.lora.rank, job.torch.experts, job.prune.keep
"""
import dataclasses
import functools
import json
import os
import typing
from dataclasses import dataclass
from typing import Annotated, Optional

Enum = Annotated  # Enum[str, Choice("torch.attention")]: a str from enums.json's list for that path


@dataclass(frozen=True)
class Choice:
    path: str  # the dotted path whose allowed values enums.json lists


class SpecError(ValueError):
    pass


def contract_dir():
    """contract/ of the repository or the release (worker/tuna_torch/ -> ../../contract), or
    $TUNA_CONTRACT_DIR."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("TUNA_CONTRACT_DIR") or os.path.normpath(os.path.join(here, "..", "..", "contract"))


def contract(name):
    """contract/NAME as JSON (read once per contract folder): the one way this package reads the
    published contract."""
    return _read_contract(contract_dir(), name)


@functools.lru_cache(maxsize=None)
def _read_contract(directory, name):
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise SpecError(f"the published job-spec contract is missing ({path}: {e.strerror}); "
                        "tuna_torch runs from the repository or a release, next to contract/") from None


def enums():
    return contract("job-spec/enums.json")


@dataclass(frozen=True)
class Resources:
    gpus: int
    gpu_memory_gb: float
    cpu_cores: int
    ram_gb: float


@dataclass(frozen=True)
class Dataset:
    path: str
    format: Enum[str, Choice("dataset.format")]
    template: Enum[str, Choice("dataset.template")]
    val_fraction: float
    fields: Optional[dict] = None  # role -> column name
    prompt_template: Optional[str] = None
    response_template: Optional[str] = None
    system: Optional[str] = None
    val_path: Optional[str] = None
    reasoning_effort: Optional[str] = None
    date: Optional[str] = None


@dataclass(frozen=True)
class LoRA:
    rank: int
    alpha: float
    dropout: float
    use_rslora: bool
    target_modules: list[Enum[str, Choice("lora.target_modules")]]
    target_parameters: list[str]


@dataclass(frozen=True)
class Train:
    epochs: int
    learning_rate: float
    scheduler: Enum[str, Choice("train.scheduler")]
    warmup_ratio: float
    min_lr_ratio: float
    batch_size: int
    grad_accum: int
    max_seq_len: int
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    max_grad_norm: float
    seed: int
    eval_every_steps: int
    max_steps: int
    checkpoint_every_steps: int
    gradient_checkpointing: bool
    packing: bool


@dataclass(frozen=True)
class Prune:
    keep: int
    score: Enum[str, Choice("prune.score")]
    keep_super_experts: bool
    super_expert_ratio: float
    calibration_examples: int
    max_seq_len: int
    seed: int
    write_checkpoint: bool
    general: Optional[Dataset] = None
    also_evaluate: Optional[list[int]] = None


@dataclass(frozen=True)
class Torch:
    attention: Enum[str, Choice("torch.attention")]
    experts: Enum[str, Choice("torch.experts")]
    chunked_loss: bool
    loss_chunk_rows: int


@dataclass(frozen=True)
class Generate:
    count: int
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int
    seed: int
    batch_size: int
    reasoning_effort: Optional[Enum[str, Choice("eval.generate.reasoning_effort")]] = None


@dataclass(frozen=True)
class Answer:
    extract: Enum[str, Choice("eval.answer.extract")]
    compare: Enum[str, Choice("eval.answer.compare")]
    pattern: Optional[str] = None


@dataclass(frozen=True)
class Eval:
    """The task evaluation (docs/job-spec.md, `eval`): LoRA jobs only. The trainer answers the
    prompts of eval.json (`tuna prepare`) and `tuna grade` grades the replies."""
    generate: Generate
    answer: Answer
    every_eval: bool
    baseline: bool


@dataclass(frozen=True)
class Job:
    """A native or torch job (the command trainer's jobs are not this trainer's)."""
    name: str
    trainer: Enum[str, Choice("trainer")]
    priority: int
    max_attempts: int
    resources: Resources
    task: Enum[str, Choice("task")]
    model: str
    dataset: Dataset
    lora: Optional[LoRA] = None
    train: Optional[Train] = None
    prune: Optional[Prune] = None
    torch: Optional[Torch] = None
    eval: Optional[Eval] = None
    # The attempt's identity and instructions, which the worker adds at the top level of
    # job.json (contract/job-file.json); a bare spec has none. `pause_at_step`: train through
    # that step (the schedule stays the whole run's), evaluate, checkpoint, print `paused`,
    # exit 0 without an adapter (a sweep whose ASHA promotes).
    job_id: Optional[int] = None
    sweep_id: Optional[int] = None
    attempt: Optional[int] = None
    pause_at_step: Optional[int] = None


def load(path):
    """The job file at `path` as a `Job`; a `SpecError` naming the field if it is not a
    validated spec."""
    with open(path) as f:
        try:
            obj = json.load(f)
        except ValueError as e:
            raise SpecError(f"{path}: not JSON: {e}") from None
    return parse(obj)


def parse(obj):
    job = _record(Job, obj, "")
    # Which sections a job has follows from its trainer and task (JobValidator's rule).
    wanted = {"lora": job.task == "lora", "train": job.task == "lora", "prune": job.task == "prune",
              "torch": job.trainer == "torch"}
    for section, needed in wanted.items():
        present = getattr(job, section) is not None
        if needed and not present:
            raise SpecError(f"job: {section}: missing (a {job.trainer} {job.task} job has one)")
        if present and not needed:
            raise SpecError(f"job: {section}: a {job.trainer} {job.task} job has none")
    if job.eval is not None and job.task != "lora":
        raise SpecError(f"job: eval: a {job.trainer} {job.task} job has none")
    return job


def to_json(job):
    """The spec as JSON again (unset optional fields left out): `parse(to_json(j)) == j`."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return clean(dataclasses.asdict(job))


def plan_format(task):
    """The plan.json format `tuna prepare` writes for a `task` job (contract/prepared-plan.json)."""
    return contract("prepared-plan.json")[task]["format"]


def read_plan(directory, task):
    """DIRECTORY/plan.json, what `tuna prepare` wrote for a `task` job (or DIRECTORY/eval.json for
    `task` "eval", a job's evaluation prompts): of the format contract/prepared-plan.json names
    for it, with every field it lists."""
    layout = contract("prepared-plan.json")[task]
    path = os.path.join(directory, "eval.json" if task == "eval" else "plan.json")
    with open(path) as f:
        plan = json.load(f)
    if plan.get("format") != layout["format"]:
        raise SpecError(f"{path}: format {plan.get('format')!r}, expected {layout['format']!r} (another tuna's prepare?)")
    missing = [k for k in layout["fields"] if k not in plan]
    if missing:
        raise SpecError(f"{path}: no {', '.join(missing)} (contract/prepared-plan.json)")
    return plan


def golden(case):
    """The validated spec of contract/job-spec/CASE.json (benchmarks and tests start from it
    and set the fields they vary, so they never restate a default)."""
    return parse(contract(f"job-spec/{case}.json")["validated"])


def _record(cls, obj, path):
    if not isinstance(obj, dict):
        raise SpecError(f"job: {path or 'the job'}: {obj!r} is not an object")
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(obj) - set(names))
    if unknown:
        raise SpecError(f"job: {_join(path, unknown[0])}: unknown field (expected one of {', '.join(sorted(names))})")
    values = {}
    for name in names:
        where = _join(path, name)
        kind, optional = _unwrap_optional(hints[name])
        if name not in obj:
            if optional:
                continue
            raise SpecError(f"job: {where}: missing (a validated job spec has every field; see contract/job-spec/)")
        values[name] = _value(kind, obj[name], where)
    return cls(**values)


def _value(kind, v, where):
    origin = typing.get_origin(kind)
    if origin is Annotated:
        base, choice = typing.get_args(kind)
        allowed = enums()[choice.path]
        if not isinstance(v, str) or v not in allowed:
            raise SpecError(f"job: {where}: {v!r} is not one of {', '.join(allowed)}")
        return v
    if dataclasses.is_dataclass(kind):
        return _record(kind, v, where)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(v, list):
            raise SpecError(f"job: {where}: {v!r} is not a list")
        return [_value(item, x, f"{where}[{i}]") for i, x in enumerate(v)]
    if kind is dict:
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise SpecError(f"job: {where}: {v!r} is not a mapping of strings")
        return dict(v)
    ok = {int: lambda x: isinstance(x, int) and not isinstance(x, bool),
          float: lambda x: isinstance(x, (int, float)) and not isinstance(x, bool),
          bool: lambda x: isinstance(x, bool),
          str: lambda x: isinstance(x, str)}[kind]
    if not ok(v):
        raise SpecError(f"job: {where}: {v!r} is not {kind.__name__}")
    return float(v) if kind is float else v


def _unwrap_optional(kind):
    args = typing.get_args(kind)
    if typing.get_origin(kind) is typing.Union and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return kind, False


def _join(path, name):
    return f"{path}.{name}" if path else name
