"""The labels stage's work: flag likely wrong training labels from out-of-fold models, and say what training sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceattrs.cleaning import label_errors
from faceattrs.core.params import LabelsParams
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.synthetic.truth import clean_labels
from faceattrs.training.build import TrainingParams
from faceattrs.training.folds import out_of_fold
from faceattrs.training.loader import ShardDataset
from faceattrs.training.targets import Targets


@dataclass
class LabelSearch:
    seen: pd.DataFrame  # the training split's labels as training sees them (int8; -1 left out), by image_id
    flagged: pd.DataFrame  # one row per flagged label: image_id, attribute, given, suggested, probability
    summary: dict
    scores: pd.DataFrame | None  # per attribute and finder, against the planted noise (synthetic data only)


def search(
    lp: LabelsParams, training: TrainingParams, shard_dir: Path, truth: dict | None, progress: bool = True
) -> LabelSearch:
    """Run ``labels.method`` on the training split (its folds' models trained as ``training`` says) and apply
    ``labels.policy``."""
    if lp.method == "none":
        frame = ShardDataset(shard_dir, "train", Targets(ATTRIBUTES)).frame
        given = frame[list(ATTRIBUTES)].to_numpy(np.int8)
        flags = np.zeros(given.shape, dtype=bool)
        probs = np.full(given.shape, np.nan, dtype=np.float32)
    else:
        probs, data, _ = out_of_fold(training, shard_dir, lp.folds, lp.epochs, progress)
        frame = data.frame
        given = frame[list(ATTRIBUTES)].to_numpy(np.int8)
        flags = label_errors.confident_learning(given, probs)
    seen = pd.DataFrame(label_errors.apply_policy(given, flags, lp.policy), index=frame.index, columns=list(ATTRIBUTES))
    flagged = label_errors.flagged_table(flags, given, probs, frame.index, ATTRIBUTES)
    summary = {
        "method": lp.method,
        "policy": lp.policy,
        "images": len(frame),
        "flagged_labels": int(flags.sum()),
        "images_with_a_flag": int(flags.any(axis=1).sum()),
        "labels_changed": int((seen.to_numpy() != given).sum()),
    }
    scores = None
    if truth is not None and lp.method != "none":
        clean = clean_labels(truth).loc[frame.index].to_numpy(np.int8)
        drawn = [a in truth["drawn_attributes"] for a in ATTRIBUTES]
        found = {
            "confident_learning": label_errors.score(flags, given, clean, ATTRIBUTES),
            "confident_disagreement": label_errors.score(
                label_errors.confident_disagreement(given, probs), given, clean, ATTRIBUTES
            ),
        }
        summary["against_planted_noise"] = {
            name: {k: s[k] for k in ("flagged", "wrong", "precision", "recall")} for name, s in found.items()
        }
        scores = pd.DataFrame(
            [
                {"finder": name, "attribute": a, "drawn": drawn[k], **s["per_attribute"][a]}
                for name, s in found.items()
                for k, a in enumerate(ATTRIBUTES)
            ]
        )
    return LabelSearch(seen, flagged, summary, scores)
