"""Everything a training run is made of, built from its params sections: data, step, optimizer, schedule, batches."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from faceattrs.core.errors import choose
from faceattrs.core.params import (
    AugmentParams,
    LossParams,
    ModelParams,
    OptimizerParams,
    Params,
    ScheduleParams,
    TargetParams,
    TrainParams,
)
from faceattrs.training import augment, groups, layout, models, optim
from faceattrs.training import targets as targets_mod
from faceattrs.training.distributed import SINGLE, RankSampler, World
from faceattrs.training.fit import Parts, seed_epoch
from faceattrs.training.loader import ShardDataset, batches_per_epoch, loader
from faceattrs.training.losses import AttributeLoss
from faceattrs.training.resident import ResidentSplit, check_fits, held_rows, image_bytes
from faceattrs.training.step import EpochPlan, Step, amp


@dataclass(frozen=True)
class TrainingParams:
    """The params sections training reads, and only those: the train stage's ``PARAMS``."""

    model: ModelParams
    target: TargetParams | None  # None where all 40 attributes are the targets whatever it says (the folds)
    loss: LossParams
    augment: AugmentParams
    optimizer: OptimizerParams
    schedule: ScheduleParams
    train: TrainParams

    @classmethod
    def of(cls, params: Params, target: bool = True) -> TrainingParams:
        """The sections out of ``params``; without the target section when ``target`` is false."""
        return cls(**{name: getattr(params, name) if name != "target" or target else None for name in cls.sections()})

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def values(self) -> dict:
        """The sections as JSON has them: what a run's key and provenance record."""
        return {name: value.model_dump(mode="json") for name in self.sections() if (value := getattr(self, name))}


def make_step(
    params: TrainingParams,
    positive_rates: np.ndarray,
    device: torch.device,
    outputs: int,
    size: tuple[int, int] | None = None,
) -> Step:
    """The model, loss and everything else a step needs. ``size``: the model's input, for the CPU's layout."""
    model = models.build_model(params.model, outputs).to(device)
    if params.train.channels_last:
        layout.to_channels_last(model, device, size)
    mean, std = models.normalization(model, params.model.normalization)
    dtype, scaled = amp(device, params.train.precision)
    ema = None
    if params.train.ema:
        # Buffers too: BatchNorm's running statistics must match the averaged weights.
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.train.ema), use_buffers=True)
    return Step(
        model=model,
        loss=AttributeLoss(params.loss, torch.as_tensor(positive_rates)).to(device),
        device=device,
        mean=torch.tensor(mean, device=device),
        std=torch.tensor(std, device=device),
        augment=params.augment,
        input_size=params.model.input_size,
        channels_last=params.train.channels_last,
        autocast_dtype=dtype,
        scaler=torch.amp.GradScaler(device.type, enabled=scaled),
        ema=ema,
    )


@dataclass(frozen=True)
class Built:
    """A run's parts and what export needs besides them."""

    parts: Parts
    target: targets_mod.Targets
    train_set: ShardDataset
    positive_rates: np.ndarray


def _plan(step: Step, train: TrainParams, row_weights: torch.Tensor | None, rows: int, epoch: int) -> EpochPlan:
    return EpochPlan(
        generator=seed_epoch(train.seed, epoch, step.device),
        flips=augment.epoch_flips(step.augment, rows, train.seed, epoch),
        input_scale=train.low_res_scale if epoch < train.low_res_epochs else 1.0,
        row_weights=row_weights,
    )


def _batches(data: ShardDataset, train: TrainParams, world: World, pool, shuffle: bool, pin: bool, epoch: int):
    """One epoch's batches of this rank's share: training ones shuffled (and pooled), validation ones in order."""
    sampler = RankSampler(len(data), train.seed, epoch, world, shuffle=shuffle, pool=pool(epoch) if pool else None)
    return loader(
        data,
        batch_size=_batch_size(train, shuffle),
        shuffle=shuffle,
        seed=train.seed,
        epoch=epoch,
        workers=train.workers,
        pin_memory=pin,
        sampler=sampler,
    )


def _batch_size(train: TrainParams, shuffle: bool) -> int:
    """Training batches are ``train.batch_size``; validation ones, with no gradients to hold, twice that."""
    return train.batch_size if shuffle else train.batch_size * 2


@dataclass(frozen=True)
class Feed:
    """Where a run's batches come from (``train.data_on``)."""

    train_batches: Callable[[int], Iterable]  # epoch -> this rank's training batches
    val_batches: Callable[[int], Iterable]  # epoch -> this rank's validation batches
    first_epoch: int  # this rank's training samples in the first epoch: the schedule counts its batches


def _loader_feed(train_set: ShardDataset, val_set: ShardDataset, tp: TrainParams, world: World, pool, device) -> Feed:
    """Batches decoded every epoch by a DataLoader (``train.workers`` processes) from the shards."""
    pin = device.type == "cuda"
    return Feed(
        train_batches=functools.partial(_batches, train_set, tp, world, pool, True, pin),
        val_batches=functools.partial(_batches, val_set, tp, world, None, False, pin),
        first_epoch=len(RankSampler(len(train_set), tp.seed, 0, world, pool=pool(0))),
    )


def _resident_epoch(split: ResidentSplit, train: TrainParams, pool, shuffle: bool, epoch: int):
    order = split.order(train.seed, epoch, shuffle, pool(epoch) if pool else None)
    return split.batches(order, _batch_size(train, shuffle), shuffle)


def _resident_feed(train_set: ShardDataset, val_set: ShardDataset, tp: TrainParams, world: World, pool, device) -> Feed:
    """Batches drawn by index from the splits, decoded once into the device's memory (``resident``)."""
    subset = torch.from_numpy(np.flatnonzero(groups.in_subset(train_set.frame, tp.subset)))  # all a pool draws from
    rows = [held_rows(subset, tp.seed, world, True), held_rows(torch.arange(len(val_set)), tp.seed, world, False)]
    held = sum(len(r) for r in rows)
    check_fits(held * image_bytes(train_set), held, device, tp.processes)
    train = ResidentSplit.decode(train_set, rows[0], device, tp.workers)
    val = ResidentSplit.decode(val_set, rows[1], device, tp.workers)
    rank = f"rank {world.rank} of {world.size}: " if world.distributed else ""
    print(
        f"train: {rank}{len(train):,} of {len(train_set):,} training and {len(val):,} of {len(val_set):,} "
        f"validation images resident on {device}, {(train.nbytes + val.nbytes) / 2**20:,.1f} MB",
        flush=True,
    )
    return Feed(
        train_batches=functools.partial(_resident_epoch, train, tp, pool, True),
        val_batches=functools.partial(_resident_epoch, val, tp, None, False),
        first_epoch=len(train.order(tp.seed, 0, True, pool(0))),
    )


# train.data_on: how each epoch's batches reach the step.
FEEDS: dict[str, Callable[..., Feed]] = {"loader": _loader_feed, "resident": _resident_feed}


def build(
    params: TrainingParams,
    shard_dir: Path,
    device: torch.device,
    world: World = SINGLE,
    labels_file: Path | None = None,
) -> Built:
    """The parts of a training run on ``shard_dir``'s train and val splits.

    ``labels_file`` (the labels stage's table) replaces the training split's labels: some
    flipped, some left out of the loss (-1), as ``labels.policy`` decided.
    """
    tp = params.train
    target = targets_mod.from_params(params.target.attributes, params.target.expression)
    seen = pd.read_parquet(labels_file) if labels_file is not None else None
    train_set = ShardDataset(shard_dir, "train", target, encoded=tp.decode_on == "device", labels=seen)
    val_set = ShardDataset(shard_dir, "val", target, encoded=tp.decode_on == "device")
    # The shares of the images trained on: with train.subset, of those alone (focal alpha and weighting read them).
    rates = target.positive_rates(train_set.frame[groups.in_subset(train_set.frame, tp.subset)])
    torch.manual_seed(tp.seed)  # the initial weights are part of what the seed fixes
    size = augment.model_input_size(params.model.input_size, params.augment, train_set.spec.size)
    step = make_step(params, rates, device, len(target.names), size)
    optimizer = optim.build_optimizer(step.model, params.optimizer)
    pool = functools.partial(groups.pool, train_set.frame, train_set.targets.numpy(), tp.subset, tp.balance, tp.seed)
    feed = choose(FEEDS, tp.data_on, "train.data_on")(train_set, val_set, tp, world, pool, device)
    # Batches of one rank's share: the schedule steps once per batch on every rank.
    steps = batches_per_epoch(feed.first_epoch, tp.batch_size)
    if tp.limit_batches:
        steps = min(steps, tp.limit_batches)
    schedule = optim.build_schedule(optimizer, params.schedule, steps, tp.epochs, params.optimizer.lr)
    row_weights = groups.weights(train_set.frame, params.loss.group, params.loss.group_weight)
    parts = Parts(
        step=step,
        optimizer=optimizer,
        schedule=schedule,
        train_batches=feed.train_batches,
        plan=functools.partial(_plan, step, tp, row_weights, len(train_set)),
        val_batches=feed.val_batches,
        world=world,
    )
    return Built(parts, target, train_set, rates)
