"""What the flows publish, read from the files DVC tracks: training progress, metrics tables, metrics diffs.

Pure Python (no Prefect); every path comes from dvc.yaml, where it is declared once, read through DVC.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
from dvc.repo import Repo

from faceattrs.core.params import ParamsError, load_params
from flows.dvcrun import dvc_env


def stage_files(repo: Path, stage: str, metrics_only: bool = False) -> list[Path]:
    """A stage's outputs (or only its metrics files) in ``repo``, as DVC itself resolves dvc.yaml's variables."""
    with Repo(os.fspath(repo)) as dvc:
        outs = dvc.stage.collect(stage)[0].outs
    return [repo / out.def_path for out in outs if out.metric or not metrics_only]


def training_progress(repo: Path, live_metrics: Path, since: float) -> dict | None:
    """Epoch, losses and accuracies of the running train stage from dvclive's metrics file, once it is fresh."""
    if not live_metrics.exists() or live_metrics.stat().st_mtime < since:
        return None
    try:
        live = json.loads(live_metrics.read_text())
    except json.JSONDecodeError:  # caught mid-write; the next tick reads it whole
        return None
    try:
        epochs = load_params(repo / "params.yaml").train.epochs
    except ParamsError:  # the train stage says what is wrong with them; progress is shown without a total
        epochs = None
    step = int(live.get("step", 0))
    row = {"epoch": step + 1, "of": epochs}
    for split in ("train", "val"):
        for key, value in (live.get(split) or {}).items():
            if isinstance(value, (int, float)):
                row[f"{split}_{key}"] = round(float(value), 4)
    row["progress"] = min(1.0, (step + 1) / epochs) if epochs else None
    return row


def evaluate_metrics(repo: Path) -> Path:
    """The evaluate stage's metrics file, as dvc.yaml declares it."""
    return stage_files(repo, "evaluate", metrics_only=True)[0]


def metrics_table(repo: Path) -> list[dict]:
    """Headline, then per-attribute test accuracy against the majority-class baseline."""
    metrics_file = evaluate_metrics(repo)
    summary = json.loads(metrics_file.read_text())
    per_attribute = metrics_file.parent / "per_attribute.csv"
    test = summary["test"]
    rows = [
        {
            "attribute": "mean (40)",
            "accuracy": test["mean_accuracy"],
            "majority_baseline": test["majority_baseline"],
            "above_baseline": round(test["mean_accuracy"] - test["majority_baseline"], 5),
        }
    ]
    if per_attribute.exists():
        table = pd.read_csv(per_attribute)
        for r in table.itertuples():
            rows.append(
                {
                    "attribute": r.attribute,
                    "accuracy": r.accuracy,
                    "majority_baseline": r.majority_baseline,
                    "above_baseline": round(r.accuracy - r.majority_baseline, 5),
                }
            )
    return rows


def headline(summary: dict) -> dict:
    """The headline figures of the evaluate stage's metrics (the content of its metrics file)."""
    return {
        "official_test_mean_accuracy": summary.get("official_test", {}).get("mean_accuracy"),
        "test_mean_accuracy": summary["test"]["mean_accuracy"],
        "val_mean_accuracy": summary["val"]["mean_accuracy"],
        "gender_fair_score": summary["test"]["gender_fair_score"],
        "majority_baseline": summary["test"]["majority_baseline"],
    }


def metrics_diff_markdown(repo: Path, against: str = "HEAD") -> str:
    result = subprocess.run(
        ["dvc", "metrics", "diff", against, "--md"], cwd=repo, env=dvc_env(), capture_output=True, text=True
    )
    if result.returncode != 0:
        return f"`dvc metrics diff {against}` failed:\n\n```\n{result.stderr.strip()}\n```"
    return (
        (f"# `dvc metrics diff {against}`\n\n" + result.stdout)
        if result.stdout.strip()
        else f"# `dvc metrics diff {against}`\n\nNo metric differs from {against}."
    )


def report_page(repo: Path) -> Path:
    """The one-page report the report stage writes."""
    return next(p for p in stage_files(repo, "report") if p.suffix == ".md")
