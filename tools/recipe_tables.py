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


def _quote(text: str | None) -> str:
    return f"“{_cell(text)}”" if text else "(says nothing)"


def render() -> str:
    lines = [
        "# The recipes and their seeds",
        "",
        "Each recipe in `faceattrs/recipes/` reproduces one published report (a seed). Below, for each, every",
        "technical choice its report states, in the report's own words, and the keys the recipe leaves at a",
        "default that a report could have stated; then the params key and value the recipe runs with, and how",
        "that value stands to the report:",
        "",
        "- reproduced: the value is what the quoted words say;",
        "- changed: the report states it and the recipe differs (why, in the last column);",
        "- unstated: the report does not give the value; the last column says why the recipe takes its own;",
        "- tried and dropped: the report tried or weighed it and its model does without it; the value is what",
        "  the recipe does instead;",
        "- not expressible: no params key expresses it;",
        "- built in: every run does it, so no key expresses it.",
        "",
        "The tables live in `faceattrs/recipes/seeds/`; tests check that a recipe's value is its table's and",
        "that every quote is a passage of its seed report, and this page is written from the tables",
        "(`python -m tools.recipe_tables --write`).",
        "",
        "Accuracies quoted here are each report's own, on its own data; none was measured here. Where a report",
        "used CelebA's official test partition, the figure to set beside its own is `official_test` (every",
        "readable image of that partition, labels as published), not `test` (the test split after dedupe).",
    ]
    for name in recipes.available():
        t = recipes.table(name)
        counts = {s: sum(c["status"] == s for c in t["choices"]) for s in recipes.STATUSES}
        lines += [
            "",
            f"## {name}",
            "",
            f"{t['report']} (`{t['seed']}`). Published: {_quote(t['published'])}.",
            "",
            ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ".",
            "",
            "| choice | the report's words | key | value | status | why, or how |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in t["choices"]:
            key = f"`{c['key']}`" if c["key"] else ""
            value = f"`{c['value']}`" if c["key"] else ""
            how = " ".join(_cell(c.get(k)) for k in ("why", "note") if c.get(k))
            lines.append(
                f"| {_cell(c['choice'])} | {_quote(c['quote'])} | {key} | {_cell(value)} | {c['status']} | {how} |"
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
