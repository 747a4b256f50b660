"""The ``faceattrs`` command: ``predict PATH...`` scores photos, folders or shard sets; ``recipe`` runs published recipes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattrs import prediction
from faceattrs.stagecli import USER_ERRORS


def predict(args: argparse.Namespace) -> None:
    from faceattrs.predictor import Predictor

    predictor = Predictor(args.model, args.device)
    thresholds = prediction.load_thresholds(args.thresholds, predictor.targets)
    index, logits = prediction.predict_paths(predictor, args.paths, split=args.split)
    frame = prediction.predictions_frame(index, logits, predictor.targets, thresholds)
    if len(frame) == 1 and args.out is None:
        print(prediction.table_for_one(frame, predictor.targets))
        return
    out = args.out or Path("predictions")
    paths = prediction.write_predictions(frame, predictor.targets, out)
    print(f"{len(frame)} images -> {paths['celeba']}, {paths['csv']}")


def recipe(args: argparse.Namespace) -> None:
    import shlex
    import subprocess

    from faceattrs import recipes

    if args.name is None:
        for name, path in recipes.available().items():
            print(f"{name:<32} {path.read_text().splitlines()[0].lstrip('# ')}")
        return
    recipes.resolve(args.name, args.params)  # refuse a recipe the schema would reject, before DVC runs
    command = recipes.command(args.name)
    print(shlex.join(command))
    if args.execute:
        sys.exit(subprocess.call(command))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="faceattrs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="the attributes of photos, folders of photos, or shard sets")
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--model", type=Path, default=Path("data/models/model.pt"))
    p.add_argument("--thresholds", type=Path, default=Path("reports/evaluate/thresholds.json"),
                   help="per-attribute thresholds tuned by evaluate (0.5 probability when absent)")
    p.add_argument("--out", type=Path, default=None, help="folder for the prediction files (default: predictions/)")
    p.add_argument("--split", default="test", help="which split of a shard folder")
    p.add_argument("--device", default="cpu")
    p.set_defaults(run=predict)
    r = sub.add_parser("recipe", help="list the published recipes, print one's `dvc exp run` command, or run it")
    r.add_argument("name", nargs="?")
    r.add_argument("--run", dest="execute", action="store_true", help="run the experiment instead of printing its command")
    r.add_argument("--params", type=Path, default=Path("params.yaml"))
    r.set_defaults(run=recipe)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except USER_ERRORS as err:
        print(f"faceattrs {args.command}: error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
