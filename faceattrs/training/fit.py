"""The epoch loop: train a pass, validate a pass, step the schedule, keep score; all else is a callback.

Every source of randomness is reseeded from (seed, epoch) at the start of an epoch
(batch order, augmentations, dropout), so a run resumed after any epoch reproduces the
uninterrupted run exactly on the CPU. What varies around the loop (logging,
checkpoints, early stopping, a trace of the samples seen) is a ``Callback``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from faceattrs.core.errors import choose
from faceattrs.core.params import ScheduleParams, TrainParams
from faceattrs.training.distributed import SINGLE, World
from faceattrs.training.epoch import Pass, PassResult, run_epoch
from faceattrs.training.optim import Schedule
from faceattrs.training.step import EpochPlan, Step


@dataclass(frozen=True)
class Monitor:
    """A value of an epoch, read from its validation and training passes, and whether lower or higher is better."""

    read: Callable[[PassResult, PassResult], float]
    mode: Literal["min", "max"]

    def score(self, value: float) -> float:
        """``value`` as a score where higher is better: what picks the best epoch and early stopping reads."""
        return value if self.mode == "max" else -value


# train.monitor and schedule.monitor. The plateau schedule reads the value itself, in its mode, so that
# torch's relative threshold is relative to the value; the kept epoch and early stopping read its score.
MONITORS: dict[str, Monitor] = {
    "val_accuracy": Monitor(lambda val, fit: val.mean_accuracy, "max"),
    "val_loss": Monitor(lambda val, fit: val.loss, "min"),
    # The epoch where the model fits train and val alike (a seed's choice of checkpoint).
    "train_val_gap": Monitor(lambda val, fit: abs(fit.mean_accuracy - val.mean_accuracy), "min"),
}
# Without validation (a fold's model), both read the training loss.
TRAINING_LOSS = Monitor(lambda val, fit: fit.loss, "min")


def seed_epoch(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    """Reseed torch and numpy for ``epoch``; the generator augmentations draw from."""
    torch.manual_seed(seed * 1000 + epoch)
    np.random.seed((seed * 1000 + epoch) % 2**32)
    return torch.Generator(device=device).manual_seed(seed * 1000 + epoch)


@dataclass(frozen=True)
class FitState:
    """Where a fit stands after ``epoch`` epochs: the best monitor score so far, its epoch, and epochs since."""

    epoch: int = 0
    best: float = -math.inf
    best_accuracy: float = 0.0
    best_epoch: int = -1
    stale: int = 0

    def after(self, epoch: int, score: float, accuracy: float, candidate: bool) -> tuple[FitState, bool]:
        """The state after ``epoch`` (0-based) scored ``score``, and whether it is the new best."""
        improved = candidate and score > self.best
        if improved:
            return FitState(epoch + 1, score, accuracy, epoch + 1, 0), True
        return dataclasses.replace(self, epoch=epoch + 1, stale=self.stale + candidate), False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Parts:
    """Everything a fit runs: the step, the optimizer and schedule, and where each epoch's batches come from."""

    step: Step
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    train_batches: Callable[[int], Iterable]  # epoch -> the training batches
    plan: Callable[[int], EpochPlan]  # epoch -> its generator, flips, scale and row weights
    val_batches: Callable[[int], Iterable] | None = None  # None: no validation (a fold's model)
    world: World = SINGLE


@dataclass(frozen=True)
class FitRun:
    """How long a fit runs, and how it scores an epoch."""

    epochs: int
    monitor: str = "val_accuracy"
    schedule_monitor: str = "val_accuracy"
    # The first epochs train on smaller images (progressive resizing): never kept, never counted as stale.
    low_res_epochs: int = 0
    limit_batches: int = 0  # batches per pass at most; 0: all
    progress: bool = False
    desc: str = "epoch"

    @classmethod
    def of(cls, train: TrainParams, schedule: ScheduleParams, progress: bool) -> FitRun:
        return cls(
            epochs=train.epochs,
            monitor=train.monitor,
            schedule_monitor=schedule.monitor or train.monitor,
            low_res_epochs=train.low_res_epochs,
            limit_batches=train.limit_batches,
            progress=progress,
        )


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch gave, as callbacks see it."""

    epoch: int  # 0-based
    fit: PassResult
    val: PassResult | None
    lr: float  # at the epoch's start
    seconds: float
    fit_seconds: float
    improved: bool
    state: FitState


class Callback:
    """Hooks around the loop; each does nothing unless overridden."""

    def on_batch(self, epoch: int, rows: torch.Tensor) -> None:
        """After each training batch, with its rows."""

    def on_epoch_end(self, parts: Parts, record: EpochRecord) -> None:
        """After each epoch's validation and schedule step."""

    def should_stop(self, state: FitState) -> bool:
        return False


def _each_batch(callbacks: Sequence[Callback], epoch: int, rows: torch.Tensor) -> None:
    for callback in callbacks:
        callback.on_batch(epoch, rows)


def _limited(batches: Iterable, limit: int) -> Iterable:
    return itertools.islice(batches, limit) if limit else batches


def fit(parts: Parts, run: FitRun, callbacks: Sequence[Callback] = (), start: FitState | None = None) -> FitState:
    """Train from ``start`` (the first epoch by default) to ``run.epochs``; the state after the last epoch.

    Without validation batches (a fold's model), the monitors read the training pass: a
    plateau schedule then follows the training loss, which keeps falling while it learns.
    """
    monitor = choose(MONITORS, run.monitor, "train.monitor")
    schedule_monitor = choose(MONITORS, run.schedule_monitor, "schedule.monitor")
    state = start or FitState()
    for epoch in range(state.epoch, run.epochs):
        started = time.perf_counter()
        plan = parts.plan(epoch)  # first: it reseeds the global generators for the epoch
        hooks = [c for c in callbacks if type(c).on_batch is not Callback.on_batch]
        training = Pass(
            _limited(parts.train_batches(epoch), run.limit_batches),
            desc=f"{run.desc} {epoch + 1}/{run.epochs}",
            optimizer=parts.optimizer,
            schedule=parts.schedule,
            plan=plan,
            world=parts.world,
            progress=run.progress,
            on_batch=functools.partial(_each_batch, hooks, epoch) if hooks else None,
        )
        lr = parts.optimizer.param_groups[0]["lr"]
        fit_started = time.perf_counter()
        fitted = run_epoch(parts.step, training)
        fit_seconds = time.perf_counter() - fit_started
        val = None
        if parts.val_batches is not None:
            checking = Pass(
                _limited(parts.val_batches(epoch), run.limit_batches), "val", world=parts.world, progress=run.progress
            )
            val = run_epoch(parts.step.evaluated(), checking)
        keeper, scheduler = (monitor, schedule_monitor) if val is not None else (TRAINING_LOSS, TRAINING_LOSS)
        score = keeper.score(keeper.read(val, fitted))
        parts.schedule.after_epoch(scheduler.read(val, fitted), scheduler.mode)
        # A low-resolution epoch's weights are no candidate: their BatchNorm statistics are of smaller images.
        accuracy = (val or fitted).mean_accuracy
        state, improved = state.after(epoch, score, accuracy, candidate=epoch >= run.low_res_epochs)
        record = EpochRecord(epoch, fitted, val, lr, time.perf_counter() - started, fit_seconds, improved, state)
        for callback in callbacks:
            callback.on_epoch_end(parts, record)
        if any(callback.should_stop(state) for callback in callbacks):
            break
    return state
