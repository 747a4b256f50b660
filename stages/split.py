"""DVC stage split: assign train/val/test to the clean images and report sizes, rates and leakage.

python -m stages.split --clean data/clean --out data/split --reports reports/split
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from faceattrs.core import atomic, stage
from faceattrs.core.provenance import provenance
from faceattrs.data import splits
from faceattrs.reports.splits import write_report

# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("split",)


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--clean", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args()
    atomic.remove_stale(args.out, args.reports)  # what a killed run left
    params = stage.params_of(args, PARAMS).split
    manifest = pd.read_parquet(args.clean / "manifest.parquet")
    groups = pd.read_parquet(args.clean / "groups.parquet")
    assigned = splits.assign(manifest, params.method, params.ratios, params.seed)
    crossing = splits.crossing_groups(groups, assigned, groups.set_index("image_id")["partition"])
    summary = splits.summary(manifest, assigned)
    with atomic.atomic_dir(args.out) as tmp:
        manifest.assign(split=assigned).to_parquet(tmp / "manifest.parquet")
    args.reports.mkdir(parents=True, exist_ok=True)
    atomic.write_text(args.reports / "crossing_groups.csv", crossing.to_csv(index=False))
    write_report(summary, crossing, params.method, args.reports / "report.md")
    atomic.write_json(args.reports / "summary.json", splits.metrics(summary, crossing))
    atomic.write_json(args.reports / "run.json", provenance(params.model_dump(mode="json")))
    print(f"split ({params.method}): " + ", ".join(f"{k} {v}" for k, v in summary["sizes"].items()))


if __name__ == "__main__":
    stage.run(main, "split")
