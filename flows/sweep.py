"""The sweep flow: a grid of params overrides, each point a DVC experiment run by the pipeline flow, one after another.

Points run in sequence (one GPU); a failed point is reported and the sweep goes on.
The comparison table marks the best point by validation accuracy, so the test split
is not used to choose.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows import results
from flows.pipeline import pipeline


def parse_grid(specs: list[str]) -> dict[str, list]:
    """``["loss.gamma=[0,1,2]", "augment.mixup_alpha=0.2"]`` as {key: values}; values are YAML/JSON scalars."""
    grid: dict[str, list] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"grid entry {spec!r}: expected key=[v1,v2,...] or key=value")
        text = values.strip()
        try:
            parsed = json.loads(text if text.startswith("[") else f"[{text}]")
        except json.JSONDecodeError:
            parsed = [v.strip() for v in text.strip("[]").split(",") if v.strip()]
        if not parsed:
            raise ValueError(f"grid entry {spec!r}: no values")
        grid[key.strip()] = parsed
    return grid


def points(grid: dict[str, list]) -> list[dict]:
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_name(prefix: str, point: dict) -> str:
    """A DVC experiment name from the point's values (letters, digits, dashes)."""
    parts = [f"{key.split('.')[-1]}{value}" for key, value in point.items()]
    return re.sub(r"[^A-Za-z0-9-]+", "-", "-".join([prefix, *parts])).strip("-").lower()


def comparison(rows: list[dict]) -> list[dict]:
    """Rows with the best finished point (highest val mean accuracy) marked."""
    done = [r for r in rows if r["status"] == "completed"]
    best = max(done, key=lambda r: r["val_mean_accuracy"]) if done else None
    return [{"best": "★" if r is best else "", **r} for r in rows]


@flow(name="faceattrs-sweep", log_prints=True)
def sweep(grid: list[str], repo: str = ".", prefix: str | None = None) -> list[dict]:
    """Run every point of ``grid`` (``["loss.gamma=[0,1,2,3]", "augment.mixup_alpha=[0,0.2]"]``) as a DVC experiment.

    Experiments are named ``<prefix>-<values>``; the default prefix is the start time,
    so running the same grid again makes new experiments instead of clashing with old ones.
    """
    logger = get_run_logger()
    prefix = prefix or time.strftime("sweep%m%d-%H%M%S")
    root = Path(repo).resolve()
    rows = []
    for point in points(parse_grid(grid)):
        name = point_name(prefix, point)
        overrides = [f"{key}={value}" for key, value in point.items()]
        logger.info(f"point {name}: {' '.join(overrides)}")
        state = pipeline.with_options(flow_run_name=name)(
            repo=str(root), overrides=overrides, experiment=name, return_state=True
        )
        row = {"experiment": name, **point}
        if state.is_completed():
            row.update(status="completed", **results.headline(root))
        else:
            row.update(status=f"failed: {state.message or state.name}"[:200])
            logger.error(f"point {name} failed; going on with the next")
        rows.append(row)
    table = comparison(rows)
    create_table_artifact(
        table,
        key="sweep-comparison",
        description="Each point of the grid as a DVC experiment; ★ = best validation mean accuracy",
    )
    failed = [r["experiment"] for r in rows if r["status"] != "completed"]
    create_markdown_artifact(
        f"# Sweep over {', '.join(parse_grid(grid))}\n\n{len(rows) - len(failed)} of {len(rows)} points completed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + ".\n\nCompare them with "
        "`dvc exp show --only-changed` or `dvc plots diff " + " ".join(r["experiment"] for r in rows) + "`.\n",
        key="sweep-summary",
    )
    return table
