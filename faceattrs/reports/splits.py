"""The split report: sizes, identities, positive rates per split, and duplicate groups that cross splits."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceattrs.core import atomic
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.data.splits import SPLITS
from faceattrs.reports.markdown import markdown_table

LISTED = 100  # crossing groups listed in the Markdown; all of them are in crossing_groups.csv


def write_report(summary: dict, crossing: pd.DataFrame, method: str, path: Path) -> None:
    rates = summary["positive_rate"]
    leaking = int(crossing["leaks_now"].sum()) if len(crossing) else 0
    lines = [
        f"# Split report ({method})",
        "",
        markdown_table(
            ["split", "images", "identities"], [(s, summary["sizes"][s], summary["identities"][s]) for s in SPLITS]
        ),
        f"Identities shared between splits: {summary['identities_shared']}",
        "",
        f"## Duplicate groups across splits: {len(crossing)} ({leaking} still leak after cleaning)",
        "",
        markdown_table(list(crossing.columns), crossing.head(LISTED).itertuples(index=False))
        if len(crossing)
        else "None.\n",
        "## Positive rate per attribute and split",
        "",
        markdown_table(
            ["attribute", *SPLITS],
            [(a, *(rates[s][a] if rates[s][a] is not None else "-" for s in SPLITS)) for a in ATTRIBUTES],
        ),
    ]
    atomic.write_text(path, "\n".join(lines))
