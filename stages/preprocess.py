"""DVC stage preprocess: write each split as Parquet shards plus a manifest of counts, schema and checksums.

    python -m stages.preprocess --raw data/raw --split data/split --out data/shards --reports reports/preprocess
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceattrs import atomic, reports, shards, stagecli
from faceattrs.archive import ImageArchive
from faceattrs.provenance import provenance
from faceattrs.splits import SPLITS


def main() -> None:
    p = stagecli.parser(__doc__)
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args()
    params = stagecli.params_of(args).preprocess
    spec = shards.ImageSpec(params.crop, params.size, params.format, params.jpeg_quality, params.decode)
    manifest = pd.read_parquet(args.split / "manifest.parquet").sort_index()
    with atomic.atomic_dir(args.out) as tmp:
        entries = {}
        for split in SPLITS:
            rows = manifest[manifest["split"] == split]
            entries[split] = {"rows": int(len(rows)), "shards": shards.write_split(
                rows, ImageArchive.of(args.raw), tmp, split, spec, params.rows_per_shard,
                params.workers, stagecli.show_progress(args))}
        # Only what the shards hold: a commit stamp here would change the output training
        # depends on, and so retrain, whenever any code changed while the shards stayed the same.
        reports.write_json(tmp / "manifest.json", {
            "splits": entries,
            "image": spec.to_dict(),
            "schema": str(shards.schema(spec)).split("\n-- schema metadata --")[0],
            "params": params.model_dump(mode="json"),
        })
    reports.write_json(args.reports / "run.json", provenance(params.model_dump(mode="json")))
    print("preprocess: " + ", ".join(f"{s} {e['rows']} rows in {len(e['shards'])} shards" for s, e in entries.items()))


if __name__ == "__main__":
    stagecli.run(main, "preprocess")
