"""docs/recipes.md: each recipe's table of its seed's choices, written from faceattrs/recipes/seeds/.

python -m tools.recipe_tables            # check: exit 1 when docs/recipes.md is out of date
python -m tools.recipe_tables --write    # rewrite it
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from faceattrs import recipes

PAGE = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    lines = [
        "# The recipes and their seeds",
        "",
        "Each recipe in `faceattrs/recipes/` reproduces one published report (a seed). Below, for each, every",
        "technical choice its report states: what the report says, the params key and value that express it,",
        "and whether the recipe reproduces it, changes it (and why) or cannot express it yet. The tables live",
        "in `faceattrs/recipes/seeds/`; a test fails when a recipe's value disagrees with its table, and this",
        "page is written from them (`python -m tools.recipe_tables --write`).",
        "",
        "Accuracies quoted here are each report's own, on its own data; none was measured here.",
    ]
    for name in recipes.available():
        t = recipes.table(name)
        counts = {s: sum(c["status"] == s for c in t["choices"]) for s in recipes.STATUSES}
        lines += [
            "",
            f"## {name}",
            "",
            f"{t['report']} (`{t['seed']}`). Published: {t['published'] or 'no figure'}.",
            "",
            ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
            "",
            "| choice | the report | key | value | status | why, or how |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in t["choices"]:
            key = f"`{c['key']}`" if c["key"] else ""
            value = f"`{c['value']}`" if c["key"] else ""
            lines.append(
                f"| {_cell(c['choice'])} | {_cell(c['seed'])} | {key} | {_cell(value)} | {c['status']} "
                f"| {_cell(c.get('why') or c.get('note'))} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    page = render()
    if args.write:
        PAGE.write_text(page)
        print(f"wrote {PAGE}")
    elif not PAGE.exists() or PAGE.read_text() != page:
        sys.exit(f"{PAGE} is out of date: run python -m tools.recipe_tables --write")


if __name__ == "__main__":
    main()
