"""Data-parallel training: per-rank samples, and two gloo ranks under torchrun writing one set of outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from faceattrs.data import shards
from faceattrs.training import models
from faceattrs.training.distributed import RankSampler, World
from tests.conftest import REPO, tiny_params


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


def test_two_gloo_ranks_under_torchrun(tiny_shards, tmp_path):
    # train.processes: 2 makes the stage relaunch itself under torchrun, as `dvc repro` would run it.
    params = tiny_params(train={"epochs": 2, "batch_size": 16, "processes": 2})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    env = {
        "FACEATTRS_TRACE_SAMPLES": str(tmp_path / "seen"),
        "FACEATTRS_PROGRESS": "0",
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.train",
            "--shards",
            str(tiny_shards),
            "--out",
            str(tmp_path / "models"),
            "--live",
            str(tmp_path / "live"),
            "--params",
            str(tmp_path / "params.yaml"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "torch.distributed.run --standalone --nproc_per_node=2 -m stages.train" in result.stdout

    train_ids = set(shards.read_labels(tiny_shards, "train").index)
    for epoch in range(2):
        ranks = [(tmp_path / "seen" / f"epoch{epoch}-rank{r}.txt").read_text().split("\n") for r in range(2)]
        assert all(ranks) and not set(ranks[0]) & set(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == sorted(train_ids)  # each sample exactly once per epoch

    # One set of outputs, written by rank 0 alone.
    assert result.stdout.count("epoch 1/2:") == 1 and result.stdout.count("train: best val mean accuracy") == 1
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["best.pt", "last.pt", "model.pt"]
    model = models.load_checkpoint(tmp_path / "models" / "model.pt")
    assert model["world_size"] == 2
    live = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert live["step"] == 1 and 0 < live["val"]["mean_accuracy"] <= 1
    assert len((tmp_path / "live/plots/metrics/val/mean_accuracy.tsv").read_text().strip().splitlines()) == 3
    assert torch.isfinite(torch.tensor(live["train"]["loss"]))
