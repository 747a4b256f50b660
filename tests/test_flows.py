"""The Prefect flows against a real Prefect server on 127.0.0.1, checked through its API and its UI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows import server
from flows.dvcrun import planned_stages
from flows.grid import parse_grid, point_name, points
from flows.pool import wait_for_workers
from flows.sweep import comparison
from tests.browser import CHROMIUM, browser_page
from tests.conftest import REPO, free_port, prefect_home_like
from tests.test_stages import ENV

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def repo(reproduced_repo, tmp_path_factory) -> Path:
    """A copy of the reproduced scratch project, which this module's flows change and run again."""
    from tests.conftest import copy_repo

    return copy_repo(reproduced_repo[0], tmp_path_factory.mktemp("flows") / "repo")


def _flows(prefect, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**ENV, **{k: v for k, v in prefect["env"].items() if k.startswith("PREFECT_")}}
    return subprocess.run(
        [sys.executable, "-m", "flows", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


class Api:
    """Reads what the flows left on the server."""

    def __init__(self, url: str, auth: str | None = None):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        self._settings = temporary_settings({PREFECT_API_URL: url, PREFECT_API_AUTH_STRING: auth})
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
    # A new training seed: the stages that read the train section and those after them run, the rest are
    # up to date, and every one of them is a task.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["seed"] += 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = _flows(prefect, "pipeline", "--repo", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr
    # Whether a stage ran comes from its dvc.lock entry, before and after.
    touched = ["labels", "train", "evaluate", "predict", "report"]
    for stage in planned_stages(repo):
        assert f"{stage}: {'ran' if stage in touched else 'up to date'}" in result.stdout, result.stdout
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
    # The stages before it were up to date after the run above: their tasks completed and say so.
    for name in ("download", "dedupe"):
        assert tasks[name].state.type.value == "COMPLETED"
        assert f"stage {name}: up to date" in api.logs(run.id, tasks[name].id), name
    # What DVC cached before the failure is still there and still valid.
    status = subprocess.run(["dvc", "status", "dedupe"], cwd=repo, env=ENV, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    # DVC removed split's outputs before running it; the cache and git give them back whole, so the tests
    # after this one start from an up-to-date project.
    subprocess.run(["git", "checkout", "--", "reports/split"], cwd=repo, check=True, capture_output=True)
    subprocess.run(["dvc", "checkout", "split"], cwd=repo, env=ENV, check=True, capture_output=True)
    status = subprocess.run(["dvc", "status", "--json"], cwd=repo, env=ENV, capture_output=True, text=True)
    assert json.loads(status.stdout) == {}, status.stdout


def test_sweep_on_dvcs_queue_ranks_its_points_and_leaves_the_workspace_alone(prefect, api, repo):
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "baseline", "--allow-empty"], cwd=repo, check=True, capture_output=True)
    params_before = (repo / "params.yaml").read_bytes()
    # An evaluation setting, so that each point reruns evaluate, predict and report, not the training.
    # "sideways" is refused by the params schema: that point fails and the sweep goes on.
    grid = "evaluate.tta=[none,sideways,flip]"
    result = _flows(prefect, "sweep", "-g", grid, "--prefix", "t", "-j", "2", "--repo", str(repo))
    assert result.returncode == 0, result.stdout + result.stderr
    run = api.flow_runs("faceattrs-sweep")[0]
    assert run.state.type.value == "COMPLETED"
    table = json.loads(api.artifacts(run.id)["sweep-comparison"].data)
    assert {r["experiment"] for r in table} == {"t-ttanone", "t-ttasideways", "t-ttaflip"}
    assert [r["status"] for r in table][:2] == ["completed", "completed"]
    assert table[0]["val_mean_accuracy"] >= table[1]["val_mean_accuracy"] and table[0]["best"] == "★"
    assert table[2]["experiment"] == "t-ttasideways" and table[2]["status"].startswith("failed")
    summary = api.artifacts(run.id)["sweep-summary"].data
    assert "2 of 3 points completed; failed: t-ttasideways" in summary
    assert float(api.artifacts(run.id)["sweep-progress"].data) == 100.0
    shown = subprocess.run(["dvc", "exp", "ls", "--name-only"], cwd=repo, env=ENV, capture_output=True, text=True)
    assert set(shown.stdout.split()) >= {"t-ttanone", "t-ttaflip"}, shown.stdout + shown.stderr
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
    # `dvc repro` must work with no Prefect server and no PREFECT_API_URL: stages never load Prefect. Read
    # from the source of every project file a stage runs, lazy imports included, rather than by importing
    # the nine stages (seconds of torch and timm for an answer the files give).
    import ast

    from faceattrs.core.code_deps import code_deps

    modules = sorted(p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__")
    assert len(modules) == 9
    files = {path for m in modules for path in code_deps(f"stages.{m}", REPO) if path.endswith(".py")}
    assert "faceattrs/training/fit.py" in files and "stages/train.py" in files
    found = {}
    for path in sorted(files):
        for node in ast.walk(ast.parse((REPO / path).read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found |= {f"{path}: {n}": n for n in names if n.split(".")[0] in ("prefect", "flows")}
    assert found == {}, found


def test_a_worker_started_by_the_flows_cli_joins_its_pool_on_the_projects_server(prefect, api):
    process = _worker(prefect["url"], "remote-gpus", REPO, REPO)
    try:
        wait_for_workers(api.client, "remote-gpus", 1)
        assert api.client.read_work_pool("remote-gpus").type == "process"
    finally:
        os.killpg(process.pid, 15)
        try:
            out = process.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:  # a loaded machine can keep Prefect's graceful shutdown past a minute
            os.killpg(process.pid, 9)
            out = process.communicate()[0]
    assert f"against {prefect['url']}" in out


def test_a_server_on_every_address_advertises_this_machine_and_is_used_through_the_loopback(tmp_path):
    env = server.server_env(tmp_path, 4321, host="0.0.0.0")
    assert env["PREFECT_SERVER_API_HOST"] == "0.0.0.0"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4321/api"
    assert env["PREFECT_UI_API_URL"] == f"http://{socket.getfqdn()}:4321/api"
    assert server.server_env(tmp_path, 4321)["PREFECT_UI_API_URL"] == "http://127.0.0.1:4321/api"


def test_a_failed_point_is_summed_up_by_the_stages_own_error():
    from flows.clone import _reason

    output = [
        "Running stage 'train':",
        "> python -m stages.train --shards data/shards",
        "train: error: params.yaml: invalid parameters:",
        "  loss.gamma: Input should be greater than or equal to 0",
        "ERROR: failed to reproduce 'train': failed to run: python -m stages.train, exited with 1",
    ]
    assert _reason(output) == (
        "train: error: params.yaml: invalid parameters: loss.gamma: Input should be greater than or equal to 0"
    )
    assert _reason(output[:2] + output[4:]).startswith("ERROR: failed to reproduce 'train'")
    assert _reason([]) == "no output"


def test_a_pool_sweep_needs_its_commit_on_the_git_remote(tmp_path):
    from flows import clone

    work, bare = tmp_path / "work", tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    (work / "a.txt").write_text("a")
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "one")
    _git(work, "remote", "add", "origin", "../origin.git")
    # A relative remote is made absolute: a point's clone lives in another folder.
    url = clone.remote_url(work)
    assert url == str(bare.resolve())
    _git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
    clone.ensure_on_remote(work, url, clone.head_commit(work))
    (work / "a.txt").write_text("b")
    assert clone.uncommitted(work) == ["a.txt"]
    _git(work, "commit", "-qam", "two, not pushed")
    with pytest.raises(ValueError, match=r"does not have: push it first"):
        clone.ensure_on_remote(work, url, clone.head_commit(work))
    with pytest.raises(ValueError, match=r"no git remote 'upstream'"):
        clone.remote_url(work, "upstream")
    _git(work, "remote", "add", "web", "https://example.org/faceattrs.git")
    assert clone.remote_url(work, "web") == "https://example.org/faceattrs.git"


def shared_project(template: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a reproduced scratch project with a git remote (a bare repository) and a DVC remote, both
    pushed, as a team shares a project with a pool's workers; the workspace and the bare remote."""
    from tests.conftest import copy_repo

    work = copy_repo(template, tmp_path / "work")
    # The workers take the point flow from the git remote, so the project's flows travel with it.
    shutil.copytree(REPO / "flows", work / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    storage = tmp_path / "dvc-storage"
    subprocess.run(["dvc", "remote", "add", "-d", "-f", "shared", str(storage)], cwd=work, env=ENV, check=True)
    _git(work, "add", "-A")
    _git(work, "commit", "-qm", "the flows, a shared DVC remote")
    _git(work, "remote", "add", "origin", str(bare))
    _git(work, "push", "-q", "origin", "HEAD:refs/heads/main")
    pushed = subprocess.run(["dvc", "push"], cwd=work, env=ENV, capture_output=True, text=True)
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    return work, bare


def _git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout


def _worker(url: str, pool: str, cwd: Path, remote: Path, *more: str, env: dict | None = None) -> subprocess.Popen:
    """`python -m flows worker` of ``pool`` against the server at ``url``, cloning only ``remote``, one run at a time
    unless ``more`` says otherwise; its output in ``stdout``."""
    env = {k: v for k, v in (env or ENV).items() if k != "PREFECT_API_URL"}
    command = ["worker", "--pool", pool, "--api-url", url, "--git-remote", str(remote), "--limit", "1", *more]
    return subprocess.Popen(
        [sys.executable, "-m", "flows", *command],
        cwd=cwd,
        env={**env, "PREFECT_WORKER_HEARTBEAT_SECONDS": "2", "PREFECT_WORKER_QUERY_SECONDS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


# About 150 s here (two workers, five points, each a clone and a dvc exp run): under -m slow (make test-all).
@pytest.mark.slow
def test_a_sweep_on_a_work_pool_runs_each_point_in_a_clone_and_its_experiments_come_home(
    prefect, api, reproduced_repo, tmp_path
):
    template, _ = reproduced_repo
    work, bare = shared_project(template, tmp_path)
    params_before = (work / "params.yaml").read_bytes()
    head_before = _git(work, "rev-parse", "HEAD")

    workers = [_worker(prefect["url"], "sweep-pool", tmp_path, bare) for _ in range(2)]
    try:
        wait_for_workers(api.client, "sweep-pool", 2)
        # gamma -1 is refused by the params schema when train runs: that point fails, the others complete.
        result = _flows(
            prefect,
            "sweep",
            "--pool",
            "sweep-pool",
            "-g",
            "loss.gamma=[0,1,-1,2,3]",
            "--prefix",
            "p",
            "--repo",
            str(work),
        )
    finally:
        for worker in workers:
            os.killpg(worker.pid, 15)
        logs = [worker.communicate(timeout=60)[0] for worker in workers]
    assert result.returncode == 0, result.stdout + result.stderr + "\n".join(logs)

    run = api.flow_runs("faceattrs-sweep")[0]
    table = json.loads(api.artifacts(run.id)["sweep-comparison"].data)
    good = {"p-gamma0", "p-gamma1", "p-gamma2", "p-gamma3"}
    assert {r["experiment"] for r in table if r["status"] == "completed"} == good
    assert table[-1]["experiment"] == "p-gamma-1" and table[-1]["status"].startswith("failed")
    # The stage's own error, not only that the flow run failed.
    assert "loss.gamma: Input should be greater than or equal to 0" in table[-1]["status"], table[-1]["status"]
    assert "4 of 5 points completed; failed: p-gamma-1" in api.artifacts(run.id)["sweep-summary"].data
    # Each point was its own flow run of the deployment, a child of the sweep, run by one of the two workers.
    points = api.flow_runs("faceattrs-sweep-point")
    mine = [p for p in points if p.name in good | {"p-gamma-1"}]
    assert len(mine) == 5 and all(p.parent_task_run_id is not None for p in mine)
    assert sum(p.state.type.value == "COMPLETED" for p in mine) == 4
    done = next(p for p in mine if p.name == "p-gamma2")
    steps = json.loads(api.artifacts(done.id)["sweep-point-steps"].data)
    assert [row["step"] for row in steps] == ["git clone", "dvc exp run --pull", "dvc exp push"]
    assert any("stages.train" in line for line in api.logs(done.id)), "the point's live DVC output is in its logs"

    # The workspace that started the sweep is as it was.
    assert (work / "params.yaml").read_bytes() == params_before
    assert _git(work, "rev-parse", "HEAD") == head_before
    assert _git(work, "status", "--porcelain", "--untracked-files=no").strip() == ""

    # A third clone fetches the experiments from the git remote and sees their metrics.
    third = tmp_path / "third"
    subprocess.run(["git", "clone", "-q", "-b", "main", str(bare), str(third)], check=True)
    pulled = subprocess.run(
        ["dvc", "exp", "pull", "origin", *sorted(good)], cwd=third, env=ENV, capture_output=True, text=True
    )
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=third, env=ENV, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    experiments = {
        exp.get("name"): exp["revs"][0]["data"]["metrics"]
        for baseline in json.loads(shown.stdout)  # the workspace, then HEAD with its experiments
        for exp in baseline.get("experiments") or []
    }
    assert set(experiments) >= good
    by_name = {r["experiment"]: r for r in table}
    for name in good:
        evaluate = experiments[name]["reports/evaluate/metrics.json"]["data"]
        assert evaluate["test"]["mean_accuracy"] == by_name[name]["test_mean_accuracy"]
    # Their outputs reached the DVC remote: the third clone can check one out in full.
    applied = subprocess.run(["dvc", "exp", "apply", "p-gamma2"], cwd=third, env=ENV, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    checked = subprocess.run(["dvc", "pull", "train"], cwd=third, env=ENV, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert (third / "data/models").is_dir() and any((third / "data/models").iterdir())


# ---------------------------------------------------------------- sharing a server: the secret, signals, what runs


SECRET = "admin:correct-horse-battery-staple"


def _prefect_servers_on(port: int) -> list[int]:
    """The ids of the `prefect server start` processes serving ``port``, from their command lines."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:  # ended while listed
            continue
        serving = "--port" in args and args[args.index("--port") + 1 :][:1] == [str(port)]
        if serving and "server" in args and "start" in args and any(a.endswith("prefect") for a in args):
            found.append(int(cmdline.parent.name))
    return found


def test_a_server_other_machines_reach_refuses_to_start_without_a_secret(tmp_path):
    # 127.0.0.2 plays another machine's address: only 127.0.0.1 and ::1 go without a secret.
    env = {k: v for k, v in ENV.items() if k != "FACEATTRS_PREFECT_AUTH"}
    port = free_port()
    command = [sys.executable, "-m", "flows", "--port", str(port), "server", "--host", "127.0.0.2"]
    try:
        ran = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    finally:
        leftover = _prefect_servers_on(port)
        for pid in leftover:  # what the command left serving, were it to start one
            os.kill(pid, 9)
    assert leftover == []
    assert ran.returncode == 1 and ran.stdout == ""
    assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("error: a server on 127.0.0.2 is reachable")
    assert "FACEATTRS_PREFECT_AUTH" in ran.stderr and "--auth-file" in ran.stderr
    # The secret never goes on the command line.
    refused = subprocess.run([*command, "--auth", SECRET], cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr


def test_a_server_on_a_network_address_lets_in_only_clients_and_workers_with_its_secret(prefect, tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    from flows.__main__ import NoServer, _use_server  # what `python -m flows sweep|pipeline|serve` call

    port = free_port()
    url = server.api_url(port, "127.0.0.2")
    process = server.start(prefect_home_like(prefect, tmp_path / "home"), port, host="127.0.0.2", auth=SECRET)
    env = {k: v for k, v in ENV.items() if k not in (server.AUTH_VARIABLE, server.CLIENT_AUTH)}
    monkeypatch.setattr(os, "environ", env.copy())  # what _use_server sets stays in this test
    try:
        # Anyone who reaches the address: no API call without the secret, only the health check.
        listing = urllib.request.Request(f"{url}/work_pools/filter", data=b"{}", method="POST")
        listing.add_header("Content-Type", "application/json")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(listing, timeout=30)
        assert refused.value.code == 401
        assert server.healthy(url) and not server.lets_in(url, None) and not server.lets_in(url, "admin:guess")

        # A worker without the secret says so and stops; so does a sweep or pipeline with a wrong one.
        command = ["worker", "--pool", "shared", "--api-url", url, "--git-remote", str(REPO)]
        alone = subprocess.run(
            [sys.executable, "-m", "flows", *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert alone.returncode == 1
        assert f"the Prefect server at {url} refuses clients without its secret" in alone.stderr
        with pytest.raises(NoServer, match="refuses this secret"):
            _use_server(port, url, required=True, auth="admin:guess")

        # The secret from a file: the client that a sweep, a pipeline or a worker makes is let in.
        secret_file = tmp_path / "secret"
        secret_file.write_text(SECRET + "\n")
        _use_server(port, url, required=True, auth=server.secret(secret_file))
        assert os.environ[server.CLIENT_AUTH] == SECRET and os.environ["PREFECT_API_URL"] == url
        api = Api(url, os.environ[server.CLIENT_AUTH])
        try:
            made = api.client.create_flow_from_name("shared-flow")
            assert api.client.read_flow(made).name == "shared-flow"
        finally:
            api.close()
    finally:
        server.stop(process)


def test_sigterm_stops_the_flows_server_and_leaves_nothing_serving(prefect, tmp_path):
    # The command in a folder of its own, so its PREFECT_HOME (the project's .prefect/) is there too.
    shutil.copytree(REPO / "flows", tmp_path / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    prefect_home_like(prefect, tmp_path / ".prefect")
    port = free_port()
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "flows", "--port", str(port), "server"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert "Prefect server: http://127.0.0.1" in wrapper.stdout.readline()  # printed once it answers
        assert server.healthy(server.api_url(port)) and _prefect_servers_on(port)
        wrapper.send_signal(15)  # as `kill` sends it: to the command alone, not its process group
        stopped = wrapper.wait(timeout=90)
        assert not server.healthy(server.api_url(port))
        assert _prefect_servers_on(port) == []
        assert stopped == 0
    finally:
        for pid in _prefect_servers_on(port):  # an orphan the command left behind
            os.kill(pid, 9)
        if wrapper.poll() is None:
            os.killpg(wrapper.pid, 9)


def _final(api: Api, run_id, timeout: float = 300):
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        state = api.client.read_flow_run(run_id).state
        if state is not None and state.is_final():
            return state
        time.sleep(2)
    raise TimeoutError(f"flow run {run_id} not final in {timeout:.0f} s")


def _one_stage_project(folder: Path, command: str) -> tuple[Path, str]:
    """A git repository with the flows and a one-stage pipeline (``command``, reading loss.gamma); its HEAD."""
    shutil.copytree(REPO / "flows", folder / "flows", ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "dvc.yaml").write_text(f"stages:\n  s:\n    cmd: {command}\n    params:\n      - loss.gamma\n")
    (folder / "params.yaml").write_text("loss:\n  gamma: 0\n")
    _git(folder, "init", "-q")
    subprocess.run(["dvc", "init", "-q"], cwd=folder, env=ENV, check=True)
    _git(folder, "add", "-A")
    _git(folder, "commit", "-qm", "one stage")
    return folder, _git(folder, "rev-parse", "HEAD").strip()


# About a minute here (57-73 s on two shared cores): a worker, a deployment, two flow runs refused before any clone.
def test_a_flow_run_made_through_the_api_runs_no_other_file_s_settings_and_no_other_git_remote(prefect, api, tmp_path):
    """What anyone reaching the API could send a worker: an override that rewrites dvc.yaml's commands, and a
    git remote of their own whose pipeline runs their command. The worker runs neither."""
    from flows import pool

    marker, planted = tmp_path / "override-ran", tmp_path / "remote-ran"
    work, commit = _one_stage_project(tmp_path / "work", "python -c pass")
    bare = tmp_path / "origin.git"
    _git(tmp_path, "init", "-q", "--bare", str(bare))
    _git(work, "push", "-q", str(bare), "HEAD:refs/heads/main")
    hostile, theirs = _one_stage_project(tmp_path / "hostile", f"touch {planted}")
    dvc_yaml = (work / "dvc.yaml").read_text()

    worker = _worker(prefect["url"], "guarded", tmp_path, bare, "--limit", "2")
    try:
        wait_for_workers(api.client, "guarded", 1)  # which creates the pool
        deployment = api.client.read_deployment_by_name(pool.deploy("guarded", str(bare), commit))
        attacks = {
            "rewrite-dvc-yaml": (str(bare), commit, [f"dvc.yaml:stages.s.cmd='touch {marker}'"]),
            "their-remote": (str(hostile), theirs, []),
        }
        runs = {
            name: api.client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"git_url": url, "commit": sha, "name": name, "overrides": overrides},
                name=name,
            )
            for name, (url, sha, overrides) in attacks.items()
        }
        states = {name: _final(api, run.id) for name, run in runs.items()}
    finally:
        os.killpg(worker.pid, 15)
        out = worker.communicate(timeout=180)[0]
    assert not marker.exists() and not planted.exists(), out
    assert all(state.is_failed() for state in states.values()), {n: s.message for n, s in states.items()}
    messages = {name: state.message or "" for name, state in states.items()}
    assert "a file prefix is not accepted" in messages["rewrite-dvc-yaml"], messages
    assert f"git remote {hostile} refused: this worker clones only {bare}" in messages["their-remote"], messages
    # Refused before any clone or DVC command: nothing reached the git remote, nothing changed here.
    assert "refs/exps" not in _git(bare, "for-each-ref")
    assert (work / "dvc.yaml").read_text() == dvc_yaml
