"""DVC stage preprocess: write each split as Parquet shards plus a manifest of counts, schema and checksums.

Beside the cleaned splits it writes the official test partition whole (``official_test``): every
readable image the published partition puts in test, with the published labels, the set
published results are measured on.

python -m stages.preprocess --raw data/raw --clean data/clean --split data/split --out data/shards \
    --reports reports/preprocess
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceattrs.cleaning.clean import load_raw
from faceattrs.cleaning.reasons import Dropped
from faceattrs.core import atomic, stage
from faceattrs.core.errors import InputError
from faceattrs.core.provenance import provenance
from faceattrs.data import celeba, shards, splits
from faceattrs.data.archive import ImageArchive

# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("preprocess",)


def official_test(raw: Path, clean: Path, manifest: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The official test partition's readable images as published, and how the cleaned splits differ from it."""
    dropped = pd.read_csv(clean / "dropped.csv")
    unreadable = set(dropped.loc[dropped["reason"] == Dropped.UNREADABLE, "image_id"])
    return splits.official_test(load_raw(raw), unreadable, pd.read_parquet(clean / "groups.parquet"), manifest)


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--clean", type=Path, required=True, help="dedupe's folder: which images are unreadable")
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args()
    atomic.remove_stale(args.out, args.reports)  # what a killed run left
    params = stage.params_of(args, PARAMS).preprocess
    manifest = pd.read_parquet(args.split / "manifest.parquet").sort_index()
    eyes = None
    landmarks_file = args.raw / celeba.LANDMARKS_FILE
    if landmarks_file.exists():  # an optional file of the release: without it, photos cannot be aligned
        landmarks = celeba.read_landmarks(landmarks_file)
        train_ids = manifest.index[manifest["split"] == "train"]
        try:
            eyes = celeba.mean_eyes(landmarks.loc[landmarks.index.intersection(train_ids)])
        except InputError as err:
            raise InputError(f"{landmarks_file}: {err}") from None
    else:
        print(f"preprocess: no {landmarks_file}; models trained on these shards will score aligned images only")
    official = official_test(args.raw, args.clean, manifest)
    with atomic.atomic_dir(args.out) as tmp:
        entries = shards.write_splits(
            manifest,
            ImageArchive.of(args.raw),
            tmp,
            params,
            progress=stage.show_progress(args),
            eyes=eyes,
            official=official,
        )
    atomic.write_json(args.reports / "run.json", provenance(params.model_dump(mode="json")))
    said = ", ".join(f"{s} {e['rows']} rows in {len(e['shards'])} shards" for s, e in entries.items())
    print(f"preprocess: {said}; official test {official[1]['images']} images")


if __name__ == "__main__":
    stage.run(main, "preprocess")
