"""Each published recipe trained for real epochs on the synthetic data, from scratch, at a size this CPU runs.

Every recipe keeps its own choices (backbone, head, loss, augmentation,
optimizer, schedule, split, stopping) except three, so that six of them fit in
well under an hour on 2 cores: images and crops at ``--factor`` of the recipe's
size, no pretrained weights (nothing can be downloaded here), and at most
``--heavy-epochs`` epochs for the three 22-28 M-parameter backbones, whose
epochs take minutes here. Each is evaluated on the test split of its own split
method; the seed's published figure (real CelebA, ImageNet weights, full size)
is printed beside it for reference, not for comparison.

    python bench/recipe_accuracy.py                     # all six, about 50 minutes here
    python bench/recipe_accuracy.py --only resnet18-bce-baseline --factor 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from bench.common import machine, save_result
from bench.training_time import run
from faceattrs import recipes
from faceattrs.cleaning.clean import load_raw
from faceattrs.cleaning.reasons import Dropped
from faceattrs.data import splits
from faceattrs.synthetic.truth import truth_if_synthetic
from faceattrs.training.augment import model_input_size

# Minutes per epoch of recipes.HEAVY here: resnest50d at 80x80 and vit_small_patch8 at 56x56 about 3.5,
# resnext50 at 54x44 about 1; the three others run their recipe's own epochs.
HEAVY = recipes.HEAVY


def recipe_params(name: str, params_file: Path, factor: float, heavy_epochs: int):
    params = recipes.resolve(name, params_file)
    capped = {"epochs": heavy_epochs} if name in HEAVY and params.train.epochs > heavy_epochs else {}
    return recipes.scaled(params, factor, name=name, train=capped)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--clean", type=Path, default=Path("data/clean"), help="the images each recipe's split divides")
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--factor", type=float, default=0.25, help="image sizes and crops times this (default 0.25)")
    p.add_argument("--heavy-epochs", type=int, default=3, help=f"epoch cap for {', '.join(HEAVY)} (default 3)")
    p.add_argument("--only", action="append", choices=sorted(recipes.available()), help="run this recipe (repeatable)")
    args = p.parse_args()
    truth = truth_if_synthetic(args.raw)
    clean = pd.read_parquet(args.clean / "manifest.parquet").sort_index()
    dropped = pd.read_csv(args.clean / "dropped.csv")
    unreadable = set(dropped.loc[dropped["reason"] == Dropped.UNREADABLE, "image_id"])
    published = load_raw(args.raw)
    groups = pd.read_parquet(args.clean / "groups.parquet")
    print(f"machine: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="faceattrs-recipes-") as tmp:
        for name in args.only or recipes.available():
            params = recipe_params(name, args.params, args.factor, args.heavy_epochs)
            split = params.split
            manifest = clean.assign(split=splits.assign(clean, split.method, split.ratios, split.seed))
            official = splits.official_test(published, unreadable, groups, manifest)
            row = run(name, params, args.raw, manifest, Path(tmp), truth, official)
            seen = model_input_size(params.model.input_size, params.augment, params.preprocess.size)
            row["size"] = f"{'x'.join(map(str, params.preprocess.size))} -> {'x'.join(map(str, seen))}"
            row["published"] = recipes.table(name)["published"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    frame = pd.DataFrame(rows).set_index("name")
    columns = ["size", "epochs", "train_s", "official_test_accuracy", "mean_accuracy", "majority_baseline"]
    print(frame[[*columns, "precision", "recall", "gender_fair"]].round(4).to_string())
    save_result(
        "recipe_accuracy",
        {"factor": args.factor, "heavy_epochs": args.heavy_epochs, "only": args.only, "rows": rows},
    )


if __name__ == "__main__":
    main()
