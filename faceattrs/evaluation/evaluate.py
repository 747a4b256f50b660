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
from faceattrs.evaluation import metrics
from faceattrs.prediction import saliency
from faceattrs.prediction.predictor import Predictor, split_logits
from faceattrs.synthetic.truth import clean_labels
from faceattrs.training.loader import ShardDataset
from faceattrs.training.targets import Targets


def evaluate(model_file: Path, shard_dir: Path, params: EvaluateParams, truth: dict | None = None) -> dict:
    predictor = Predictor(model_file, "cuda" if torch.cuda.is_available() else "cpu", tta=params.tta)
    target = Targets(predictor.targets, predictor.expression)
    results: dict = {"targets": list(predictor.targets)}
    logits, labels, frames = {}, {}, {}
    for split in ("val", "test"):
        logits[split], labels[split], frames[split] = split_logits(predictor, shard_dir, split)
    thresholds = (
        metrics.tune_thresholds(logits["val"], labels["val"])
        if params.thresholds == "tuned"
        else np.zeros(len(predictor.targets))
    )
    results["thresholds"] = thresholds
    test_set = ShardDataset(shard_dir, "test", target)
    results["saliency"] = saliency.sheet_rows(predictor, test_set, logits["test"], labels["test"], params.curves_for)
    for split in ("val", "test"):
        measures = metrics.per_target(logits[split], labels[split], thresholds, predictor.positive_rates)
        if params.fair_group not in frames[split]:
            raise InputError(f"evaluate.fair_group: {params.fair_group!r} is not an attribute")
        measures.update(
            metrics.group_fair(logits[split], labels[split], thresholds, frames[split][params.fair_group].to_numpy())
        )
        measures["curves"] = {
            name: metrics.curves(logits[split][:, k], labels[split][:, k])
            for k, name in enumerate(predictor.targets)
            if name in params.curves_for or len(predictor.targets) == 1
        }
        # Labels the model's out-of-sample probabilities call likely wrong (it never trained on val or test).
        flags = label_errors.confident_learning(labels[split], expit(logits[split]))
        measures["flags"] = flags
        measures["accuracy_unflagged"] = metrics.accuracy_where(logits[split] > thresholds, labels[split], ~flags)
        results[split] = measures
    predicted = logits["test"] > thresholds
    results["confusion"] = {
        name: pd.DataFrame(
            {
                "actual": np.where(labels["test"][:, k] == 1, "yes", "no"),
                "predicted": np.where(predicted[:, k], "yes", "no"),
            }
        )
        for k, name in enumerate(predictor.targets)
        if name in results["test"]["curves"]
    }
    results["label_issues"] = pd.concat(
        [
            label_errors.flagged_table(
                results[split]["flags"],
                labels[split],
                expit(logits[split]),
                frames[split].index,
                predictor.targets,
            ).assign(split=split)
            for split in ("val", "test")
        ],
        ignore_index=True,
    )
    if truth is not None:
        clean = target.labels(clean_labels(truth).loc[frames["test"].index])
        # A perfect predictor of the clean labels scores this against the noisy published ones.
        results["noise_ceiling"] = (clean == labels["test"]).mean(axis=0)
        results["accuracy_clean_labels"] = ((logits["test"] > thresholds) == clean).mean(axis=0)
        flags = results["test"]["flags"]
        baseline = label_errors.confident_disagreement(labels["test"], expit(logits["test"]))
        results["label_issue_scores"] = {
            "confident_learning": label_errors.score(flags, labels["test"], clean, predictor.targets),
            "confident_disagreement": label_errors.score(baseline, labels["test"], clean, predictor.targets),
        }
        drawn = set(truth["drawn_attributes"])
        results["drawn"] = np.array(
            [
                name in drawn if target.expression is None else set(target.attributes) <= drawn
                for name in predictor.targets
            ]
        )
    return results


def metrics_json(results: dict) -> dict:
    """The metrics file for ``dvc metrics``: the headline first, then per-attribute values."""
    out: dict = {}
    for split in ("test", "val"):
        r = results[split]
        out[split] = {
            "mean_accuracy": round(float(np.mean(r["accuracy"])), 5),
            "majority_baseline": round(float(np.mean(r["majority_baseline"])), 5),
            "gender_fair_score": round(float(np.nanmean(r["fair_score"])), 5),
            "mean_balanced_accuracy": round(float(np.mean(r["balanced_accuracy"])), 5),
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
    accuracy = zip(results["targets"], results["test"]["accuracy"], strict=True)
    out["test_accuracy"] = {n: round(float(a), 5) for n, a in accuracy}
    return out


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
    if "noise_ceiling" in results:
        table["noise_ceiling"] = results["noise_ceiling"]
        table["drawn"] = results["drawn"]
    return table.round(5)
