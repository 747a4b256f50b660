"""The pipeline as DVC sees it, and one DVC command per stage, its output streamed and its outcome read from dvc.lock.

Pure Python (no Prefect). The plan comes from DVC's own stage graph (``Repo.index.graph``,
in the post-order DVC runs it), each stage's role from what dvc.yaml declares of it, and
whether a stage ran or was up to date from its entry in ``dvc.lock`` before and after. Each
stage runs as its own ``dvc repro --single-item``, so every line of its output is that
stage's by construction; nothing is read from DVC's console wording.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml


class DvcError(RuntimeError):
    """A DVC command that could not even start its pipeline."""


def dvc_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment DVC and the stages run in: unbuffered, quiet progress bars, no analytics."""
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "FACEATTRS_PROGRESS": "0",
        "DVC_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        **(extra or {}),
    }


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the pipeline and what dvc.yaml says of it."""

    name: str
    # It reads the data source's params: the stage that fetches from the network, worth a second try.
    fetches: bool
    # A metrics file it rewrites while it runs (persisted across runs, as dvclive's is): live progress.
    live_metrics: Path | None


def plan(repo: Path | str) -> list[PlannedStage]:
    """Every stage of the pipeline in the order DVC runs them (the post-order of its stage graph)."""
    import networkx as nx
    from dvc.dependency import ParamsDependency
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    root = Path(repo)
    try:
        with Repo(os.fspath(root)) as dvc:
            stages = []
            for stage in nx.dfs_postorder_nodes(dvc.index.graph):
                params = [key for d in stage.deps if isinstance(d, ParamsDependency) for key in d.params]
                live = [out for out in stage.outs if out.metric and out.persist]
                stages.append(
                    PlannedStage(
                        stage.name,
                        fetches=any(key.split(".")[0] == "data" for key in params),
                        live_metrics=root / live[0].def_path if live else None,
                    )
                )
    except DvcException as err:
        raise DvcError(f"{repo}: DVC cannot read the pipeline: {err}") from err
    if not stages:
        raise DvcError(f"{repo}: dvc.yaml defines no stages")
    return stages


def planned_stages(repo: Path | str) -> list[str]:
    """The stages' names in DVC's order."""
    return [stage.name for stage in plan(repo)]


def lock_entries(repo: Path) -> dict[str, dict]:
    """Each stage's entry in dvc.lock (empty when there is none yet)."""
    path = Path(repo) / "dvc.lock"
    for _ in range(5):
        try:
            return (yaml.safe_load(path.read_text()) or {}).get("stages", {})
        except FileNotFoundError:
            return {}
        except yaml.YAMLError:  # caught mid-write; DVC rewrites it whole
            time.sleep(0.2)
    return (yaml.safe_load(path.read_text()) or {}).get("stages", {})


class StageRun:
    """``dvc repro --single-item STAGE`` in ``repo``: its merged output line by line, then its outcome."""

    def __init__(self, repo: Path, stage: str, env: dict[str, str] | None = None):
        self.repo, self.stage = Path(repo), stage
        self._before = lock_entries(self.repo).get(stage)
        self._process = subprocess.Popen(
            ["dvc", "repro", "--single-item", stage],
            cwd=self.repo,
            env=env or dvc_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )

    def lines(self, every: float = 2.0, tick: Callable[[], None] | None = None) -> Iterator[str]:
        """The stage's output as it comes; ``tick`` is called at most every ``every`` seconds meanwhile."""
        last = time.monotonic()
        for raw in self._process.stdout:
            if tick is not None and time.monotonic() - last >= every:
                tick()
                last = time.monotonic()
            yield raw.rstrip("\n")
        self._process.wait()

    def status(self) -> str:
        """ "failed", "ran" or "up to date", once the command has ended."""
        if self._process.wait() != 0:
            return "failed"
        return "up to date" if lock_entries(self.repo).get(self.stage) == self._before else "ran"

    @property
    def returncode(self) -> int:
        return self._process.wait()

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()


def run(repo: Path, args: list[str]) -> str:
    """A short DVC command (not a stage); its output, or DvcError with it."""
    result = subprocess.run(["dvc", *args], cwd=repo, env=dvc_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise DvcError(f"dvc {' '.join(args)} in {repo} failed:\n{result.stdout}{result.stderr}")
    return result.stdout
