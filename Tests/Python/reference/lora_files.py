"""LoRA reference directories, and adapters someone else wrote loaded strictly.

write_case makes the directory the Swift LoRA tests read (the committed lora-attn/lora-experts
fixtures, and the live check's fresh one) from lora.py's PEFT run; load_adapter_strict loads
an adapter (the Swift side's, the torch trainer's) the way a user would and lists everything
PEFT would only warn about or do silently.
"""
import json
import os
import shutil
import warnings

import torch
from peft import PeftModel
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from reference import gptoss as ref
from reference.lora import (SCHEDULER_KINDS, adapter_parameters, build, forward, max_rel, noise_estimate,
                            schedule_curve, scaling, scored_tokens, train)


# ---------------------------------------------------------------------------------------------
# One reference directory: model/, initial_adapter/, reference.safetensors, lora_reference.json
# ---------------------------------------------------------------------------------------------

def write_case(directory, model_kwargs, model_seed, settings, hp, case, inputs, packed=None, shards=1,
               hub_style=False, base_model_name="model", fp64_check=True):
    """Writes a complete LoRA reference directory and returns (record, noise or None).

    model/             the MXFP4 checkpoint (gptoss.write_checkpoint)
    initial_adapter/   PEFT save_pretrained of the random initial adapter
    reference.safetensors
        <case>.input_ids/labels/attention_mask|position_ids  (TestSupport's ReferenceCase)
        <case>.logits, <case>.loss     PEFT with the initial adapter
        <case>.final_logits            PEFT with the adapter after the steps
        grads.<name>, final.<name>     d(loss)/d(tensor) at the initial adapter; after the steps
        losses, lrs, grad_norms        per step (fp32; exact values in lora_reference.json)
    lora_reference.json  every setting and hyperparameter, plus the scheduler curves
    """
    model_dir = os.path.join(directory, "model")
    tensors = ref.write_checkpoint(model_dir, model_kwargs, model_seed, shards=shards, hub_style_config=hub_style)
    ref.load_reference(model_dir, tensors)  # prints + asserts transformers' dequantization of our bytes
    model = build(model_dir, settings, seed=model_seed + 7)

    adapter_dir = os.path.join(directory, "initial_adapter")
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(adapter_dir)
    # A neutral base_model_name_or_path instead of this machine's absolute path (set after
    # saving: save_pretrained looks the base model's config.json up by that name).
    config_path = os.path.join(adapter_dir, "adapter_config.json")
    with open(config_path) as f:
        adapter_config = json.load(f)
    adapter_config["base_model_name_or_path"] = base_model_name
    if isinstance(adapter_config.get("target_modules"), list):
        # PEFT saves the *resolved* module set ("all-linear" -> every full module name) in set
        # order, which changes with Python's hash seed; sorted, the fixture is reproducible.
        adapter_config["target_modules"] = sorted(adapter_config["target_modules"])
    with open(config_path, "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)
    readme = os.path.join(adapter_dir, "README.md")  # PEFT's model-card boilerplate; not needed
    if os.path.exists(readme):
        os.remove(readme)
    initial = {k: p.detach().clone() for k, p in adapter_parameters(model).items()}
    saved = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    assert sorted(saved) == sorted(initial) and all(torch.equal(saved[k], initial[k]) for k in saved), \
        "save_pretrained did not write exactly the adapter parameters"

    with torch.no_grad():
        with model.disable_adapter():  # the base model's logits, to show the adapter matters
            base_logits = forward(model, inputs, packed)[0]
    record = train(model, inputs, packed, hp)
    lora_effect = max_rel(record["logits"], base_logits)
    assert lora_effect > 1e-2, f"the initial adapter barely changes the logits ({lora_effect:.2e})"
    for k, g in record["grads"].items():
        assert g.abs().max() > 0, f"{k}: zero gradient"
    noise = None
    if fp64_check:
        model64 = build(model_dir, settings, seed=model_seed + 7, dtype=torch.float64)
        noise = noise_estimate(record, train(model64, {k: v for k, v in inputs.items()}, packed, hp))

    out = {}
    for k, v in inputs.items():
        out[f"{case}.{k}"] = v.contiguous()
    out[f"{case}.logits"] = record["logits"].float().contiguous()
    out[f"{case}.loss"] = record["loss"].float().reshape(())
    out[f"{case}.final_logits"] = record["final_logits"].float().contiguous()
    for k in record["grads"]:
        out[f"grads.{k}"] = record["grads"][k].float().contiguous()
        out[f"final.{k}"] = record["final"][k].float().contiguous()
    for k in ("losses", "lrs", "grad_norms"):
        out[k] = torch.tensor(record[k], dtype=torch.float32)
    save_file(out, os.path.join(directory, "reference.safetensors"), metadata={"cases": case})

    meta = {
        "case": case, "cases": [case], "packed": packed,
        "model_seed": model_seed,
        "lora": {"r": settings["r"], "lora_alpha": settings["lora_alpha"], "lora_dropout": 0.0,
                 "use_rslora": settings.get("use_rslora", False),
                 "target_modules": settings.get("target_modules"),
                 "target_parameters": settings.get("target_parameters") or [],
                 "scaling": scaling(settings)},
        "lr": hp["lr"], "betas": list(hp["betas"]), "eps": hp["eps"], "weight_decay": hp["weight_decay"],
        "max_grad_norm": hp["max_grad_norm"], "scheduler": hp["scheduler"],
        "warmup_steps": hp["warmup_steps"], "total_steps": hp["total_steps"], "min_lr_ratio": hp["min_lr_ratio"],
        "steps": hp["steps"],
        "tokens": scored_tokens(inputs["labels"]),
        "loss": record["loss"].item(), "losses": record["losses"], "lrs": record["lrs"],
        "grad_norms": record["grad_norms"],
        "clipped_steps": [i for i, n in enumerate(record["grad_norms"]) if n > hp["max_grad_norm"]],
        "lora_effect_on_logits": lora_effect,
        "adapter_tensors": {k: list(v.shape) for k, v in record["grads"].items()},
        # every scheduler kind on this run's peak/warmup/total/min ratio, steps 0..total
        "schedules": {kind: schedule_curve(kind, hp["lr"], hp["warmup_steps"], hp["total_steps"], hp["min_lr_ratio"])
                      for kind in SCHEDULER_KINDS},
        "fp32_vs_fp64": noise,
    }
    with open(os.path.join(directory, "lora_reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
    return record, meta


# ---------------------------------------------------------------------------------------------
# Loading an adapter someone else wrote (the Swift side), strictly
# ---------------------------------------------------------------------------------------------

def load_adapter_strict(model_dir, adapter_dir, expect_settings=None):
    """PeftModel.from_pretrained(base, adapter_dir), the way a user would load our output,
    then fails (returns a list of problems) on anything PEFT would only warn about or do
    silently: missing keys (left at PEFT's init, B = 0), unexpected keys (ignored), a tensor
    not loaded bit for bit, or a config that resolves to other modules/scaling than expected.
    Returns (model, problems)."""
    problems = []
    base = ref.load_reference(model_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, adapter_dir)
    for w in caught:
        text = str(w.message)
        if "key" in text.lower() or "adapter" in text.lower():
            problems.append(f"PEFT warned: {text}")
    model.eval()
    file_tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    with_adapter_name = sorted(k for k in file_tensors if ".default." in k)
    if with_adapter_name:
        # PEFT loads these too, but save_pretrained never writes them: not PEFT's layout.
        problems.append(f"tensor names carry the adapter name (.default.): {with_adapter_name}")
        file_tensors = {k.replace(".default.", "."): v for k, v in file_tensors.items()}
    loaded = get_peft_model_state_dict(model)
    missing = sorted(set(loaded) - set(file_tensors))
    unexpected = sorted(set(file_tensors) - set(loaded))
    if missing:
        problems.append(f"model has LoRA tensors the file lacks (left at init): {missing}")
    if unexpected:
        problems.append(f"file has tensors PEFT did not load: {unexpected}")
    for k in sorted(set(loaded) & set(file_tensors)):
        a, b = loaded[k], file_tensors[k]
        if a.shape != b.shape or not torch.equal(a.float(), b.float()):
            problems.append(f"{k}: loaded {tuple(a.shape)} differs from the file's {tuple(b.shape)}")
    if expect_settings is not None:
        cfg = model.peft_config["default"]
        if cfg.r != expect_settings["r"] or float(cfg.lora_alpha) != float(expect_settings["lora_alpha"]) \
                or bool(cfg.use_rslora) != bool(expect_settings.get("use_rslora", False)):
            problems.append(f"config r/alpha/rslora {cfg.r}/{cfg.lora_alpha}/{cfg.use_rslora} != expected")
        if cfg.lora_dropout != 0:
            problems.append(f"lora_dropout {cfg.lora_dropout} (ParamWrapper requires 0)")
    return model, problems
