"""The pipeline's declared paths, read through DVC's own resolution of dvc.yaml, so no path is written twice."""

from __future__ import annotations

import os
from pathlib import Path

from faceattrs.core.errors import InputError


def stage_paths(stage: str, root: Path | str = ".", outs: bool = False) -> list[Path]:
    """A stage's dependencies (or outputs) as dvc.yaml declares them, ``${vars}`` resolved, relative to ``root``."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    root = Path(root)
    try:
        with Repo(os.fspath(root)) as repo:
            found = repo.stage.collect(stage)[0]
    except NotDvcRepoError:
        raise InputError(f"{root.resolve()}: not a DVC project (no .dvc folder); give the paths explicitly") from None
    except DvcException as err:
        raise InputError(f"{root.resolve() / 'dvc.yaml'}: no stage {stage!r} ({err})") from None
    return [root / item.def_path for item in (found.outs if outs else found.deps)]


def stage_path(stage: str, name: str, root: Path | str = ".", outs: bool = False) -> Path:
    """The one dependency (or output) of ``stage`` whose file name is ``name``."""
    matches = [p for p in stage_paths(stage, root, outs) if p.name == name]
    if len(matches) != 1:
        raise InputError(f"dvc.yaml: stage {stage!r} declares {len(matches)} paths named {name!r}, expected one")
    return matches[0]
