"""Training: one step function shared by training and evaluation, epochs that resume, dvclive logs.

Every source of randomness is reseeded from (train.seed, epoch) at the start of an
epoch (batch order, augmentations, dropout), so a run resumed from its last
checkpoint reproduces the uninterrupted run exactly on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from faceattrs.core.atomic import atomic_file
from faceattrs.core.errors import Diverged, InputError, choose
from faceattrs.core.params import Params
from faceattrs.core.provenance import provenance
from faceattrs.data import shards
from faceattrs.training import augment, distributed, groups, layout, models, optim
from faceattrs.training import targets as targets_mod
from faceattrs.training.distributed import SINGLE, RankSampler, World
from faceattrs.training.loader import ShardDataset, batches_per_epoch, decode_batch, loader
from faceattrs.training.losses import AttributeLoss

TRAIN_SECTIONS = ("model", "target", "loss", "augment", "optimizer", "schedule", "train")

# train.monitor: a score of the validation pass, higher is better, that picks the epoch whose
# weights are kept and that early stopping and the plateau schedule read.
MONITORS = {
    "val_accuracy": lambda val, fit: val["mean_accuracy"],
    "val_loss": lambda val, fit: -val["loss"],
    # The epoch where the model fits train and val alike (a seed's choice of checkpoint).
    "train_val_gap": lambda val, fit: -abs(fit["mean_accuracy"] - val["mean_accuracy"]),
}


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


def code_digest() -> str:
    """A hash of the training package's code: a fix to any of it must not resume an old run."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def train_params(params: Params) -> dict:
    """The params sections training reads, as plain values."""
    dumped = params.model_dump(mode="json")
    return {k: dumped[k] for k in TRAIN_SECTIONS}


def fingerprint(params: Params, shard_dir: Path, labels_file: Path | None = None) -> str:
    """What a checkpoint must have been made with to be resumed: the train params, the data and the code."""
    sections = train_params(params)
    manifest = (shard_dir / "manifest.json").read_bytes() if (shard_dir / "manifest.json").exists() else b""
    labels = labels_file.read_bytes() if labels_file is not None else b""
    return hashlib.sha256(
        json.dumps(sections, sort_keys=True).encode()
        + hashlib.sha256(manifest).digest()
        + hashlib.sha256(labels).digest()
        + code_digest().encode()
    ).hexdigest()


@dataclass
class Context:
    """Everything a step needs besides the batch."""

    model: torch.nn.Module
    loss: AttributeLoss
    params: Params
    device: torch.device
    mean: torch.Tensor
    std: torch.Tensor
    generator: torch.Generator | None = None
    # An exponential moving average of the weights, updated after every step; what is validated and saved.
    ema: AveragedModel | None = None

    # Per training row: its loss weight (loss.group_weight), or None when every row weighs 1.
    row_weights: torch.Tensor | None = None
    # Per training row: whether it is flipped this epoch (augment.flip_order alternate); None draws flips at random.
    flips: torch.Tensor | None = None
    # The side of the training images against the model's input this epoch (train.low_res_scale, or 1).
    input_scale: float = 1.0
    # fp16's loss scaling; disabled (a pass-through) for every other precision.
    scaler: torch.amp.GradScaler = dataclasses.field(default_factory=lambda: torch.amp.GradScaler(enabled=False))

    @property
    def autocast(self):
        dtype, _ = amp(self.device, self.params.train.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def model_step(
    ctx: Context,
    images: torch.Tensor,
    labels: torch.Tensor,
    train: bool,
    weights: torch.Tensor | None = None,
    flips: torch.Tensor | None = None,
):
    """Loss and logits of one batch; the same code for training and evaluation.

    Per image: ``weights``, its loss weight; ``flips``, whether it is flipped (augment.flip_order alternate).
    """
    if isinstance(images, list):  # still-encoded JPEGs: decoded on the device, in one call
        images = decode_batch(images, ctx.device)
    images = images.to(ctx.device, non_blocking=True)
    labels = labels.to(ctx.device, non_blocking=True)
    size = ctx.params.model.input_size
    if train and ctx.input_scale != 1:  # progressive resizing: the model's input size, shrunk
        size = augment.scaled_size(augment.model_input_size(ctx.params, images.shape[-2:]), ctx.input_scale)
    x = augment.prepare(images, ctx.params.augment, ctx.mean, ctx.std, ctx.generator, train, size, flips)
    # -1 marks a label the labels stage left out (labels.policy drop): no loss, no accuracy.
    known = labels >= 0
    if weights is not None:  # the loss's mask takes weights: a weighted mean over the known labels
        known = known * weights.to(ctx.device).view(-1, 1)
    target = labels.clamp(min=0).float()
    mixing = train and ctx.params.augment.mixup_alpha > 0
    if mixing:
        x, lam, perm = augment.mixup(x, ctx.params.augment.mixup_alpha, ctx.generator)
    if ctx.params.train.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with ctx.autocast:
        logits = ctx.model(x).float()
    if not mixing:
        return ctx.loss(logits, target, None if weights is None and known.all() else known), logits
    if ctx.params.augment.mixup_on == "loss":
        # The losses of both label sets, mixed: under focal loss this differs from mixing the labels.
        loss = lam * ctx.loss(logits, target, known) + (1 - lam) * ctx.loss(logits, target[perm], known[perm])
        return loss, logits
    # A mixed image counts where both labels are known, weighted as its two images are mixed.
    both = (known > 0) & (known[perm] > 0)
    if weights is not None:
        both = both * (lam * known + (1 - lam) * known[perm])
    mask = None if weights is None and both.all() else both
    return ctx.loss(logits, augment.mix_labels(target, lam, perm), mask), logits


def optimizer_step(ctx: Context, loss: torch.Tensor, optimizer) -> bool:
    """Backward and one optimizer step through fp16's loss scaler (a pass-through otherwise), then the EMA.

    False when the scaler skipped the step (inf gradients; the scale then drops): that is no step
    of the schedule.
    """
    optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    scale = ctx.scaler.get_scale() if ctx.scaler.is_enabled() else None
    ctx.scaler.step(optimizer)
    ctx.scaler.update()
    if ctx.ema is not None:
        ctx.ema.update_parameters(_plain_model(ctx.model))
    return scale is None or ctx.scaler.get_scale() >= scale


# Batches between reads of the loss on the host. Each read waits for the device to finish; reading every
# batch would leave a GPU idle while the host queues the next step's kernels.
SYNC_EVERY = 32


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


def run_epoch(
    ctx: Context,
    data,
    optimizer=None,
    schedule=None,
    desc: str = "",
    progress: bool = True,
    limit: int = 0,
    world: World = SINGLE,
    seen: list | None = None,
) -> dict:
    """One pass; trains when an optimizer is given. Returns loss, per-target and mean accuracy over all ranks."""
    train = optimizer is not None
    ctx.model.train(train)
    # Sums stay on the device between the host's reads (SYNC_EVERY).
    total_loss = torch.zeros((), dtype=torch.float64, device=ctx.device)
    correct = labelled = None
    count, pending, first_pending = 0, [], 0
    bar = tqdm(data, desc=desc, unit="batch", leave=False, disable=not progress)
    # Ranks may hold one batch more or less; DDP's join lets the short ones wait without hanging.
    joined = ctx.model.join() if train and isinstance(ctx.model, DDP) else contextlib.nullcontext()
    with torch.set_grad_enabled(train), joined:
        for batch_index, (images, labels, rows) in enumerate(bar):
            if limit and batch_index >= limit:
                break
            # On the device once: the step's loss and the accuracy sums below both read them there.
            labels = labels.to(ctx.device, non_blocking=True)
            weights = ctx.row_weights[rows] if train and ctx.row_weights is not None else None
            flips = ctx.flips[rows] if train and ctx.flips is not None else None
            loss, logits = model_step(ctx, images, labels, train, weights, flips)
            if train and optimizer_step(ctx, loss, optimizer):
                schedule.after_batch()
            known = labels >= 0
            hits = (((logits > 0) == labels.bool()) & known).sum(dim=0)
            correct = hits if correct is None else correct + hits
            labelled = known.sum(dim=0) if labelled is None else labelled + known.sum(dim=0)
            pending.append(loss.detach())
            total_loss += loss.detach().double() * len(labels)
            count += len(labels)
            if seen is not None:
                seen.extend(rows.tolist())
            if len(pending) == SYNC_EVERY:
                _check_finite(pending, first_pending, desc)
                first_pending, pending = batch_index + 1, []
                bar.set_postfix(loss=f"{total_loss.item() / count:.4f}")
    if pending:
        _check_finite(pending, first_pending, desc)
    total_loss = total_loss.item()
    if correct is not None:
        correct, labelled = correct.cpu(), labelled.cpu()
    if world.distributed:
        if correct is None:  # this rank got no batch; it still takes part in the sum
            correct = labelled = torch.zeros(len(ctx.loss.pos_weight), dtype=torch.long)
        sums, correct, labelled = distributed.reduce_sum(
            world, torch.tensor([total_loss, float(count)]), correct, labelled
        )
        total_loss, count = float(sums[0]), int(sums[1])
    accuracy = (correct.double() / labelled.clamp(min=1)).numpy() if correct is not None else np.zeros(0)
    return {
        "loss": total_loss / max(count, 1),
        "mean_accuracy": float(accuracy.mean()) if accuracy.size else 0.0,
        "accuracy": accuracy,
    }


@torch.no_grad()
def predict(ctx: Context, data) -> np.ndarray:
    """Logits of every batch of ``data``, in order, from the model validation would score."""
    scoring = _evaluating(ctx)
    scoring.model.eval()
    out = [np.zeros((0, len(ctx.loss.pos_weight)), dtype=np.float32)]
    for images, labels, _ in data:
        _, logits = model_step(scoring, images, labels, train=False)
        out.append(logits.cpu().numpy())
    return np.concatenate(out)


def seed_epoch(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    torch.manual_seed(seed * 1000 + epoch)
    np.random.seed((seed * 1000 + epoch) % 2**32)
    return torch.Generator(device=device).manual_seed(seed * 1000 + epoch)


def build(
    params: Params,
    positive_rates: np.ndarray,
    device: torch.device,
    n_outputs: int,
    size: tuple[int, int] | None = None,
):
    """The model, loss and everything else a step needs. ``size``: the model's input, for the CPU's layout."""
    model = models.build_model(params.model, n_outputs).to(device)
    if params.train.channels_last:
        layout.to_channels_last(model, device, size)
    mean, std = models.normalization(model, params.model.normalization)
    loss = AttributeLoss(params.loss, torch.as_tensor(positive_rates)).to(device)
    ctx = Context(model, loss, params, device, torch.tensor(mean, device=device), torch.tensor(std, device=device))
    ctx.scaler = torch.amp.GradScaler(device.type, enabled=amp(device, params.train.precision)[1])
    if params.train.ema:
        # Buffers too: BatchNorm's running statistics must match the averaged weights.
        ctx.ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(params.train.ema), use_buffers=True)
    return ctx


def open_live(live_dir: Path, resumed: bool):
    """dvclive's logger for ``live_dir``; also in a git repository with no commit yet.

    dvclive asks git for the current commit before it checks for an empty repository
    and fails there (dvclive 3.49, treeverse/dvclive#522): a `git init && dvc init &&
    dvc repro` must still train. Without a commit there is no experiment to attach
    the logs to, so it then logs as outside any repository.
    """
    from unittest import mock

    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        return Live(str(live_dir), dvcyaml=False, resume=resumed, save_dvc_exp=False)
    except SCMError:
        with mock.patch("dvclive.live.get_dvc_repo", return_value=None):
            return Live(str(live_dir), dvcyaml=False, resume=resumed, save_dvc_exp=False)


def train(
    params: Params,
    shard_dir: Path,
    out_dir: Path,
    live_dir: Path,
    progress: bool = True,
    labels_file: Path | None = None,
) -> dict:
    """Train, resuming from ``out_dir/last.pt`` when it was made with the same params, data and code.

    ``labels_file`` (the labels stage's table) replaces the training split's labels: some
    flipped, some left out of the loss (-1), as ``labels.policy`` decided.
    """

    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(params.train.device)
    world = distributed.init(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    progress = progress and world.main
    tp = params.train
    target = targets_mod.from_params(params.target.attributes, params.target.expression)
    seen = pd.read_parquet(labels_file) if labels_file is not None else None
    train_set = ShardDataset(shard_dir, "train", target, encoded=tp.decode_on == "device", labels=seen)
    val_set = ShardDataset(shard_dir, "val", target, encoded=tp.decode_on == "device")
    # The shares of the images trained on: with train.subset, of those alone (focal alpha and weighting read them).
    rates = target.positive_rates(train_set.frame[groups.in_subset(train_set.frame, params)])
    torch.manual_seed(tp.seed)  # the initial weights are part of what the seed fixes
    ctx = build(params, rates, device, len(target.names), augment.model_input_size(params, train_set.spec.size))
    ctx.row_weights = groups.weights(train_set.frame, params)
    optimizer = optim.build_optimizer(ctx.model, params.optimizer)
    # Batches of one rank's share: the schedule steps once per batch on every rank.
    pool = functools.partial(groups.pool, train_set.frame, train_set.targets.numpy(), params)
    steps = batches_per_epoch(len(RankSampler(len(train_set), tp.seed, 0, world, pool=pool(0))), tp.batch_size)
    if tp.limit_batches:
        steps = min(steps, tp.limit_batches)
    schedule = optim.build_schedule(optimizer, params.schedule, steps, tp.epochs, params.optimizer.lr)
    sign = models.signature(params.model, target.names)
    key = fingerprint(params, shard_dir, labels_file)

    monitor = choose(MONITORS, tp.monitor, "train.monitor")
    schedule_monitor = choose(MONITORS, params.schedule.monitor or tp.monitor, "schedule.monitor")
    state = {"epoch": 0, "best": -math.inf, "best_accuracy": 0.0, "best_epoch": -1, "stale": 0}
    last = out_dir / "last.pt"
    resumed = False
    if last.exists():
        ckpt = models.load_checkpoint(last)
        if ckpt.get("fingerprint") == key:
            ctx.model.load_state_dict(ckpt["state_dict"])
            if ctx.ema is not None:
                ctx.ema.load_state_dict(ckpt["ema"])
            optimizer.load_state_dict(ckpt["optimizer"])
            schedule.load_state_dict(ckpt["schedule"])
            if ckpt.get("scaler"):  # fp16's loss scale, where it had got to
                ctx.scaler.load_state_dict(ckpt["scaler"])
            state = ckpt["state"]
            resumed = True
            if world.main:
                print(f"train: resuming after epoch {state['epoch']} from {last}")
    distributed.barrier(world)  # every rank has read last.pt before rank 0 may delete it
    if not resumed and world.main:
        for stale in ("last.pt", "best.pt"):
            (out_dir / stale).unlink(missing_ok=True)
    if world.distributed:
        ctx.model = DDP(ctx.model, device_ids=[device.index] if device.type == "cuda" else None)
    if tp.compile:
        ctx.model = torch.compile(ctx.model)
    trace = Path(os.environ["FACEATTRS_TRACE_SAMPLES"]) if os.environ.get("FACEATTRS_TRACE_SAMPLES") else None

    live_log = open_live(live_dir, resumed) if world.main else None
    with live_log or contextlib.nullcontext() as live:
        for epoch in range(state["epoch"], tp.epochs):
            start = time.perf_counter()
            ctx.generator = seed_epoch(tp.seed, epoch, device)
            ctx.input_scale = tp.low_res_scale if epoch < tp.low_res_epochs else 1.0
            ctx.flips = augment.epoch_flips(params.augment, len(train_set), tp.seed, epoch)
            train_data = loader(
                train_set,
                tp.batch_size,
                True,
                tp.seed,
                epoch,
                tp.workers,
                device.type == "cuda",
                sampler=RankSampler(len(train_set), tp.seed, epoch, world, pool=pool(epoch)),
            )
            lr = optimizer.param_groups[0]["lr"]
            seen = [] if trace else None
            fit_start = time.perf_counter()
            fit = run_epoch(
                ctx,
                train_data,
                optimizer,
                schedule,
                f"epoch {epoch + 1}/{tp.epochs}",
                progress,
                tp.limit_batches,
                world,
                seen,
            )
            fit_time = time.perf_counter() - fit_start
            if trace:
                trace.mkdir(parents=True, exist_ok=True)
                (trace / f"epoch{epoch}-rank{world.rank}.txt").write_text("\n".join(train_set.ids[i] for i in seen))
            ctx.generator = None
            val_data = loader(
                val_set,
                tp.batch_size * 2,
                False,
                tp.seed,
                epoch,
                tp.workers,
                device.type == "cuda",
                sampler=RankSampler(len(val_set), tp.seed, epoch, world, shuffle=False),
            )
            val = run_epoch(
                _evaluating(ctx), val_data, desc="val", progress=progress, limit=tp.limit_batches, world=world
            )
            score = monitor(val, fit)
            schedule.after_epoch(schedule_monitor(val, fit))
            elapsed = time.perf_counter() - start
            # A low-resolution epoch's weights are no candidate: their BatchNorm statistics are of smaller images.
            candidate = epoch >= tp.low_res_epochs
            improved = candidate and score > state["best"]
            state = {
                "epoch": epoch + 1,
                "best": score if improved else state["best"],
                "best_accuracy": val["mean_accuracy"] if improved else state["best_accuracy"],
                "best_epoch": epoch + 1 if improved else state["best_epoch"],
                "stale": 0 if improved else state["stale"] + candidate,
            }
            if world.main:
                for name, value in (
                    ("train/loss", fit["loss"]),
                    ("train/mean_accuracy", fit["mean_accuracy"]),
                    ("val/loss", val["loss"]),
                    ("val/mean_accuracy", val["mean_accuracy"]),
                    ("lr", lr),
                    ("epoch_time_s", elapsed),
                    ("train_time_s", fit_time),
                ):
                    live.log_metric(name, value)
                weights = _evaluated(ctx).state_dict()
                if improved:
                    _save(
                        out_dir / "best.pt",
                        {
                            "signature": sign,
                            "state_dict": weights,
                            "epoch": epoch + 1,
                            "val_mean_accuracy": val["mean_accuracy"],
                        },
                    )
                _save(
                    last,
                    {
                        "fingerprint": key,
                        "signature": sign,
                        "state_dict": _plain_model(ctx.model).state_dict(),
                        "ema": ctx.ema.state_dict() if ctx.ema is not None else None,
                        "optimizer": optimizer.state_dict(),
                        "schedule": schedule.state_dict(),
                        "scaler": ctx.scaler.state_dict(),
                        "state": state,
                    },
                )
                print(
                    f"epoch {epoch + 1}/{tp.epochs}: train loss {fit['loss']:.4f} acc {fit['mean_accuracy']:.4f} | "
                    f"val loss {val['loss']:.4f} acc {val['mean_accuracy']:.4f} | {elapsed:.1f}s"
                )
                live.next_step()
            if tp.early_stopping and state["stale"] >= tp.early_stopping:  # the same on every rank
                if world.main:
                    print(f"train: early stop, no better {tp.monitor} for {tp.early_stopping} epochs")
                break

    summary = {
        "epochs": state["epoch"],
        "best_epoch": state["best_epoch"],
        "best_val_mean_accuracy": state["best_accuracy"],
        "rank": world.rank,
    }
    if not world.main:
        distributed.shutdown(world)
        return summary
    best = models.load_checkpoint(out_dir / "best.pt")
    _save(
        out_dir / "model.pt",
        {
            "signature": sign,
            "state_dict": best["state_dict"],
            "epoch": best["epoch"],
            "val_mean_accuracy": best["val_mean_accuracy"],
            "targets": list(target.names),
            "expression": target.expression,
            "image": train_set.spec.to_dict(),
            "mean_eyes": shards.read_mean_eyes(shard_dir),
            "mean": ctx.mean.tolist(),
            "std": ctx.std.tolist(),
            # The geometry that applies in evaluation: prediction crops as evaluation did.
            "eval_geometry": {
                k: list(crop) if (crop := getattr(params.augment, k)) else None
                for k in ("center_crop", "random_crop", "eval_crop")
            },
            "input_size": list(params.model.input_size) if params.model.input_size else None,
            "model_params": params.model.model_dump(mode="json"),
            "positive_rates": [float(r) for r in rates],
            "provenance": json.dumps(provenance(train_params(params))),
            "world_size": world.size,
        },
    )
    distributed.shutdown(world)
    return summary


def _plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside torch.compile's and DDP's wrappers, whose weights are saved."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DDP) else model


def _evaluated(ctx: Context) -> torch.nn.Module:
    """The model validation scores and checkpoints keep: the weight average when there is one."""
    return ctx.ema.module if ctx.ema is not None else _plain_model(ctx.model)


def _evaluating(ctx: Context) -> Context:
    # The bare model: through DDP's wrapper evaluation would sync buffers on every forward,
    # and hang when ranks hold different numbers of batches.
    return dataclasses.replace(ctx, model=_evaluated(ctx))


def _save(path: Path, payload: dict) -> None:
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
