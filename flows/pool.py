"""A sweep's points as flow runs of one deployment on a Prefect work pool, whichever type the pool is.

The deployment's code comes from the project's git remote at the sweep's commit
(`flow.from_source`), so a worker on any machine runs the same code the sweep was
started from; each flow run is a child of the sweep's flow run in the UI.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import WorkerStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runner.storage import GitRepository

POINT_FLOW = "faceattrs-sweep-point"
ENTRYPOINT = "flows/point.py:sweep_point"


def check_pool(pool: str) -> int:
    """Raise unless the work pool exists; the number of its workers now online."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound as err:
            raise ValueError(
                f"no work pool {pool!r} on the Prefect server {client.api_url}: start a worker of it "
                f"(python -m flows worker --pool {pool}), which creates it"
            ) from err
        workers = client.read_workers_for_work_pool(pool)
    return sum(worker.status == WorkerStatus.ONLINE for worker in workers)


def wait_for_workers(client, pool: str, count: int, since: float = 0.0, timeout: float = 120) -> None:
    """Wait until ``count`` workers of ``pool`` have sent a heartbeat since ``since`` (stopped ones stay listed)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            workers = client.read_workers_for_work_pool(pool)
        except (ObjectNotFound, httpx.HTTPStatusError):  # the pool does not exist until a worker has created it
            workers = []
        beating = [w for w in workers if w.last_heartbeat_time and w.last_heartbeat_time.timestamp() > since]
        if len(beating) >= count:
            return
        time.sleep(1)
    raise TimeoutError(f"{count} workers of pool {pool!r} did not join in {timeout:.0f} s")


def deploy(pool: str, url: str, commit: str) -> str:
    """Deploy the point flow from ``url`` at ``commit`` to ``pool``; its ``flow/deployment`` name."""
    from flows.point import sweep_point

    name = f"at-{commit[:12]}"
    source = sweep_point.from_source(source=GitRepository(url=url, commit_sha=commit), entrypoint=ENTRYPOINT)
    source.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False)
    return f"{POINT_FLOW}/{name}"


def submit(deployment: str, name: str, parameters: dict):
    """Create one flow run of ``deployment`` named ``name`` and return it at once (a worker picks it up)."""
    return run_deployment(name=deployment, parameters=parameters, flow_run_name=name, timeout=0)


def wait(runs: dict, every: float = 3.0, tick: Callable[[dict[str, object]], None] | None = None) -> dict[str, object]:
    """Poll the flow runs ``{name: run}`` until every one is final; their final states by name."""
    with get_client(sync_client=True) as client:
        while True:
            states = {name: client.read_flow_run(run.id).state for name, run in runs.items()}
            if tick is not None:
                tick(states)
            if all(state is not None and state.is_final() for state in states.values()):
                return states
            time.sleep(every)
