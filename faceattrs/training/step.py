"""One step: a batch through augmentation, the model and the loss, the same code for training and evaluation.

``Step`` holds what every batch of a run shares (the model, the loss, the input's
normalization, the augment section); ``EpochPlan`` what one epoch changes (its random
generator, its flips, its image scale, the rows' loss weights). Neither is changed in
place: an epoch gets a plan of its own.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel

from faceattrs.core.errors import InputError
from faceattrs.core.params import AugmentParams
from faceattrs.training import augment
from faceattrs.training.loader import decode_batch
from faceattrs.training.losses import AttributeLoss


def amp(device: torch.device, precision: str) -> tuple[torch.dtype | None, bool]:
    """The autocast dtype (None: fp32) and whether gradients are scaled, for a device and train.precision.

    Only a GPU autocasts: the CPU computes in fp32 (see TrainParams.precision). fp16's narrow
    range underflows small gradients, so it comes with a gradient scaler; bf16 needs none.
    """
    if device.type != "cuda" or precision == "fp32":
        return None, False
    return (torch.float16, True) if precision == "fp16" else (torch.bfloat16, False)


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise InputError("train.device is 'cuda' but no CUDA device is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


@dataclass(frozen=True)
class Step:
    """What every batch of a run needs besides the batch itself."""

    model: torch.nn.Module
    loss: AttributeLoss
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor
    augment: AugmentParams
    # [height, width] the model is fed; None keeps what augmentation gives.
    input_size: tuple[int, int] | None = None
    channels_last: bool = False
    # The autocast dtype; None computes in fp32.
    autocast_dtype: torch.dtype | None = None
    # fp16's loss scaling; disabled (a pass-through) for every other precision.
    scaler: torch.amp.GradScaler = dataclasses.field(default_factory=lambda: torch.amp.GradScaler(enabled=False))
    # An exponential moving average of the weights, updated after every step; what is validated and saved.
    ema: AveragedModel | None = None

    @property
    def outputs(self) -> int:
        return len(self.loss.pos_weight)

    def with_model(self, model: torch.nn.Module) -> Step:
        return dataclasses.replace(self, model=model)

    def evaluated(self) -> Step:
        """The step validation scores: the bare model, or the weight average when there is one.

        Not through DDP's wrapper: evaluation would sync buffers on every forward, and hang
        when ranks hold different numbers of batches.
        """
        return self.with_model(evaluated_model(self))


@dataclass(frozen=True)
class EpochPlan:
    """What one training epoch changes: its random generator, flips, image scale and the rows' loss weights."""

    generator: torch.Generator | None = None
    # Per training row: whether it is flipped this epoch (augment.flip_order alternate); None draws flips at random.
    flips: torch.Tensor | None = None
    # The side of the training images against the model's input this epoch (train.low_res_scale, or 1).
    input_scale: float = 1.0
    # Per training row: its loss weight (loss.group_weight), or None when every row weighs 1.
    row_weights: torch.Tensor | None = None

    def of_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The loss weights and flips of a batch's rows."""
        weights = self.row_weights[rows] if self.row_weights is not None else None
        flips = self.flips[rows] if self.flips is not None else None
        return weights, flips


# Evaluation: no randomness, no flips, the full size.
EVALUATION = EpochPlan()


def model_step(
    step: Step,
    images: torch.Tensor | list[torch.Tensor],
    labels: torch.Tensor,
    plan: EpochPlan | None = None,
    rows: torch.Tensor | None = None,
):
    """Loss and logits of one batch; trains (augments, mixes) when a ``plan`` is given.

    ``rows``: the batch's training rows, for the plan's per-row flips and loss weights.
    """
    train = plan is not None
    plan = plan or EVALUATION
    weights, flips = plan.of_rows(rows) if rows is not None else (None, None)
    if isinstance(images, list):  # still-encoded JPEGs: decoded on the device, in one call
        images = decode_batch(images, step.device)
    images = images.to(step.device, non_blocking=True)
    labels = labels.to(step.device, non_blocking=True)
    size = step.input_size
    if train and plan.input_scale != 1:  # progressive resizing: the model's input size, shrunk
        seen = size or augment.output_size(step.augment, *images.shape[-2:])
        size = augment.scaled_size(seen, plan.input_scale)
    x = augment.prepare(images, step.augment, step.mean, step.std, plan.generator, train, size, flips)
    # -1 marks a label the labels stage left out (labels.policy drop): no loss, no accuracy.
    known = labels >= 0
    if weights is not None:  # the loss's mask takes weights: a weighted mean over the known labels
        known = known * weights.to(step.device).view(-1, 1)
    target = labels.clamp(min=0).float()
    mixing = train and step.augment.mixup_alpha > 0
    if mixing:
        x, lam, perm = augment.mixup(x, step.augment.mixup_alpha, plan.generator)
    if step.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = step.autocast_dtype
    with torch.autocast(step.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = step.model(x).float()
    if not mixing:
        return step.loss(logits, target, None if weights is None and known.all() else known), logits
    if step.augment.mixup_on == "loss":
        # The losses of both label sets, mixed: under focal loss this differs from mixing the labels.
        loss = lam * step.loss(logits, target, known) + (1 - lam) * step.loss(logits, target[perm], known[perm])
        return loss, logits
    # A mixed image counts where both labels are known, weighted as its two images are mixed.
    both = (known > 0) & (known[perm] > 0)
    if weights is not None:
        both = both * (lam * known + (1 - lam) * known[perm])
    mask = None if weights is None and both.all() else both
    return step.loss(logits, augment.mix_labels(target, lam, perm), mask), logits


def optimizer_step(step: Step, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> bool:
    """Backward and one optimizer step through fp16's loss scaler (a pass-through otherwise), then the EMA.

    False when the scaler skipped the step (inf gradients; the scale then drops): that is no step
    of the schedule.
    """
    optimizer.zero_grad(set_to_none=True)
    step.scaler.scale(loss).backward()
    scale = step.scaler.get_scale() if step.scaler.is_enabled() else None
    step.scaler.step(optimizer)
    step.scaler.update()
    if step.ema is not None:
        step.ema.update_parameters(plain_model(step.model))
    return scale is None or step.scaler.get_scale() >= scale


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside torch.compile's and DDP's wrappers, whose weights are saved."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DDP) else model


def evaluated_model(step: Step) -> torch.nn.Module:
    """The model validation scores and checkpoints keep: the weight average when there is one."""
    return step.ema.module if step.ema is not None else plain_model(step.model)
