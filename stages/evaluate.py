"""DVC stage evaluate: measures on val and test, thresholds tuned on val, plots data and a Markdown report.

    python -m stages.evaluate --model data/models/model.pt --shards data/shards --raw data/raw --out reports/evaluate
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from faceattrs import atomic, evaluation, reports, stagecli, synthetic  # noqa: E402
from faceattrs.provenance import provenance  # noqa: E402


def bar_chart(table: pd.DataFrame, path: Path) -> None:
    """Per-attribute test accuracy against the majority baseline (and the noise ceiling on synthetic data)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(table)), 4.5), dpi=110)
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
    with atomic.atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def curve_rows(results: dict, kind: str, x: str, y: str) -> pd.DataFrame:
    rows = [{"attribute": name, x: a, y: b} for name, c in results["test"]["curves"].items() for a, b in c[kind]]
    return pd.DataFrame(rows, columns=["attribute", x, y])


def main() -> None:
    p = stagecli.parser(__doc__)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--shards", type=Path, required=True)
    p.add_argument("--raw", type=Path, required=True, help="the raw folder, for the synthetic ground truth if any")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    params = stagecli.params_of(args).evaluate
    truth_file = args.raw / synthetic.TRUTH_FILE
    truth = synthetic.read_truth(args.raw) if truth_file.exists() else None
    results = evaluation.evaluate(args.model, args.shards, params, truth)
    table = evaluation.per_attribute_table(results)
    summary = evaluation.metrics_json(results)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    reports.write_json(out / "metrics.json", summary)
    atomic.write_text(out / "per_attribute.csv", table.to_csv(index=False))
    atomic.write_text(out / "roc.csv", curve_rows(results, "roc", "fpr", "tpr").to_csv(index=False))
    atomic.write_text(out / "precision_recall.csv", curve_rows(results, "pr", "recall", "precision").to_csv(index=False))
    # One file per attribute: DVC draws each file in a plotted folder as its own confusion matrix.
    with atomic.atomic_dir(out / "confusion") as tmp:
        for name, rows in results["confusion"].items():
            rows.to_csv(tmp / f"{name}.csv", index=False)
    reports.write_json(out / "thresholds.json", {n: round(float(t), 6) for n, t in zip(results["targets"], results["thresholds"])})
    reports.write_json(out / "run.json", provenance(params.model_dump(mode="json")))
    bar_chart(table, out / "accuracy.png")
    t = summary["test"]
    lines = [
        "# Evaluation report", "",
        f"Test mean accuracy **{t['mean_accuracy']:.4f}** against the majority-class baseline {t['majority_baseline']:.4f}; "
        f"gender-fair score {t['gender_fair_score']:.4f}; thresholds {params.thresholds}.",
    ]
    if "noise_ceiling_drawn" in t:
        lines.append(f"On the attributes the synthetic generator draws: {t['mean_accuracy_drawn']:.4f}, where the planted "
                     f"label noise allows at most {t['noise_ceiling_drawn']:.4f}.")
    lines += ["", "![per-attribute accuracy](accuracy.png)", "",
              reports.markdown_table(list(table.columns), table.itertuples(index=False))]
    atomic.write_text(out / "report.md", "\n".join(lines))
    print(f"evaluate: test mean accuracy {t['mean_accuracy']:.4f} (majority baseline {t['majority_baseline']:.4f})")


if __name__ == "__main__":
    stagecli.run(main, "evaluate")
