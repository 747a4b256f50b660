"""The evaluation's files: metrics for `dvc metrics`, plot data for `dvc plots`, a chart and a Markdown report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from faceattrs.cleaning import label_errors
from faceattrs.core import atomic
from faceattrs.core.params import EvaluateParams
from faceattrs.data.splits import OFFICIAL_TEST
from faceattrs.evaluation.evaluate import headline, metrics_json, per_attribute_table
from faceattrs.reports.flagged import flagged_sheet
from faceattrs.reports.markdown import markdown_table
from faceattrs.reports.pictures import contact_sheet, save_figure


def bar_chart(table: pd.DataFrame, path: Path) -> None:
    """Per-attribute test accuracy against the majority baseline (and the noise ceiling on synthetic data)."""
    fig = Figure(figsize=(max(6, 0.32 * len(table)), 4.5), dpi=110)
    ax = fig.subplots()
    x = range(len(table))
    ax.bar(x, table["accuracy"], color="#4C72B0", label="model")
    ax.scatter(x, table["majority_baseline"], color="#C44E52", marker="_", s=140, zorder=3, label="majority class")
    if "noise_ceiling" in table:
        ax.scatter(x, table["noise_ceiling"], color="#55A868", marker="_", s=140, zorder=3, label="noise ceiling")
    ax.set_xticks(list(x), table["attribute"], rotation=90, fontsize=7)
    ax.set_ylim(max(0.0, float(table[["accuracy", "majority_baseline"]].min().min()) - 0.05), 1.0)
    ax.set_ylabel("test accuracy")
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def curve_rows(results: dict, kind: str, x: str, y: str) -> pd.DataFrame:
    rows = [{"attribute": name, x: a, y: b} for name, c in results["test"]["curves"].items() for a, b in c[kind]]
    return pd.DataFrame(rows, columns=["attribute", x, y])


def label_issue_scores(results: dict) -> pd.DataFrame:
    """Per attribute, precision and recall of each way of flagging labels against the planted noise."""
    rows = []
    for finder, found in results["label_issue_scores"].items():
        for attribute, s in found["per_attribute"].items():
            rows.append({"finder": finder, "attribute": attribute, **s})
    return pd.DataFrame(rows)


def write_reports(results: dict, params: EvaluateParams, out: Path, shard_dir: Path) -> dict:
    """Every file of the evaluate stage in ``out``; returns the summary (summary.json, of which metrics.json holds
    the headline)."""
    table = per_attribute_table(results)
    summary = metrics_json(results)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "summary.json", summary)
    atomic.write_json(out / "metrics.json", headline(summary))
    atomic.write_text(out / "per_attribute.csv", table.to_csv(index=False))
    atomic.write_text(out / "roc.csv", curve_rows(results, "roc", "fpr", "tpr").to_csv(index=False))
    atomic.write_text(
        out / "precision_recall.csv", curve_rows(results, "pr", "recall", "precision").to_csv(index=False)
    )
    # One file per attribute: DVC draws each file in a plotted folder as its own confusion matrix.
    with atomic.atomic_dir(out / "confusion") as tmp:
        for name, rows in results["confusion"].items():
            rows.to_csv(tmp / f"{name}.csv", index=False)
    atomic.write_json(
        out / "thresholds.json",
        {n: round(float(t), 6) for n, t in zip(results["targets"], results["thresholds"], strict=True)},
    )
    bar_chart(table, out / "accuracy.png")
    atomic.write_text(out / "label_issues.csv", results["label_issues"].to_csv(index=False))
    flagged_sheet(results["label_issues"], shard_dir, out / "label_issues.png", "labels flagged as likely wrong")
    contact_sheet(results["saliency"], out / "saliency.png", thumb=(96, 120))
    scores = label_issue_scores(results) if "label_issue_scores" in results else None
    # Written on every dataset (only a header where no truth is known), so DVC finds every output.
    atomic.write_text(
        out / "label_issue_scores.csv",
        (scores if scores is not None else pd.DataFrame(columns=label_errors.SCORE_COLUMNS)).to_csv(index=False),
    )
    atomic.write_text(out / "report.md", markdown_report(summary, table, params, scores))
    return summary


def _official_lines(summary: dict) -> list[str]:
    """The official test partition's figure, and how far the cleaned test split is from it."""
    o = summary.get(OFFICIAL_TEST)
    if o is None:
        return []
    lines = [
        f"Official test partition, whole (the set published CelebA results are measured on): mean accuracy "
        f"**{o['mean_accuracy']:.4f}** over {o['images']} images, labels as published, against the majority-class "
        f"baseline {o['majority_baseline']:.4f}; gender-fair score {o['gender_fair_score']:.4f}. Compare this "
        "figure with the literature's.",
        "",
        f"Cleaning left {o['left_out_by_cleaning']} of these images out of the cleaned test split below"
        + (f" ({o['unreadable']} more were unreadable)" if o["unreadable"] else "")
        + f"; {o['copies_in_training']} have a duplicate in the cleaned training or validation split, "
        "leakage the official figure contains",
    ]
    if o["in_training"]:
        lines[-1] += f", and {o['in_training']} are themselves in those splits (the split is not the official one)"
    lines[-1] += "."
    return [*lines, ""]


def markdown_report(summary: dict, table: pd.DataFrame, params: EvaluateParams, scores: pd.DataFrame | None) -> str:
    t = summary["test"]
    lines = [
        "# Evaluation report",
        "",
        *_official_lines(summary),
        f"Cleaned test split: mean accuracy **{t['mean_accuracy']:.4f}** against the majority-class baseline "
        f"{t['majority_baseline']:.4f}; gender-fair score {t['gender_fair_score']:.4f}; "
        f"thresholds {params.thresholds}.",
    ]
    if "noise_ceiling_drawn" in t:
        lines.append(
            f"On the attributes the synthetic generator draws: {t['mean_accuracy_drawn']:.4f}, where the planted "
            f"label noise allows at most {t['noise_ceiling_drawn']:.4f}."
        )
    lines += [
        "",
        "## Labels that look wrong",
        "",
        f"Confident learning (cleanlab) on the model's out-of-sample probabilities flags {t['flagged_labels']} "
        f"test labels and {summary['val']['flagged_labels']} val labels as likely wrong (all of them in "
        f"[label_issues.csv](label_issues.csv)). Test mean accuracy over the labels it does not flag: "
        f"{t['mean_accuracy_unflagged']:.4f}.",
        "",
        "![flagged labels](label_issues.png)",
    ]
    if scores is not None:
        overall = {name: t[f"label_issues_{name}"] for name in scores["finder"].unique()}
        lines += [
            "",
            "Against the labels the synthetic generator flipped (test split): confident learning beside the simple "
            f"baseline (a label the model contradicts with probability {label_errors.BASELINE_CONFIDENCE} or more); "
            f"per attribute in [label_issue_scores.csv](label_issue_scores.csv). Against the labels before the noise, "
            f"the model scores {t['clean_labels_accuracy_drawn']:.4f} on the drawn attributes.",
            "",
            markdown_table(
                ["finder", "flagged", "wrong labels", "precision", "recall"],
                [(n, s["flagged"], s["wrong"], s["precision"], s["recall"]) for n, s in overall.items()],
            ),
        ]
    by_gap = table.assign(gap=(table["accuracy_in_group"] - table["accuracy_out_of_group"]).abs()).sort_values(
        "gap", ascending=False, kind="stable"
    )
    group = params.fair_group
    lines += [
        "",
        f"## By group: {group} and not {group}",
        "",
        f"Test accuracy of each target among images labelled {group} and among the others, largest gap first; "
        f"the group-fair score is their mean less their gap (evaluate.fair_group).",
        "",
        markdown_table(
            ["attribute", f"accuracy, {group}", f"accuracy, not {group}", "gap", "group-fair score"],
            [
                (r.attribute, r.accuracy_in_group, r.accuracy_out_of_group, round(r.gap, 5), r.gender_fair_score)
                for r in by_gap.itertuples(index=False)
            ],
        ),
    ]
    lines += [
        "",
        "## Per attribute",
        "",
        "![per-attribute accuracy](accuracy.png)",
        "",
        markdown_table(list(table.columns), table.itertuples(index=False)),
    ]
    return "\n".join(lines)
