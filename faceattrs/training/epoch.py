"""One pass over a loader: training (with an optimizer) or validation, its loss and accuracies summed on the device."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from faceattrs.core.errors import Diverged
from faceattrs.training import distributed
from faceattrs.training.distributed import SINGLE, World
from faceattrs.training.optim import Schedule
from faceattrs.training.step import EpochPlan, Step, model_step, optimizer_step

# Batches between reads of the loss on the host. Each read waits for the device to finish; reading every
# batch would leave a GPU idle while the host queues the next step's kernels.
SYNC_EVERY = 32


@dataclass(frozen=True)
class Pass:
    """One pass over ``data``: a training one when ``optimizer`` is given (with the epoch's ``plan``)."""

    data: Iterable
    desc: str = ""
    optimizer: torch.optim.Optimizer | None = None
    schedule: Schedule | None = None
    plan: EpochPlan | None = None
    world: World = SINGLE
    progress: bool = False
    # Called with each training batch's rows (a sample trace, for instance).
    on_batch: Callable[[torch.Tensor], None] | None = None

    @property
    def training(self) -> bool:
        return self.optimizer is not None


@dataclass(frozen=True)
class PassResult:
    loss: float
    accuracy: np.ndarray  # per target

    @property
    def mean_accuracy(self) -> float:
        return float(self.accuracy.mean()) if self.accuracy.size else 0.0


def _check_finite(losses: list[torch.Tensor], first: int, desc: str) -> None:
    """Read the pending batch losses on the host; the first non-finite one stops training, naming its batch."""
    values = torch.stack(losses).float().cpu()
    bad = (~torch.isfinite(values)).nonzero()
    if len(bad):
        i = int(bad[0])
        raise Diverged(
            f"non-finite loss ({values[i].item()}) in {desc or 'a step'}, batch {first + i}: "
            "lower optimizer.lr, or check the targets and loss params"
        )


def run_epoch(step: Step, run: Pass) -> PassResult:
    """One pass; trains when the pass has an optimizer. Loss, per-target and mean accuracy over all ranks."""
    train = run.training
    step.model.train(train)
    plan = (run.plan or EpochPlan()) if train else None
    # Sums stay on the device between the host's reads (SYNC_EVERY).
    total_loss = torch.zeros((), dtype=torch.float64, device=step.device)
    correct = torch.zeros(step.outputs, dtype=torch.long, device=step.device)
    labelled = torch.zeros_like(correct)
    count, pending, first_pending = 0, [], 0
    bar = tqdm(run.data, desc=run.desc, unit="batch", leave=False, disable=not run.progress)
    # Ranks may hold one batch more or less; DDP's join lets the short ones wait without hanging.
    joined = step.model.join() if train and isinstance(step.model, DDP) else contextlib.nullcontext()
    with torch.set_grad_enabled(train), joined:
        for batch_index, (images, labels, rows) in enumerate(bar):
            # On the device once: the step's loss and the accuracy sums below both read them there.
            labels = labels.to(step.device, non_blocking=True)
            loss, logits = model_step(step, images, labels, plan, rows)
            if train and optimizer_step(step, loss, run.optimizer):
                run.schedule.after_batch()
            known = labels >= 0
            correct += (((logits > 0) == labels.bool()) & known).sum(dim=0)
            labelled += known.sum(dim=0)
            pending.append(loss.detach())
            total_loss += loss.detach().double() * len(labels)
            count += len(labels)
            if run.on_batch is not None:
                run.on_batch(rows)
            if len(pending) == SYNC_EVERY:
                _check_finite(pending, first_pending, run.desc)
                first_pending, pending = batch_index + 1, []
                bar.set_postfix(loss=f"{total_loss.item() / count:.4f}")
    if pending:
        _check_finite(pending, first_pending, run.desc)
    sums, correct, labelled = distributed.reduce_sum(
        run.world, torch.tensor([total_loss.item(), count], dtype=torch.float64), correct.cpu(), labelled.cpu()
    )
    accuracy = (correct.double() / labelled.clamp(min=1)).numpy() if int(sums[1]) else np.zeros(0)
    return PassResult(float(sums[0]) / max(int(sums[1]), 1), accuracy)


@torch.no_grad()
def predict(step: Step, data: Iterable) -> np.ndarray:
    """Logits of every batch of ``data``, in order, from the model validation would score."""
    scoring = step.evaluated()
    scoring.model.eval()
    out = [np.zeros((0, step.outputs), dtype=np.float32)]
    for images, labels, _ in data:
        _, logits = model_step(scoring, images, labels)
        out.append(logits.cpu().numpy())
    return np.concatenate(out)
