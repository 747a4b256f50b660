"""Out-of-fold probabilities: K models, each trained without one fold of identities, score the fold they never saw.

Confident learning needs, for every training image, a probability from a model that
did not learn that image. Folds split identities, not images: a model that saw one
photo of a person would know the others too well.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit
from torch.utils.data import Subset
from tqdm import tqdm

from faceattrs.core.params import AugmentParams
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.training import augment, optim
from faceattrs.training.build import TrainingParams, make_step
from faceattrs.training.epoch import predict
from faceattrs.training.fit import FitRun, Parts, fit, seed_epoch
from faceattrs.training.loader import ShardDataset, batches_per_epoch, loader
from faceattrs.training.step import EpochPlan, resolve_device
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
    params: TrainingParams, shard_dir: Path, folds: int, epochs: int, progress: bool = True
) -> tuple[np.ndarray, ShardDataset, np.ndarray]:
    """Probabilities of all 40 attributes for every training image, each from the model of the other folds.

    Returns the probabilities, the dataset (its ``frame`` holds the given labels) and the fold of each image.
    The models take the training params (model, loss, augmentations, optimizer, schedule)
    for ``epochs`` epochs each, but not the fairness mitigations (``train.subset``,
    ``train.balance``, ``loss.group``): every training image needs its probability from a
    model fitted to the labels as given, and a label's chance of being wrong does not
    depend on how much its group's errors are meant to cost. With no validation inside a
    fold, a plateau schedule reads the fold's training loss.
    """
    device = resolve_device(params.train.device)
    tp = params.train
    data = ShardDataset(shard_dir, "train", Targets(ATTRIBUTES))
    fold = identity_folds(data.frame["identity"].to_numpy(), folds, tp.seed)
    probs = np.zeros((len(data), len(ATTRIBUTES)), dtype=np.float32)
    size = augment.model_input_size(params.model.input_size, params.augment, data.spec.size)
    for k in tqdm(range(folds), desc="folds", unit="fold", disable=not progress):
        fit_rows, held_rows = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
        seed = tp.seed * 100 + k
        torch.manual_seed(seed)  # each fold's initial weights, fixed by the seed
        step = make_step(params, data.targets[fit_rows].float().mean(dim=0).numpy(), device, len(ATTRIBUTES), size)
        optimizer = optim.build_optimizer(step.model, params.optimizer)
        fitting = Subset(data, fit_rows)
        steps = batches_per_epoch(len(fitting), tp.batch_size)
        parts = Parts(
            step=step,
            optimizer=optimizer,
            schedule=optim.build_schedule(optimizer, params.schedule, steps, epochs, params.optimizer.lr),
            train_batches=functools.partial(_batches, fitting, tp.batch_size, seed, tp.workers),
            plan=functools.partial(_plan, params.augment, len(data), seed, device),
        )
        fit(parts, FitRun(epochs, progress=progress, desc=f"fold {k + 1}/{folds}, epoch"))
        held = loader(
            Subset(data, held_rows),
            batch_size=tp.batch_size * 2,
            shuffle=False,
            seed=tp.seed,
            epoch=0,
            workers=tp.workers,
        )
        probs[held_rows] = expit(predict(step, held))
    return probs, data, fold


def _batches(fitting: Subset, batch_size: int, seed: int, workers: int, epoch: int):
    return loader(fitting, batch_size=batch_size, shuffle=True, seed=seed, epoch=epoch, workers=workers)


def _plan(params: AugmentParams, rows: int, seed: int, device: torch.device, epoch: int) -> EpochPlan:
    return EpochPlan(seed_epoch(seed, epoch, device), augment.epoch_flips(params, rows, seed, epoch))
