"""DVC stage report: the data pictures and one Markdown page that links every report of the pipeline.

python -m stages.report --split data/split --reports reports
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceattrs.core import atomic, stage
from faceattrs.reports import attributes
from faceattrs.reports.index import index_page


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--split", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True, help="the reports folder the other stages write into")
    args = p.parse_args()
    atomic.remove_stale(args.reports / "data", args.reports / "README.md")  # what a killed run left
    manifest = pd.read_parquet(args.split / "manifest.parquet")
    rates = attributes.positive_rates(manifest)
    shift = attributes.shift_table(rates)
    folder = args.reports / "data"
    folder.mkdir(parents=True, exist_ok=True)
    attributes.frequency_chart(rates, folder / "frequency.png")
    attributes.cooccurrence_heatmap(attributes.cooccurrence(manifest), folder / "cooccurrence.png")
    atomic.write_text(folder / "shift.csv", shift.to_csv())
    atomic.write_text(args.reports / "README.md", index_page(args.reports, shift))
    print(f"report: {args.reports / 'README.md'}")


if __name__ == "__main__":
    stage.run(main, "report")
