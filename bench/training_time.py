"""Time to quality: the previous default training params against the current ones, side by side on the same data.

Each configuration writes its own shards (from the pipeline's data/raw and
data/split, so the preprocessing params may differ too), trains from scratch on
the CPU, and is evaluated on the test split: mean accuracy over the drawn
attributes against the noise ceiling, attributes below their majority baseline
(in test images), and the gender-fair score. The script prints both training
times and the ratio. ``-S key=value`` changes the candidate (the current defaults
unless given), to try a change before it becomes the default.

    python bench/training_time.py                      # previous defaults against current ones
    python bench/training_time.py --only current -S train.epochs=6
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd
import yaml

from bench.common import machine
from faceattrs.cli import add_set_option
from faceattrs.core.params import Params, parse_params
from faceattrs.data import shards
from faceattrs.data.archive import ImageArchive
from faceattrs.evaluation.evaluate import evaluate, metrics_json, per_attribute_table
from faceattrs.synthetic.truth import truth_if_synthetic
from faceattrs.training.run import train

# The defaults before the time-to-quality change: 12 epochs of resnet10t at 80x64, cosine from 3e-3,
# contiguous (NCHW) tensors, one loader process, AdamW's loop over tensors, flips drawn at random.
PREVIOUS = {
    "preprocess": {"size": [80, 64]},
    "model": {"backbone": "resnet10t", "input_size": None},
    "loss": {"label_smoothing": 0.0},
    "augment": {"hflip": 0.5, "flip_order": "random"},
    "optimizer": {"name": "adamw", "lr": 0.003, "weight_decay": 0.0001, "fused": False},
    "schedule": {"name": "cosine", "warmup_epochs": 0.5, "min_lr": 0.0},
    "train": {
        "epochs": 12,
        "batch_size": 64,
        "workers": 1,
        "ema": 0.0,
        "channels_last": False,
    },
}


def _set(raw: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        raw = raw.setdefault(key, {})
    raw[last] = value


def configuration(overrides: dict | None, sets: list[str]) -> Params:
    """The current defaults with ``overrides`` (nested) and ``-S key=value`` strings applied."""
    raw = Params().model_dump(mode="json")
    for section, values in (overrides or {}).items():
        raw[section].update(values)
    for item in sets:
        key, _, value = item.partition("=")
        _set(raw, key, yaml.safe_load(value))
    return parse_params(raw, "bench configuration")


def run(name: str, params: Params, raw: Path, manifest: pd.DataFrame, work: Path, truth: dict | None) -> dict:
    """Shards for ``params``, training from scratch, and the test split's quality figures."""
    folder = work / name
    shards.write_splits(manifest, ImageArchive.of(raw), folder / "shards", params.preprocess, progress=False)
    start = time.perf_counter()
    summary = train(params, folder / "shards", folder / "models", folder / "live", progress=False)
    seconds = time.perf_counter() - start
    results = evaluate(folder / "models" / "model.pt", folder / "shards", params.evaluate, truth)
    test = metrics_json(results)["test"]
    table = per_attribute_table(results)
    n_test = int(manifest["split"].eq("test").sum())
    short = ((table["majority_baseline"] - table["accuracy"]) * n_test).round().astype(int)
    epochs = json.loads((folder / "live" / "metrics.json").read_text())
    drawn = truth is not None and "noise_ceiling_drawn" in test  # a derived target has no drawn attributes
    return {
        "name": name,
        "train_s": seconds,
        "epochs": summary["epochs"],
        "last_epoch_s": epochs.get("epoch_time_s"),
        "mean_accuracy": test["mean_accuracy"],
        "majority_baseline": test["majority_baseline"],
        "balanced_accuracy": test["mean_balanced_accuracy"],
        "drawn": test.get("mean_accuracy_drawn"),
        "ceiling": test.get("noise_ceiling_drawn"),
        "gap_points": 100 * (test["noise_ceiling_drawn"] - test["mean_accuracy_drawn"]) if drawn else None,
        "worst_below_baseline_images": int(short.max()),
        "below_by_more_than_one": ", ".join(table.loc[short > 1, "attribute"]),
        "gender_fair": test["gender_fair_score"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--split", type=Path, default=Path("data/split"))
    p.add_argument("--only", choices=["previous", "current"], help="run one configuration only")
    add_set_option(p, "change the current configuration (repeatable)")
    args = p.parse_args()
    truth = truth_if_synthetic(args.raw)
    configs = {"previous": configuration(copy.deepcopy(PREVIOUS), []), "current": configuration(None, args.sets)}
    print(f"machine: {machine()}")
    manifest = pd.read_parquet(args.split / "manifest.parquet").sort_index()
    rows = []
    with tempfile.TemporaryDirectory(prefix="faceattrs-bench-") as tmp:
        for name, params in configs.items():
            if args.only and name != args.only:
                continue
            row = run(name, params, args.raw, manifest, Path(tmp), truth)
            rows.append(row)
            print(json.dumps(row), flush=True)
    frame = pd.DataFrame(rows).set_index("name")
    print(frame.round(4).to_string())
    if len(rows) == 2:
        ratio = frame.loc["previous", "train_s"] / frame.loc["current", "train_s"]
        print(
            f"training time: previous {frame.loc['previous', 'train_s']:.0f} s, "
            f"current {frame.loc['current', 'train_s']:.0f} s, ratio {ratio:.2f}x (target 2x)"
        )


if __name__ == "__main__":
    main()
