"""Versioning and comparison through DVC: remote round trip, artifacts, metrics and plots diffs, the offline page."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.browser import CHROMIUM, browser_page, file_url
from tests.conftest import copy_repo
from tests.test_stages import ENV


def _dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["dvc", *args], cwd=repo, env=ENV, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def repo(reproduced_repo, tmp_path_factory) -> Path:
    """A scratch project after `dvc repro` and a commit, its remote an absolute folder of its own."""
    root = tmp_path_factory.mktemp("versioning")
    repo = copy_repo(reproduced_repo[0], root / "repo")
    _dvc(repo, "remote", "modify", "local", "url", str(root / "storage"))
    _git(repo, "commit", "-qam", "remote of its own")
    return repo


def test_push_then_pull_into_a_fresh_clone_restores_every_output(repo, tmp_path):
    _dvc(repo, "push")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert not (clone / "data/models/model.pt").exists()
    _dvc(clone, "pull")
    status = _dvc(clone, "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    for path in (
        "data/models/model.pt",
        "data/raw/img_align_celeba.zip",
        "data/shards/manifest.json",
        "data/predictions/predictions_attr.txt",
    ):
        assert (clone / path).read_bytes() == (repo / path).read_bytes(), path
    # Nothing reruns: the pulled outputs are what the lock file records.
    assert "Running stage" not in _dvc(clone, "repro").stdout


def test_the_model_is_an_artifact_fetched_by_name(repo, tmp_path):
    listed = yaml.safe_load((repo / "dvc.yaml").read_text())["artifacts"]["face-attributes"]
    assert listed["type"] == "model" and listed["desc"] and listed["meta"]["metrics"] == "reports/evaluate/metrics.json"
    _dvc(repo, "push")
    # Registering a version is a GTO tag on the commit that produced it.
    registered = subprocess.run(
        ["gto", "register", "face-attributes", "--version", "v1.0.0"], cwd=repo, env=ENV, capture_output=True, text=True
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    assert "face-attributes@v1.0.0" in _git(repo, "tag")
    out = tmp_path / "fetched.pt"
    _dvc(tmp_path, "artifacts", "get", str(repo), "face-attributes", "-o", str(out))
    assert out.read_bytes() == (repo / "data/models/model.pt").read_bytes()


def test_metrics_show_puts_the_headline_first(repo):
    shown = json.loads(_dvc(repo, "metrics", "show", "--json").stdout)
    data = next(iter(shown.values()))["data"]["reports/evaluate/metrics.json"]["data"]
    assert list(data) == ["official_test", "test", "val"]
    assert list(data["test"])[:3] == ["mean_accuracy", "majority_baseline", "gender_fair_score"]
    # Per-attribute figures are in a table the plots and reports read, not in the metrics `dvc exp show` lists.
    assert "test_accuracy" not in data and len(data["test"]) <= 6
    table = (repo / "reports/evaluate/per_attribute.csv").read_text().splitlines()
    assert len(table) == 41 and any(line.startswith("Eyeglasses,") for line in table)


def test_a_committed_param_change_shows_in_metrics_and_plots_diff(repo, tmp_path):
    # Another group for the fair score: a change of the figures that reruns the evaluation and the report only.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["fair_group"] = "Young"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _dvc(repo, "repro")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "the fair score by age")

    diff = json.loads(_dvc(repo, "metrics", "diff", "HEAD~1", "--json").stdout)["reports/evaluate/metrics.json"]
    assert diff["test.gender_fair_score"]["old"] != diff["test.gender_fair_score"]["new"]
    assert "test.mean_accuracy" not in diff  # the same model and thresholds
    text = _dvc(repo, "metrics", "diff", "HEAD~1", "--md").stdout
    assert re.search(r"\| reports/evaluate/metrics.json\s+\| test.gender_fair_score\s+\|", text), text

    out = tmp_path / "plots"
    _dvc(repo, "plots", "diff", "HEAD~1", "-o", str(out))
    page = (out / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "vega@5.20.2" in page
    for plot in ("loss", "mean_accuracy", "per_attribute", "roc", "precision_recall", "Smiling"):
        assert plot in page, plot
    if not CHROMIUM:
        pytest.skip("chromium is not installed (the Makefile's test set-up installs it with apt-get)")
    with browser_page(offline=True) as browser:
        browser.goto(file_url(out / "index.html"))
        # vega-embed adds a canvas (or an SVG of marks) to each plot's div once the chart is drawn.
        browser.wait_for_function(
            "document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length >= 8", timeout=60_000
        )
        charts = browser.locator(".vega-embed").count()
        drawn = browser.locator(".vega-embed canvas, .vega-embed svg.marks").count()
        sizes = browser.eval_on_selector_all(".vega-embed canvas", "els => els.map(e => e.width * e.height)")
        assert browser.refused == []  # everything it needs is in the page
    assert charts >= 8 and drawn == charts, (charts, drawn)
    assert min(sizes) > 100 * 100


def test_the_report_stage_writes_valid_pictures_and_a_page_linking_them(repo):
    from PIL import Image

    page = (repo / "reports/README.md").read_text()
    for link in (
        "dedupe/groups.png",
        "dedupe/dropped.png",
        "data/frequency.png",
        "data/cooccurrence.png",
        "evaluate/report.md",
        "data/shift.csv",
    ):
        assert f"({link})" in page, link
        assert (repo / "reports" / link).exists(), link
    for picture in (
        "dedupe/groups.png",
        "dedupe/dropped.png",
        "data/frequency.png",
        "data/cooccurrence.png",
        "evaluate/accuracy.png",
    ):
        with Image.open(repo / "reports" / picture) as img:
            img.verify()
            assert img.format == "PNG" and img.width >= 300 and img.height >= 200, (picture, img.size)


def test_pipeline_outputs_are_not_cached_as_many_small_files(repo):
    # Each cached output is a file or a folder of a few files; never one object per image.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            assert out.get("nfiles", 1) < 100, (out["path"], out.get("nfiles"))


@pytest.fixture(autouse=True)
def _no_leftover_plots(repo):
    yield
    shutil.rmtree(repo / "dvc_plots", ignore_errors=True)
