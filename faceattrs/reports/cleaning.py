"""The cleaning report: what dedupe found and dropped, in Markdown and on contact sheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceattrs.cleaning import rules
from faceattrs.cleaning.clean import Cleaning
from faceattrs.core import atomic
from faceattrs.data.archive import ImageArchive
from faceattrs.reports.markdown import markdown_table
from faceattrs.reports.pictures import contact_sheet, dealt_rows

LISTED = 200  # rows of the dropped-images table; the whole list is data/clean/dropped.csv


def write_report(result: Cleaning, images: ImageArchive, folder: Path, sample_groups: int) -> None:
    """report.md, groups.png (a sample of duplicate groups) and dropped.png in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    s = result.summary
    dup = s["duplicate_groups"]
    near = s["near_candidates"]
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
        "## Near-duplicate candidates",
        "",
        f"The perceptual hashes proposed {near['proposed']} pairs within `dedupe.max_distance` bits; registered and "
        f"compared in colour, {near['same_photo']} are the same photo and {near['different_photos']} are different "
        "photos that look alike, kept apart. The closest of those, with their largest smoothed difference (peak, "
        "grey levels) and its ratio to the pair's typical difference:",
        "",
        "![look-alikes kept apart](lookalikes.png)",
        "",
        "## Pictures with no face",
        "",
        _no_face_text(result),
        "",
        "![pictures with no face](no_face.png)",
        "",
        "## Label contradictions",
        "",
        "Labels no face can have together (`faceattrs/cleaning/rules.py`), among the kept images; all of them are "
        "in data/clean/contradictions.csv.",
        "",
        markdown_table(
            ["rule", "images", "expression", "why"],
            [(name, s["label_contradictions"][name], f"`{expr}`", why) for name, expr, why in rules.rule_table()],
        ),
        "## Unreadable images",
        "",
        markdown_table(["problem", "images"], list(s["unreadable_by_problem"].items())),
        "## Attributes on which duplicate groups disagree",
        "",
        markdown_table(["attribute", "groups"], sorted(s["conflicts_by_attribute"].items(), key=lambda kv: -kv[1])),
        "## Dropped images",
        "",
        markdown_table(
            ["image", "reason", "detail", "group"],
            result.dropped.head(LISTED)[["image_id", "reason", "detail", "group"]].itertuples(index=False),
        ),
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
    contact_sheet(_lookalike_rows(result, images), folder / "lookalikes.png")
    contact_sheet(_no_face_rows(result, images), folder / "no_face.png")


def _no_face_text(result: Cleaning) -> str:
    nf = result.summary["no_face"]
    if nf["policy"] == "off":
        return "Not looked for (`dedupe.no_face_policy: off`)."
    return (
        f"dlib's HOG face detector (`faceattrs/faces/detect.py`) scored {nf['checked']} "
        f"readable images; {nf['found']} score under `dedupe.min_face_score` ({nf['min_face_score']}) and are "
        f"{'dropped' if nf['policy'] == 'drop' else 'listed only'} (`dedupe.no_face_policy: {nf['policy']}`). "
        "Below, the lowest scores: what was flagged, then the faces kept with least margin."
    )


def _no_face_rows(result: Cleaning, images: ImageArchive, shown: int = 8) -> list:
    """The flagged images, lowest score first, and the kept images closest to the threshold."""
    if result.faces.empty:
        return []
    limit = result.summary["no_face"]["min_face_score"]
    flagged = result.faces[result.faces < limit].sort_values()
    closest = result.faces[result.faces >= limit].sort_values().head(shown)
    cells = [(images.read(n), f"{n}\nscore {v:.2f}") for n, v in flagged.head(3 * shown).items()]
    rows = dealt_rows(cells, shown, lambda a, b: f"no face found {a}-{b} of {len(flagged)}")
    rows.append(
        (
            f"kept with the lowest face scores (threshold {limit})",
            [(images.read(n), f"{n}\nscore {v:.2f}") for n, v in closest.items()],
        )
    )
    return rows


def _group_rows(result: Cleaning, images: ImageArchive, sample_groups: int) -> list:
    rng = np.random.default_rng(0)
    group_ids = result.groups["group"].unique()
    shown = (
        np.sort(rng.choice(group_ids, size=min(sample_groups, len(group_ids)), replace=False)) if len(group_ids) else []
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


def _lookalike_rows(result: Cleaning, images: ImageArchive, shown: int = 12, per_row: int = 4) -> list:
    """The hash-near pairs judged different photos, the closest first: where the check had least room."""
    pairs = result.candidates[~result.candidates["same_photo"].astype(bool)].nsmallest(shown, "ratio")
    cells = []
    for p in pairs.itertuples():
        cells += [
            (images.read(p.image_a), f"{p.image_a}\npeak {p.peak:.0f}"),
            (images.read(p.image_b), f"{p.image_b}\nratio {p.ratio:.1f}"),
        ]
    # Two cells per pair; the titles count pairs.
    return dealt_rows(
        cells,
        2 * per_row,
        lambda a, b: f"different photos that look alike {(a + 1) // 2}-{b // 2} of {len(pairs)} shown",
    )


def _dropped_rows(result: Cleaning, images: ImageArchive, shown: int = 24, per_row: int = 8) -> list:
    cells = [
        (images.read(d.image_id), f"{d.image_id}\n{d.reason[:16]}") for d in result.dropped.head(shown).itertuples()
    ]
    return dealt_rows(cells, per_row, lambda a, b: f"dropped images {a}-{b} of {len(result.dropped)}")
