"""DVC stage evaluate: measures on val and test, thresholds tuned on val, plots data and a Markdown report.

python -m stages.evaluate --model data/models/model.pt --shards data/shards --raw data/raw --out reports/evaluate
"""

from __future__ import annotations

import json
from pathlib import Path

from faceattrs.core import atomic, stage
from faceattrs.core.provenance import provenance
from faceattrs.evaluation.evaluate import evaluate
from faceattrs.reports.evaluation import write_reports
from faceattrs.synthetic.truth import truth_if_synthetic
from faceattrs.training.checkpoints import ModelFile

# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("evaluate",)


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--raw", type=Path, required=True, help="the raw folder, for the synthetic ground truth if any")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    atomic.remove_stale(args.out)  # what a killed run left
    params = stage.params_of(args, PARAMS).evaluate
    results = evaluate(args.model, args.shards, params, truth_if_synthetic(args.raw))
    summary = write_reports(results, params, args.out, args.shards)
    # The figures are the model's, and the model is its training machine's: say which (README, "Same params").
    trained = json.loads(ModelFile.load(args.model).provenance)
    made = {"trained_with": {k: trained.get(k) for k in ("git_commit", "machine")}}
    atomic.write_json(args.out / "run.json", {**provenance(params.model_dump(mode="json")), **made})
    test = summary["test"]
    print(
        f"evaluate: test mean accuracy {test['mean_accuracy']:.4f} (majority baseline {test['majority_baseline']:.4f})"
    )


if __name__ == "__main__":
    stage.run(main, "evaluate")
