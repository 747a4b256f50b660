"""DVC stage dedupe: drop unreadable images, group exact and near duplicates, resolve label conflicts.

    python -m stages.dedupe --raw data/raw --out data/clean --reports reports/dedupe
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceattrs import atomic, reports, stagecli
from faceattrs.archive import ImageArchive
from faceattrs.cleaning import Cleaning, clean_and_score
from faceattrs.provenance import provenance


def write_report(result: Cleaning, raw: Path, folder: Path, sample_groups: int) -> None:
    s = result.summary
    dup = s["duplicate_groups"]
    lines = [
        "# Cleaning report", "",
        f"{s['images_listed']} images listed, {s['images_kept']} kept. "
        f"{s['unreadable']} unreadable, {dup['exact']} exact and {dup['near']} near duplicate groups "
        f"({dup['redundant_images']} redundant images), {dup['with_label_conflicts']} groups whose labels disagree, "
        f"{dup['crossing_official_partitions']} groups that cross the official partitions.", "",
        "![duplicate groups](groups.png)", "", "![dropped images](dropped.png)", "",
        "## Unreadable images", "",
        reports.markdown_table(["problem", "images"], list(s["unreadable_by_problem"].items())),
        "## Label contradictions inside duplicate groups", "",
        reports.markdown_table(["attribute", "groups"], sorted(s["contradictions_by_attribute"].items(), key=lambda kv: -kv[1])),
        "## Dropped images", "",
        reports.markdown_table(["image", "reason", "group"], result.dropped.head(200).itertuples(index=False)),
    ]
    if "against_planted_truth" in s:
        lines[3:3] = ["## Against the planted flaws (synthetic data)", "",
                      reports.markdown_table(["measure", "value"], list(s["against_planted_truth"].items()))]
    if len(result.dropped) > 200:
        lines.append(f"... and {len(result.dropped) - 200} more (see data/clean/dropped.csv)\n")
    atomic.write_text(folder / "report.md", "\n".join(lines))

    image = ImageArchive.of(raw).read
    rng = np.random.default_rng(0)
    group_ids = result.groups["group"].unique()
    shown = np.sort(rng.choice(group_ids, size=min(sample_groups, len(group_ids)), replace=False)) if len(group_ids) else []
    rows = []
    for gid in shown:
        members = result.groups[result.groups["group"] == gid]
        conflict = members["conflicting_attributes"].iloc[0]
        title = f"group {gid} ({members['kind'].iloc[0]})" + (f": labels differ on {conflict}" if conflict else "")
        rows.append((title, [(image(m.image_id), f"{m.image_id}\n{'kept' if m.kept else 'dropped'}")
                             for m in members.itertuples()]))
    reports.contact_sheet(rows, folder / "groups.png")
    drops = result.dropped.head(24)
    per_row = 8
    rows = [(f"dropped images {k + 1}-{k + len(chunk)} of {len(result.dropped)}",
             [(image(d.image_id), f"{d.image_id}\n{d.reason.split(':')[0].split(' (')[0][:16]}") for d in chunk.itertuples()])
            for k, chunk in ((k, drops.iloc[k:k + per_row]) for k in range(0, len(drops), per_row))]
    reports.contact_sheet(rows, folder / "dropped.png")


def main() -> None:
    p = stagecli.parser(__doc__)
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for the clean manifest and findings")
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args()
    params = stagecli.params_of(args).dedupe
    result = clean_and_score(args.raw, params, params.workers, stagecli.show_progress(args))
    with atomic.atomic_dir(args.out) as tmp:
        result.manifest.to_parquet(tmp / "manifest.parquet")
        result.groups.to_parquet(tmp / "groups.parquet", index=False)
        result.dropped.to_csv(tmp / "dropped.csv", index=False)
    args.reports.mkdir(parents=True, exist_ok=True)
    write_report(result, args.raw, args.reports, params.sample_groups)
    details = ("unreadable_by_problem", "contradictions_by_attribute")
    reports.write_json(args.reports / "summary.json", {k: v for k, v in result.summary.items() if k not in details})
    reports.write_json(args.reports / "run.json", {**{k: result.summary[k] for k in details},
                                                   **provenance(params.model_dump(mode="json"))})
    s = result.summary
    print(f"dedupe: kept {s['images_kept']} of {s['images_listed']}; {s['unreadable']} unreadable, "
          f"{s['duplicate_groups']['redundant_images']} redundant duplicates")


if __name__ == "__main__":
    stagecli.run(main, "dedupe")
