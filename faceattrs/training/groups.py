"""Group-fairness mitigations in training: a subset to train on, group-balanced sampling, a group's loss weight.

Seed 004's report tried each against a gender-fair score: training on one group only,
oversampling the minority category, and a penalty on one group's errors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from faceattrs.core import expressions
from faceattrs.core.errors import InputError
from faceattrs.training.loader import epoch_generator


def in_subset(frame: pd.DataFrame, subset: str | None) -> np.ndarray:
    """Which training rows ``train.subset`` keeps (all without one); not those with an unknown label it reads."""
    if subset is None:
        return np.ones(len(frame), dtype=bool)
    keep = expressions.evaluate(subset, frame) & expressions.known(subset, frame)
    if not keep.any():
        raise InputError(f"train.subset: no training image has {subset!r}")
    return keep


def pool(
    frame: pd.DataFrame, targets: np.ndarray, subset: str | None, balance: str | None, seed: int, epoch: int
) -> torch.Tensor | None:
    """The training rows epoch ``epoch`` deals out, with repeats where balancing oversamples; None: every row once.

    ``frame`` holds the training split's 40 attributes, ``targets`` its target labels (rows
    in order). With ``train.balance``, every combination of that attribute and the target
    is drawn as often as the commonest one: each of its rows at least that many times over
    (whole copies, then a different sample of the rest each epoch), so no row is left out
    (but for a last batch of one image, which the loader drops: ``loader.drops_last``).
    Rows whose group or target label the labels stage left out (-1) are dealt once each.
    """
    if subset is None and balance is None:
        return None
    rows = np.flatnonzero(in_subset(frame, subset))
    if balance is None:
        return torch.from_numpy(rows)
    group, target = frame[balance].to_numpy()[rows], targets[rows, 0]
    cells = [rows[(group == g) & (target == t)] for g in (0, 1) for t in (0, 1)]
    cells = [c for c in cells if len(c)]
    unknown = rows[(group < 0) | (target < 0)]
    largest = max(len(c) for c in cells)
    gen = epoch_generator(seed, epoch)
    drawn = [unknown]
    for cell in cells:
        copies, rest = divmod(largest, len(cell))
        pick = torch.randperm(len(cell), generator=gen)[:rest].numpy()
        drawn += [np.tile(cell, copies), cell[pick]]
    return torch.from_numpy(np.concatenate(drawn))


def weights(frame: pd.DataFrame, group: str | None, group_weight: float) -> torch.Tensor | None:
    """Each training row's loss weight: ``loss.group_weight`` in ``loss.group``, 1 elsewhere; None when all are 1."""
    if group is None or group_weight == 1:
        return None
    return torch.from_numpy(np.where(frame[group].to_numpy() == 1, group_weight, 1.0).astype(np.float32))
