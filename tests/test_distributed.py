"""Data-parallel training: per-rank samples, and two gloo ranks under torchrun writing one set of outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from faceattrs.data import shards
from faceattrs.training.checkpoints import ModelFile
from faceattrs.training.distributed import RankSampler, World
from tests.conftest import REPO, free_port, tiny_params


@pytest.mark.parametrize("n, size", [(10, 3), (7, 2), (1, 2), (64, 4)])
def test_ranks_share_an_epoch_exactly(n, size):
    parts = [list(RankSampler(n, seed=5, epoch=2, world=World(rank, size))) for rank in range(size)]
    assert sorted(i for part in parts for i in part) == list(range(n))
    assert [len(p) for p in parts] == [len(RankSampler(n, 5, 2, World(r, size))) for r in range(size)]
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_one_process_sees_a_fresh_permutation_each_epoch():
    first, second = (list(RankSampler(50, seed=1, epoch=e, world=World())) for e in (0, 1))
    assert sorted(first) == sorted(second) == list(range(50)) and first != second
    assert first == list(RankSampler(50, seed=1, epoch=0, world=World()))  # a pure function of (seed, epoch)


def _train_command(shards_dir, out, params_file) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stages.train",
        "--shards",
        str(shards_dir),
        "--out",
        str(out / "models"),
        "--live",
        str(out / "live"),
        "--params",
        str(params_file),
        "--trace-samples",
        str(out / "seen"),
    ]


def _env(tmp_path) -> dict[str, str]:
    return {
        "FACEATTRS_PROGRESS": "0",
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }


@pytest.fixture(scope="module")
def two_ranks(tiny_shards, tmp_path_factory):
    """train.processes: 2 makes the stage relaunch itself under torchrun, as `dvc repro` would run it."""
    tmp_path = tmp_path_factory.mktemp("two-ranks")
    params = tiny_params(train={"epochs": 2, "batch_size": 16, "processes": 2, "data_on": "resident"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    result = subprocess.run(
        _train_command(tiny_shards, tmp_path, tmp_path / "params.yaml"),
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return tmp_path, result


def test_two_gloo_ranks_under_torchrun(tiny_shards, two_ranks):
    tmp_path, result = two_ranks
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "torch.distributed.run --standalone --nproc_per_node=2 -m stages.train" in result.stdout

    train_ids = set(shards.read_labels(tiny_shards, "train").index)
    for epoch in range(2):
        ranks = [(tmp_path / "seen" / f"epoch{epoch}-rank{r}.txt").read_text().split("\n") for r in range(2)]
        assert all(ranks) and not set(ranks[0]) & set(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == sorted(train_ids)  # each sample exactly once per epoch

    # One set of outputs, written by rank 0 alone.
    assert result.stdout.count("epoch 1/2:") == 1 and result.stdout.count("train: kept epoch") == 1
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["best.pt", "last.pt", "model.pt"]
    model = ModelFile.load(tmp_path / "models" / "model.pt")
    assert model.world_size == 2
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert live["step"] == 1 and 0 < live["val"]["mean_accuracy"] <= 1
    assert len((tmp_path / "live/plots/metrics/val/mean_accuracy.tsv").read_text().strip().splitlines()) == 3
    assert torch.isfinite(torch.tensor(live["train"]["loss"]))


def test_each_resident_rank_holds_a_fixed_share_reshuffled_each_epoch(tiny_shards, two_ranks):
    tmp_path, result = two_ranks
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    train_ids = set(shards.read_labels(tiny_shards, "train").index)
    shares = []
    for rank in range(2):
        epochs = [(tmp_path / "seen" / f"epoch{e}-rank{rank}.txt").read_text().split("\n") for e in range(2)]
        assert sorted(epochs[0]) == sorted(epochs[1]) and epochs[0] != epochs[1]  # one share, reshuffled
        shares.append(set(epochs[0]))
        said = f"train: rank {rank} of 2: {len(epochs[0]):,} of {len(train_ids):,} training"
        assert said in result.stdout, result.stdout
    assert not shares[0] & shares[1] and shares[0] | shares[1] == train_ids


def _run_nodes(tiny_shards, folder, params, count: int) -> list[str]:
    """The train stage's command launched ``count`` times at once from ``folder`` (node K in nodeK/); their outputs."""
    (folder / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    nodes = []
    for k in range(count):
        (folder / f"node{k}").mkdir()
        nodes.append(
            subprocess.Popen(
                _train_command(tiny_shards, folder / f"node{k}", folder / "params.yaml"),
                cwd=REPO,
                env=_env(folder / f"node{k}"),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0] * count, "\n".join(o[-3000:] for o in outputs)
    return outputs


def test_two_nodes_by_rendezvous_train_the_model_two_local_processes_train(tiny_shards, two_ranks, tmp_path):
    # Two launchers, each one "node" of one process, meeting at a c10d rendezvous: the same stage
    # command on both, as on two machines. The data, the ranks' shares and gloo's two-way
    # all-reduce are the same as two processes on one node, so the weights must be identical.
    reference, done = two_ranks
    assert done.returncode == 0
    params = tiny_params(train={"epochs": 2, "batch_size": 16, "nodes": 2, "rendezvous": f"127.0.0.1:{free_port()}"})
    outputs = _run_nodes(tiny_shards, tmp_path, params, 2)
    assert all("--nnodes=2 --rdzv-backend=c10d" in o for o in outputs)
    written = [k for k in range(2) if (tmp_path / f"node{k}/models/model.pt").exists()]
    assert len(written) == 1, "rank 0 alone writes the model"
    two_nodes = ModelFile.load(tmp_path / f"node{written[0]}/models/model.pt")
    one_node = ModelFile.load(reference / "models" / "model.pt")
    assert two_nodes.world_size == one_node.world_size == 2
    for name, tensor in one_node.state_dict.items():
        assert torch.equal(two_nodes.state_dict[name], tensor), name


# Three trainings, about 40 s: with -m slow (make test-all). The two torchrun tests above keep DDP in the default run.
@pytest.mark.slow
def test_two_nodes_train_the_model_one_process_trains_on_the_same_batches(tiny_shards, tmp_path):
    # With no batch statistics (ConvNeXt's LayerNorm normalises each image alone) and no random
    # augmentation, two ranks of 16 take, step by step, the same 32 images as one process with
    # batches of 32 (each epoch's permutation is dealt out like cards), and DDP's average of the
    # two ranks' mean gradients is the one process's mean gradient. Only the order of the float
    # additions differs (and, in an epoch's last batch, ranks of unequal size weigh their images
    # a little differently), so the weights agree closely, not bit for bit: far closer than those
    # of one process that took batches of 16 on the same data. The loader deals the permutation;
    # resident ranks each hold a fixed share (test_each_resident_rank_holds_a_fixed_share...), so
    # their batches are not one process's.
    same = {"model": {"backbone": "convnext_atto"}, "augment": {"hflip": 0.0}}
    runs = {}
    for name, train in (
        ("one", {"batch_size": 32}),
        ("two", {"batch_size": 16, "nodes": 2, "rendezvous": f"127.0.0.1:{free_port()}"}),
        ("other", {"batch_size": 16}),
    ):
        folder = tmp_path / name
        folder.mkdir()
        params = tiny_params(**same, train={"epochs": 2, "data_on": "loader", **train})
        _run_nodes(tiny_shards, folder, params, 2 if name == "two" else 1)
        written = list(folder.glob("node*/models/model.pt"))
        assert len(written) == 1
        runs[name] = ModelFile.load(written[0])
    assert runs["two"].world_size == 2 and runs["one"].world_size == 1

    def farthest(a: str, b: str) -> float:
        weights = runs[a].state_dict.items()
        return max((runs[b].state_dict[k] - v).abs().max().item() for k, v in weights if v.is_floating_point())

    same_batches, other_batches = farthest("one", "two"), farthest("one", "other")
    print(f"largest weight difference: two nodes {same_batches:.2e}, batches of 16 {other_batches:.2e}")
    assert same_batches < 1e-3 and same_batches < other_batches / 50, (same_batches, other_batches)


def test_launch_command_for_one_node_several_nodes_and_one_process():
    from faceattrs.training.distributed import launch_command

    assert launch_command(1, 1, None, "x", ["--a"]) is None
    one = launch_command(4, 1, None, "x", ["--a"])
    assert one[3:] == ["--standalone", "--nproc_per_node=4", "-m", "stages.train", "--a"]
    many = launch_command(2, 3, "node0:29400", "job7", [])
    assert many[3:7] == ["--nnodes=3", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29400", "--rdzv-id=job7"]
    assert "--nproc_per_node=2" in many


def test_several_nodes_need_a_rendezvous():
    from faceattrs.core.params import ParamsError, parse_params

    with pytest.raises(ParamsError, match=r"train\.rendezvous"):
        parse_params({"train": {"nodes": 2}})


def test_more_processes_than_gpus_is_refused_before_torchrun_starts(monkeypatch):
    from faceattrs.core.errors import InputError
    from faceattrs.training.distributed import check_gpus

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_gpus(1, "cuda")
    check_gpus(4, "cpu")  # gloo runs any number of CPU processes
    with pytest.raises(InputError, match=r"train.processes is 2 but this machine has 1 CUDA device"):
        check_gpus(2, "cuda")
