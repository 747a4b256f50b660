"""Evaluation measures: per-attribute accuracy and friends, the majority baseline, tuned thresholds, fairness.

All functions take 0/1 labels and logits (or scores) as (images, targets) arrays.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve


def tune_thresholds(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per target, the logit threshold that maximises accuracy on these labels (val)."""
    thresholds = np.zeros(logits.shape[1])
    for k in range(logits.shape[1]):
        order = np.argsort(logits[:, k])
        s, y = logits[order, k], labels[order, k]
        # Accuracy when everything above position i is positive: negatives below + positives above.
        neg_below = np.concatenate([[0], np.cumsum(1 - y)])
        pos_above = y.sum() - np.concatenate([[0], np.cumsum(y)])
        best = int(np.argmax(neg_below + pos_above))
        if best == 0:
            thresholds[k] = s[0] - 1.0
        elif best == len(s):
            thresholds[k] = s[-1] + 1.0
        else:
            thresholds[k] = (s[best - 1] + s[best]) / 2
    return thresholds


def per_target(logits: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, train_rates: np.ndarray) -> dict:
    """Accuracy, precision, recall, F1, balanced accuracy, rates and the majority baseline, per target."""
    pred = logits > thresholds
    y = labels.astype(bool)
    tp = (pred & y).sum(0)
    tn = (~pred & ~y).sum(0)
    fp = (pred & ~y).sum(0)
    fn = (~pred & y).sum(0)
    n = len(labels)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    majority_positive = train_rates >= 0.5
    baseline = np.where(majority_positive, y.mean(0), 1 - y.mean(0))
    return {
        "accuracy": (tp + tn) / max(n, 1),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "balanced_accuracy": (recall + specificity) / 2,
        "positive_rate": y.mean(0),
        "predicted_positive_rate": pred.mean(0),
        "majority_baseline": baseline,
        "tp": tp,
        "tn": tn,
        "fp": fp,
        "fn": fn,
    }


def group_fair(logits: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, group: np.ndarray) -> dict:
    """Per target: mean(acc_a, acc_b) - |acc_a - acc_b| over the two groups (men and women by default)."""
    pred = logits > thresholds
    correct = pred == labels.astype(bool)
    g = group.astype(bool)
    acc_a = correct[g].mean(0) if g.any() else np.full(labels.shape[1], np.nan)
    acc_b = correct[~g].mean(0) if (~g).any() else np.full(labels.shape[1], np.nan)
    return {"accuracy_group": acc_a, "accuracy_other": acc_b, "fair_score": (acc_a + acc_b) / 2 - np.abs(acc_a - acc_b)}


def curves(scores: np.ndarray, labels: np.ndarray) -> dict:
    """ROC and precision-recall curves of one target (empty when only one class is present)."""
    if labels.min() == labels.max():
        return {"roc": [], "pr": [], "auc": None}
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
    keep_pr = np.unique(np.linspace(0, len(recall) - 1, min(len(recall), 200)).astype(int))
    return {
        "roc": list(zip(fpr[keep].round(4), tpr[keep].round(4), strict=True)),
        "pr": list(zip(recall[keep_pr].round(4), precision[keep_pr].round(4), strict=True)),
        "auc": float(roc_auc_score(labels, scores)),
    }


def accuracy_where(predicted: np.ndarray, labels: np.ndarray, counted: np.ndarray) -> np.ndarray:
    """Per target, the accuracy over the labels ``counted`` marks (for instance, those not flagged as errors)."""
    hits = ((predicted == labels.astype(bool)) & counted).sum(0)
    return hits / np.maximum(counted.sum(0), 1)
