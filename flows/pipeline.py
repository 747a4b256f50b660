"""The pipeline flow: `dvc repro` (or an experiment with `-S ...`) as one Prefect task per DVC stage, live results.

Each task runs its stage as `dvc repro --single-item STAGE`, in the order of DVC's stage
graph, so its logs and state are that stage's alone. Caching is DVC's: a stage whose
dvc.lock entry did not change is a completed task that says it was up to date. An
experiment applies its overrides to params.yaml as `dvc exp run -S` does, runs the
stages the same way and is saved with `dvc exp save`.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE

from faceattrs.core.overrides import check_all
from flows import dvcrun, results
from flows.dvcrun import PlannedStage, StageRun, plan

# A stage that fetches from the network may succeed on a second try.
FETCH_RETRIES = 2


class StageFailed(RuntimeError):
    """A DVC stage exited with an error; its output is in the task's logs."""


def apply_overrides(repo: Path, overrides: list[str]) -> None:
    """Set ``overrides`` in ``repo``'s params.yaml with DVC's own parser, as `dvc exp run -S` does."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides as apply

    try:
        apply(str(repo / "params.yaml"), overrides)
    except InvalidArgumentError as err:
        raise StageFailed(f"the overrides {' '.join(overrides)}: {err.__cause__ or err}") from None


class _Progress:
    """Training progress in the UI: a progress artifact and a table that follows dvclive's metrics file."""

    def __init__(self, repo: Path, live_metrics: Path, started: float):
        self.repo, self.live_metrics, self.started = repo, live_metrics, started
        self.artifact = None
        self.last = None

    def tick(self) -> None:
        row = results.training_progress(self.repo, self.live_metrics, self.started)
        if row is None or row == self.last:
            return
        self.last = row
        fraction = 100.0 * (row["progress"] or 0.0)
        if self.artifact is None:
            self.artifact = create_progress_artifact(
                fraction, key="training-progress", description="Epochs of the train stage done"
            )
        else:
            update_progress_artifact(self.artifact, fraction)
        create_table_artifact(
            [{k: v for k, v in row.items() if k != "progress"}],
            key="training-epoch",
            description=f"Epoch {row['epoch']} of {row['of']}: losses and mean accuracies",
        )


# The stage is not an input to cache on: DVC does the caching.
@task(task_run_name="{stage.name}", cache_policy=NO_CACHE)
def run_stage(repo: Path, stage: PlannedStage) -> str:
    """Run one stage with DVC, its output into the logs; fail when DVC fails it."""
    logger = get_run_logger()
    progress = _Progress(repo, stage.live_metrics, time.time()) if stage.live_metrics else None
    dvc = StageRun(repo, stage.name)
    try:
        for line in dvc.lines(tick=progress.tick if progress else None):
            if line.strip():
                logger.info(line)
    finally:
        dvc.stop()  # a cancelled flow leaves no DVC running behind it
    if progress:
        progress.tick()
    status = dvc.status()
    if status == "failed":
        raise StageFailed(f"stage {stage.name} failed (dvc exited with {dvc.returncode}); its output is above")
    logger.info(f"stage {stage.name}: {status}")
    return status


def publish_results(repo: Path, against: str = "HEAD") -> None:
    create_table_artifact(
        results.metrics_table(repo),
        key="metrics",
        description="Test accuracy, mean and per attribute, against the majority-class baseline",
    )
    create_markdown_artifact(
        results.metrics_diff_markdown(repo, against), key="metrics-diff", description=f"dvc metrics diff {against}"
    )
    page = results.report_page(repo)
    create_link_artifact(
        page.resolve().as_uri(),
        link_text=str(page.relative_to(repo)),
        key="report",
        description="The pipeline's one-page report, linking the evaluation report",
    )


@flow(name="faceattrs-pipeline", log_prints=True)
def pipeline(repo: str = ".", overrides: list[str] | None = None, experiment: str | None = None) -> dict[str, str]:
    """Reproduce the DVC pipeline in ``repo``; with ``overrides`` (``loss.gamma=3``) or a name, as a DVC experiment."""
    # Parameters may come from anyone who reaches the Prefect API: each one a params key, before DVC sees it.
    overrides = check_all(overrides or [])
    root = Path(repo).resolve()
    stages = plan(root)
    logger = get_run_logger()
    logger.info("stages in DVC's order: " + ", ".join(s.name for s in stages))
    if overrides:
        apply_overrides(root, overrides)
        logger.info("params.yaml: " + " ".join(overrides))
    statuses: dict[str, str] = {}
    for stage in stages:
        runner = run_stage.with_options(retries=FETCH_RETRIES, retry_delay_seconds=5) if stage.fetches else run_stage
        statuses[stage.name] = runner(root, stage)
    if overrides or experiment:
        try:
            saved = dvcrun.run(root, ["exp", "save", *(["-n", experiment] if experiment else [])])
        except dvcrun.DvcError as err:
            raise StageFailed(str(err)) from None
        logger.info(saved.strip())
    publish_results(root)
    return statuses
