"""What every output records about how it was made: the resolved params and the git commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from faceattrs import __version__


def git_commit(cwd: Path | str = ".") -> str | None:
    """The checked-out commit, with ``+dirty`` when tracked files differ; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        # The pipeline rewrites its own tracked reports and lock file: those are not code changes.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports", ":!dvc.lock"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def provenance(params: dict) -> dict:
    return {"faceattrs_version": __version__, "git_commit": git_commit(), "params": params}
