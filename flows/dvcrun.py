"""One DVC command run in the background, its output split by stage as DVC announces each one.

Pure Python (no Prefect): the flows hand each stage's lines to its own task, and the
tests check the splitting against real DVC output. The order of stages is DVC's own:
``dvc repro --dry --force`` lists every stage in the order it would run them.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# How DVC 3 announces a stage; the name is the first group.
_STARTS = (
    (re.compile(r"^Running stage '([^']+)'"), "ran"),
    (re.compile(r"^Stage '([^']+)' didn't change, skipping"), "up to date"),
    (re.compile(r"^Stage '([^']+)' is cached - skipping run"), "restored from the run cache"),
)
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
    """Every stage of the pipeline in the order DVC runs them."""
    result = subprocess.run(
        ["dvc", "repro", "--dry", "--force"], cwd=repo, env=dvc_env(), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise DvcError(f"dvc repro --dry in {repo} failed:\n{result.stdout}{result.stderr}")
    stages = [m.group(1) for line in result.stdout.splitlines() if (m := _STARTS[0][0].match(line))]
    if not stages:
        raise DvcError(f"{repo}: dvc.yaml defines no stages")
    return stages


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
            for pattern, status in _STARTS:
                if (m := pattern.match(line)) and m.group(1) in self.stages:
                    self._finish_current()
                    self._current = self.stages[m.group(1)]
                    self._current.status = status
                    for early in self.preamble:
                        self._current.lines.put(early)
                    self.preamble = []
                    self._current.started.set()
                    break
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
        if self._current is not None and not self._current.finished.is_set():
            self._current.lines.put(_DONE)
            self._current.finished.set()

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
