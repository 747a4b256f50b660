"""A sweep on a Prefect work pool: what a point pays for its clone, pull and push, and two workers against one.

Builds a scratch project (the repository's pipeline and flows, params.yaml with the
``-S`` overrides), reproduces it, pushes it to a bare git repository and a local
folder as the DVC remote, starts a Prefect server on 127.0.0.1, then runs side by side:

1. the grid on a process pool with one worker (the points one after another);
2. the same grid, new names, on the pool with two workers;
3. the same with two workers whose stages each use half the cores (`--threads`);
4. the grid's first point as a plain `dvc exp run` in the project itself (nothing
   cloned, pulled or pushed): what a point costs without the pool.

Every value of the grid should differ from params.yaml's: a point equal to the
baseline has nothing to run.

A point's overhead is its flow run's time less that plain run. Two workers on a
machine of few cores share them: the second ratio says what the cores left to gain,
not what two machines would give.

    python bench/pool_sweep.py [--images 6000] [-S train.epochs=1] [--grid "loss.gamma=[0,1,2,3]"]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.full_scale import REPO, scratch_project
from flows import server

POOL = "bench-pool"
GIT = ["git", "-c", "user.email=bench@faceattrs", "-c", "user.name=bench"]


def sh(args: list[str], cwd: Path, env: dict) -> float:
    """Run a command, raise with its output if it fails; its wall seconds."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - start


def project(work: Path, images: int, overrides: list[str], env: dict) -> Path:
    """The scratch project, reproduced and committed, pushed to a bare git remote and a local DVC remote."""
    shutil.rmtree(work, ignore_errors=True)
    root = work / "project"
    scratch_project(root, images, overrides)  # the code and params.yaml; the pipeline and flows below
    for name in ("flows", "plots"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(["dvc", "init", "-q"], root, env)
    shutil.copytree(REPO / ".dvc/plots", root / ".dvc/plots", dirs_exist_ok=True)
    sh(["dvc", "remote", "add", "-d", "shared", str(work / "dvc-storage")], root, env)
    print(f"  dvc repro of the baseline: {sh(['dvc', 'repro'], root, env):.0f} s", flush=True)
    sh([*GIT, "add", "-A"], root, env)
    sh([*GIT, "commit", "-qm", "baseline"], root, env)
    sh(["git", "init", "-q", "--bare", str(work / "origin.git")], work, env)
    sh(["git", "remote", "add", "origin", str(work / "origin.git")], root, env)
    sh(["git", "push", "-q", "origin", "main"], root, env)
    sh(["dvc", "push"], root, env)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep(
    root: Path, env: dict, client, grid: str, prefix: str, workers: int, threads: int | None = None
) -> tuple[float, list[dict]]:
    """Wall seconds of one pool sweep with ``workers`` workers, and each point's flow run time and steps."""
    from prefect.client.schemas.filters import (  # Prefect reads its settings on import: after main sets them
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterName,
    )

    from flows.pool import wait_for_workers

    since = time.time()
    command = [sys.executable, "-m", "flows", "worker", "--pool", POOL, "--limit", "1"]
    command += ["--git-remote", str(root.parent / "origin.git")]  # the remote project() pushed to
    command += ["--api-url", env["PREFECT_API_URL"], *(["--threads", str(threads)] if threads else [])]
    started = [
        subprocess.Popen(
            command,
            cwd=root.parent,
            env={**env, "PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "2"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(workers)
    ]
    try:
        wait_for_workers(client, POOL, workers, since)
        wall = sh([sys.executable, "-m", "flows", "sweep", "--pool", POOL, "-g", grid, "--prefix", prefix], root, env)
    finally:
        for process in started:
            os.killpg(process.pid, 15)
            process.wait(60)
    runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"{prefix}-")))
    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for run in runs]),
            key=ArtifactFilterKey(any_=["sweep-point-steps"]),
        )
    )
    steps_of = {artifact.flow_run_id: json.loads(artifact.data) for artifact in found}
    points = []
    for run in sorted(runs, key=lambda r: r.name):
        steps = {row["step"]: row["seconds"] for row in steps_of.get(run.id, [])}
        seconds = run.total_run_time.total_seconds()
        points.append({"point": run.name, "state": run.state.name, "run_s": seconds, **steps})
    return wall, points


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=6000)
    p.add_argument("--grid", default="loss.gamma=[0.5,1,2,3]")
    p.add_argument("-S", "--set", dest="overrides", action="append", default=None, help="params override KEY=VALUE")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/faceattrs-pool"))
    args = p.parse_args()
    overrides = args.overrides if args.overrides is not None else ["train.epochs=1"]
    work = args.workdir
    env = {
        **os.environ,
        "FACEATTRS_PROGRESS": "0",
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONPATH": str(REPO),
    }
    print(f"{machine()}\n{args.images:,} synthetic images, {' '.join(overrides)}, grid {args.grid}", flush=True)
    root = project(work, args.images, overrides, env)
    port = free_port()
    process = server.start(work / "prefect-home", port)
    env.update({k: v for k, v in server.server_env(work / "prefect-home", port).items() if k.startswith("PREFECT_")})
    os.environ.update({k: v for k, v in env.items() if k.startswith("PREFECT_")})
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            one_wall, one = sweep(root, env, client, args.grid, "one", 1)
            two_wall, two = sweep(root, env, client, args.grid, "two", 2)
            half = max(1, (os.cpu_count() or 2) // 2)
            half_wall, halved = sweep(root, env, client, args.grid, "half", 2, threads=half)
    finally:
        server.stop(process)
    key, _, values = args.grid.partition("=")
    first = json.loads(values)[0]
    plain = sh(["dvc", "exp", "run", "-n", "plain", "-S", f"{key}={first}"], root, env)

    runs = (("one worker", one), ("two workers", two), (f"two workers, OMP_NUM_THREADS={half}", halved))
    for label, points in runs:
        print(f"\n{label}:")
        for row in points:
            steps = ", ".join(f"{k} {v:.1f} s" for k, v in row.items() if k not in ("point", "state", "run_s"))
            print(f"  {row['point']:14s} {row['state']:10s} flow run {row['run_s']:6.1f} s  ({steps})")
    runs = [row["run_s"] for row in one if row["state"] == "Completed"]
    mean_run = sum(runs) / len(runs)
    print(
        f"\nplain `dvc exp run` of the first point in the project: {plain:.1f} s; a point on the pool "
        f"(one worker, mean of {len(runs)}): {mean_run:.1f} s; overhead {mean_run - plain:.1f} s per point "
        f"({(mean_run - plain) / plain:.0%} of the plain run)"
    )
    print(
        f"sweep of {len(one)} points: one worker {one_wall:.0f} s, two workers {two_wall:.0f} s, "
        f"ratio {one_wall / two_wall:.2f}x; two workers at OMP_NUM_THREADS={half} {half_wall:.0f} s, "
        f"ratio {one_wall / half_wall:.2f}x ({os.cpu_count()} cores shared by the workers)"
    )


if __name__ == "__main__":
    main()
