"""Epoch time of the train stage itself at CelebA's size, one variant of its params after another.

Makes a full-scale synthetic scratch project through the labels stage (or reuses one
with ``--reuse``), then runs the train stage's own command for one epoch per variant,
with a fresh model folder each time, and reads the epoch's times from its dvclive
metrics. Meant for a GPU; on the CPU use ``--images`` and ``-S train.limit_batches``.

    python bench/gpu_epoch.py -S model.backbone=mobilenetv2_100 -S preprocess.size=[224,224] \\
        -S preprocess.crop=[0,20,178,198] -S train.batch_size=256 -S train.workers=14 \\
        --variant fp32:train.precision=fp32 --variant nvjpeg:train.decode_on=device
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.full_scale import commands, run, run_stages, scratch_project, stage_env, write_params

DATA_STAGES = ("download", "dedupe", "split", "preprocess", "labels")


def host_reads_every_batch(cmd: str) -> str:
    """The train command with the loss read on the host after every batch, as the loop did before."""
    module = cmd.split(" -m stages.train ", 1)
    code = (
        "import runpy, faceattrs.training.loop as l; l.SYNC_EVERY = 1; "
        "runpy.run_module('stages.train', run_name='__main__')"
    )
    return f'{module[0]} -c "{code}" {module[1]}'


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=202_599)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/faceattrs-gpu"))
    p.add_argument("--reuse", action="store_true", help="keep the workdir's data if its shards exist")
    p.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params for every variant")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:KEY=VALUE[,KEY=VALUE]; NAME 'sync-every-batch' also reads the loss every batch",
    )
    args = p.parse_args()
    work = args.workdir
    base = [*args.overrides, "train.epochs=1", f"data.synthetic.num_images={args.images}"]
    print(machine(), flush=True)
    if args.reuse and (work / "data" / "shards" / "manifest.json").exists():
        print(f"reusing the data in {work}")
    else:
        env = scratch_project(work, args.images, base)
        run_stages(DATA_STAGES, work, env)
    env = stage_env(work)
    train_cmd = commands(["train"])["train"]
    rows = []
    for spec in ["default:", *args.variant]:
        name, _, sets = spec.partition(":")
        write_params(work, base + [s for s in sets.split(",") if s])
        shutil.rmtree(work / "data" / "models", ignore_errors=True)
        shutil.rmtree(work / "reports" / "train", ignore_errors=True)
        cmd = host_reads_every_batch(train_cmd) if name == "sync-every-batch" else train_cmd
        wall, peak, _ = run(cmd, work, env)
        metrics = json.loads((work / "reports" / "train" / "metrics.json").read_text())
        manifest = json.loads((work / "data" / "shards" / "manifest.json").read_text())
        n_train = manifest["splits"]["train"]["rows"]
        params = yaml.safe_load((work / "params.yaml").read_text())["train"]
        if params["limit_batches"]:
            n_train = min(n_train, params["limit_batches"] * params["batch_size"])
        row = {
            "variant": name,
            "params": sets,
            "stage_wall_s": round(wall, 1),
            "host_peak_mb": round(peak),
            "epoch_s": round(metrics["epoch_time_s"], 1),
            "train_s": round(metrics["train_time_s"], 1),
            "train_images": n_train,
            "val_mean_accuracy": round(metrics["val"]["mean_accuracy"], 4),
        }
        row["images_per_s"] = round(n_train / metrics["train_time_s"])
        row["epoch_of_162770_s"] = round(162_770 / row["images_per_s"], 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    (work / "gpu_epoch.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
