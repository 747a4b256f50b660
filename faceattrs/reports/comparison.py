"""Experiments and commits side by side: the figures people compare runs by, one row each (`faceattrs compare`)."""

from __future__ import annotations

from faceattrs.reports.markdown import markdown_table

COLUMNS = (
    "run",
    "official test accuracy",
    "test accuracy (cleaned)",
    "gap to the noise ceiling",
    "gender-fair score",
    "training (s)",
)


def row(run: str, evaluate: dict, train_seconds: float | None) -> tuple:
    """One run's figures from the evaluate stage's metrics.json and the train stage's time per epoch."""
    official, test = evaluate.get("official_test", {}), evaluate.get("test", {})
    ceiling, drawn = test.get("noise_ceiling_drawn"), test.get("mean_accuracy_drawn")
    gap = round(ceiling - drawn, 5) if ceiling is not None and drawn is not None else None
    seconds = round(train_seconds) if train_seconds is not None else None
    figures = (official.get("mean_accuracy"), test.get("mean_accuracy"), gap, test.get("gender_fair_score"), seconds)
    return (run, *("-" if value is None else value for value in figures))


def table(rows: list[tuple]) -> str:
    return markdown_table(list(COLUMNS), rows)
