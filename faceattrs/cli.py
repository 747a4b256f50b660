"""The ``faceattrs`` command: predict the attributes of photos, run published recipes, check params.

faceattrs predict photo.jpg            # a table for one image
faceattrs predict photos/ --out preds  # files for a folder (or a shard folder)
faceattrs recipe [NAME [--run] [-S KEY=VALUE ...]]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattrs.core import stage
from faceattrs.core.project import stage_path


def predict(args: argparse.Namespace) -> None:
    from faceattrs.prediction import outputs
    from faceattrs.prediction.predictor import Predictor

    # Unless given, the model and thresholds the predict stage reads, as dvc.yaml declares them.
    model = args.model or stage_path("predict", "model.pt")
    thresholds_file = args.thresholds or _project_thresholds()
    predictor = Predictor(model, args.device, tta=args.tta)
    thresholds = outputs.load_thresholds(thresholds_file, predictor.targets)
    index, logits = outputs.predict_paths(predictor, args.paths, split=args.split)
    frame = outputs.predictions_frame(index, logits, predictor.targets, thresholds)
    if len(frame) == 1 and args.out is None:
        print(outputs.table_for_one(frame, predictor.targets))
        return
    out = args.out or Path("predictions")
    paths = outputs.write_predictions(frame, predictor.targets, out)
    print(f"{len(frame)} images -> {paths['celeba']}, {paths['csv']}")


def _project_thresholds() -> Path | None:
    """The thresholds file of this project's predict stage; None outside a DVC project (probability 0.5)."""
    from faceattrs.core.errors import InputError

    try:
        return stage_path("predict", "thresholds.json")
    except InputError:
        return None


def recipe(args: argparse.Namespace) -> None:
    import shlex
    import subprocess

    from faceattrs import recipes

    if args.name is None:
        for name, path in recipes.available().items():
            print(f"{name:<32} {path.read_text().splitlines()[0].lstrip('# ')}")
        return
    recipes.resolve(args.name, args.params, args.sets)  # refuse what the schema would reject, before DVC runs
    command = recipes.command(args.name, args.sets)
    print(shlex.join(command))
    if args.execute:
        sys.exit(subprocess.call(command))


def params(args: argparse.Namespace) -> None:
    from faceattrs.core.params import load_params
    from faceattrs.core.params_file import render

    if args.defaults:
        print(render(), end="")
        return
    load_params(args.params)
    print(f"{args.params}: valid")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="faceattrs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="the attributes of photos, folders of photos, or shard sets")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--model", type=Path, default=None, help="model file (default: the predict stage's, from dvc.yaml)")
    p.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help="per-attribute thresholds tuned by evaluate (default: the predict stage's; probability 0.5 if absent)",
    )
    p.add_argument("--out", type=Path, default=None, help="folder for the prediction files (default: predictions/)")
    p.add_argument("--split", default="test", help="which split of a shard folder")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--tta",
        choices=["none", "flip"],
        default="flip",
        help="flip averages each image with its mirror, as evaluate does by default (evaluate.tta)",
    )
    p.set_defaults(run=predict)
    r = sub.add_parser("recipe", help="list the published recipes, print one's `dvc exp run` command, or run it")
    r.add_argument("name", nargs="?")
    r.add_argument(
        "--run", dest="execute", action="store_true", help="run the experiment instead of printing its command"
    )
    r.add_argument("--params", type=Path, default=Path("params.yaml"))
    r.add_argument(
        "-S",
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another override after the recipe's, as `dvc exp run -S` takes it (repeatable), "
        "e.g. -S data.source=local -S data.local.path=/data/celeba",
    )
    r.set_defaults(run=recipe)
    c = sub.add_parser("params", help="check params.yaml against the schema, or print the defaults")
    c.add_argument("--defaults", action="store_true", help="print the schema's defaults as a commented params.yaml")
    c.add_argument("--params", type=Path, default=Path("params.yaml"))
    c.set_defaults(run=params)
    args = parser.parse_args(argv)
    stage.run(lambda: args.run(args), f"faceattrs {args.command}")


if __name__ == "__main__":
    main()
