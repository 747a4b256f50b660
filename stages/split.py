"""DVC stage split: assign train/val/test to the clean images and report sizes, rates and leakage.

    python -m stages.split --clean data/clean --out data/split --reports reports/split
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceattrs import atomic, reports, splits, stagecli
from faceattrs.celeba import ATTRIBUTES
from faceattrs.provenance import provenance


def write_report(summary: dict, crossing: pd.DataFrame, method: str, path: Path) -> None:
    rates = summary["positive_rate"]
    lines = [
        f"# Split report ({method})", "",
        reports.markdown_table(["split", "images", "identities"],
                               [(s, summary["sizes"][s], summary["identities"][s]) for s in splits.SPLITS]),
        f"Identities shared between splits: {summary['identities_shared']}", "",
        f"## Duplicate groups across splits: {len(crossing)} "
        f"({int(crossing['leaks_now'].sum()) if len(crossing) else 0} still leak after cleaning)", "",
        reports.markdown_table(list(crossing.columns), crossing.head(100).itertuples(index=False)) if len(crossing) else "None.\n",
        "## Positive rate per attribute and split", "",
        reports.markdown_table(["attribute", *splits.SPLITS],
                               [(a, *(rates[s][a] if rates[s][a] is not None else "-" for s in splits.SPLITS)) for a in ATTRIBUTES]),
    ]
    atomic.write_text(path, "\n".join(lines))


def main() -> None:
    p = stagecli.parser(__doc__)
    p.add_argument("--clean", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args()
    params = stagecli.params_of(args).split
    manifest = pd.read_parquet(args.clean / "manifest.parquet")
    groups = pd.read_parquet(args.clean / "groups.parquet")
    assigned = splits.assign(manifest, params.method, params.ratios, params.seed)
    crossing = splits.crossing_groups(groups, assigned, groups.set_index("image_id")["partition"])
    summary = splits.summary(manifest, assigned)
    with atomic.atomic_dir(args.out) as tmp:
        manifest.assign(split=assigned).to_parquet(tmp / "manifest.parquet")
    args.reports.mkdir(parents=True, exist_ok=True)
    crossing.to_csv(args.reports / "crossing_groups.csv", index=False)
    write_report(summary, crossing, params.method, args.reports / "report.md")
    reports.write_json(args.reports / "summary.json", {
        "sizes": summary["sizes"], "identities": summary["identities"],
        "identities_shared": summary["identities_shared"], "max_rate_shift": summary["max_rate_shift"],
        "duplicate_groups_across_splits": int(len(crossing)),
        "duplicate_groups_leaking": int(crossing["leaks_now"].sum()) if len(crossing) else 0,
    })
    reports.write_json(args.reports / "run.json", provenance(params.model_dump(mode="json")))
    print(f"split ({params.method}): " + ", ".join(f"{k} {v}" for k, v in summary["sizes"].items()))


if __name__ == "__main__":
    stagecli.run(main, "split")
