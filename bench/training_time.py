"""Time to quality: two training configurations side by side on the same data, on the CPU.

Each configuration writes its own shards (from the pipeline's data/raw and
data/split, so the preprocessing params may differ too), trains from scratch on
the CPU, and is evaluated on the test split: mean accuracy over the drawn
attributes against the noise ceiling, attributes below their majority baseline
(in test images), and the gender-fair score. The script prints both training
times and the ratio.

``--compare defaults`` (the default): the previous default training params against
the current ones; ``-S key=value`` changes the candidate (the current defaults unless
given), to try a change before it becomes the default. ``--compare data_on``: the
current params (with ``-S``) fed by the loader against resident data
(``train.data_on``); on one process both train on the same batches, so the script
also says whether the two models are the same, byte for byte.

    python bench/training_time.py                      # previous defaults against current ones
    python bench/training_time.py --only current -S train.epochs=6
    python bench/training_time.py --compare data_on    # the loader against resident data
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
import torch
import yaml

from bench.common import machine, save_result
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


def pairs(compare: str, sets: list[str]) -> dict[str, Params]:
    """The two configurations ``--compare`` names: the baseline first."""
    if compare == "defaults":
        return {"previous": configuration(copy.deepcopy(PREVIOUS), []), "current": configuration(None, sets)}
    return {path: configuration(None, [*sets, f"train.data_on={path}"]) for path in ("loader", "resident")}


def same_model(first: Path, second: Path) -> bool:
    """Whether two model.pt files hold the same weights, byte for byte."""
    a, b = (torch.load(path, weights_only=True)["state_dict"] for path in (first, second))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run(
    name: str,
    params: Params,
    raw: Path,
    manifest: pd.DataFrame,
    work: Path,
    truth: dict | None,
    official: tuple | None = None,
) -> dict:
    """Shards for ``params``, training from scratch, and the test split's quality figures; with ``official`` (the
    official test partition's rows and figures, ``splits.official_test``), its accuracy too."""
    folder = work / name
    images = ImageArchive.of(raw)
    shards.write_splits(manifest, images, folder / "shards", params.preprocess, progress=False, official=official)
    start = time.perf_counter()
    trained = train(params, folder / "shards", folder / "models", folder / "live", progress=False)
    seconds = time.perf_counter() - start
    results = evaluate(folder / "models" / "model.pt", folder / "shards", params.evaluate, truth)
    summary = metrics_json(results)
    test = summary["test"]
    table = per_attribute_table(results)
    n_test = int(manifest["split"].eq("test").sum())
    short = ((table["majority_baseline"] - table["accuracy"]) * n_test).round().astype(int)
    epochs = json.loads((folder / "live" / "metrics.json").read_text())
    drawn = truth is not None and "noise_ceiling_drawn" in test  # a derived target has no drawn attributes
    return {
        "name": name,
        "train_s": seconds,
        "epochs": trained["epochs"],
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
        "official_test_accuracy": summary.get("official_test", {}).get("mean_accuracy"),
        "official_test_baseline": summary.get("official_test", {}).get("majority_baseline"),
        "precision": float(table["precision"].mean()),
        "recall": float(table["recall"].mean()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--split", type=Path, default=Path("data/split"))
    p.add_argument(
        "--compare",
        choices=["defaults", "data_on"],
        default="defaults",
        help="previous against current defaults, or the loader against resident data (train.data_on)",
    )
    p.add_argument("--only", help="run one configuration only: previous or current (loader or resident)")
    add_set_option(p, "change the current configuration (both, with --compare data_on; repeatable)")
    args = p.parse_args()
    truth = truth_if_synthetic(args.raw)
    configs = pairs(args.compare, args.sets)
    if args.only and args.only not in configs:
        p.error(f"--only {args.only}: with --compare {args.compare}, one of {', '.join(configs)}")
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
        identical = len(rows) == 2 and same_model(*(Path(tmp) / name / "models" / "model.pt" for name in configs))
    frame = pd.DataFrame(rows).set_index("name")
    print(frame.round(4).to_string())
    if len(rows) == 2:
        base, candidate = configs
        ratio = frame.loc[base, "train_s"] / frame.loc[candidate, "train_s"]
        target = " (target 2x)" if args.compare == "defaults" else ""
        print(
            f"training time: {base} {frame.loc[base, 'train_s']:.0f} s, "
            f"{candidate} {frame.loc[candidate, 'train_s']:.0f} s, ratio {ratio:.2f}x{target}"
        )
        if args.compare == "data_on":
            print(f"the same model, byte for byte: {'yes' if identical else 'NO'}")
        save_result(f"training_time_{args.compare}", {"rows": rows, "ratio": ratio, "same_model": identical})


if __name__ == "__main__":
    main()
