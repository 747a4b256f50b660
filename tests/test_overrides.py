"""Params overrides are params and nothing else, wherever they come from: the command line, a flow run, a grid."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from faceattrs.core.overrides import BadOverride, check, check_all
from tests.conftest import REPO
from tests.test_stages import ENV

# What `dvc exp run -S` would run as another file's settings, or as a key to add or delete.
HOSTILE = {
    "dvc.yaml:stages.train.cmd='touch /tmp/owned'": "a file prefix is not accepted",
    "params.yaml:loss.gamma=1": "a file prefix is not accepted",
    "+stages.train.cmd=touch": "Hydra's +, ++ and ~ are not accepted",
    "++loss.gamma=1": "Hydra's +, ++ and ~ are not accepted",
    "~loss.gamma": "Hydra's +, ++ and ~ are not accepted",
    "loss.gama=1": "unknown params key loss.gama; valid keys of loss: name, gamma",
    "stages.train.cmd=touch": "unknown params key stages.train.cmd; valid keys of params.yaml's top level: data",
    "loss.gamma.x=1": "loss.gamma is a value, not a section",
    "loss@pkg.gamma=1": "is not a dotted params key",
    "data.local.path=${oc.env:HOME}": "an interpolation (${...}) is not accepted",
    "data.local.path='${oc.env:PREFECT_API_AUTH_STRING}'": "an interpolation (${...}) is not accepted",
    "loss.gamma=1,2": "one value, not a sweep",
    "loss.gamma=choice(1,2)": "one value, not a sweep",
    "data.url.base=https://mirror/?a=b": "not an override Hydra reads",
    "loss.gamma": "expected KEY=VALUE",
}


def test_an_override_sets_one_params_key_in_hydra_s_plain_form():
    # Every value the pipeline's own tests, recipes and README pass.
    plain = [
        "loss.gamma=3",
        "loss.gamma=[0,1]",
        "augment.affine={degrees:5}",
        "augment.affine.degrees=5",
        'target.expression="~Male & Smiling"',
        "target.expression='Smiling ^ Male'",
        "model.input_size=null",
        "model.backbone_args={img_size:[16,16]}",
        "data.synthetic.label_noise.Smiling=0.1",  # a key of a free mapping: its field checks it
        "data.local.path=/data/celeba",
        "evaluate.tta=none",
        "train.compile=true",
    ]
    assert check_all(plain) == plain
    for override, why in HOSTILE.items():
        with pytest.raises(BadOverride) as refused:
            check(override, "-g")
        assert str(refused.value).startswith(f"-g {override}: ") and why in str(refused.value), str(refused.value)


def _dead_api() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/api"


@pytest.mark.parametrize(
    "args",
    [
        ["pipeline", "-S", "dvc.yaml:stages.download.cmd='touch /tmp/owned'"],
        ["sweep", "-g", "loss.gamma=[0,1]", "-S", "+stages.download.cmd=touch"],
        ["sweep", "-g", "dvc.yaml:stages.download.cmd=['touch /tmp/owned']"],
    ],
)
def test_the_flows_command_refuses_an_override_before_it_reaches_a_server(args):
    ran = subprocess.run(
        [sys.executable, "-m", "flows", *args, "--api-url", _dead_api()],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1 and ran.stderr.startswith("error: -"), ran.stderr
    assert "not accepted" in ran.stderr and "no Prefect server" not in ran.stderr


def test_a_sweep_s_points_are_checked_and_written_as_hydra_reads_them():
    from flows.grid import checked, point_overrides

    point = {"model.weights": None, "train.compile": True, "target.expression": "~Male"}
    assert point_overrides(["data.source=local"], point) == [
        "data.source=local",
        "model.weights=null",
        "train.compile=true",
        'target.expression="~Male"',
    ]
    assert checked(["loss.gamma=0,1", "model.backbone=[resnet18,resnet10t]"], []) == {
        "loss.gamma": [0, 1],
        "model.backbone": ["resnet18", "resnet10t"],
    }
    with pytest.raises(BadOverride, match=r"^-g loss\.gamma=\"\$\{oc\.env:HOME\}\": an interpolation"):
        checked(["loss.gamma=[0,${oc.env:HOME}]"], [])
    with pytest.raises(BadOverride, match=r"^-S ~loss\.gamma: Hydra's"):
        checked(["loss.gamma=[0,1]"], ["~loss.gamma"])


def test_a_worker_runs_a_point_only_from_its_own_git_remote_at_a_commit_with_params_overrides(tmp_path):
    from flows.clone import PointRefused, check_point, normal_url

    remote, commit = str(tmp_path / "origin.git"), "a" * 40
    check_point(remote, commit, "p-gamma0", ["loss.gamma=0"], remote)
    refusals = [
        (str(tmp_path / "theirs.git"), commit, "p", (), f"git remote {tmp_path / 'theirs.git'} refused"),
        ("--upload-pack=touch /tmp/owned", commit, "p", (), "refused: this worker clones only"),
        (remote, "--orphan=x", "p", (), "commit '--orphan=x' refused"),
        (remote, "HEAD", "p", (), "commit 'HEAD' refused"),
        (remote, commit, "../../p", (), "experiment name '../../p' refused"),
        (remote, commit, "-f", (), "experiment name '-f' refused"),
        (remote, commit, "p", ("dvc.yaml:stages.s.cmd=x",), "p: -S dvc.yaml:stages.s.cmd=x: a file prefix"),
    ]
    for url, sha, name, overrides, why in refusals:
        with pytest.raises(PointRefused) as refused:
            check_point(url, sha, name, list(overrides), remote)
        assert why in str(refused.value), str(refused.value)
    with pytest.raises(PointRefused, match="this worker clones no git remote: start it with"):
        check_point(remote, commit, "p", [], None)
    # The worker's --git-remote and the sweep's remote name one remote alike, relative or not.
    assert normal_url("origin.git", tmp_path) == remote and normal_url("ssh://host/x.git") == "ssh://host/x.git"


def test_the_pipeline_and_sweep_flows_refuse_an_override_before_anything_runs(tmp_path):
    # A deployment's flow run takes its parameters from whoever created it: the flows check them first.
    from flows.pipeline import pipeline
    from flows.sweep import sweep

    hostile = "dvc.yaml:stages.download.cmd='touch /tmp/owned'"
    with pytest.raises(BadOverride, match="a file prefix is not accepted"):
        pipeline.fn(repo=str(tmp_path), overrides=[hostile])
    with pytest.raises(BadOverride, match=r"^-S \+stages\.download\.cmd=touch: Hydra's"):
        sweep.fn(grid=["loss.gamma=[0,1]"], fixed=["+stages.download.cmd=touch"], repo=str(tmp_path))
    with pytest.raises(BadOverride, match=r"^-g stages\.download\.cmd=touch: unknown params key"):
        sweep.fn(grid=["stages.download.cmd=touch"], repo=str(tmp_path))
