"""The benchmark scripts stay runnable: each parses its arguments and prints its usage (timed by hand, never here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name not in ("common.py", "__init__.py"))


def test_every_target_has_a_script():
    assert {"hashing.py", "preprocess.py", "loader.py", "full_scale.py", "gpu_train.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_prints_its_usage(script):
    result = subprocess.run(
        [sys.executable, f"bench/{script}", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout and "python bench/" in result.stdout
