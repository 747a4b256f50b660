"""The sweep flow: a grid of params overrides, each point a DVC experiment, on DVC's own queue or a Prefect work pool.

Without a pool every point is queued (`dvc exp run --queue -S ...`) and DVC's queue
workers (`dvc queue start -j N`) run them in temporary folders. With a pool each point
is a flow run of a deployment on it: a worker, on this machine or another, clones the
project's git remote at the sweep's commit, runs the point there and pushes the
experiment back (flows/point.py). Either way the workspace and its params.yaml stay as
they were, a failed point is reported and the others go on, and the comparison ranks
the points by validation accuracy, so the test split is not used to choose.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows import clone, pool, queue, results
from flows.grid import checked, point_name, point_overrides, points


def comparison(rows: list[dict]) -> list[dict]:
    """Completed points best first (val mean accuracy), then the failed ones; the best marked."""
    done = sorted((r for r in rows if r["status"] == "completed"), key=lambda r: -r["val_mean_accuracy"])
    failed = [r for r in rows if r["status"] != "completed"]
    return [{"best": "★" if i == 0 else "", **r} for i, r in enumerate(done)] + [{"best": "", **r} for r in failed]


def _on_queue(
    root: Path, named: list[tuple[str, dict]], fixed: list[str], jobs: int, progress, logger
) -> dict[str, dict]:
    """Run the points on DVC's queue; each one's state ("success" or else), metrics and error."""
    for name, point in named:
        overrides = point_overrides(fixed, point)
        logger.info(f"queue {name}: {' '.join(overrides)}")
        queue.enqueue(root, name, overrides)
    queue.start(root, jobs)
    last: dict[str, str] = {}

    def tick(states: dict[str, dict]) -> None:
        for name, row in states.items():
            if last.get(name) != row["state"]:
                logger.info(f"point {name}: {row['state']}")
                last[name] = row["state"]
        finished = sum(row["state"] not in queue.RUNNING for row in states.values())
        update_progress_artifact(progress, 100.0 * finished / len(states))

    return queue.wait(root, [name for name, _ in named], every=3.0, tick=tick)


def _on_pool(
    root: Path, named: list[tuple[str, dict]], fixed: list[str], work_pool: str, git_remote: str, progress, logger
) -> tuple[dict[str, dict], str]:
    """Run the points as flow runs on ``work_pool``; each one's state, metrics and error, and the git remote's URL."""
    url = clone.remote_url(root, git_remote)
    commit = clone.head_commit(root)
    clone.ensure_on_remote(root, url, commit)
    changed = clone.uncommitted(root)
    if changed:
        logger.warning(
            f"uncommitted changes in {', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} are not part "
            f"of the sweep: every point runs commit {commit[:10]} as the git remote has it"
        )
    if pool.check_pool(work_pool) == 0:
        logger.warning(f"no worker of pool {work_pool!r} is online: the points wait until one starts")
    deployment = pool.deploy(work_pool, url, commit)
    logger.info(f"deployed {deployment} from {url} at {commit[:10]} to pool {work_pool!r}")
    runs = {}
    for name, point in named:
        overrides = point_overrides(fixed, point)
        logger.info(f"submit {name}: {' '.join(overrides)}")
        runs[name] = pool.submit(
            deployment, name, {"git_url": url, "commit": commit, "name": name, "overrides": overrides}
        )
    last: dict[str, str] = {}

    def tick(states: dict) -> None:
        for name, state in states.items():
            label = state.name if state is not None else "Pending"
            if last.get(name) != label:
                logger.info(f"point {name}: {label}")
                last[name] = label
        finished = sum(state is not None and state.is_final() for state in states.values())
        update_progress_artifact(progress, 100.0 * finished / len(states))

    final = pool.wait(runs, every=3.0, tick=tick)
    completed = [name for name, state in final.items() if state.is_completed()]
    gathered = clone.gather(url, commit, completed, log=logger.info) if completed else {}
    outcome = {}
    for name, state in final.items():
        if name in gathered:
            outcome[name] = {"state": "success", "metrics": gathered[name], "error": ""}
        else:
            error = (state.message or state.name) if not state.is_completed() else "not found on the git remote"
            outcome[name] = {"state": state.name.lower(), "metrics": {}, "error": error}
    return outcome, url


@flow(name="faceattrs-sweep", log_prints=True)
def sweep(
    grid: list[str],
    fixed: list[str] | None = None,
    repo: str = ".",
    prefix: str | None = None,
    jobs: int = 1,
    work_pool: str | None = None,
    git_remote: str = "origin",
) -> list[dict]:
    """Run every point of ``grid`` (``["loss.gamma=[0,1,2,3]", "augment.mixup_alpha=[0,0.2]"]``) as a DVC experiment,
    each with the ``fixed`` overrides first (``["data.source=local"]``).

    Experiments are named ``<prefix>-<values>``; the default prefix is the start time,
    so running the same grid again makes new experiments instead of clashing with old ones.
    Without ``work_pool``, DVC's queue runs ``jobs`` experiments at a time here; with it,
    each point is a flow run on that pool, cloned from ``git_remote`` at the current commit.
    """
    # Parameters may come from anyone who reaches the Prefect API: each one a params key, before DVC sees it.
    values = checked(grid, fixed or [])
    logger = get_run_logger()
    prefix = prefix or time.strftime("sweep%m%d-%H%M%S")
    root = Path(repo).resolve()
    named = [(point_name(prefix, point), point) for point in points(values)]
    progress = create_progress_artifact(0.0, key="sweep-progress", description="Points of the sweep finished")
    if work_pool:
        final, url = _on_pool(root, named, fixed or [], work_pool, git_remote, progress, logger)
        fetch = f"`dvc exp pull {git_remote} <name>` brings one home ({url})"
    else:
        final = _on_queue(root, named, fixed or [], jobs, progress, logger)
        fetch = "they are in this workspace's experiments"
    evaluate_metrics = results.evaluate_metrics(root).relative_to(root).as_posix()
    rows = []
    for name, point in named:
        state = final[name]
        row = {"experiment": name, **point}
        figures = queue.headline(state["metrics"], evaluate_metrics) if state["state"] == "success" else None
        if figures:
            row.update(status="completed", **figures)
        else:
            row.update(status=f"failed: {state['error'] or state['state']}"[:300])
            logger.error(f"point {name} failed: {state['error'] or state['state']}")
        rows.append(row)
    table = comparison(rows)
    create_table_artifact(
        table,
        key="sweep-comparison",
        description="Each point of the grid as a DVC experiment, best validation mean accuracy first (★)",
    )
    failed = [r["experiment"] for r in rows if r["status"] != "completed"]
    create_markdown_artifact(
        f"# Sweep over {', '.join(values)}\n\n{len(rows) - len(failed)} of {len(rows)} points completed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
        + f"; {fetch}.\n\nCompare them with "
        "`dvc exp show --only-changed` or `dvc plots diff " + " ".join(name for name, _ in named) + "`.\n",
        key="sweep-summary",
    )
    return table
