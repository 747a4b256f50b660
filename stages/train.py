"""DVC stage train: fit the configured timm model on the training shards; resumes a killed run.

    python -m stages.train --shards data/shards --out data/models --live reports/train
"""

from __future__ import annotations

from pathlib import Path

from faceattrs import stagecli
from faceattrs.training import train


def main() -> None:
    p = stagecli.parser(__doc__)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoints and the final model.pt")
    p.add_argument("--live", type=Path, required=True, help="dvclive folder: metrics and training curves")
    args = p.parse_args()
    result = train(stagecli.params_of(args), args.shards, args.out, args.live, stagecli.show_progress(args))
    print(f"train: best val mean accuracy {result['best_val_mean_accuracy']:.4f} at epoch {result['best_epoch']}")


if __name__ == "__main__":
    stagecli.run(main, "train")
