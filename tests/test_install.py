"""A plain `pip install .` works: the wheel carries its package data and imports in a fresh virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from faceattrs.core.params_file import render
from tests.conftest import REPO


def source_tree(dest: Path) -> Path:
    """The files git would give a fresh clone (tracked, or new and not ignored): no egg-info, no build folder."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def test_wheel_installs_and_runs_in_a_fresh_virtual_environment(tmp_path):
    source = source_tree(tmp_path / "source")
    dist = tmp_path / "dist"
    # No build isolation: setuptools comes from this environment, so the test needs no network.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", dist, source],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = dist.glob("faceattrs-*.whl")

    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr
    # The dependencies (torch, DVC, ...) come from this environment, appended after the fresh site-packages,
    # whose copy of faceattrs is therefore the one imported (.pth files of appended folders do not run).
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")

    check = (
        "import faceattrs, pathlib\n"
        "from faceattrs.data.celeba import ATTRIBUTES\n"
        "from faceattrs import recipes\n"
        "assert len(ATTRIBUTES) == 40, ATTRIBUTES\n"
        "assert recipes.available(), 'no recipes in the wheel'\n"
        "print(pathlib.Path(faceattrs.__file__).resolve())\n"
    )
    elsewhere = tmp_path / "elsewhere"  # not the repository, whose faceattrs/ would shadow the installed one
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    ran = subprocess.run([python, "-c", check], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert ran.returncode == 0, ran.stderr
    assert Path(ran.stdout.strip()).is_relative_to(env_dir.resolve())

    command = subprocess.run(
        [env_dir / "bin" / "faceattrs", "params", "--defaults"], capture_output=True, text=True, cwd=elsewhere, env=env
    )
    assert command.returncode == 0, command.stderr
    assert command.stdout == render()
