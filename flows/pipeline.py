"""The pipeline flow: `dvc repro` (or `dvc exp run -S ...`) as one Prefect task per DVC stage, with live results.

DVC runs the pipeline in one process, exactly as typed by hand; the flow follows its
output and gives each stage its own task, its own logs and its own state, in DVC's
order (from its stage graph). Caching is DVC's alone: a stage whose dvc.lock entry
did not change is a completed task that says it was up to date.
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
from flows import results
from flows.dvcrun import DvcRun, planned_stages

# Stages that fetch from the network and may succeed on a second try.
RETRIED = ("download",)
DOWNLOAD_RETRIES = 2


class StageFailed(RuntimeError):
    """A DVC stage exited with an error; its output is in the task's logs."""


def dvc_args(overrides: list[str], experiment: str | None) -> list[str]:
    """`dvc repro`, or `dvc exp run -S ...` when there are overrides or a name."""
    if not overrides and not experiment:
        return ["repro"]
    args = ["exp", "run"]
    for override in overrides:
        args += ["-S", override]
    if experiment:
        args += ["-n", experiment]
    return args


class _Run:
    """The running DVC command, restartable while no stage has run yet (a retried download)."""

    def __init__(self, repo: Path, args: list[str], stages: list[str]):
        self.repo, self.args, self.stages = repo, args, stages
        # Resolved before DVC starts, so nothing reads the project's DVC state during its run.
        self.live_metrics = results.stage_files(repo, "train", metrics_only=True)[0] if "train" in stages else None
        self.current = DvcRun(args, repo, stages)

    def restart(self) -> DvcRun:
        self.current.stop()
        self.current = DvcRun(self.args, self.repo, self.stages)
        return self.current


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


# The running command is not an input to cache on: DVC does the caching.
@task(task_run_name="{stage}", cache_policy=NO_CACHE)
def run_stage(run: _Run, stage: str) -> str:
    """Follow one stage's output into the logs; fail when DVC fails it."""
    logger = get_run_logger()
    dvc = run.current
    if stage in RETRIED and dvc.ended and dvc.status(stage) == "failed":
        logger.info("retrying: starting the DVC command again")
        dvc = run.restart()
    progress = _Progress(run.repo, run.live_metrics, time.time()) if stage == "train" else None
    for line in dvc.follow(stage, every=2.0, tick=progress.tick if progress else None):
        if line.strip():
            logger.info(line)
    if progress:
        progress.tick()
    status = dvc.status(stage)
    if status == "failed":
        raise StageFailed(f"stage {stage} failed (dvc exited with {dvc.wait()}); its output is above")
    if status == "not run":
        if dvc.wait() != 0:
            said = dvc.output_without_stage()
            logger.error(said)
            raise StageFailed(f"stage {stage} did not run: DVC stopped before it\n{said}")
        logger.info("not part of this run")
    else:
        logger.info(f"stage {stage}: {status}")
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
    stages = planned_stages(root)
    logger = get_run_logger()
    args = dvc_args(overrides, experiment)
    logger.info("dvc " + " ".join(args) + " | stages in DVC's order: " + ", ".join(stages))
    run = _Run(root, args, stages)
    statuses: dict[str, str] = {}
    try:
        for stage in stages:
            runner = (
                run_stage.with_options(retries=DOWNLOAD_RETRIES, retry_delay_seconds=5)
                if stage in RETRIED
                else run_stage
            )
            statuses[stage] = runner(run, stage)
    except BaseException:
        run.current.stop()  # a failed or cancelled flow leaves no DVC running behind it
        raise
    if run.current.wait() != 0:
        raise StageFailed(
            f"dvc {' '.join(args)} exited with {run.current.returncode}\n{run.current.output_without_stage()}"
        )
    publish_results(root)
    return statuses
