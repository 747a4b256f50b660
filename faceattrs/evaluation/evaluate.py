"""Evaluation of a trained model on val and test: the measures, thresholds and the synthetic noise ceiling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import expit

from faceattrs.cleaning import label_errors
from faceattrs.core.errors import InputError
from faceattrs.core.params import EvaluateParams
from faceattrs.data import shards
from faceattrs.data.splits import OFFICIAL_TEST, OFFICIAL_TEST_FIGURES
from faceattrs.evaluation import metrics
from faceattrs.prediction import saliency
from faceattrs.prediction.predictor import Predictor, split_logits
from faceattrs.synthetic.truth import clean_labels
from faceattrs.training.loader import ShardDataset
from faceattrs.training.targets import Targets


def _measures(predictor: Predictor, scored: tuple, thresholds: np.ndarray, params: EvaluateParams) -> dict:
    """One split's measures per target: the classification figures and the group-fair score."""
    logits, labels, frame = scored
    measures = metrics.per_target(logits, labels, thresholds, predictor.positive_rates)
    if params.fair_group not in frame:
        raise InputError(f"evaluate.fair_group: {params.fair_group!r} is not an attribute")
    measures.update(metrics.group_fair(logits, labels, thresholds, frame[params.fair_group].to_numpy()))
    return measures


def _cleaned_split(predictor: Predictor, scored: tuple, thresholds: np.ndarray, params: EvaluateParams) -> dict:
    """A cleaned split's measures, curves, and the labels the model's out-of-sample probabilities call wrong
    (it never trained on val or test)."""
    logits, labels, _ = scored
    measures = _measures(predictor, scored, thresholds, params)
    measures["curves"] = {
        name: metrics.curves(logits[:, k], labels[:, k])
        for k, name in enumerate(predictor.targets)
        if name in params.curves_for or len(predictor.targets) == 1
    }
    flags = label_errors.confident_learning(labels, expit(logits))
    measures["flags"] = flags
    measures["accuracy_unflagged"] = metrics.accuracy_where(logits > thresholds, labels, ~flags)
    return measures


def _confusion(predictor: Predictor, scored: tuple, thresholds: np.ndarray, curved: dict) -> dict:
    """The test split's predicted against actual classes, for the attributes with curves."""
    logits, labels, _ = scored
    predicted = logits > thresholds
    return {
        name: pd.DataFrame(
            {
                "actual": np.where(labels[:, k] == 1, "yes", "no"),
                "predicted": np.where(predicted[:, k], "yes", "no"),
            }
        )
        for k, name in enumerate(predictor.targets)
        if name in curved
    }


def _against_truth(predictor: Predictor, scored: tuple, results: dict, truth: dict) -> dict:
    """On synthetic data: the noise ceiling, accuracy on the clean labels and how well flags find planted noise."""
    logits, labels, frame = scored
    target = Targets(predictor.targets, predictor.expression)
    clean = target.labels(clean_labels(truth).loc[frame.index])
    flags = results["test"]["flags"]
    baseline = label_errors.confident_disagreement(labels, expit(logits))
    drawn = set(truth["drawn_attributes"])
    return {
        # A perfect predictor of the clean labels scores this against the noisy published ones.
        "noise_ceiling": (clean == labels).mean(axis=0),
        "accuracy_clean_labels": ((logits > results["thresholds"]) == clean).mean(axis=0),
        "label_issue_scores": {
            "confident_learning": label_errors.score(flags, labels, clean, predictor.targets),
            "confident_disagreement": label_errors.score(baseline, labels, clean, predictor.targets),
        },
        "drawn": np.array(
            [
                name in drawn if target.expression is None else set(target.attributes) <= drawn
                for name in predictor.targets
            ]
        ),
    }


def evaluate(model_file: Path, shard_dir: Path, params: EvaluateParams, truth: dict | None = None) -> dict:
    """Every measure of the evaluate stage: val and test (the cleaned splits), and the official test partition
    as published where the shards hold it; thresholds from val."""
    predictor = Predictor(model_file, "cuda" if torch.cuda.is_available() else "cpu", tta=params.tta)
    scored = {split: split_logits(predictor, shard_dir, split) for split in ("val", "test")}
    thresholds = (
        metrics.tune_thresholds(scored["val"][0], scored["val"][1])
        if params.thresholds == "tuned"
        else np.zeros(len(predictor.targets))
    )
    results: dict = {"targets": list(predictor.targets), "thresholds": thresholds}
    test_set = ShardDataset(shard_dir, "test", Targets(predictor.targets, predictor.expression))
    logits, labels, _ = scored["test"]
    results["saliency"] = saliency.sheet_rows(predictor, test_set, logits, labels, params.curves_for)
    for split in ("val", "test"):
        results[split] = _cleaned_split(predictor, scored[split], thresholds, params)
    official = shards.read_official_test(shard_dir)
    if official is not None:
        whole = split_logits(predictor, shard_dir, OFFICIAL_TEST)
        figures = {k: official[k] for k in OFFICIAL_TEST_FIGURES}
        results[OFFICIAL_TEST] = {**_measures(predictor, whole, thresholds, params), "figures": figures}
    results["confusion"] = _confusion(predictor, scored["test"], thresholds, results["test"]["curves"])
    results["label_issues"] = pd.concat(
        [
            label_errors.flagged_table(
                results[split]["flags"],
                scored[split][1],
                expit(scored[split][0]),
                scored[split][2].index,
                predictor.targets,
            ).assign(split=split)
            for split in ("val", "test")
        ],
        ignore_index=True,
    )
    if truth is not None:
        results.update(_against_truth(predictor, scored["test"], results, truth))
    return results


def metrics_json(results: dict) -> dict:
    """The evaluation's summary (summary.json): the official test partition first (whole, as published results
    are measured), then the cleaned test and val splits; ``headline`` takes metrics.json out of it."""
    out: dict = {}
    if OFFICIAL_TEST in results:
        out[OFFICIAL_TEST] = {**results[OFFICIAL_TEST]["figures"], **_means(results[OFFICIAL_TEST])}
    for split in ("test", "val"):
        r = results[split]
        out[split] = {
            **_means(r),
            "mean_f1": round(float(np.mean(r["f1"])), 5),
            # Against the labels confident learning does not flag as likely wrong.
            "mean_accuracy_unflagged": round(float(np.mean(r["accuracy_unflagged"])), 5),
            "flagged_labels": int(r["flags"].sum()),
        }
        if "drawn" in results:
            out[split]["mean_accuracy_drawn"] = round(float(np.mean(r["accuracy"][results["drawn"]])), 5)
    if "noise_ceiling" in results:
        drawn = results["drawn"]
        out["test"]["noise_ceiling_drawn"] = round(float(np.mean(results["noise_ceiling"][drawn])), 5)
        # Against the labels before the planted noise: what the model really learned.
        out["test"]["clean_labels_accuracy_drawn"] = round(float(np.mean(results["accuracy_clean_labels"][drawn])), 5)
        for name, found in results["label_issue_scores"].items():
            out["test"][f"label_issues_{name}"] = {k: found[k] for k in ("flagged", "wrong", "precision", "recall")}
    return out


def _means(r: dict) -> dict:
    """A scored split's per-attribute figures, averaged over the attributes."""
    return {
        "mean_accuracy": round(float(np.mean(r["accuracy"])), 5),
        "majority_baseline": round(float(np.mean(r["majority_baseline"])), 5),
        "gender_fair_score": round(float(np.nanmean(r["fair_score"])), 5),
        "mean_balanced_accuracy": round(float(np.mean(r["balanced_accuracy"])), 5),
    }


# What metrics.json (the evaluate stage's `dvc metrics`) keeps of the summary: the figures people compare
# experiments by. The rest (f1, flags, label-error scores) lives in summary.json, and the per-attribute figures
# in per_attribute.csv, so that `dvc exp show --only-changed` stays a screen wide.
HEADLINE = {
    OFFICIAL_TEST: ("images", "mean_accuracy", "majority_baseline"),
    "test": (
        "mean_accuracy",
        "majority_baseline",
        "gender_fair_score",
        "mean_balanced_accuracy",
        "mean_accuracy_drawn",
        "noise_ceiling_drawn",
    ),
    "val": ("mean_accuracy",),
}


def headline(summary: dict) -> dict:
    """The part of ``metrics_json``'s summary that DVC tracks as metrics (``HEADLINE``)."""
    return {
        split: {key: summary[split][key] for key in keys if key in summary[split]}
        for split, keys in HEADLINE.items()
        if split in summary
    }


def per_attribute_table(results: dict) -> pd.DataFrame:
    test = results["test"]
    table = pd.DataFrame(
        {
            "attribute": results["targets"],
            "accuracy": test["accuracy"],
            "majority_baseline": test["majority_baseline"],
            "precision": test["precision"],
            "recall": test["recall"],
            "f1": test["f1"],
            "balanced_accuracy": test["balanced_accuracy"],
            "positive_rate": test["positive_rate"],
            "predicted_positive_rate": test["predicted_positive_rate"],
            # Accuracy within evaluate.fair_group and outside it (men and women by default).
            "accuracy_in_group": test["accuracy_group"],
            "accuracy_out_of_group": test["accuracy_other"],
            "gender_fair_score": test["fair_score"],
            "threshold": results["thresholds"],
        }
    )
    if OFFICIAL_TEST in results:
        table["official_test_accuracy"] = results[OFFICIAL_TEST]["accuracy"]
        table["official_test_majority_baseline"] = results[OFFICIAL_TEST]["majority_baseline"]
    if "noise_ceiling" in results:
        table["noise_ceiling"] = results["noise_ceiling"]
        table["drawn"] = results["drawn"]
    return table.round(5)
