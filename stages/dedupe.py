"""DVC stage dedupe: drop unreadable images and pictures with no face, group duplicates, resolve label conflicts.

python -m stages.dedupe --raw data/raw --out data/clean --reports reports/dedupe
"""

from __future__ import annotations

from pathlib import Path

from faceattrs.cleaning.clean import clean_and_score
from faceattrs.core import atomic, stage
from faceattrs.core.provenance import provenance
from faceattrs.data.archive import ImageArchive
from faceattrs.reports.cleaning import write_report

# Long lists that go to run.json rather than into the metrics file.
DETAILS = ("unreadable_by_problem", "conflicts_by_attribute", "label_contradictions")


# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("dedupe",)


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for the clean manifest and findings")
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args()
    atomic.remove_stale(args.out, args.reports)  # what a killed run left
    params = stage.params_of(args, PARAMS).dedupe
    result = clean_and_score(args.raw, params, params.workers, stage.show_progress(args))
    with atomic.atomic_dir(args.out) as tmp:
        result.manifest.to_parquet(tmp / "manifest.parquet")
        result.groups.to_parquet(tmp / "groups.parquet", index=False)
        result.dropped.to_csv(tmp / "dropped.csv", index=False)
        result.candidates.to_parquet(tmp / "near_candidates.parquet", index=False)
        result.contradictions.to_csv(tmp / "contradictions.csv", index=False)
        result.faces.to_csv(tmp / "face_scores.csv")
    write_report(result, ImageArchive.of(args.raw), args.reports, params.sample_groups)
    summary = result.summary
    atomic.write_json(args.reports / "summary.json", {k: v for k, v in summary.items() if k not in DETAILS})
    atomic.write_json(
        args.reports / "run.json",
        {**{k: summary[k] for k in DETAILS}, **provenance(params.model_dump(mode="json"))},
    )
    print(
        f"dedupe: kept {summary['images_kept']} of {summary['images_listed']}; {summary['unreadable']} unreadable, "
        f"{summary['duplicate_groups']['redundant_images']} redundant duplicates, "
        f"{summary['no_face']['found']} with no face found"
    )


if __name__ == "__main__":
    stage.run(main, "dedupe")
