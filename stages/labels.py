"""DVC stage labels: flag likely wrong training labels (confident learning, out-of-fold) and apply labels.policy.

python -m stages.labels --shards data/shards --raw data/raw --out data/labels --reports reports/labels
"""

from __future__ import annotations

from pathlib import Path

from faceattrs.cleaning.label_errors import labels_as_given
from faceattrs.core import atomic, stage
from faceattrs.core.provenance import provenance
from faceattrs.reports.labels import write_report
from faceattrs.synthetic.truth import truth_if_synthetic

# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("labels", "model", "loss", "augment", "optimizer", "schedule", "train")


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--raw", type=Path, required=True, help="the raw folder, for the synthetic ground truth if any")
    p.add_argument("--out", type=Path, required=True, help="folder for the labels training sees and the flags")
    p.add_argument("--reports", type=Path, required=True)
    args = p.parse_args()
    atomic.remove_stale(args.out, args.reports)  # what a killed run left
    params = stage.params_of(args, PARAMS)
    if params.labels.method == "none":
        result = labels_as_given(params.labels, args.shards)
    else:
        # Imported here: torch and timm take most of this stage's time where no model trains.
        from faceattrs.training.build import TrainingParams
        from faceattrs.training.label_search import search

        # The folds' models train as the train stage would, but on all 40 attributes: the target section is not theirs.
        training = TrainingParams.of(params, target=False)
        result = search(params.labels, training, args.shards, truth_if_synthetic(args.raw), stage.show_progress(args))
    with atomic.atomic_dir(args.out) as tmp:
        result.seen.to_parquet(tmp / "labels.parquet")
        result.flagged.to_parquet(tmp / "flagged.parquet", index=False)
    write_report(result, args.shards, args.reports)
    atomic.write_json(args.reports / "summary.json", result.summary)
    atomic.write_json(args.reports / "run.json", provenance(stage.declared_values(params, PARAMS)))
    s = result.summary
    print(
        f"labels ({s['method']}, policy {s['policy']}): {s['flagged_labels']} training labels flagged, "
        f"{s['labels_changed']} changed for training"
    )


if __name__ == "__main__":
    stage.run(main, "labels")
