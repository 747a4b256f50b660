"""Out-of-fold probabilities: K models, each trained without one fold of identities, score the fold they never saw.

Confident learning needs, for every training image, a probability from a model that
did not learn that image. Folds split identities, not images: a model that saw one
photo of a person would know the others too well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch.utils.data import Subset
from tqdm import tqdm

from faceattrs.core.params import Params
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.training import augment, optim
from faceattrs.training.loader import ShardDataset, batches_per_epoch, loader
from faceattrs.training.loop import build, predict, resolve_device, run_epoch, seed_epoch
from faceattrs.training.targets import Targets


def identity_folds(identity: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of each image: identities shuffled by ``seed`` and dealt out largest first, so folds balance."""
    ids, counts = np.unique(identity, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ids))
    order = order[np.argsort(-counts[order], kind="stable")]
    sizes = np.zeros(folds, dtype=np.int64)
    fold_of_id = {}
    for k in order:
        smallest = int(np.argmin(sizes))
        fold_of_id[ids[k]] = smallest
        sizes[smallest] += counts[k]
    return np.array([fold_of_id[i] for i in identity], dtype=np.int64)


def out_of_fold(
    params: Params, shard_dir: Path, folds: int, epochs: int, progress: bool = True
) -> tuple[np.ndarray, ShardDataset, np.ndarray]:
    """Probabilities of all 40 attributes for every training image, each from the model of the other folds.

    Returns the probabilities, the dataset (its ``frame`` holds the given labels) and the fold of each image.
    The models take the training params (model, loss, augmentations, optimizer, schedule)
    for ``epochs`` epochs each, but not the fairness mitigations (``train.subset``,
    ``train.balance``, ``loss.group``): every training image needs its probability from a
    model fitted to the labels as given, and a label's chance of being wrong does not
    depend on how much its group's errors are meant to cost.
    """
    device = resolve_device(params.train.device)
    tp = params.train
    data = ShardDataset(shard_dir, "train", Targets(ATTRIBUTES))
    fold = identity_folds(data.frame["identity"].to_numpy(), folds, tp.seed)
    probs = np.zeros((len(data), len(ATTRIBUTES)), dtype=np.float32)
    for k in tqdm(range(folds), desc="folds", unit="fold", disable=not progress):
        fit_rows = np.flatnonzero(fold != k)
        held_rows = np.flatnonzero(fold == k)
        fitting = Subset(data, fit_rows)
        torch.manual_seed(tp.seed * 100 + k)  # each fold's initial weights, fixed by the seed
        rates = data.targets[fit_rows].float().mean(dim=0).numpy()
        ctx = build(params, rates, device, len(ATTRIBUTES), augment.model_input_size(params, data.spec.size))
        optimizer = optim.build_optimizer(ctx.model, params.optimizer)
        steps = batches_per_epoch(len(fitting), tp.batch_size)
        schedule = optim.build_schedule(optimizer, params.schedule, steps, epochs, params.optimizer.lr)
        for epoch in range(epochs):
            ctx.generator = seed_epoch(tp.seed * 100 + k, epoch, device)
            ctx.flips = augment.epoch_flips(params.augment, len(data), tp.seed * 100 + k, epoch)
            batches = loader(fitting, tp.batch_size, True, tp.seed * 100 + k, epoch, tp.workers)
            run_epoch(ctx, batches, optimizer, schedule, f"fold {k + 1}/{folds}, epoch {epoch + 1}", progress)
            schedule.after_epoch(0.0)  # no validation inside a fold: plateau schedules see no change
        ctx.generator = None
        logits = predict(ctx, loader(Subset(data, held_rows), tp.batch_size * 2, False, tp.seed, 0, tp.workers))
        probs[held_rows] = expit(logits)
    return probs, data, fold
