#!/usr/bin/env python3
"""Reads what `tuna export` wrote with the trackers' own libraries and prints it as JSON, for
ExportTests (Swift) to compare with the coordinator's events:

    read_exports.py --tensorboard DIR --mlflow DIR

TensorBoard: every run under DIR through tensorboard's EventAccumulator (which checks both
CRCs of every record), its scalars by tag as [step, value]. MLflow: the file store through
MlflowClient (mlflow-skinny; MLFLOW_ALLOW_FILE_STORE=true, as MLflow 3 asks for file stores):
experiments, and each run's name, status, params, tags, metric histories and artifact paths.
"""
import argparse
import json
import os
from pathlib import Path


def tensorboard(root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out = {}
    for run in sorted(p.parent for p in Path(root).rglob("events.out.tfevents.*")):
        ea = EventAccumulator(str(run), size_guidance={"scalars": 0})
        ea.Reload()
        out[str(run.relative_to(root))] = {tag: [[s.step, s.value] for s in ea.Scalars(tag)] for tag in ea.Tags()["scalars"]}
    return out


def mlflow(root):
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    from mlflow.tracking import MlflowClient
    c = MlflowClient(tracking_uri=Path(root).resolve().as_uri())
    exps = {e.experiment_id: e.name for e in c.search_experiments()}
    runs = {}
    for exp in exps:
        for r in c.search_runs([exp]):
            def files(path):
                out = []
                for f in c.list_artifacts(r.info.run_id, path):
                    out += files(f.path) if f.is_dir else [f.path]
                return out
            runs[r.info.run_name] = {
                "experiment": exps[exp], "status": r.info.status,
                "params": r.data.params, "tags": {k: v for k, v in r.data.tags.items() if k.startswith("tuna.")},
                "metrics": {k: [[m.step, m.value] for m in c.get_metric_history(r.info.run_id, k)] for k in r.data.metrics},
                "artifacts": files(None), "artifact_uri": r.info.artifact_uri,
            }
    return {"experiments": sorted(exps.values()), "runs": runs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tensorboard")
    ap.add_argument("--mlflow")
    a = ap.parse_args()
    print(json.dumps({"tensorboard": tensorboard(a.tensorboard) if a.tensorboard else None,
                      "mlflow": mlflow(a.mlflow) if a.mlflow else None}))


if __name__ == "__main__":
    main()
