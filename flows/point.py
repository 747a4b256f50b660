"""The flow a work pool's worker runs for one sweep point: clone, `dvc exp run --pull`, `dvc exp push`.

Its parameters come from whoever created the flow run, so the worker checks them before
anything runs: the git remote must be the one the worker was started with (its
FACEATTRS_GIT_REMOTE), and each override one params key (flows/clone.py check_point).
"""

from __future__ import annotations

import os

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
    remote = os.environ.get(clone.REMOTE_VARIABLE)
    metrics, seconds = clone.run_point(git_url, commit, name, overrides, log=logger.info, remote=remote)
    create_table_artifact(
        [{"step": step, "seconds": round(value, 1)} for step, value in seconds.items()],
        key="sweep-point-steps",
        description=f"{name}: `{' '.join(overrides)}` on {commit[:10]}; fetch it with `dvc exp pull origin {name}`",
    )
    return metrics
