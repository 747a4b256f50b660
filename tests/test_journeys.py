"""Features chained as a user chains them: each chain keeps DVC's promise or fails loudly.

Same params, code and data give the same model; a change reruns exactly what it touches.
Each test is a short story a user lives through: a code change then `dvc repro`, recipes one
after another in one workspace, their own params.yaml, a new setting, a sweep against a
server on another machine (played by 127.0.0.2).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from faceattrs import recipes
from tests.conftest import REPO, copy_repo, free_port, prefect_home_like
from tests.test_stages import ENV

pytestmark = pytest.mark.timeout(1800)


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=repo, env=ENV, capture_output=True, text=True, timeout=1200)


def _set_params(repo: Path, **sections: dict) -> None:
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in sections.items():
        raw[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


def test_a_change_to_any_module_train_imports_trains_from_epoch_1_and_a_killed_run_resumes(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo[0], tmp_path / "repo")
    # A real change in what the model sees, outside the training package: the shards decode to BGR.
    shards_py = repo / "faceattrs/data/shards.py"
    code = shards_py.read_text()
    decode = code.index("def decode_image(")
    returned = code.index("    return ", decode)
    end = code.index("\n", returned)
    shards_py.write_text(code[:end] + "[..., ::-1]" + code[end:])
    ran = dvc(repo, "repro", "train")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "train: from epoch 1: faceattrs/data/shards.py changed since data/models/last.pt was written" in ran.stdout
    assert "epoch 1/1:" in ran.stdout and "resuming" not in ran.stdout

    # Killed after its first epoch, the run goes on from there when `dvc repro` runs it again.
    _set_params(repo, train={"epochs": 3})
    process = subprocess.Popen(
        ["dvc", "repro", "train"],
        cwd=repo,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("epoch 1/3:"):
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert any(line.startswith("epoch 1/3:") for line in seen), "".join(seen)
    again = dvc(repo, "repro", "train")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "train: resuming after epoch 1 from data/models/last.pt" in again.stdout
    assert "epoch 1/3:" not in again.stdout and "epoch 3/3:" in again.stdout
    assert "train" not in json.loads(dvc(repo, "status", "--json").stdout)


def test_a_new_train_setting_leaves_the_data_stages_up_to_date(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo[0], tmp_path / "repo")
    schema = repo / "faceattrs/core/params/train.py"
    text = schema.read_text()
    anchor = "    compile: bool = False\n"
    schema.write_text(text.replace(anchor, anchor + "    new_setting: int = Field(0, ge=0)\n"))
    changed = set(json.loads(dvc(repo, "status", "--json").stdout))
    assert changed == {"labels", "train"}, changed  # the two stages that read the train section


def test_the_user_s_own_params_yaml_passes_the_drift_checks(tmp_path):
    """params.yaml is the user's record of their experiment: any valid one keeps the project's tests green."""
    # A clone, so the copy has the committed reports in git, with the working tree's files (changed, new or
    # rewritten by a `dvc repro` of one's own) laid over it.
    copy = tmp_path / "project"
    subprocess.run(["git", "clone", "-q", "--shared", str(REPO), str(copy)], check=True)
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    for name in subprocess.run(listed, cwd=REPO, capture_output=True, text=True, check=True).stdout.split():
        if (REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, copy / name)
        else:  # deleted in the working tree
            (copy / name).unlink(missing_ok=True)
    celeba = tmp_path / "celeba"
    celeba.mkdir()
    _set_params(copy, data={"source": "local", "local": {"path": str(celeba)}}, train={"epochs": 3})
    env = {**ENV, "PYTHONPATH": str(copy)}
    checks = ["tests/test_drift.py", "tests/test_params.py", "-p", "no:cacheprovider", "-q"]
    ran = subprocess.run([sys.executable, "-m", "pytest", *checks], cwd=copy, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout[-3000:]
    assert " passed" in ran.stdout and "failed" not in ran.stdout


def _scaled_down(name: str, params_file: Path) -> list[str]:
    """-S values that run recipe ``name`` at a quarter of its size for one short epoch, offline."""
    wanted = recipes.resolve(name, params_file)
    small = recipes.scaled(wanted, 0.25, name=name, train={"epochs": 1, "batch_size": 16, "limit_batches": 2})
    found = recipes.changes(wanted.model_dump(mode="json"), small.model_dump(mode="json"))
    return [f"{key}={recipes.hydra_value(value)}" for key, value in found]


def _experiment_params(repo: Path) -> dict[str, dict]:
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    out = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            rev = (exp.get("revs") or [{}])[0]
            if exp.get("name"):
                out[exp["name"]] = rev["data"]["params"]["params.yaml"]["data"]
    return out


def _run_recipes(repo: Path, names: list[str], how: str = "--run") -> dict[str, dict]:
    """Each recipe run (or queued) with `faceattrs recipe NAME --run`, one after another; the params each was
    resolved to, by the experiment's name."""
    expected = {}
    for name in names:
        extra = _scaled_down(name, repo / "params.yaml")
        wanted = recipes.resolve(name, repo / "params.yaml", extra).model_dump(mode="json")
        command = [sys.executable, "-m", "faceattrs.cli", "recipe", name, how]
        ran = subprocess.run(
            [*command, *(a for x in extra for a in ("-S", x))],
            cwd=repo,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
        experiment = ran.stdout.split(" -n ", 1)[1].split()[0]
        expected[experiment] = wanted
    return expected


def test_recipes_one_after_another_are_each_what_the_recipe_says_and_a_rerun_is_a_new_experiment(
    reproduced_repo, tmp_path
):
    repo = copy_repo(reproduced_repo[0], tmp_path / "repo")
    # MobileNet's run leaves its params in the workspace: its centre crop, MixUp and affine would leak into
    # the next recipe if recipes stacked. The next ones are queued (`dvc exp show` lists a queued
    # experiment's params), the baseline and then MobileNet again: a new experiment beside the first.
    expected = _run_recipes(repo, ["mobilenetv2-focal-mixup"])
    expected |= _run_recipes(repo, ["resnet18-bce-baseline", "mobilenetv2-focal-mixup"], how="--queue")
    assert list(expected) == ["mobilenetv2-focal-mixup", "resnet18-bce-baseline", "mobilenetv2-focal-mixup-2"]
    found = _experiment_params(repo)
    for name, wanted in expected.items():
        assert found[name] == wanted, name
    baseline = found["resnet18-bce-baseline"]
    assert baseline["augment"]["center_crop"] is None and baseline["augment"]["mixup_alpha"] == 0
    assert baseline["augment"]["affine"] is None and baseline["target"]["expression"] is None
    queued = dvc(repo, "queue", "status").stdout
    assert "resnet18-bce-baseline" in queued and "mobilenetv2-focal-mixup-2" in queued, queued
    assert found["mobilenetv2-focal-mixup-2"] == found["mobilenetv2-focal-mixup"]


@pytest.mark.slow
def test_all_six_recipes_run_one_after_another_in_one_workspace(reproduced_repo, tmp_path):
    repo = copy_repo(reproduced_repo[0], tmp_path / "repo")
    names = sorted(recipes.available())
    expected = _run_recipes(repo, names)
    assert list(expected) == names
    found = _experiment_params(repo)
    assert {name: found[name] for name in names} == expected


def test_a_sweep_with_fixed_settings_runs_on_a_pool_whose_server_is_on_another_machine(
    prefect, reproduced_repo, tmp_path
):
    """The server on 127.0.0.2 (another machine), with a secret, a worker and the sweep pointed at it with
    --api-url; every point carries the sweep's -S settings besides its own grid values."""
    from flows import server
    from flows.pool import wait_for_workers
    from tests.test_flows import Api, _git, shared_project

    work, bare = shared_project(reproduced_repo[0], tmp_path)
    host = "127.0.0.2"
    port = free_port(host)
    url = server.api_url(port, host)
    # Off the loopback the server needs a secret, and the worker and the sweep give it.
    secret = "admin:journey-secret"
    process = server.start(prefect_home_like(prefect, tmp_path / "prefect"), port, host=host, auth=secret)
    env = {k: v for k, v in ENV.items() if not k.startswith("PREFECT_API")} | {server.AUTH_VARIABLE: secret}
    flows = [sys.executable, "-m", "flows"]
    worker = subprocess.Popen(
        [*flows, "worker", "--pool", "far", "--api-url", url, "--git-remote", str(bare), "--limit", "1"],
        cwd=REPO,
        env={**env, "PREFECT_WORKER_HEARTBEAT_SECONDS": "2", "PREFECT_WORKER_QUERY_SECONDS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        api = Api(url, secret)
        try:
            wait_for_workers(api.client, "far", 1)  # the worker creates its pool as it joins
        finally:
            api.close()
        sweep = [*flows, "sweep", "--pool", "far", "--prefix", "j", "--repo", str(work)]
        # Evaluation settings only, so that the point reruns evaluate and report: with fixed thresholds the
        # evaluation writes the thresholds file predict reads as it was, and predict stays up to date.
        grid = ["-S", "evaluate.fair_group=Young", "-g", "evaluate.thresholds=[fixed]"]
        # A server that does not answer is an error, never a temporary server in its place.
        dead = server.api_url(free_port(host), host)
        refused = subprocess.run([*sweep, "--api-url", dead, *grid], env=env, capture_output=True, text=True)
        assert refused.returncode == 1 and f"no Prefect server answers at {dead}" in refused.stderr
        assert "temporary" not in refused.stderr + refused.stdout
        ran = subprocess.run([*sweep, "--api-url", url, *grid], env=env, capture_output=True, text=True, timeout=1200)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        log = worker.communicate(timeout=120)[0]
        server.stop(process)
    assert ran.returncode == 0, ran.stdout + ran.stderr + log
    assert f"against {url}" in log
    third = tmp_path / "third"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare), str(third)], check=True)
    pulled = dvc(third, "exp", "pull", "origin", "j-thresholdsfixed")
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    found = _experiment_params(third)["j-thresholdsfixed"]
    assert found["evaluate"]["thresholds"] == "fixed" and found["evaluate"]["fair_group"] == "Young"
    assert _git(work, "status", "--porcelain", "--untracked-files=no").strip() == ""
