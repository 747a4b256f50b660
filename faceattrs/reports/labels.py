"""The labels stage's report: how many training labels look wrong, how well that is found, and what training sees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceattrs.cleaning.label_errors import SCORE_COLUMNS, LabelSearch
from faceattrs.core import atomic
from faceattrs.reports.flagged import flagged_sheet
from faceattrs.reports.markdown import markdown_table


def write_report(result: LabelSearch, shard_dir: Path, folder: Path, shown: int = 24, per_row: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    s = result.summary
    lines = ["# Training labels", ""]
    if s["method"] == "none":
        lines += [
            "`labels.method: none`: the training split is not searched (out-of-fold models take minutes); "
            "the evaluate stage flags likely wrong val and test labels. "
            "`dvc exp run -S labels.method=kfold` searches the training split too.",
        ]
    else:
        lines += [
            f"{s['flagged_labels']} of {s['images'] * 40} training labels ({s['images_with_a_flag']} images) look "
            f"wrong to confident learning on out-of-fold probabilities (`labels.method: kfold`). With "
            f"`labels.policy: {s['policy']}` training sees {s['labels_changed']} labels changed. All flagged "
            "labels are in data/labels/flagged.parquet.",
            "",
            "![flagged training labels](flagged.png)",
        ]
    if "against_planted_noise" in s:
        lines += [
            "",
            "## Against the planted label noise (synthetic data)",
            "",
            markdown_table(
                ["finder", "flagged", "wrong labels", "precision", "recall"],
                [
                    (n, v["flagged"], v["wrong"], v["precision"], v["recall"])
                    for n, v in s["against_planted_noise"].items()
                ],
            ),
            "Per attribute in [scores.csv](scores.csv).",
        ]
    atomic.write_text(folder / "report.md", "\n".join(lines) + "\n")
    # Written on every dataset (only a header where no truth is known), so DVC finds every output.
    scores = result.scores if result.scores is not None else pd.DataFrame(columns=SCORE_COLUMNS)
    atomic.write_text(folder / "scores.csv", scores.to_csv(index=False))
    flagged_sheet(
        result.flagged, shard_dir, folder / "flagged.png", "training labels flagged as likely wrong", shown, per_row
    )
