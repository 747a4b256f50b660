"""The cleaning report: what dedupe found and dropped, in Markdown and on contact sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceattrs.cleaning.clean import Cleaning
from faceattrs.core import atomic
from faceattrs.data.archive import ImageArchive
from faceattrs.reports.markdown import markdown_table
from faceattrs.reports.pictures import contact_sheet

LISTED = 200  # rows of the dropped-images table; the whole list is data/clean/dropped.csv


def write_report(result: Cleaning, images: ImageArchive, folder: Path, sample_groups: int) -> None:
    """report.md, groups.png (a sample of duplicate groups) and dropped.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    s = result.summary
    dup = s["duplicate_groups"]
    lines = [
        "# Cleaning report",
        "",
        f"{s['images_listed']} images listed, {s['images_kept']} kept. "
        f"{s['unreadable']} unreadable, {dup['exact']} exact and {dup['near']} near duplicate groups "
        f"({dup['redundant_images']} redundant images), {dup['with_label_conflicts']} groups whose labels disagree, "
        f"{dup['crossing_official_partitions']} groups that cross the official partitions.",
        "",
        "![duplicate groups](groups.png)",
        "",
        "![dropped images](dropped.png)",
        "",
        "## Unreadable images",
        "",
        markdown_table(["problem", "images"], list(s["unreadable_by_problem"].items())),
        "## Label contradictions inside duplicate groups",
        "",
        markdown_table(
            ["attribute", "groups"], sorted(s["contradictions_by_attribute"].items(), key=lambda kv: -kv[1])
        ),
        "## Dropped images",
        "",
        markdown_table(["image", "reason", "group"], result.dropped.head(LISTED).itertuples(index=False)),
    ]
    if "against_planted_truth" in s:
        lines[3:3] = [
            "## Against the planted flaws (synthetic data)",
            "",
            markdown_table(["measure", "value"], list(s["against_planted_truth"].items())),
        ]
    if len(result.dropped) > LISTED:
        lines.append(f"... and {len(result.dropped) - LISTED} more (see data/clean/dropped.csv)\n")
    atomic.write_text(folder / "report.md", "\n".join(lines))
    contact_sheet(_group_rows(result, images, sample_groups), folder / "groups.png")
    contact_sheet(_dropped_rows(result, images), folder / "dropped.png")


def _group_rows(result: Cleaning, images: ImageArchive, sample_groups: int) -> list:
    rng = np.random.default_rng(0)
    group_ids = result.groups["group"].unique()
    shown = (
        np.sort(rng.choice(group_ids, size=min(sample_groups, len(group_ids)), replace=False))
        if len(group_ids)
        else []
    )
    rows = []
    for gid in shown:
        members = result.groups[result.groups["group"] == gid]
        conflict = members["conflicting_attributes"].iloc[0]
        title = f"group {gid} ({members['kind'].iloc[0]})" + (f": labels differ on {conflict}" if conflict else "")
        rows.append(
            (
                title,
                [
                    (images.read(m.image_id), f"{m.image_id}\n{'kept' if m.kept else 'dropped'}")
                    for m in members.itertuples()
                ],
            )
        )
    return rows


def _dropped_rows(result: Cleaning, images: ImageArchive, shown: int = 24, per_row: int = 8) -> list:
    drops = result.dropped.head(shown)
    rows = []
    for k in range(0, len(drops), per_row):
        chunk = drops.iloc[k : k + per_row]
        captions = [
            (images.read(d.image_id), f"{d.image_id}\n{d.reason.split(':')[0].split(' (')[0][:16]}")
            for d in chunk.itertuples()
        ]
        rows.append((f"dropped images {k + 1}-{k + len(chunk)} of {len(result.dropped)}", captions))
    return rows
