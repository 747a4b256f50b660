"""One DVC command run in the background, its output split by stage, each stage's outcome read from dvc.lock.

Pure Python (no Prefect): the flows hand each stage's lines to its own task. The
plan comes from DVC's own stage graph (``Repo.index.graph``, in the post-order DVC
runs it), and whether a stage ran or was up to date from its entry in ``dvc.lock``
before and after, never from DVC's console wording. The console is read only to
route each line of live output to the task of the stage that printed it.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# Where DVC's output moves on to another stage; the name is the first group. Only routes lines.
_ANNOUNCES = re.compile(r"^(?:Running stage|Stage) '([^']+)'")
_DONE = object()


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


def planned_stages(repo: Path | str) -> list[str]:
    """Every stage of the pipeline in the order DVC runs them: the post-order of its stage graph."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(os.fspath(repo)) as dvc:
            stages = [stage.name for stage in nx.dfs_postorder_nodes(dvc.index.graph)]
    except DvcException as err:
        raise DvcError(f"{repo}: DVC cannot read the pipeline: {err}") from err
    if not stages:
        raise DvcError(f"{repo}: dvc.yaml defines no stages")
    return stages


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


@dataclass
class StageOutput:
    name: str
    lines: queue.Queue = field(default_factory=queue.Queue)
    status: str = "not run"
    started: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


class DvcRun:
    """Starts ``dvc <args>`` in ``repo`` and sorts its merged stdout and stderr by stage."""

    def __init__(self, args: list[str], repo: Path | str, stages: list[str], env: dict[str, str] | None = None):
        self.args = ["dvc", *args]
        self.repo = Path(repo)
        self.stages = {name: StageOutput(name) for name in stages}
        self.preamble: list[str] = []  # what DVC says before the first stage
        self.epilogue: list[str] = []  # what it says after the last
        self.returncode: int | None = None
        self._current: StageOutput | None = None
        self._lock_before = lock_entries(self.repo)
        self._ended = threading.Event()
        self._process = subprocess.Popen(
            self.args,
            cwd=self.repo,
            env=env or dvc_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self._process.stdout:
            line = raw.rstrip("\n")
            m = _ANNOUNCES.match(line)
            if m and m.group(1) in self.stages and self.stages[m.group(1)] is not self._current:
                self._finish_current()
                self._current = self.stages[m.group(1)]
                self._current.status = "running"
                for early in self.preamble:
                    self._current.lines.put(early)
                self.preamble = []
                self._current.started.set()
            if self._current is None:
                self.preamble.append(line)
            elif line.startswith("Use `dvc push`") or line.startswith("Ran experiment"):
                self._finish_current()
                self.epilogue.append(line)
            elif self._current.finished.is_set():
                self.epilogue.append(line)
            else:
                self._current.lines.put(line)
        self.returncode = self._process.wait()
        if self.returncode != 0 and self._current is not None and not self._current.finished.is_set():
            self._current.status = "failed"
        self._finish_current()
        for stage in self.stages.values():
            if not stage.finished.is_set():
                stage.lines.put(_DONE)
                stage.finished.set()
        self._ended.set()

    def _finish_current(self) -> None:
        current = self._current
        if current is None or current.finished.is_set():
            return
        if current.status == "running":
            # DVC writes a stage's lock entry before it starts the next stage or exits.
            after = lock_entries(self.repo).get(current.name)
            current.status = "up to date" if after == self._lock_before.get(current.name) else "ran"
        current.lines.put(_DONE)
        current.finished.set()

    def follow(self, stage: str, every: float = 5.0, tick: Callable[[], None] | None = None) -> Iterator[str]:
        """Lines of ``stage`` as DVC prints them, until it ends; ``tick`` is called every ``every`` seconds."""
        out = self.stages[stage]
        while True:
            try:
                line = out.lines.get(timeout=every)
            except queue.Empty:
                if tick is not None:
                    tick()
                continue
            if line is _DONE:
                return
            yield line

    def status(self, stage: str) -> str:
        return self.stages[stage].status

    def wait(self, timeout: float | None = None) -> int:
        self._ended.wait(timeout)
        return self.returncode if self.returncode is not None else self._process.wait(timeout)

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    def output_without_stage(self) -> str:
        """What DVC said outside any stage: its own errors when no stage ran."""
        return "\n".join(self.preamble + self.epilogue)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reader.join(timeout=30)
