"""The flow a work pool's worker runs for one sweep point: clone, `dvc exp run --pull`, `dvc exp push`."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_table_artifact

from flows import clone


@flow(name="faceattrs-sweep-point")
def sweep_point(git_url: str, commit: str, name: str, overrides: list[str]) -> dict:
    """Run ``overrides`` on the project at ``commit`` of ``git_url`` as the DVC experiment ``name`` and push it.

    Returns the experiment's metrics as `dvc exp show --json` keys them. A failure
    fails this flow run with the failed command's last lines; the sweep reports it.
    """
    logger = get_run_logger()
    metrics, seconds = clone.run_point(git_url, commit, name, overrides, log=logger.info)
    create_table_artifact(
        [{"step": step, "seconds": round(value, 1)} for step, value in seconds.items()],
        key="sweep-point-steps",
        description=f"{name}: `{' '.join(overrides)}` on {commit[:10]}; fetch it with `dvc exp pull origin {name}`",
    )
    return metrics
