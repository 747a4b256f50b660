"""The benchmark scripts stay runnable: each parses its arguments and prints its usage (timed by hand, never here)."""

from __future__ import annotations

import json
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


def _run_folder(root, trained_with):
    evaluate = root / "reports" / "evaluate"
    evaluate.mkdir(parents=True)
    summary = {"official_test": {"mean_accuracy": 0.93}, "test": {"mean_accuracy": 0.94, "flagged_labels": 862}}
    (evaluate / "summary.json").write_text(json.dumps(summary))
    (evaluate / "run.json").write_text(json.dumps({"git_commit": "abcdef0123+dirty", "trained_with": trained_with}))


def test_machine_spread_records_the_run_and_the_machine_that_trained_it(tmp_path):
    from bench import machine_spread

    _run_folder(tmp_path, {"git_commit": "1234567890", "machine": {"cpu": "AMD EPYC", "instruction_set": "avx2"}})
    row = machine_spread.row(tmp_path, None, None)
    assert row == {
        "commit": "1234567",
        "machine": "AMD EPYC (avx2)",
        "official_test.mean_accuracy": 0.93,
        "test.mean_accuracy": 0.94,
        "test.gender_fair_score": None,
        "test.flagged_labels": 862,
    }
    unnamed = tmp_path / "older"
    _run_folder(unnamed, None)
    with pytest.raises(SystemExit, match="--machine"):
        machine_spread.row(unnamed, None, None)
    assert machine_spread.row(unnamed, None, "Intel Xeon (avx512f)")["commit"] == "abcdef0"


def test_the_machine_spread_block_gives_the_spread_at_each_commit(tmp_path):
    from tools import readme_figures

    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    rows = [
        {"commit": "aaa", "machine": "Xeon (avx512f)", "test.mean_accuracy": 0.94265},
        {"commit": "aaa", "machine": "EPYC (avx2)", "test.mean_accuracy": 0.94124},
        {"commit": "bbb", "machine": "EPYC (avx2)", "test.mean_accuracy": 0.94014},
    ]
    (results / "machine_spread.json").write_text(json.dumps({"machine": "EPYC", "command": "x", "rows": rows}))
    block = readme_figures.machine_spread(tmp_path)
    assert "aaa: 0.00141 across 2 machines" in block and "bbb:" not in block
    assert block.count("| aaa |") == 2
