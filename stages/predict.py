"""DVC stage predict: predictions for the test split (or a folder of images set in params).

    python -m stages.predict --model data/models/model.pt --thresholds reports/evaluate/thresholds.json \
        --shards data/shards --out data/predictions
"""

from __future__ import annotations

from pathlib import Path

from faceattrs.core import atomic, stage
from faceattrs.data.splits import OFFICIAL_TEST
from faceattrs.prediction import outputs
from faceattrs.prediction.predictor import Predictor

# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("predict", "evaluate.tta")


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--thresholds", type=Path, required=True)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    atomic.remove_stale(args.out)  # what a killed run left
    everything = stage.params_of(args, PARAMS)
    params = everything.predict
    # The test-time augmentation evaluate tuned the thresholds with.
    predictor = Predictor(args.model, tta=everything.evaluate.tta)
    thresholds = outputs.load_thresholds(args.thresholds, predictor.targets)
    shard_sets = {"test": "the cleaned test split", OFFICIAL_TEST: "the official test partition, whole"}
    split = params.source if params.source in shard_sets else "test"
    source = [args.shards] if params.source in shard_sets else [Path(params.source)]
    index, logits, faces = outputs.predict_paths(predictor, source, split=split)
    frame = outputs.predictions_frame(index, logits, predictor.targets, thresholds, faces)
    paths = outputs.write_predictions(frame, predictor.targets, args.out)
    scored = shard_sets.get(params.source, params.source)
    print(f"predict: {len(frame)} images of {scored} -> {paths['celeba']}, {paths['csv']}")


if __name__ == "__main__":
    stage.run(main, "predict")
