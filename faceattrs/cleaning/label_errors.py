"""Likely wrong (image, attribute) labels, found by confident learning and scored against planted noise.

Confident learning (Northcutt et al., cleanlab's ``multilabel_classification``) compares
each given label with a model's out-of-sample probability, per attribute, against
thresholds it estimates from the data itself (each class's average self-confidence),
so a rare attribute is not judged by a common one's standard. The probabilities must
come from a model that did not train on the image: evaluate's model on val and test,
or out-of-fold models on the training split (the labels stage).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# What training sees of a flagged label: the given one, none (left out of the loss), or the other one.
POLICIES = ("report", "drop", "flip")
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
    found = find_multilabel_issues_per_class(labels=given, pred_probs=probs[:, both])
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
