"""A training run as the train stage makes it: build its parts, resume only the same run, fit, export model.pt.

DVC keeps ``data/models`` between runs (``persist: true``) so that a killed run can
resume from its last.pt. A checkpoint is resumed only when its ``RunKey`` equals this
run's: every code file the train stage imports, its params and its data, as the
stage's dvc.lock entry hashes them. Anything else trains from the first epoch, and
the stage says why in one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from faceattrs.core import code_deps
from faceattrs.core.params import Params
from faceattrs.core.provenance import provenance
from faceattrs.data import shards
from faceattrs.training import augment, distributed, models
from faceattrs.training.build import Built, TrainingParams, build
from faceattrs.training.callbacks import Checkpointer, EarlyStopping, LiveLog, open_live
from faceattrs.training.checkpoints import BestWeights, CheckpointError, ModelFile, ResumePoint, RunKey
from faceattrs.training.fit import Callback, FitRun, FitState, Parts, fit
from faceattrs.training.step import resolve_device

# The stage whose code a run's key covers: the files its command imports.
TRAIN_STAGE = "stages.train"


def _sha(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.exists() else ""


def run_key(params: TrainingParams, shard_dir: Path, labels_file: Path | None = None) -> RunKey:
    """What this run is made of, as the train stage's dvc.lock entry hashes it.

    The shards' manifest holds every shard's checksum, so its digest stands for the shards'.
    """
    return RunKey(
        code=code_deps.digests(TRAIN_STAGE),
        params=json.loads(json.dumps(params.values())),
        data={"shards": _sha(shard_dir / "manifest.json"), "labels": _sha(labels_file)},
    )


def resume(parts: Parts, last: Path, key: RunKey) -> tuple[FitState | None, str]:
    """Load ``last`` into the parts when it was written by the same run: its state, or None and why not."""
    if not last.exists():
        return None, f"no checkpoint in {last.parent}"
    try:
        point = ResumePoint.load(last)
    except CheckpointError as err:
        return None, str(err)
    changes = key.changes(point.run_key)
    if changes:
        more = f" and {len(changes) - 3} more" if len(changes) > 3 else ""
        return None, f"{', '.join(changes[:3])}{more} changed since {last} was written"
    step = parts.step
    step.model.load_state_dict(point.state_dict)
    if step.ema is not None:
        step.ema.load_state_dict(point.ema)
    parts.optimizer.load_state_dict(point.optimizer)
    parts.schedule.load_state_dict(point.schedule)
    step.scaler.load_state_dict(point.scaler)  # fp16's loss scale, where it had got to
    return FitState(**point.state), ""


def export(built: Built, params: TrainingParams, shard_dir: Path, out_dir: Path, world_size: int) -> ModelFile:
    """model.pt from the kept epoch's weights (best.pt), with everything prediction needs to feed them."""
    best = BestWeights.load(out_dir / "best.pt")
    step = built.parts.step
    model = ModelFile(
        signature=best.signature,
        state_dict=best.state_dict,
        epoch=best.epoch,
        val_mean_accuracy=best.val_mean_accuracy,
        targets=list(built.target.names),
        expression=built.target.expression,
        image=built.train_set.spec.to_dict(),
        mean_eyes=shards.read_mean_eyes(shard_dir),
        mean=step.mean.tolist(),
        std=step.std.tolist(),
        eval_geometry={k: list(crop) if (crop := getattr(params.augment, k)) else None for k in augment.CROPS},
        input_size=list(params.model.input_size) if params.model.input_size else None,
        model_params=params.model.model_dump(mode="json"),
        positive_rates=[float(r) for r in built.positive_rates],
        provenance=json.dumps(provenance(params.values())),
        world_size=world_size,
    )
    model.save(out_dir / "model.pt")
    return model


def _wrapped(parts: Parts, compile: bool) -> Parts:
    """The parts with the model under DDP (several processes) and torch.compile, where asked."""
    model = parts.step.model
    if parts.world.distributed:
        device = parts.step.device
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:
        model = torch.compile(model)
    return dataclasses.replace(parts, step=parts.step.with_model(model))


def train(
    params: Params | TrainingParams,
    shard_dir: Path,
    out_dir: Path,
    live_dir: Path,
    progress: bool = True,
    labels_file: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train, resuming from ``out_dir/last.pt`` when the same run wrote it, and write ``out_dir/model.pt``.

    ``callbacks`` run beside the run's own (logs and checkpoints on the main process,
    early stopping). Returns the epochs run, the monitor's best epoch and its val accuracy, and the kept epoch
    (train.keep).
    """
    params = params if isinstance(params, TrainingParams) else TrainingParams.of(params)
    tp = params.train
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(tp.device)
    world = distributed.init(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    built = build(params, shard_dir, device, world, labels_file)
    key = run_key(params, shard_dir, labels_file)
    last = out_dir / "last.pt"
    start, why = resume(built.parts, last, key)
    if world.main:
        print(f"train: resuming after epoch {start.epoch} from {last}" if start else f"train: from epoch 1: {why}")
    distributed.barrier(world)  # every rank has read last.pt before rank 0 may delete it
    if start is None and world.main:
        for stale in ("last.pt", "best.pt"):
            (out_dir / stale).unlink(missing_ok=True)
    parts = _wrapped(built.parts, tp.compile)
    run = FitRun.of(tp, params.schedule, progress and world.main)
    signature = models.signature(params.model, built.target.names)
    own: list[Callback] = [EarlyStopping(tp.early_stopping, tp.monitor, world.main)] if tp.early_stopping else []
    resumed_after = start.epoch if start is not None else None
    with open_live(live_dir, resumed_after) if world.main else contextlib.nullcontext() as live:
        if world.main:
            # Checkpoints first: dvclive's step moves on only once the epoch is safe on disk.
            own += [Checkpointer(out_dir, key, signature, tp.keep), LiveLog(live, tp.epochs)]
        state = fit(parts, run, [*own, *callbacks], start)
    summary = {
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_mean_accuracy": state.best_accuracy,
        "kept_epoch": state.epoch if tp.keep == "last" else state.best_epoch,
        "rank": world.rank,
    }
    if world.main:
        export(built, params, shard_dir, out_dir, world.size)
    distributed.shutdown(world)
    return summary
