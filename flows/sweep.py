"""The sweep flow: a grid of params overrides, each point a DVC experiment on DVC's own queue.

Every point is queued (`dvc exp run --queue -S ...`) and DVC's queue workers
(`dvc queue start -j N`) run them in temporary folders, so the workspace and its
params.yaml stay as they were. A failed point is reported and the others go on. The
comparison ranks the points by validation accuracy, so the test split is not used
to choose.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows import queue, results


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
    """Completed points best first (val mean accuracy), then the failed ones; the best marked."""
    done = sorted((r for r in rows if r["status"] == "completed"), key=lambda r: -r["val_mean_accuracy"])
    failed = [r for r in rows if r["status"] != "completed"]
    return [{"best": "★" if i == 0 else "", **r} for i, r in enumerate(done)] + [{"best": "", **r} for r in failed]


@flow(name="faceattrs-sweep", log_prints=True)
def sweep(grid: list[str], repo: str = ".", prefix: str | None = None, jobs: int = 1) -> list[dict]:
    """Run every point of ``grid`` (``["loss.gamma=[0,1,2,3]", "augment.mixup_alpha=[0,0.2]"]``) as a DVC experiment.

    Experiments are named ``<prefix>-<values>``; the default prefix is the start time,
    so running the same grid again makes new experiments instead of clashing with old ones.
    ``jobs`` experiments run at a time.
    """
    logger = get_run_logger()
    prefix = prefix or time.strftime("sweep%m%d-%H%M%S")
    root = Path(repo).resolve()
    named = [(point_name(prefix, point), point) for point in points(parse_grid(grid))]
    for name, point in named:
        overrides = [f"{key}={value}" for key, value in point.items()]
        logger.info(f"queue {name}: {' '.join(overrides)}")
        queue.enqueue(root, name, overrides)
    queue.start(root, jobs)
    progress = create_progress_artifact(0.0, key="sweep-progress", description="Points of the sweep finished")
    last: dict[str, str] = {}

    def tick(states: dict[str, dict]) -> None:
        for name, row in states.items():
            if last.get(name) != row["state"]:
                logger.info(f"point {name}: {row['state']}")
                last[name] = row["state"]
        finished = sum(row["state"] not in queue.RUNNING for row in states.values())
        update_progress_artifact(progress, 100.0 * finished / len(states))

    final = queue.wait(root, [name for name, _ in named], every=3.0, tick=tick)
    evaluate_metrics = results.evaluate_metrics(root).relative_to(root).as_posix()
    rows = []
    for name, point in named:
        state = final[name]
        row = {"experiment": name, **point}
        figures = queue.headline(state["metrics"], evaluate_metrics) if state["state"] == "success" else None
        if figures:
            row.update(status="completed", **figures)
        else:
            row.update(status=f"failed: {state['error'] or state['state']}"[:200])
            logger.error(f"point {name} failed")
        rows.append(row)
    table = comparison(rows)
    create_table_artifact(
        table,
        key="sweep-comparison",
        description="Each point of the grid as a DVC experiment, best validation mean accuracy first (★)",
    )
    failed = [r["experiment"] for r in rows if r["status"] != "completed"]
    create_markdown_artifact(
        f"# Sweep over {', '.join(parse_grid(grid))}\n\n{len(rows) - len(failed)} of {len(rows)} points completed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + ".\n\nCompare them with "
        "`dvc exp show --only-changed` or `dvc plots diff " + " ".join(name for name, _ in named) + "`.\n",
        key="sweep-summary",
    )
    return table
