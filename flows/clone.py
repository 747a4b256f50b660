"""A sweep point's own workspace: a fresh clone of the git remote at one commit, run as an experiment and pushed home.

Pure Python (no Prefect). Git and DVC carry everything between machines: the code and
params come from the git remote at the sweep's commit, the data from the DVC remote
(pulled by `dvc exp run --pull` as the stages need it), and the experiment goes back
with `dvc exp push`, its git refs to the git remote and its outputs to the DVC remote.
Nothing here knows which machine or which kind of work pool runs it.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from faceattrs.core.errors import InputError
from faceattrs.core.overrides import check_all
from flows import queue
from flows.dvcrun import DvcError, dvc_env

GIT = ["git", "-c", "advice.detachedHead=false"]
# A clone's remote is always this name, whatever the remote was called where the sweep started.
ORIGIN = "origin"
# The one git remote a worker's points may clone: `python -m flows worker --git-remote URL` sets it for its flow runs.
REMOTE_VARIABLE = "FACEATTRS_GIT_REMOTE"
# What a point's commit and experiment name may be: they become git and DVC arguments and a folder's name.
COMMIT = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")  # SHA-1, or SHA-256
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
TAIL = 40  # lines of a failed command's output kept in its error
# How a stage reports bad input (faceattrs.core.stage.run): one line, maybe indented details after it.
STAGE_ERROR = re.compile(r"^[a-z_]+: error: ")


class PointFailed(RuntimeError):
    """A sweep point that did not produce a pushed experiment."""


class PointRefused(PointFailed):
    """A sweep point this worker will not run: another git remote than its own, or an argument that is no
    commit, experiment name or params override."""


def _run(args: list[str], cwd: Path, what: str, log: Callable[[str], None] | None = None) -> str:
    """Run a command; stream its lines to ``log`` when given; raise PointFailed with its last lines if it fails."""
    process = subprocess.Popen(
        args, cwd=cwd, env=dvc_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if log is not None and line.strip():
            log(line.rstrip())
    if process.wait() != 0:
        tail = "\n".join(lines[-TAIL:])
        raise PointFailed(f"{what} failed (exit {process.returncode}): {_reason(lines)}\n{tail}")
    return "\n".join(lines)


def _reason(lines: list[str]) -> str:
    """The stage's own one-line error (``<stage>: error: ...``, with its indented lines), else DVC's last ERROR line."""
    for i, line in enumerate(lines):
        if STAGE_ERROR.match(line):
            block = [line.strip()]
            block += [more.strip() for more in itertools.takewhile(lambda x: x.startswith(" "), lines[i + 1 :])]
            return " ".join(block)
    errors = [line for line in lines if line.startswith("ERROR")]
    return errors[-1] if errors else (lines[-1] if lines else "no output")


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run([*GIT, *args], cwd=repo, capture_output=True, text=True)
    if result.returncode != 0:
        raise DvcError(f"git {' '.join(args)} in {repo} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def remote_url(repo: Path, remote: str = ORIGIN) -> str:
    """The URL of ``repo``'s git remote ``remote``; a local path made absolute, so other folders reach it too."""
    try:
        url = _git(repo, "remote", "get-url", remote)
    except DvcError as err:
        raise ValueError(
            f"{repo} has no git remote {remote!r}: a sweep on a work pool clones the project from its git remote "
            f"(git remote add {remote} URL, then git push {remote})"
        ) from err
    return normal_url(url, repo)


def normal_url(url: str, base: Path | None = None) -> str:
    """``url`` as a sweep and its workers both write it: a URL as it is, a local path absolute (from ``base``)."""
    if re.match(r"^[\w+.-]+://|^[\w.-]+@[\w.-]+:", url):  # ssh://, https://, file://, user@host:path
        return url
    return str(((base or Path.cwd()) / url).resolve())


def head_commit(repo: Path) -> str:
    return _git(repo, "rev-parse", "HEAD")


def uncommitted(repo: Path) -> list[str]:
    """Files whose changes a sweep's clones will not see (DVC-tracked outputs and untracked files aside)."""
    return _git(repo, "diff", "HEAD", "--name-only").splitlines()


def ensure_on_remote(repo: Path, url: str, commit: str) -> None:
    """Raise unless ``commit`` is, or is an ancestor of, a branch or tag the git remote has."""
    heads = [line.split()[0] for line in _git(repo, "ls-remote", url).splitlines() if line.strip()]
    for head in heads:
        if head == commit:
            return
        known = subprocess.run([*GIT, "merge-base", "--is-ancestor", commit, head], cwd=repo, capture_output=True)
        if known.returncode == 0:
            return
    raise ValueError(
        f"the sweep runs commit {commit[:10]}, which the git remote {url} does not have: "
        "push it first (git push), and its outputs with dvc push"
    )


def _clone(url: str, commit: str, into: Path) -> Path:
    _run([*GIT, "clone", "-q", "--no-checkout", "--", url, str(into)], into.parent, f"git clone {url}")
    try:
        _git(into, "checkout", "-q", "--detach", commit)
    except DvcError as err:
        raise PointFailed(f"commit {commit[:10]} is not on the git remote {url}: {err}") from err
    return into


def check_point(url: str, commit: str, name: str, overrides: list[str], remote: str | None) -> None:
    """Raise PointRefused unless ``url`` is this worker's own git remote ``remote``, ``commit`` a full commit
    hash, ``name`` an experiment name and each override one params key (faceattrs.core.overrides)."""
    if remote is None:
        raise PointRefused(
            f"this worker clones no git remote: start it with `python -m flows worker --git-remote URL` "
            f"(it would have cloned {url})"
        )
    if url != normal_url(remote):
        raise PointRefused(f"git remote {url} refused: this worker clones only {normal_url(remote)}")
    if not COMMIT.fullmatch(commit):
        raise PointRefused(f"commit {commit!r} refused: a point runs a full commit hash")
    if not NAME.fullmatch(name):
        raise PointRefused(f"experiment name {name!r} refused: letters, digits, '-' and '_' only")
    try:
        check_all(overrides)
    except InputError as err:
        raise PointRefused(f"{name}: {err}") from None


def run_point(
    url: str,
    commit: str,
    name: str,
    overrides: list[str],
    log: Callable[[str], None] = print,
    workdir: Path | None = None,
    remote: str | None = None,
) -> tuple[dict, dict[str, float]]:
    """Run one point as the DVC experiment ``name`` in a fresh clone at ``commit`` and push it.

    Returns its metrics as `dvc exp show --json` keys them, and the seconds each step
    took. Before anything runs, the point is checked (``check_point``): ``url`` must be
    this worker's git remote ``remote``, whatever the flow run's parameters say. The clone
    lives in a temporary folder (under ``workdir`` if given) removed at the end, whatever
    happened; a failure raises PointFailed with the failed command's last lines.
    """
    check_point(url, commit, name, overrides, remote)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"faceattrs-{name}-", dir=workdir) as tmp:
        start = time.perf_counter()
        workspace = _clone(url, commit, Path(tmp) / "repo")
        seconds["git clone"] = time.perf_counter() - start
        log(f"{name}: clone of {url} at {commit[:10]} in {workspace}")
        run = ["dvc", "exp", "run", "--pull", "-n", name]
        for override in overrides:
            run += ["-S", override]
        start = time.perf_counter()
        _run(run, workspace, f"dvc exp run of {name}", log)
        seconds["dvc exp run --pull"] = time.perf_counter() - start
        start = time.perf_counter()
        _run(["dvc", "exp", "push", ORIGIN, name], workspace, f"dvc exp push of {name}", log)
        seconds["dvc exp push"] = time.perf_counter() - start
        return queue.experiments(workspace).get(name, {}).get("metrics") or {}, seconds


def gather(url: str, commit: str, names: list[str], log: Callable[[str], None] = print) -> dict[str, dict]:
    """Metrics of those of ``names`` the git remote has, read in a clone of its own (the workspace untouched)."""
    with tempfile.TemporaryDirectory(prefix="faceattrs-gather-") as tmp:
        workspace = _clone(url, commit, Path(tmp) / "repo")
        listed = _run(["dvc", "exp", "list", ORIGIN, "--name-only"], workspace, "dvc exp list")
        present = [name for name in names if name in listed.split()]
        if not present:
            return {}
        # Metrics live in the experiments' git commits: no cached outputs are needed to show them.
        _run(["dvc", "exp", "pull", "--no-cache", ORIGIN, *present], workspace, "dvc exp pull", log)
        shown = queue.experiments(workspace)
        return {name: shown[name]["metrics"] for name in present if name in shown}
