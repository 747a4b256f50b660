"""The Prefect flows against a real Prefect server on 127.0.0.1, checked through its API and its UI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flows import server
from flows.dvcrun import planned_stages
from flows.sweep import comparison, parse_grid, point_name, points
from tests.browser import CHROMIUM, browser_page
from tests.conftest import REPO
from tests.test_stages import ENV, scratch_repo

pytestmark = pytest.mark.timeout(1200)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect(tmp_path_factory):
    """A real Prefect server (not the test harness) for this module; stopped at its end."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    process = server.start(home, port)
    yield {"url": server.api_url(port), "ui": f"http://127.0.0.1:{port}", "env": server.server_env(home, port)}
    server.stop(process)
    assert not server.healthy(server.api_url(port))


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = scratch_repo(tmp_path_factory.mktemp("flows"))
    return repo


def _flows(prefect, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**ENV, **{k: v for k, v in prefect["env"].items() if k.startswith("PREFECT_")}}
    return subprocess.run(
        [sys.executable, "-m", "flows", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


class Api:
    """Reads what the flows left on the server."""

    def __init__(self, url: str):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        self._settings = temporary_settings({PREFECT_API_URL: url})
        self._settings.__enter__()
        self.client = get_client(sync_client=True)
        self.client.__enter__()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self._settings.__exit__(None, None, None)

    def flow_runs(self, flow_name: str) -> list:
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.client.schemas.sorting import FlowRunSort

        return self.client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), sort=FlowRunSort.START_TIME_DESC
        )

    def task_runs(self, flow_run_id) -> list:
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        runs = self.client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        return sorted(runs, key=lambda r: r.start_time or r.expected_start_time)

    def artifacts(self, flow_run_id) -> dict:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        found = self.client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        latest = {}
        for artifact in sorted(found, key=lambda a: a.created):
            latest[artifact.key] = artifact
        return latest

    def logs(self, flow_run_id, task_run_id=None) -> list[str]:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTaskRunId

        log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        if task_run_id is not None:
            log_filter.task_run_id = LogFilterTaskRunId(any_=[task_run_id])
        return [log.message for log in self.client.read_logs(log_filter=log_filter, limit=200)]


@pytest.fixture(scope="module")
def api(prefect):
    api = Api(prefect["url"])
    yield api
    api.close()


# ---------------------------------------------------------------- pure parts, no server


def test_sweep_grid_parsing_and_names():
    grid = parse_grid(["loss.gamma=[0,1,2,3]", "augment.mixup_alpha=[0,0.2]", "model.backbone=resnet18"])
    assert grid == {"loss.gamma": [0, 1, 2, 3], "augment.mixup_alpha": [0, 0.2], "model.backbone": ["resnet18"]}
    assert len(points(grid)) == 8
    assert point_name("s1", {"loss.gamma": 2, "augment.mixup_alpha": 0.2}) == "s1-gamma2-mixup-alpha0-2"
    with pytest.raises(ValueError, match="expected key="):
        parse_grid(["loss.gamma"])
    table = comparison(
        [
            {"experiment": "a", "status": "completed", "val_mean_accuracy": 0.8},
            {"experiment": "b", "status": "failed: boom"},
            {"experiment": "c", "status": "completed", "val_mean_accuracy": 0.9},
        ]
    )
    assert [(r["experiment"], r["best"]) for r in table] == [("c", "★"), ("a", ""), ("b", "")]


def test_stage_order_is_dvcs_own(repo):
    # Read from DVC's stage graph; checked here against the order `dvc repro --dry` prints.
    import re

    stages = planned_stages(repo)
    dry = subprocess.run(["dvc", "repro", "--dry", "--force"], cwd=repo, env=ENV, capture_output=True, text=True)
    assert stages == re.findall(r"Running stage '([^']+)'", dry.stdout)
    assert stages[0] == "download" and set(stages) == {
        "download",
        "dedupe",
        "split",
        "preprocess",
        "labels",
        "train",
        "evaluate",
        "predict",
        "report",
    }


def test_pipeline_flow_runs_every_stage_as_a_task(prefect, api, repo):
    result = _flows(prefect, "pipeline", "--repo", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr
    # Whether a stage ran comes from its dvc.lock entry, before and after.
    assert all(f"{stage}: ran" in result.stdout for stage in planned_stages(repo)), result.stdout
    run = api.flow_runs("faceattrs-pipeline")[0]
    assert run.state.type.value == "COMPLETED"
    tasks = api.task_runs(run.id)
    assert [t.name for t in tasks] == planned_stages(repo)
    assert all(t.state.type.value == "COMPLETED" for t in tasks)

    artifacts = api.artifacts(run.id)
    assert {"metrics", "metrics-diff", "report", "training-progress", "training-epoch"} <= set(artifacts)
    metrics = json.loads((repo / "reports/evaluate/metrics.json").read_text())
    table = json.loads(artifacts["metrics"].data)
    assert table[0]["attribute"] == "mean (40)" and table[0]["accuracy"] == metrics["test"]["mean_accuracy"]
    assert len(table) == 41 and {"accuracy", "majority_baseline", "above_baseline"} <= set(table[1])
    assert "dvc metrics diff HEAD" in artifacts["metrics-diff"].data
    assert artifacts["report"].type == "markdown"  # how Prefect stores a link artifact
    assert f"({(repo / 'reports/README.md').as_uri()})" in artifacts["report"].data
    assert float(artifacts["training-progress"].data) == 100.0

    train = next(t for t in tasks if t.name == "train")
    train_logs = api.logs(run.id, train.id)
    assert any("Running stage 'train'" in m for m in train_logs)
    assert any(m.startswith("> python -m stages.train") for m in train_logs)
    evaluate = next(t for t in tasks if t.name == "evaluate")
    assert any("evaluate: test mean accuracy" in m for m in api.logs(run.id, evaluate.id))

    again = _flows(prefect, "pipeline", "--repo", str(repo))
    assert again.returncode == 0, again.stderr
    assert "train: up to date" in again.stdout
    rerun = api.flow_runs("faceattrs-pipeline")[0]
    assert rerun.id != run.id and rerun.state.type.value == "COMPLETED"
    for task in api.task_runs(rerun.id):
        assert task.state.type.value == "COMPLETED"
        assert f"stage {task.name}: up to date" in api.logs(rerun.id, task.id), task.name


def test_a_failing_stage_fails_its_task_and_the_flow(prefect, api, repo):
    split = repo / "stages/split.py"
    original = split.read_text()
    split.write_text(
        original.replace(
            "def main() -> None:\n", "def main() -> None:\n    raise ValueError('split broken on purpose')\n", 1
        )
    )
    try:
        result = _flows(prefect, "pipeline", "--repo", str(repo))
    finally:
        split.write_text(original)
    assert result.returncode == 1 and "stage split failed" in result.stderr
    run = api.flow_runs("faceattrs-pipeline")[0]
    assert run.state.type.value == "FAILED"
    tasks = {t.name: t for t in api.task_runs(run.id)}
    assert tasks["split"].state.type.value == "FAILED"
    assert list(tasks) == ["download", "dedupe", "split"]  # nothing after the failure ran
    logs = "\n".join(api.logs(run.id, tasks["split"].id))
    assert "split broken on purpose" in logs
    # What DVC cached before the failure is still there and still valid.
    status = subprocess.run(["dvc", "status", "dedupe"], cwd=repo, env=ENV, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout


def test_sweep_on_dvcs_queue_ranks_its_points_and_leaves_the_workspace_alone(prefect, api, repo):
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "baseline", "--allow-empty"], cwd=repo, check=True, capture_output=True)
    params_before = (repo / "params.yaml").read_bytes()
    # gamma -1 is refused by the params schema: that point fails and the sweep goes on.
    result = _flows(prefect, "sweep", "-g", "loss.gamma=[0,-1,2]", "--prefix", "t", "-j", "2", "--repo", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr
    run = api.flow_runs("faceattrs-sweep")[0]
    assert run.state.type.value == "COMPLETED"
    table = json.loads(api.artifacts(run.id)["sweep-comparison"].data)
    assert {r["experiment"] for r in table} == {"t-gamma0", "t-gamma-1", "t-gamma2"}
    assert [r["status"] for r in table][:2] == ["completed", "completed"]
    assert table[0]["val_mean_accuracy"] >= table[1]["val_mean_accuracy"] and table[0]["best"] == "★"
    assert table[2]["experiment"] == "t-gamma-1" and table[2]["status"].startswith("failed")
    summary = api.artifacts(run.id)["sweep-summary"].data
    assert "2 of 3 points completed; failed: t-gamma-1" in summary
    assert float(api.artifacts(run.id)["sweep-progress"].data) == 100.0
    shown = subprocess.run(["dvc", "exp", "ls", "--name-only"], cwd=repo, env=ENV, capture_output=True, text=True)
    assert set(shown.stdout.split()) >= {"t-gamma0", "t-gamma2"}, shown.stdout + shown.stderr
    # Queued experiments ran in folders of their own: the workspace is as it was.
    assert (repo / "params.yaml").read_bytes() == params_before
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    assert status.stdout.strip() == "", status.stdout


@pytest.mark.skipif(
    not CHROMIUM, reason="chromium is not installed (the Makefile's test set-up installs it with apt-get)"
)
def test_the_ui_shows_the_flow_run_and_its_artifacts(prefect, api, repo, tmp_path):
    # The first run, which ran every stage: its page shows the training artifacts too.
    run = [
        r
        for r in api.flow_runs("faceattrs-pipeline")
        if r.state.type.value == "COMPLETED" and r.parent_task_run_id is None
    ][-1]
    with browser_page(offline=False, size=(1400, 1300)) as page:
        page.goto(f"{prefect['ui']}/runs/flow-run/{run.id}?tab=Artifacts")
        page.get_by_text(run.name, exact=True).first.wait_for(timeout=60_000)
        page.get_by_text("Artifacts", exact=True).first.click()
        for key in ("metrics", "metrics-diff", "report", "training-progress", "training-epoch"):
            page.get_by_text(key, exact=True).first.wait_for(timeout=60_000)
        text = page.inner_text("body")
        shot = page.screenshot(path=str(tmp_path / "flow-run.png"))
        assert page.refused == []
    assert run.name in text and "faceattrs-pipeline" in text
    assert len(shot) > 20_000
    if os.environ.get("FACEATTRS_SCREENSHOT"):  # how the README's picture is made
        Path(os.environ["FACEATTRS_SCREENSHOT"]).write_bytes(shot)


def test_prefect_yaml_deploys_both_flows_to_a_work_pool(prefect, api):
    env = {
        **ENV,
        **{k: v for k, v in prefect["env"].items() if k.startswith("PREFECT_")},
        "FACEATTRS_GIT_URL": str(REPO),
    }
    prefect_cmd = server.prefect_command()
    pool = subprocess.run(
        [prefect_cmd, "work-pool", "create", "faceattrs", "--type", "process"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pool.returncode == 0, pool.stdout + pool.stderr
    deploy = subprocess.run(
        [prefect_cmd, "--no-prompt", "deploy", "--all"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    deployments = {d.name: d for d in api.client.read_deployments()}
    assert set(deployments) >= {"pipeline", "sweep"}
    assert deployments["pipeline"].entrypoint == "flows/pipeline.py:pipeline"
    assert deployments["sweep"].work_pool_name == "faceattrs"
    assert deployments["pipeline"].pull_steps[0]["prefect.deployments.steps.git_clone"]["repository"] == str(REPO)


def test_no_stage_imports_prefect():
    # `dvc repro` must work with no Prefect server and no PREFECT_API_URL: stages never load Prefect.
    modules = sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module('stages.' + m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    )
    env = {k: v for k, v in ENV.items() if not k.startswith("PREFECT_")}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]" and len(modules) == 9


def test_a_worker_started_by_the_flows_cli_joins_its_pool_on_the_projects_server(prefect, api):
    import time

    env = {k: v for k, v in ENV.items() if k != "PREFECT_API_URL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows", "worker", "--pool", "remote-gpus", "--api-url", prefect["url"]],
        cwd=REPO,
        env={**env, "PREFECT_WORKER_HEARTBEAT_SECONDS": "2", "PREFECT_WORKER_QUERY_SECONDS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, workers = time.time() + 120, []
        while time.time() < deadline and not workers:
            time.sleep(2)
            try:
                workers = api.client.read_workers_for_work_pool("remote-gpus")
            except Exception:  # the pool does not exist until the worker has created it
                workers = []
        assert workers, "no worker joined the pool"
        assert api.client.read_work_pool("remote-gpus").type == "process"
    finally:
        os.killpg(process.pid, 15)
        out = process.communicate(timeout=60)[0]
    assert f"against {prefect['url']}" in out


def test_a_server_on_every_address_advertises_this_machine_and_is_used_through_the_loopback(tmp_path):
    env = server.server_env(tmp_path, 4321, host="0.0.0.0")
    assert env["PREFECT_SERVER_API_HOST"] == "0.0.0.0"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["PREFECT_UI_API_URL"] == f"http://{socket.getfqdn()}:4321/api"
    assert server.server_env(tmp_path, 4321)["PREFECT_UI_API_URL"] == "http://127.0.0.1:4321/api"
