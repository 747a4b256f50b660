"""The ``faceattrs`` command: predict the attributes of photos, run published recipes, check params.

faceattrs predict photo.jpg            # a table for each face in a photo, and the photo annotated
faceattrs predict photos/ --out preds  # files for a folder (or a shard folder)
faceattrs explain photo.jpg --attribute Smiling  # where the model looks for an attribute
faceattrs serve                        # a page on http://127.0.0.1:8000/ to try the model
faceattrs recipe [NAME [--run | --queue] [--name EXP | --replace] [-S KEY=VALUE ...]]
faceattrs compare [RUN ...]            # experiments and commits side by side
faceattrs init --celeba /data/celeba   # point params.yaml at your CelebA
"""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from faceattrs.core import stage
from faceattrs.core.attributes import ALIGNED_SIZE
from faceattrs.core.params import EvaluateParams
from faceattrs.core.project import stage_path


def predict(args: argparse.Namespace) -> None:
    from faceattrs.prediction import outputs
    from faceattrs.prediction.predictor import Predictor

    # Unless given, the model and thresholds the predict stage reads, as dvc.yaml declares them.
    model = args.model or stage_path("predict", "model.pt")
    # Without a file (outside a DVC project), probability 0.5.
    thresholds_file = args.thresholds or _declared("predict", "thresholds.json")
    predictor = Predictor(model, args.device, tta=args.tta)
    thresholds = outputs.load_thresholds(thresholds_file, predictor.targets)
    index, logits, faces = outputs.predict_paths(
        predictor, args.paths, split=args.split, min_face_score=args.min_face_score
    )
    frame = outputs.predictions_frame(index, logits, predictor.targets, thresholds, faces)
    out = args.out or Path("predictions")
    one_picture = len(frame) == 1 or (
        "photo" in frame and frame["photo"].notna().all() and frame["photo"].nunique() == 1
    )
    if one_picture and args.out is None:
        print(outputs.tables(frame, predictor.targets))
    else:
        paths = outputs.write_predictions(frame, predictor.targets, out)
        print(f"{len(frame)} faces -> {paths['celeba']}, {paths['csv']}")
    pictures = outputs.write_annotated(frame, predictor.targets, out) if args.annotate else []
    if pictures:
        print(f"{len(pictures)} annotated pictures -> {out / 'annotated'}")


def explain(args: argparse.Namespace) -> None:
    from faceattrs.core import atomic
    from faceattrs.core.errors import InputError
    from faceattrs.prediction import photos, saliency
    from faceattrs.prediction.predictor import Predictor

    # The probability as predict gives it (flip TTA by default); the map is of the face itself.
    predictor = Predictor(args.model or stage_path("predict", "model.pt"), args.device, tta=args.tta)
    found = photos.find([args.image], predictor.mean_eyes, args.min_face_score)
    if not found.faces:
        raise InputError(f"{args.image}: no face found; nothing written")
    if not 1 <= args.face <= len(found.faces):
        raise InputError(f"--face {args.face}: {args.image} has {len(found.faces)} face(s)")
    face = found.faces[args.face - 1]
    probability, heat, seen = saliency.explain(predictor, face.source, args.attribute)
    how = saliency.method(predictor.model.backbone)
    title = f"{args.attribute}: p = {probability:.3f} ({how})"
    picture = saliency.explanation_picture(face.aligned, seen, heat, title)
    which = f".face{face.face}" if len(found.faces) > 1 else ""
    target = (args.out or Path("predictions")) / "explain" / f"{args.image.stem}{which}.{args.attribute}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_file(target) as tmp:
        picture.save(tmp, format="PNG")
    where = f"{ALIGNED_SIZE}, taken as aligned" if face.box is None else f"face {face.face} of {len(found.faces)}"
    print(f"{args.image} ({where}): {title} -> {target}")


def serve(args: argparse.Namespace) -> None:
    import os

    from faceattrs.prediction.gate import TOKEN_VARIABLE, Access
    from faceattrs.prediction.serve import serve as run

    # Before the model loads: a page other machines can reach never starts without a token.
    access = Access.bound(args.host, args.token or os.environ.get(TOKEN_VARIABLE), args.allow_host)
    run(
        args.model or stage_path("predict", "model.pt"),
        args.thresholds or _declared("predict", "thresholds.json"),
        _declared("evaluate", "raw"),  # outside a DVC project: no test images to offer
        _declared("predict", "shards"),
        args.tta,
        access,
        args.port,
    )


def _declared(stage: str, name: str) -> Path | None:
    """The path named ``name`` that this project's dvc.yaml declares for ``stage``; None outside a DVC project."""
    from faceattrs.core.errors import InputError

    try:
        return stage_path(stage, name)
    except InputError:
        return None


def add_set_option(parser: argparse.ArgumentParser, help: str) -> None:
    """A repeatable ``-S KEY=VALUE`` params override, as ``dvc exp run -S`` takes it, collected in ``sets``."""
    parser.add_argument("-S", "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help=help)


def recipe(args: argparse.Namespace) -> None:
    import shlex
    import subprocess

    from faceattrs import recipes

    if args.name is None:
        for name, path in recipes.available().items():
            print(f"{name:<32} {path.read_text().splitlines()[0].lstrip('# ')}")
        return

    def command_for(experiment: str) -> list[str]:
        # Refuses what the schema would reject, and a params.yaml without a key to set, before DVC runs.
        return recipes.command(
            args.name, args.params, args.sets, experiment=experiment, replace=args.replace, queue=args.queue
        )

    command = command_for(args.experiment or args.name)  # bad input is refused before DVC is asked anything
    if (args.execute or args.queue) and not args.replace and args.experiment is None:
        # A second run (or queueing) of a recipe is a new experiment, not a clash with the first (--replace
        # overwrites it).
        free = recipes.free_name(args.name, _experiments())
        command = command_for(free) if free != args.name else command
    print(shlex.join(command))
    if args.execute or args.queue:
        sys.exit(subprocess.call(command))


def _experiments() -> list[str]:
    """The names of this workspace's experiments (and queued ones), as DVC lists them."""
    import subprocess

    listed = subprocess.run(["dvc", "exp", "list", "--name-only"], capture_output=True, text=True)
    queued = subprocess.run(["dvc", "queue", "status"], capture_output=True, text=True)
    names = listed.stdout.split() if listed.returncode == 0 else []
    return names + [line.split()[1] for line in queued.stdout.splitlines()[1:] if len(line.split()) > 1]


def compare(args: argparse.Namespace) -> None:
    from faceattrs.reports import comparison

    runs = args.runs or ["HEAD", *_experiments()]
    print(comparison.table([comparison.row(run, *_run_figures(run)) for run in runs]), end="")


def _run_figures(run: str) -> tuple[dict, float | None]:
    """The evaluate stage's metrics and the summed epoch training times of ``run``: a git revision, an experiment
    name, or ``workspace``; read through DVC from the paths dvc.yaml declares."""
    import io

    import dvc.api
    import pandas as pd
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    from faceattrs.core.errors import InputError

    rev = None if run == "workspace" else run
    metrics = stage_path("evaluate", "metrics.json", outs=True)
    times = stage_path("train", "plots", outs=True) / "metrics" / "train_time_s.tsv"
    try:
        evaluate = dvc.api.metrics_show(str(metrics), rev=rev)
    except (DvcException, SCMError) as err:
        raise InputError(f"{run}: no experiment or git revision of that name, or no metrics there ({err})") from None
    try:
        with dvc.api.open(str(times), rev=rev) as handle:
            seconds = float(pd.read_csv(io.StringIO(handle.read()), sep="\t")["train_time_s"].sum())
    except (DvcException, SCMError, FileNotFoundError, KeyError):
        seconds = None
    return evaluate, seconds


def init(args: argparse.Namespace) -> None:
    from faceattrs.core.errors import InputError
    from faceattrs.core.params_file import set_values

    celeba = args.celeba.expanduser().resolve()
    if not celeba.is_dir():
        raise InputError(f"--celeba {args.celeba}: not a folder")
    listed = [celeba / "list_attr_celeba.txt", celeba / "list_attr_celeba.csv"]
    if not any(p.is_file() for p in listed) and not any(celeba.glob("*/list_attr_celeba.*")):
        raise InputError(
            f"--celeba {celeba}: no list_attr_celeba.txt (the official files) or list_attr_celeba.csv (Kaggle's) in it"
        )
    set_values(args.params, {"data.source": "local", "data.local.path": str(celeba)})
    print(
        f"{args.params}: data.source local, data.local.path {celeba}\n"
        f"Commit it to make it your project's data (git add {args.params} && git commit -m 'CelebA at {celeba}'),\n"
        "then `dvc repro`: download checks the folder and links or packs it into data/raw."
    )


def params(args: argparse.Namespace) -> None:
    from faceattrs.core.params import load_params
    from faceattrs.core.params_file import render

    if args.defaults:
        print(render(), end="")
        return
    load_params(args.params)
    print(f"{args.params}: valid")


def _model_parents() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The options predict, explain and serve share (the model, test-time augmentation as evaluate uses it),
    and those predict and explain share (where the model runs, how sure a face in a photo must be)."""
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--model", type=Path, default=None, help="model file (default: the predict stage's, from dvc.yaml)"
    )
    model.add_argument(
        "--tta",
        choices=typing.get_args(EvaluateParams.model_fields["tta"].annotation),
        default="flip",
        help="flip averages each image with its mirror, as evaluate does by default (evaluate.tta)",
    )
    photo = argparse.ArgumentParser(add_help=False)
    photo.add_argument("--device", default="cpu")
    photo.add_argument(
        "--min-face-score",
        type=float,
        default=0.0,
        help="dlib's margin a face must reach in a photo (0: dlib's own default; higher finds fewer, surer faces)",
    )
    return model, photo


def _add_prediction(sub) -> None:
    """predict, explain and serve."""
    model, photo = _model_parents()
    p = sub.add_parser(
        "predict", parents=[model, photo], help="the attributes of photos, folders of photos, or shard sets"
    )
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help="per-attribute thresholds tuned by evaluate (default: the predict stage's; probability 0.5 if absent)",
    )
    p.add_argument("--out", type=Path, default=None, help="folder for the prediction files (default: predictions/)")
    p.add_argument("--split", default="test", help="which split of a shard folder")
    p.add_argument(
        "--no-annotate",
        dest="annotate",
        action="store_false",
        help="do not draw the annotated pictures (one per photo with faces, in OUT/annotated/)",
    )
    p.set_defaults(run=predict)
    e = sub.add_parser(
        "explain", parents=[model, photo], help="a saliency map: where the model looks for one attribute in a photo"
    )
    e.add_argument("image", type=Path)
    e.add_argument("--attribute", required=True, help="an attribute the model predicts, e.g. Smiling")
    e.add_argument("--face", type=int, default=1, help="which face of the photo, best first (default 1)")
    e.add_argument("--out", type=Path, default=None, help="folder for the picture (default: predictions/)")
    e.set_defaults(run=explain)
    _add_serve(sub, model)


SERVE = """A page to try the model: upload a photo or pick a test image, see each face's bars and saliency maps.

On 127.0.0.1 (the default) or ::1 only this machine reaches it. On any other address
(0.0.0.0: every address) other machines can, and it asks every request for a token:
--token, or the FACEATTRS_SERVE_TOKEN variable (other users do not see it, as they see a
command line); make one with python -c 'import secrets; print(secrets.token_hex(32))'.
The address printed at start carries it (http://HOST:PORT/?token=...): a browser opening
it keeps the token in a cookie for the page, and a program sends it as the header
`Authorization: Bearer TOKEN`. Plain HTTP carries the token unencrypted: share the page
on a network you trust, or behind an HTTPS proxy (--allow-host its name).

The page answers only to requests that name it by the address it listens on, by
localhost's names, or by an --allow-host name (0.0.0.0: also this machine's name and
addresses), so that no other site reaches it through a name pointed at this machine.
"""


def _add_serve(sub, model: argparse.ArgumentParser) -> None:
    v = sub.add_parser(
        "serve",
        parents=[model],
        help="a local web page: upload a photo or pick a test image, see bars and saliency",
        description=SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("--thresholds", type=Path, default=None, help="as for predict")
    v.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: this machine only; 0.0.0.0 for every address, with a token)",
    )
    v.add_argument("--port", type=int, default=8000)
    v.add_argument(
        "--token",
        default=None,
        help="the token every request must carry; needed for a --host other than 127.0.0.1 or ::1 "
        "(default: the FACEATTRS_SERVE_TOKEN variable; at least 16 characters)",
    )
    v.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the page answers to in a request's Host header, e.g. this machine's DNS name (repeatable)",
    )
    v.set_defaults(run=serve)


def _add_experiments(sub) -> None:
    """recipe and params."""
    r = sub.add_parser("recipe", help="list the published recipes, print one's `dvc exp run` command, or run it")
    r.add_argument("name", nargs="?")
    r.add_argument(
        "--run", dest="execute", action="store_true", help="run the experiment instead of printing its command"
    )
    r.add_argument("--queue", action="store_true", help="queue the experiment for `dvc queue start` instead")
    r.add_argument(
        "--name",
        dest="experiment",
        help="the experiment's name (default: the recipe's; with --run, NAME-2, NAME-3... once that is taken)",
    )
    r.add_argument("--replace", action="store_true", help="overwrite the experiment of that name (dvc exp run -f)")
    r.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="the workspace's params, which keep their data and machine settings (data.*, workers, device, processes)",
    )
    add_set_option(
        r,
        "another override after the recipe's, as `dvc exp run -S` takes it (repeatable), "
        "e.g. -S data.source=local -S data.local.path=/data/celeba",
    )
    r.set_defaults(run=recipe)
    m = sub.add_parser(
        "compare", help="experiments and commits side by side: official and cleaned test accuracy, fair score, time"
    )
    m.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="experiment names, git revisions or `workspace` (default: HEAD and its experiments)",
    )
    m.set_defaults(run=compare)
    i = sub.add_parser("init", help="point this project at your CelebA (sets data.source and data.local.path)")
    i.add_argument("--celeba", type=Path, required=True, help="a CelebA folder: the official files, or Kaggle's")
    i.add_argument("--params", type=Path, default=Path("params.yaml"))
    i.set_defaults(run=init)
    c = sub.add_parser("params", help="check params.yaml against the schema, or print the defaults")
    c.add_argument("--defaults", action="store_true", help="print the schema's defaults as a commented params.yaml")
    c.add_argument("--params", type=Path, default=Path("params.yaml"))
    c.set_defaults(run=params)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="faceattrs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prediction(sub)
    _add_experiments(sub)
    args = parser.parse_args(argv)
    stage.run(lambda: args.run(args), f"faceattrs {args.command}")


if __name__ == "__main__":
    main()
