"""The README's figures, written from the committed reports so the two never disagree.

Each figure block in README.md sits between ``<!-- figures: NAME -->`` and
``<!-- /figures -->``; its text is made by the renderer of that NAME from the files
under reports/ (and bench/), never typed by hand.

    python -m tools.readme_figures            # check: exit 1 naming each block that differs
    python -m tools.readme_figures --write    # rewrite the blocks in README.md
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- figures: ([\w-]+) -->\n)(.*?)(<!-- /figures -->)", re.S)


def _json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def _pct(value: float) -> str:
    return f"{value:.4f}"


def cleaning(root: Path) -> str:
    summary = _json(root, "reports/dedupe/summary.json")
    truth = summary["against_planted_truth"]
    near, no_face = summary["near_candidates"], summary["no_face"]
    lines = [
        "| against the planted flaws | value |",
        "|---|---|",
        *(
            f"| {name.replace('_', ' ')} | {value if isinstance(value, int) else _pct(value)} |"
            for name, value in truth.items()
            if value is not None
        ),
        "",
        f"{summary['images_kept']:,} of {summary['images_listed']:,} images kept; the hashes proposed "
        f"{near['proposed']:,} near pairs, of which {near['same_photo']} were confirmed as the same photo; "
        f"{no_face['found']} images had no face "
        f"(`dvc metrics show reports/dedupe/summary.json`).",
    ]
    return "\n".join(lines) + "\n"


def default_run(root: Path) -> str:
    test = _json(root, "reports/evaluate/summary.json")["test"]
    rows = [
        ("mean accuracy, all attributes", test["mean_accuracy"]),
        ("majority-class baseline", test["majority_baseline"]),
        ("mean accuracy, the drawn attributes", test.get("mean_accuracy_drawn")),
        ("best the planted label noise allows on them", test.get("noise_ceiling_drawn")),
        ("gender-fair score (mean over attributes)", test["gender_fair_score"]),
    ]
    lines = ["| measure (test split) | value |", "|---|---|"]
    lines += [f"| {name} | {_pct(value)} |" for name, value in rows if value is not None]
    table = pd.read_csv(root / "reports/evaluate/per_attribute.csv")
    test_rows = _json(root, "reports/split/summary.json")["sizes"]["test"]
    below = table[table["accuracy"] < table["majority_baseline"]]
    lines.append("")
    if below.empty:
        lines.append("No attribute is below its majority-class baseline.")
    else:
        worst = ", ".join(
            f"{r.attribute} ({_pct(r.accuracy)} against {_pct(r.majority_baseline)}, "
            f"{round((r.majority_baseline - r.accuracy) * test_rows)} of {test_rows:,} test images)"
            for r in below.itertuples()
        )
        lines.append(f"Below the majority-class baseline: {worst}.")
    if "drawn" in table:
        undrawn = ", ".join(f"{r.attribute} {_pct(r.accuracy)}" for r in table[~table["drawn"]].itertuples())
        lines.append(f"Not drawn by the generator, so learnable only through correlations: {undrawn}.")
    return "\n".join(lines) + "\n"


def label_errors(root: Path) -> str:
    test = _json(root, "reports/evaluate/summary.json")["test"]
    methods = {
        "confident_learning": "confident learning (cleanlab)",
        "confident_disagreement": "baseline: a confident model disagrees (p > 0.9)",
    }
    lines = [
        "| test labels flagged by | flagged | planted wrong labels | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for key, name in methods.items():
        found = test.get(f"label_issues_{key}")
        if found:
            lines.append(
                f"| {name} | {found['flagged']} | {found['wrong']} | {_pct(found['precision'])} | "
                f"{_pct(found['recall'])} |"
            )
    lines += [
        "",
        f"Test mean accuracy {_pct(test['mean_accuracy'])} against the published labels, "
        f"{_pct(test['mean_accuracy_unflagged'])} with the {test['flagged_labels']} flagged ones left out; "
        f"over the drawn attributes {_pct(test['mean_accuracy_drawn'])} against the published labels and "
        f"{_pct(test['clean_labels_accuracy_drawn'])} against the clean ones.",
    ]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Path], str]] = {
    "cleaning": cleaning,
    "default-run": default_run,
    "label-errors": label_errors,
}


def render(text: str, root: Path = ROOT) -> str:
    """README text with every figure block rewritten from the reports under ``root``."""

    def fill(match: re.Match) -> str:
        name = match.group(2)
        if name not in RENDERERS:
            raise KeyError(f"README.md: no renderer for figures block {name!r}; known: {', '.join(RENDERERS)}")
        return match.group(1) + RENDERERS[name](root) + match.group(4)

    return BLOCK.sub(fill, text)


def stale_blocks(root: Path = ROOT) -> list[str]:
    """Names of the README's figure blocks whose text differs from what the reports give."""
    text = (root / "README.md").read_text()
    fresh = {m.group(2): m.group(3) for m in BLOCK.finditer(render(text, root))}
    return [m.group(2) for m in BLOCK.finditer(text) if fresh[m.group(2)] != m.group(3)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite the figure blocks of README.md")
    args = p.parse_args(argv)
    readme = ROOT / "README.md"
    if args.write:
        readme.write_text(render(readme.read_text()))
    stale = stale_blocks()
    for name in stale:
        print(f"README.md: figures block {name!r} differs from the reports")
    if stale:
        print("run `python -m tools.readme_figures --write`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
