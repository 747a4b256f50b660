"""A sweep on DVC's own experiment queue: each point queued with its overrides and run by DVC in a temporary folder.

Pure Python (no Prefect). What the sweep reads back is `dvc exp show --json`, DVC's
machine-readable view of its experiments, never its console wording. The workspace
(its params.yaml included) is left as it was: queued experiments run elsewhere.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from flows import results
from flows.dvcrun import DvcError, dvc_env

RUNNING = ("queued", "running")


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(["dvc", *args], cwd=repo, env=dvc_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise DvcError(f"dvc {' '.join(args)} in {repo} failed:\n{result.stdout}{result.stderr}")
    return result


def enqueue(repo: Path, name: str, overrides: list[str]) -> None:
    args = ["exp", "run", "--queue", "-n", name]
    for override in overrides:
        args += ["-S", override]
    _dvc(repo, *args)


def start(repo: Path, jobs: int) -> None:
    """Start ``jobs`` DVC queue workers; they run the queued experiments in temporary folders."""
    _dvc(repo, "queue", "start", "-j", str(jobs))


def experiments(repo: Path) -> dict[str, dict]:
    """Each experiment of the workspace's baseline by name: its state, metrics and error, from `dvc exp show --json`."""
    shown = json.loads(_dvc(repo, "exp", "show", "--json", "--no-fetch").stdout or "[]")
    found: dict[str, dict] = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            revs = exp.get("revs") or []
            name = exp.get("name") or (revs[0].get("name") if revs else None)
            if not name:
                continue
            executor = exp.get("executor") or {}
            rev = revs[0] if revs else {}
            state = executor.get("state") or ("failed" if rev.get("error") else "success")
            error = rev.get("error") or {}
            found[name] = {
                "state": state,
                "metrics": (rev.get("data") or {}).get("metrics") or {},
                "error": error.get("msg") if isinstance(error, dict) else str(error or ""),
            }
    return found


def wait(
    repo: Path, names: list[str], every: float = 5.0, tick: Callable[[dict[str, dict]], None] | None = None
) -> dict[str, dict]:
    """Poll until no point of ``names`` is queued or running; ``tick`` sees each poll's states."""
    while True:
        seen = experiments(repo)
        mine = {name: seen.get(name, {"state": "queued", "metrics": {}, "error": ""}) for name in names}
        if tick is not None:
            tick(mine)
        if not any(row["state"] in RUNNING for row in mine.values()):
            return mine
        time.sleep(every)


def headline(metrics: dict, evaluate_metrics: str) -> dict | None:
    """The evaluate stage's headline figures out of one experiment's metrics, or None if it has none.

    ``evaluate_metrics`` is that stage's metrics file, relative to the repository, as
    `dvc exp show --json` keys it.
    """
    data = (metrics.get(evaluate_metrics) or {}).get("data") or {}
    return results.headline(data) if "test" in data and "val" in data else None
