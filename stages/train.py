"""DVC stage train: fit the configured timm model on the training shards; resumes a killed run.

Data-parallel under torchrun with train.processes > 1; on several machines (train.nodes > 1)
every node runs this same command and rank 0 writes the outputs.

python -m stages.train --shards data/shards --out data/models --live reports/train
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from faceattrs.core import atomic, stage
from faceattrs.data import shards
from faceattrs.training import distributed
from faceattrs.training.build import TrainingParams
from faceattrs.training.callbacks import SampleTrace
from faceattrs.training.run import train
from faceattrs.training.step import resolve_device

# The params keys this stage reads: dvc.yaml's params for it, derived (tools/stage_deps.py).
PARAMS = ("model", "target", "loss", "augment", "optimizer", "schedule", "train")


def main() -> None:
    p = stage.parser(__doc__)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="checkpoints and the final model.pt")
    p.add_argument("--live", type=Path, required=True, help="dvclive folder: metrics and training curves")
    p.add_argument("--labels", type=Path, help="the labels stage's table of the training labels to train on")
    p.add_argument(
        "--trace-samples",
        type=Path,
        metavar="DIR",
        help="write the ids of the images each process trained on, one file per epoch and rank (epochE-rankR.txt)",
    )
    args = p.parse_args()
    atomic.remove_stale(args.out, args.live)  # what a killed run left
    params = TrainingParams.of(stage.params_of(args, PARAMS))
    t = params.train
    launch = distributed.launch_command(t.processes, t.nodes, t.rendezvous, t.rendezvous_id, sys.argv[1:])
    if launch and "LOCAL_RANK" not in os.environ:
        distributed.check_gpus(t.processes, resolve_device(t.device).type)
        # Data-parallel: the same command again under torchrun, one process per GPU.
        print("train: " + " ".join(launch[1:]), flush=True)
        sys.exit(subprocess.call(launch))
    callbacks = []
    if args.trace_samples:
        callbacks.append(SampleTrace(args.trace_samples, list(shards.read_labels(args.shards, "train").index)))
    result = train(params, args.shards, args.out, args.live, stage.show_progress(args), args.labels, callbacks)
    if result["rank"] == 0:  # under torchrun, one line for the run, not one per process
        print(
            f"train: kept epoch {result['kept_epoch']} (train.keep {t.keep}); best by train.monitor: epoch "
            f"{result['best_epoch']}, val mean accuracy {result['best_val_mean_accuracy']:.4f}"
        )


if __name__ == "__main__":
    stage.run(main, "train")
