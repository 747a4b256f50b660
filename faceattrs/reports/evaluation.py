"""The evaluation's files: metrics for `dvc metrics`, plot data for `dvc plots`, a chart and a Markdown report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from faceattrs.core import atomic
from faceattrs.core.params import EvaluateParams
from faceattrs.evaluation.evaluate import metrics_json, per_attribute_table
from faceattrs.reports.markdown import markdown_table
from faceattrs.reports.pictures import save_figure


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


def write_reports(results: dict, params: EvaluateParams, out: Path) -> dict:
    """Every file of the evaluate stage in ``out``; returns the metrics written to metrics.json."""
    table = per_attribute_table(results)
    summary = metrics_json(results)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "metrics.json", summary)
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
        out / "thresholds.json", {n: round(float(t), 6) for n, t in zip(results["targets"], results["thresholds"])}
    )
    bar_chart(table, out / "accuracy.png")
    atomic.write_text(out / "report.md", markdown_report(summary, table, params))
    return summary


def markdown_report(summary: dict, table: pd.DataFrame, params: EvaluateParams) -> str:
    t = summary["test"]
    lines = [
        "# Evaluation report",
        "",
        f"Test mean accuracy **{t['mean_accuracy']:.4f}** against the majority-class baseline "
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
        "![per-attribute accuracy](accuracy.png)",
        "",
        markdown_table(list(table.columns), table.itertuples(index=False)),
    ]
    return "\n".join(lines)
