"""The benchmark scripts stay runnable: each parses its arguments and prints its usage (timed by hand, never here)."""

from __future__ import annotations

import runpy
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = sorted(p.name for p in (REPO / "bench").glob("*.py") if p.name not in ("common.py", "__init__.py"))


def test_every_target_has_a_script():
    assert {"hashing.py", "preprocess.py", "loader.py", "full_scale.py", "gpu_train.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_prints_its_usage(script, monkeypatch, capsys):
    # In this process, as `python bench/SCRIPT --help` runs it: a new interpreter per script would spend
    # its seconds importing torch again.
    monkeypatch.setattr(sys, "argv", [f"bench/{script}", "--help"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO / "bench" / script), run_name="__main__")
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert "usage:" in out and "python bench/" in out
