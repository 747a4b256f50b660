"""The labels stage's work: flag likely wrong training labels from out-of-fold models, and say what training sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from faceattrs.cleaning import label_errors
from faceattrs.core.params import LabelsParams
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.synthetic.truth import clean_labels
from faceattrs.training.build import TrainingParams
from faceattrs.training.folds import out_of_fold


def search(
    lp: LabelsParams, training: TrainingParams, shard_dir: Path, truth: dict | None, progress: bool = True
) -> label_errors.LabelSearch:
    """Run ``labels.method`` on the training split (its folds' models trained as ``training`` says) and apply
    ``labels.policy``."""
    if lp.method == "none":
        return label_errors.labels_as_given(lp, shard_dir)
    probs, data, _ = out_of_fold(training, shard_dir, lp.folds, lp.epochs, progress)
    frame = data.frame
    given = frame[list(ATTRIBUTES)].to_numpy(np.int8)
    flags = label_errors.confident_learning(given, probs)
    result = label_errors.searched(lp, frame.index, given, flags, probs)
    if truth is not None:
        clean = clean_labels(truth).loc[frame.index].to_numpy(np.int8)
        drawn = [a in truth["drawn_attributes"] for a in ATTRIBUTES]
        found = {
            "confident_learning": label_errors.score(flags, given, clean, ATTRIBUTES),
            "confident_disagreement": label_errors.score(
                label_errors.confident_disagreement(given, probs), given, clean, ATTRIBUTES
            ),
        }
        result.summary["against_planted_noise"] = {
            name: {k: s[k] for k in ("flagged", "wrong", "precision", "recall")} for name, s in found.items()
        }
        result.scores = pd.DataFrame(
            [
                {"finder": name, "attribute": a, "drawn": drawn[k], **s["per_attribute"][a]}
                for name, s in found.items()
                for k, a in enumerate(ATTRIBUTES)
            ]
        )
    return result
