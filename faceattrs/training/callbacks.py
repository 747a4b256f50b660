"""What happens around the epoch loop, each a ``fit.Callback``: dvclive logs, checkpoints, early stopping, traces."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from faceattrs.core import atomic
from faceattrs.training.checkpoints import BestWeights, ResumePoint, RunKey
from faceattrs.training.fit import Callback, EpochRecord, FitState, Parts
from faceattrs.training.step import evaluated_model, plain_model


def open_live(live_dir: Path, resumed_after: int | None):
    """dvclive's logger for ``live_dir``, going on after epoch ``resumed_after`` (None: a new run); also in a git
    repository with no commit yet.

    dvclive asks git for the current commit before it checks for an empty repository
    and fails there (dvclive 3.49, treeverse/dvclive#522): a `git init && dvc init &&
    dvc repro` must still train. Without a commit there is no experiment to attach
    the logs to, so it then logs as outside any repository.
    """
    from unittest import mock

    from dvclive import Live
    from scmrepo.exceptions import SCMError

    if resumed_after is not None:
        _agree_with_checkpoint(live_dir, resumed_after)
    try:
        return Live(str(live_dir), dvcyaml=False, resume=resumed_after is not None, save_dvc_exp=False)
    except SCMError:
        with mock.patch("dvclive.live.get_dvc_repo", return_value=None):
            return Live(str(live_dir), dvcyaml=False, resume=resumed_after is not None, save_dvc_exp=False)


def _agree_with_checkpoint(live_dir: Path, epochs: int) -> None:
    """dvclive's summary and rows as a run that logged exactly ``epochs`` epochs leaves them.

    dvclive writes in place: a run killed as it logged leaves a cut summary (which its resume
    cannot parse), a half row, or a row of an epoch the checkpoint does not hold (it is written
    first). Its resume reads the step from the summary, so that step is set here.
    """
    summary_file = live_dir / "metrics.json"
    try:
        summary = json.loads(summary_file.read_text())
    except (OSError, ValueError):
        summary = None
    summary = summary if isinstance(summary, dict) else {}
    if summary.get("step") != epochs - 1:
        atomic.write_json(summary_file, {**summary, "step": epochs - 1})
    for table in sorted((live_dir / "plots" / "metrics").rglob("*.tsv")):
        header, *rows = table.read_text().split("\n")
        kept = [r for r in rows[:-1] if r.split("\t", 1)[0].isdigit() and int(r.split("\t", 1)[0]) < epochs]
        if kept != rows[:-1] or rows[-1]:
            atomic.write_text(table, "\n".join([header, *kept, ""]))


class LiveLog(Callback):
    """Each epoch's losses, accuracies, learning rate and times to dvclive, and one line to the console."""

    def __init__(self, live, epochs: int):
        self.live, self.epochs = live, epochs

    def on_epoch_end(self, parts: Parts, record: EpochRecord) -> None:
        fit, val = record.fit, record.val
        for name, value in (
            ("train/loss", fit.loss),
            ("train/mean_accuracy", fit.mean_accuracy),
            ("val/loss", val.loss),
            ("val/mean_accuracy", val.mean_accuracy),
            ("lr", record.lr),
            ("epoch_time_s", record.seconds),
            ("train_time_s", record.fit_seconds),
        ):
            self.live.log_metric(name, value)
        print(
            f"epoch {record.epoch + 1}/{self.epochs}: train loss {fit.loss:.4f} acc {fit.mean_accuracy:.4f} | "
            f"val loss {val.loss:.4f} acc {val.mean_accuracy:.4f} | {record.seconds:.1f}s"
        )
        self.live.next_step()


class Checkpointer(Callback):
    """best.pt with the kept epoch's weights so far (train.keep: the monitor's best, or every epoch as the last),
    and last.pt after every epoch, to resume from."""

    def __init__(self, out_dir: Path, key: RunKey, signature: dict, keep: str = "best"):
        self.out_dir, self.key, self.signature, self.keep = out_dir, key, signature, keep

    def on_epoch_end(self, parts: Parts, record: EpochRecord) -> None:
        step = parts.step
        if record.improved or self.keep == "last":
            weights = evaluated_model(step).state_dict()
            BestWeights(self.signature, weights, record.epoch + 1, record.val.mean_accuracy).save(
                self.out_dir / "best.pt"
            )
        ResumePoint(
            key=ResumePoint.key_of(self.key),
            signature=self.signature,
            state_dict=plain_model(step.model).state_dict(),
            ema=step.ema.state_dict() if step.ema is not None else None,
            optimizer=parts.optimizer.state_dict(),
            schedule=parts.schedule.state_dict(),
            scaler=step.scaler.state_dict(),
            state=record.state.to_dict(),
        ).save(self.out_dir / "last.pt")


class EarlyStopping(Callback):
    """Stop after ``patience`` candidate epochs without a better monitor score (the same on every rank)."""

    def __init__(self, patience: int, monitor: str, announce: bool = True):
        self.patience, self.monitor, self.announce = patience, monitor, announce

    def should_stop(self, state: FitState) -> bool:
        stop = state.stale >= self.patience
        if stop and self.announce:
            print(f"train: early stop, no better {self.monitor} for {self.patience} epochs")
        return stop


class SampleTrace(Callback):
    """The image ids each rank trained on, one file per epoch and rank: ``epoch<E>-rank<R>.txt`` in ``folder``."""

    def __init__(self, folder: Path, ids: list[str]):
        self.folder, self.ids = folder, ids
        self.rows: list[int] = []

    def on_batch(self, epoch: int, rows: torch.Tensor) -> None:
        self.rows.extend(rows.tolist())

    def on_epoch_end(self, parts: Parts, record: EpochRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"epoch{record.epoch}-rank{parts.world.rank}.txt"
        path.write_text("\n".join(self.ids[i] for i in self.rows))
        self.rows = []
