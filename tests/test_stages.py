"""The stage commands as DVC runs them: outputs, bad input that names file and line, nothing half-written."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from faceattrs.core.params import DedupeParams
from faceattrs.core.params_file import render
from faceattrs.data import celeba
from faceattrs.synthetic.truth import read_truth
from tests.conftest import REPO, copy_repo, rewrite_images

ENV = {**os.environ, "FACEATTRS_PROGRESS": "0", "PYTHONPATH": str(REPO)}
TINY = {
    "data": {
        "synthetic": {
            "num_images": 240,
            "images_per_identity": 8,
            "seed": 11,
            "exact_duplicate_rate": 0.02,
            "near_duplicate_rate": 0.03,
        }
    },
    "preprocess": {"rows_per_shard": 64, "size": [40, 32]},
    "train": {"epochs": 1, "batch_size": 32, "workers": 0},
}


def stage(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{name}", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY))
    return tmp_path


def _data_stages(cwd: Path, raw: Path) -> None:
    for name, args in [
        ("dedupe", ["--raw", str(raw), "--out", "clean", "--reports", "reports/dedupe"]),
        ("split", ["--clean", "clean", "--out", "split", "--reports", "reports/split"]),
        (
            "preprocess",
            [
                "--raw",
                str(raw),
                "--clean",
                "clean",
                "--split",
                "split",
                "--out",
                "shards",
                "--reports",
                "reports/preprocess",
            ],
        ),
    ]:
        result = stage(name, *args, cwd=cwd)
        assert result.returncode == 0, result.stderr


def test_data_stages_end_to_end(workdir, synthetic_raw):
    _data_stages(workdir, synthetic_raw)
    summary = json.loads((workdir / "reports/dedupe/summary.json").read_text())
    assert summary["unreadable"] == 6
    run = json.loads((workdir / "reports/dedupe/run.json").read_text())
    assert run["params"]["max_distance"] == DedupeParams().max_distance and "git_commit" in run
    assert sum(run["unreadable_by_problem"].values()) == 6
    for png in ("groups.png", "dropped.png"):
        assert (workdir / "reports/dedupe" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((workdir / "shards/manifest.json").read_text())
    assert "git_commit" not in manifest and "git_commit" in json.loads(
        (workdir / "reports/preprocess/run.json").read_text()
    )
    kept = pd.read_parquet(workdir / "clean/manifest.parquet")
    assert sum(s["rows"] for s in manifest["splits"].values()) == len(kept) == summary["images_kept"]
    # The official test partition whole: every readable image the published partition puts in test, as published.
    truth = read_truth(synthetic_raw)
    partition = celeba.read_partition(synthetic_raw / celeba.PARTITION_FILE)
    official = set(partition.index[partition == 2]) - set(truth["unreadable"])
    written = pd.concat(pd.read_parquet(workdir / "shards" / s["file"]) for s in manifest["official_test"]["shards"])
    assert set(written["image_id"]) == official and manifest["official_test"]["images"] == len(official)
    published = celeba.read_attributes(synthetic_raw / celeba.ATTR_FILE).loc[written["image_id"]]
    assert (written[list(celeba.ATTRIBUTES)].to_numpy() == published.to_numpy()).all()  # no relabelling
    assert manifest["official_test"]["left_out_by_cleaning"] == len(official - set(kept.index))
    assert manifest["official_test"]["left_out_by_cleaning"] > 0 and manifest["official_test"]["in_training"] == 0
    for entry in manifest["splits"].values():
        for shard in entry["shards"]:
            table = pq.read_table(workdir / "shards" / shard["file"])
            assert table.num_rows == shard["rows"]
            assert table.schema.field("Smiling").type == "int8"
    split_summary = json.loads((workdir / "reports/split/summary.json").read_text())
    assert split_summary["duplicate_groups_across_splits"] > 0 and split_summary["duplicate_groups_leaking"] == 0
    assert "Split report (official)" in (workdir / "reports/split/report.md").read_text()


def test_download_synthetic_and_params_error(workdir):
    ok = stage("download", "--raw", "raw", "--downloads", "dl", "--report", "reports/download.json", cwd=workdir)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((workdir / "reports/download.json").read_text())["images"] == 240
    (workdir / "params.yaml").write_text(yaml.safe_dump({"data": {"source": "ftp"}}))
    bad = stage("download", "--raw", "raw2", "--downloads", "dl", "--report", "r.json", cwd=workdir)
    assert bad.returncode == 1
    assert "data.source: Input should be 'synthetic', 'local', 'url' or 'gdrive' (got 'ftp')" in bad.stderr
    assert "Traceback" not in bad.stderr and not (workdir / "raw2").exists()


def test_missing_images_fail_download_and_leave_no_output(workdir, raw_copy):
    rewrite_images(raw_copy, drop=("000005.jpg",))
    (workdir / "params.yaml").write_text(
        yaml.safe_dump({"data": {"source": "local", "local": {"path": str(raw_copy)}}})
    )
    result = stage("download", "--raw", "out", "--downloads", "dl", "--report", "r.json", cwd=workdir)
    assert result.returncode == 1
    assert "1 of 400 images listed in list_attr_celeba.txt are missing, e.g. 000005.jpg" in result.stderr
    assert not (workdir / "out").exists() and not list(workdir.glob(".out.tmp-*"))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda rows: rows.__setitem__(9, rows[9] + "  1"), r"list_attr_celeba.txt:10: expected 41 fields .* found 42"),
        (
            lambda rows: rows.__setitem__(6, rows[6].replace(" 1", " 2", 1)),
            r"list_attr_celeba.txt:7: values must be -1 or 1",
        ),
    ],
)
def test_malformed_attribute_file_fails_dedupe_cleanly(workdir, raw_copy, damage, message):
    previous = workdir / "clean"
    previous.mkdir()
    (previous / "manifest.parquet").write_bytes(b"from an earlier run")
    path = raw_copy / celeba.ATTR_FILE
    rows = path.read_text().split("\n")
    damage(rows)
    path.write_text("\n".join(rows))
    result = stage("dedupe", "--raw", str(raw_copy), "--out", "clean", "--reports", "reports/dedupe", cwd=workdir)
    assert result.returncode == 1
    assert re.search(message, result.stderr), result.stderr
    assert (previous / "manifest.parquet").read_bytes() == b"from an earlier run"  # nothing lost
    assert not (workdir / "reports/dedupe/summary.json").exists()


def test_corrupt_image_after_cleaning_fails_preprocess_without_partial_shards(workdir, raw_copy):
    _data_stages(workdir, raw_copy)
    before = {p.name: p.read_bytes() for p in (workdir / "shards").iterdir()}
    victim = pd.read_parquet(workdir / "split/manifest.parquet").index[3]
    rewrite_images(raw_copy, replace={victim: b"\xff\xd8\xff garbage"})
    result = stage(
        "preprocess",
        "--raw",
        str(raw_copy),
        "--clean",
        "clean",
        "--split",
        "split",
        "--out",
        "shards",
        "--reports",
        "reports/preprocess",
        cwd=workdir,
    )
    assert result.returncode == 1 and f"{victim}: cannot decode image" in result.stderr
    assert {p.name: p.read_bytes() for p in (workdir / "shards").iterdir()} == before
    assert not list(workdir.glob(".shards.tmp-*"))


def scratch_repo(tmp_path: Path) -> Path:
    """A copy of this repository's pipeline, with the tiny params, in a fresh git + DVC repo."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "faceattrs", "stages", ".gitignore", ".dvcignore", "plots"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(
            src, repo / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {})
        )
    params = yaml.safe_load(render())  # the defaults, whatever the user's own params.yaml holds
    for section, values in TINY.items():
        for key, value in values.items():
            params[section][key] = {**params[section][key], **value} if isinstance(value, dict) else value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run = lambda *cmd: subprocess.run(cmd, cwd=repo, env=ENV, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    # The project's DVC settings: its plot templates, offline plots page and default remote.
    shutil.copy(REPO / ".dvc/config", repo / ".dvc/config")
    shutil.copytree(REPO / ".dvc/plots", repo / ".dvc/plots", dirs_exist_ok=True)
    run("git", "add", "-A")
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return repo


def test_dvc_repro_runs_once_then_only_what_a_param_touches(reproduced_repo, tmp_path, monkeypatch):
    template, first = reproduced_repo
    repo = copy_repo(template, tmp_path / "repo")

    def dvc(*args):
        return subprocess.run(["dvc", *args], cwd=repo, env=ENV, capture_output=True, text=True, timeout=900)

    def git(*args):
        command = ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args]
        return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True)

    for name in ("download", "dedupe", "split", "preprocess", "labels", "train", "evaluate", "predict", "report"):
        assert f"Running stage '{name}'" in first
    assert "Running stage" not in dvc("repro").stdout
    assert "up to date" in dvc("status").stdout
    metrics = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    assert 0.5 < metrics["test"]["mean_accuracy"] <= 1
    # The figure comparable with published results comes first, beside the cleaned one.
    assert list(metrics)[:2] == ["official_test", "test"]
    official = metrics["official_test"]
    assert 0.5 < official["mean_accuracy"] <= 1 and official["images"] > metrics_rows(repo)
    shown = dvc("metrics", "show", "--json")
    figures = next(iter(json.loads(shown.stdout).values()))["data"]["reports/evaluate/metrics.json"]["data"]
    assert figures["official_test"]["mean_accuracy"] == official["mean_accuracy"]
    assert len(celeba.read_attributes(repo / "data/predictions/predictions_attr.txt")) == metrics_rows(repo)
    # The figures name the machine that trained the model: another CPU's instruction set gives other ones.
    trained = json.loads((repo / "reports/evaluate/run.json").read_text())["trained_with"]
    assert trained["machine"]["cores"] == os.cpu_count() and trained["machine"]["torch"] == torch.__version__

    # A change to any module a stage imports makes DVC report that stage, and only the stages that import it.
    losses = repo / "faceattrs/training/losses.py"
    losses.write_text(losses.read_text() + "\n# an edit\n")
    changed = set(json.loads(dvc("status", "--json").stdout))
    assert "train" in changed and not changed & {"download", "dedupe", "split", "preprocess"}
    git("checkout", "--", "faceattrs/training/losses.py")
    assert json.loads(dvc("status", "--json").stdout) == {}

    # An evaluation setting reruns the evaluation and the report. Predict reads the evaluation's thresholds
    # file, whose bytes this setting leaves as they were, so DVC leaves predict up to date.
    exp = dvc("exp", "run", "-S", "evaluate.fair_group=Young")
    assert exp.returncode == 0, exp.stdout + exp.stderr
    ran = set(re.findall(r"Running stage '(\w+)'", exp.stdout))
    assert ran == {"evaluate", "report"}, exp.stdout
    diff = dvc("metrics", "diff", "--json")
    changed = json.loads(diff.stdout)["reports/evaluate/metrics.json"]
    assert changed["test.gender_fair_score"]["old"] != changed["test.gender_fair_score"]["new"]
    # Two experiments one param apart compare on one screen: the per-attribute figures are not metrics.
    shown = dvc("exp", "show", "--only-changed", "--md")
    header = next(line for line in shown.stdout.splitlines() if line.startswith("|"))
    assert header.count("|") - 1 <= 20, header
    assert "evaluate.fair_group" in header and "test.gender_fair_score" in header

    # A split setting is the split stage's alone: the stages after it follow through their data, as
    # report followed the evaluation's above.
    params_file = repo / "params.yaml"
    saved = params_file.read_bytes()
    params = yaml.safe_load(saved)
    params["split"]["method"] = "random"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    changed = json.loads(dvc("status", "--json").stdout)
    params_file.write_bytes(saved)
    assert changed == {"split": [{"changed deps": {"params.yaml": {"split": "modified"}}}]}, changed

    # An experiment and a commit side by side, by the name `dvc exp show` lists and a git revision.
    names = dvc("exp", "list", "--name-only").stdout.split()
    assert len(names) == 1
    compared = subprocess.run(
        [sys.executable, "-m", "faceattrs.cli", "compare", "HEAD", *names],
        cwd=repo,
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert compared.returncode == 0, compared.stderr
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in compared.stdout.splitlines()[2:]}
    assert set(rows) == {"HEAD", *names}
    import dvc.api

    monkeypatch.chdir(repo)  # DVC's API reads a relative path from the working folder
    for name in ["HEAD", *names]:
        expected = dvc.api.metrics_show("reports/evaluate/metrics.json", rev=name)
        # The table shows four decimals.
        assert float(rows[name][0]) == pytest.approx(expected["official_test"]["mean_accuracy"], abs=5e-5)
        assert float(rows[name][1]) == pytest.approx(expected["test"]["mean_accuracy"], abs=5e-5)
        # The training time is the train stage's own record, in whole seconds (a tiny run can take under one).
        with dvc.api.open("reports/train/plots/metrics/train_time_s.tsv", rev=name) as handle:
            seconds = pd.read_csv(handle, sep="\t")["train_time_s"].sum()
        assert seconds > 0 and float(rows[name][4]) == round(seconds)


def metrics_rows(repo: Path) -> int:
    return json.loads((repo / "data/shards/manifest.json").read_text())["splits"]["test"]["rows"]


# ---------------------------------------------------------------- temporary files: names, disk, leftovers

_WRITER = """
import sys, time
from faceattrs.core import atomic
kind, target = sys.argv[1:]
with (atomic.atomic_file if kind == "file" else atomic.atomic_dir)(target) as tmp:
    (tmp if kind == "file" else tmp / "part-00000.parquet").write_bytes(b"half an output")
    print(tmp, flush=True)
    time.sleep(600)
"""


def _writer(kind: str, target: Path) -> tuple[subprocess.Popen, Path]:
    """A process caught inside ``atomic_file`` or ``atomic_dir``, and the temporary name it writes."""
    command = [sys.executable, "-c", _WRITER, kind, str(target)]
    proc = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def test_temporary_names_are_ignored_by_git_and_dvc(tmp_path):
    from faceattrs.core import atomic

    for target in (tmp_path / "last.pt", tmp_path / "download.json"):
        with atomic.atomic_file(target) as tmp:
            name = tmp.name
        for folder in ("data/models", "reports", "reports/train/plots"):
            path = f"{folder}/{name}"
            git = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
            assert git.returncode == 0, f"git would track {path}"
            dvc = subprocess.run(["dvc", "check-ignore", "-q", path], cwd=REPO, env=ENV)
            assert dvc.returncode == 0, f"DVC would cache {path}"


def test_an_atomic_file_reaches_the_disk_before_its_name_does(tmp_path, monkeypatch):
    from faceattrs.core import atomic

    events = []
    fsync, replace, rename = os.fsync, os.replace, os.rename

    def record_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", str(b))), replace(a, b))[1])
    monkeypatch.setattr(os, "rename", lambda a, b: (events.append(("rename", str(b))), rename(a, b))[1])
    atomic.write_text(tmp_path / "out.json", "{}")
    with atomic.atomic_dir(tmp_path / "shards") as tmp:
        (tmp / "train-00000.parquet").write_bytes(b"rows")
    out, shards = str(tmp_path / "out.json"), str(tmp_path / "shards")
    renamed = [i for i, e in enumerate(events) if e[0] == "rename"]
    synced = [e[1] for e in events if e[0] == "fsync"]
    # The file's bytes, then its name, then the folder that holds the name.
    first = events[: renamed[0]]
    assert first and first[-1][0] == "fsync" and ".out.json.tmp-" in first[-1][1], events
    assert events[renamed[0]] == ("rename", out) and events[renamed[0] + 1] == ("fsync", str(tmp_path)), events
    # A folder: every file in it and the folder itself, before it gets its name.
    before = [e[1] for e in events[renamed[0] + 2 : renamed[-1]] if e[0] == "fsync"]
    assert any(p.endswith("train-00000.parquet") for p in before) and any(".shards.tmp-" in p for p in before)
    assert events[renamed[-1]] == ("rename", shards) and synced[-1] == str(tmp_path), events


def test_the_train_stage_removes_a_killed_writer_s_file_and_keeps_a_live_one(workdir):
    models = workdir / "models"
    dead, dead_tmp = _writer("file", models / "last.pt")
    _kill(dead)  # kill -9 inside atomic_file: what it leaves in the persisted models folder
    assert dead_tmp.exists()
    live, live_tmp = _writer("file", models / "best.pt")
    try:
        (workdir / "shards").mkdir()
        stage("train", "--shards", "shards", "--out", "models", "--live", "live", cwd=workdir)
        assert not dead_tmp.exists()
        assert live_tmp.exists() and live_tmp.read_bytes() == b"half an output"
    finally:
        _kill(live)


def test_a_killed_preprocess_leaves_nothing_behind_once_preprocess_runs_again(workdir, synthetic_raw):
    from faceattrs.cleaning.clean import load_raw
    from faceattrs.synthetic.truth import read_truth

    unreadable = list(read_truth(synthetic_raw)["unreadable"])
    frame = load_raw(synthetic_raw).drop(index=unreadable)
    frame["split"] = frame["partition"].map({0: "train", 1: "val", 2: "test"})
    (workdir / "split").mkdir()
    frame.to_parquet(workdir / "split/manifest.parquet")
    # What dedupe tells preprocess: the unreadable images, and no duplicate groups.
    (workdir / "clean").mkdir()
    pd.DataFrame({"image_id": unreadable, "reason": "unreadable"}).to_csv(workdir / "clean/dropped.csv", index=False)
    pd.DataFrame({"image_id": pd.Series(dtype=str), "group": pd.Series(dtype=int)}).to_parquet(
        workdir / "clean/groups.parquet"
    )
    args = ["--raw", str(synthetic_raw), "--clean", "clean", "--split", "split", "--out", "shards"]
    args += ["--reports", "reports/preprocess"]
    killed = subprocess.Popen([sys.executable, "-m", "stages.preprocess", *args], cwd=workdir, env=ENV)
    deadline = time.monotonic() + 120
    while not (left := list(workdir.glob(".shards.tmp-*"))) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert left and all(p.exists() for p in left), "preprocess was not caught writing its shards"
    live, live_tmp = _writer("dir", workdir / "shards")
    try:
        result = stage("preprocess", *args, cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert not any(p.exists() for p in left)
        assert live_tmp.exists() and sorted(workdir.glob(".shards.tmp-*")) == [live_tmp]
        assert json.loads((workdir / "shards/manifest.json").read_text())["splits"]["train"]["rows"] > 0
    finally:
        _kill(live)


def test_a_download_input_error_is_one_line(workdir):
    (workdir / "params.yaml").write_text(
        yaml.safe_dump({"data": {"source": "url", "url": {"base": "mirror.example.org/celeba"}}})
    )
    result = stage("download", "--raw", "raw", "--downloads", "dl", "--report", "download.json", cwd=workdir)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "download: error: data.url.base: 'mirror.example.org/celeba' is not an http(s) URL (no scheme)"
    ]


def test_start_cleanup_leaves_another_machine_s_temporary_names_alone(tmp_path):
    from faceattrs.core import atomic

    dead, ours = _writer("file", tmp_path / "models" / "last.pt")
    _kill(dead)
    # The same name from a machine sharing the folder: its pid means nothing here, its writer may well be running.
    theirs = ours.with_name(re.sub(r"@.*\.", "@another-machine.example.", ours.name))
    theirs.write_bytes(b"half a checkpoint")
    assert atomic.remove_stale(tmp_path / "models") == [ours]
    assert not ours.exists() and theirs.exists()
