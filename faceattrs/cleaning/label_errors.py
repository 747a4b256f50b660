"""Likely wrong (image, attribute) labels, found by confident learning and scored against planted noise.

Confident learning (Northcutt et al., cleanlab's ``multilabel_classification``) compares
each given label with a model's out-of-sample probability, per attribute, against
thresholds it estimates from the data itself (each class's average self-confidence),
so a rare attribute is not judged by a common one's standard. The probabilities must
come from a model that did not train on the image: evaluate's model on val and test,
or out-of-fold models on the training split (the labels stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceattrs.core.errors import InputError
from faceattrs.core.params import LabelsParams
from faceattrs.data import shards
from faceattrs.data.celeba import ATTRIBUTES

# What training sees of a flagged label: the given one, none (left out of the loss), or the other one.
POLICIES = ("report", "drop", "flip")
# The columns of a per-attribute score table (scores.csv), written with only its header where no truth is known.
SCORE_COLUMNS = ["finder", "attribute", "flagged", "wrong", "precision", "recall"]
# The simple baseline flags a label when the model is at least this sure of the other value.
BASELINE_CONFIDENCE = 0.9


def confident_learning(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """(images x attributes) booleans: the labels cleanlab's confident learning calls likely wrong."""
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class

    flags = np.zeros(labels.shape, dtype=bool)
    # An attribute whose labels here hold one value only (a rare one in a small split) gives
    # confident learning no class to compare with: cleanlab refuses it, so it is not judged.
    both = np.flatnonzero(labels.any(axis=0) & ~labels.all(axis=0))
    if len(labels) == 0 or len(both) == 0:
        return flags
    given = [list(np.flatnonzero(row)) for row in labels[:, both]]
    # One process: cleanlab would fork a pool per attribute to prune its two classes, each an O(n)
    # partition; the forks of a process holding torch cost more than the work at any split's size.
    found = find_multilabel_issues_per_class(labels=given, pred_probs=probs[:, both], n_jobs=1)
    flags[:, both] = np.asarray(found, dtype=bool).reshape(len(labels), len(both))
    return flags


def confident_disagreement(
    labels: np.ndarray, probs: np.ndarray, confidence: float = BASELINE_CONFIDENCE
) -> np.ndarray:
    """The baseline: labels the model contradicts with at least ``confidence``."""
    return np.where(labels.astype(bool), probs <= 1 - confidence, probs >= confidence)


FINDERS = {"confident_learning": confident_learning, "confident_disagreement": confident_disagreement}


def flagged_table(flags: np.ndarray, labels: np.ndarray, probs: np.ndarray, index, names) -> pd.DataFrame:
    """One row per flagged label: image_id, attribute, the given label, the suggested one, the model's probability."""
    rows, cols = np.nonzero(flags)
    return pd.DataFrame(
        {
            "image_id": np.asarray(index)[rows],
            "attribute": np.asarray(names)[cols],
            "given": labels[rows, cols].astype(np.int8),
            "suggested": (1 - labels[rows, cols]).astype(np.int8),
            "probability": probs[rows, cols].round(4),
        }
    )


def apply_policy(labels: np.ndarray, flags: np.ndarray, policy: str) -> np.ndarray:
    """The labels training sees: int8, -1 where a dropped label is left out of the loss."""
    out = labels.astype(np.int8).copy()
    if policy == "drop":
        out[flags] = -1
    elif policy == "flip":
        out[flags] = 1 - out[flags]
    return out


def score(flags: np.ndarray, given: np.ndarray, clean: np.ndarray, names) -> dict:
    """Precision and recall of flagged labels against the labels a synthetic dataset flipped."""
    wrong = given != clean

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    hits = flags & wrong
    per_attribute = {
        name: {
            "flagged": int(flags[:, k].sum()),
            "wrong": int(wrong[:, k].sum()),
            "precision": ratio(int(hits[:, k].sum()), int(flags[:, k].sum())),
            "recall": ratio(int(hits[:, k].sum()), int(wrong[:, k].sum())),
        }
        for k, name in enumerate(names)
    }
    return {
        "flagged": int(flags.sum()),
        "wrong": int(wrong.sum()),
        "precision": ratio(int(hits.sum()), int(flags.sum())),
        "recall": ratio(int(hits.sum()), int(wrong.sum())),
        "per_attribute": per_attribute,
    }


@dataclass
class LabelSearch:
    seen: pd.DataFrame  # the training split's labels as training sees them (int8; -1 left out), by image_id
    flagged: pd.DataFrame  # one row per flagged label: image_id, attribute, given, suggested, probability
    summary: dict
    scores: pd.DataFrame | None = None  # per attribute and finder, against the planted noise (synthetic data only)


def searched(lp: LabelsParams, index, given: np.ndarray, flags: np.ndarray, probs: np.ndarray) -> LabelSearch:
    """What training sees of the training split's ``given`` labels once ``flags`` are found, and its figures."""
    seen = pd.DataFrame(apply_policy(given, flags, lp.policy), index=index, columns=list(ATTRIBUTES))
    summary = {
        "method": lp.method,
        "policy": lp.policy,
        "images": len(index),
        "flagged_labels": int(flags.sum()),
        "images_with_a_flag": int(flags.any(axis=1).sum()),
        "labels_changed": int((seen.to_numpy() != given).sum()),
    }
    return LabelSearch(seen, flagged_table(flags, given, probs, index, ATTRIBUTES), summary)


def labels_as_given(lp: LabelsParams, shard_dir: Path) -> LabelSearch:
    """``labels.method: none``: the training split's labels as the shards hold them, none flagged.

    Read from the shards' label columns alone, without a model: the labels stage then needs
    neither torch nor timm, whose imports alone took most of its time.
    """
    if not shards.shard_paths(shard_dir, "train"):
        raise InputError(f"{shard_dir}: no shards for split 'train'; run the preprocess stage")
    frame = shards.read_labels(shard_dir, "train")
    given = frame[list(ATTRIBUTES)].to_numpy(np.int8)
    return searched(lp, frame.index, given, np.zeros(given.shape, bool), np.full(given.shape, np.nan, np.float32))
