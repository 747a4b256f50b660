"""Resident training data (train.data_on: resident): the loader's batches bit for bit, its model, shares, memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceattrs.core.errors import InputError
from faceattrs.data import shards
from faceattrs.training import augment, resident, run
from faceattrs.training.build import TrainingParams, build
from faceattrs.training.distributed import SINGLE, RankSampler, World
from faceattrs.training.loader import ShardDataset, decode_batch
from faceattrs.training.targets import Targets
from tests.conftest import tiny_params

CPU = torch.device("cpu")
# A narrow resnet10t: the runs below compare models, not quality, and should take seconds.
NARROW = {"backbone": "resnet10t", "backbone_args": {"stem_width": 8, "channels": [8, 16, 32, 64]}}


def _built(shard_dir, data_on: str, world: World = SINGLE, train: dict | None = None, **sections):
    params = tiny_params(model=NARROW, train={**(train or {}), "data_on": data_on}, **sections)
    return build(TrainingParams.of(params), shard_dir, CPU, world).parts


def _rows(shard_dir, split: str) -> int:
    return len(shards.read_labels(shard_dir, split))


def _pixels(images) -> torch.Tensor:
    """A batch's uint8 pixels; still-encoded JPEGs (train.decode_on: device) decoded as model_step decodes them."""
    return decode_batch(images, CPU) if isinstance(images, list) else images


def _same_batches(loader_batches, resident_batches) -> int:
    count = 0
    for (images, targets, rows), (r_images, r_targets, r_rows) in zip(loader_batches, resident_batches, strict=True):
        images = _pixels(images)
        assert images.dtype == r_images.dtype == torch.uint8 and images.shape == r_images.shape
        assert torch.equal(images, r_images) and r_images.is_contiguous()
        assert targets.dtype == r_targets.dtype and torch.equal(targets, r_targets.cpu())
        assert rows.dtype == r_rows.dtype and torch.equal(rows, r_rows)
        count += 1
    return count


@pytest.mark.parametrize(
    "train",
    [
        {},
        {"batch_size": 45},  # 316 training images, 7 * 45 + 1: a last batch of one, which both leave out
        {"subset": "~Male"},
        {"balance": "Male", "seed": 5},
        {"workers": 1},
        {"decode_on": "device"},  # decoded once on the device (here the CPU) instead of in every batch
    ],
    ids=["plain", "last-of-one", "subset", "balance", "workers", "decode-on-device"],
)
def test_resident_batches_equal_the_loader_s_bit_for_bit(tiny_shards, train):
    target = {"attributes": ["Smiling"]} if "balance" in train else {}
    loader_parts = _built(tiny_shards, "loader", train=train, target=target)
    resident_parts = _built(tiny_shards, "resident", train=train, target=target)
    if "batch_size" in train:
        assert _rows(tiny_shards, "train") % train["batch_size"] == 1
        assert {len(rows) for *_, rows in resident_parts.train_batches(0)} == {train["batch_size"]}
    for epoch in range(3):
        batches = _same_batches(loader_parts.train_batches(epoch), resident_parts.train_batches(epoch))
        assert batches == len(resident_parts.train_batches(epoch)) > 1
        assert _same_batches(loader_parts.val_batches(epoch), resident_parts.val_batches(epoch)) >= 1
    if "subset" in train:  # only the subset's rows are decoded
        men = shards.read_labels(tiny_shards, "train")["Male"].to_numpy()
        assert resident_parts.train_batches(0).split.rows.tolist() == np.flatnonzero(men == 0).tolist()
    # Consecutive epochs are different permutations, as the loader's are.
    first, second = (torch.cat([rows for *_, rows in resident_parts.train_batches(e)]) for e in (0, 1))
    assert not torch.equal(first, second)


def test_a_whole_run_on_resident_data_gives_the_loader_s_model_bytes(tiny_shards, tmp_path):
    # The default augmentation (flips and MixUp alike) draws from the epoch's generator and the
    # rows' flips: with the same batches, the same model, byte for byte, on the CPU.
    models = {}
    for data_on in ("loader", "resident"):
        params = tiny_params(model=NARROW, train={"epochs": 2, "limit_batches": 5, "data_on": data_on})
        summary = run.train(params, tiny_shards, tmp_path / data_on / "m", tmp_path / data_on / "l", progress=False)
        models[data_on] = (summary, torch.load(tmp_path / data_on / "m" / "model.pt", weights_only=True))
    (loader_summary, loader_model), (resident_summary, resident_model) = models.values()
    assert loader_summary == resident_summary
    weights = loader_model["state_dict"]
    assert weights.keys() == resident_model["state_dict"].keys()
    for name, tensor in weights.items():
        assert torch.equal(tensor, resident_model["state_dict"][name]), name


def _flipped(out: torch.Tensor, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Each row and whether its output is its image mirrored: nearer the mirror than the image."""
    x = images.float() / 255
    mirrored = (out - x.flip(-1)).abs().mean(dim=(1, 2, 3)) < (out - x).abs().mean(dim=(1, 2, 3))
    return torch.stack([rows, mirrored.long()])


def _crop_offsets(out: torch.Tensor, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(top, left) of each output in its image: the window whose red channel its top rows match."""
    h, w = out.shape[-2:]
    windows = (images[:, 0].float() / 255).unfold(1, h, 1).unfold(2, w, 1)  # B, tops, lefts, h, w
    errors = (windows[..., :8, :] - out[:, 0, None, None, :8]).abs().mean(dim=(3, 4)).flatten(1)
    best = errors.argmin(dim=1)
    return torch.stack([best // windows.shape[2], best % windows.shape[2]]).float()


def _jitter(out: torch.Tensor, images: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Each output's mean brightness against its image's, and its spread of grey levels against the image's."""
    x = images.float() / 255
    return torch.stack([out.mean(dim=(1, 2, 3)) / x.mean(dim=(1, 2, 3)), out.std(dim=(1, 2, 3)) / x.std(dim=(1, 2, 3))])


def _augmented(parts, epochs: int, measure) -> torch.Tensor:
    """``measure(augmented, images, rows)`` over ``epochs`` epochs of training batches, augmented as training is."""
    step, seen = parts.step, []
    zero, one = torch.zeros(3), torch.ones(3)  # no normalization: outputs in [0, 1], as the images
    for epoch in range(epochs):
        plan = parts.plan(epoch)
        for images, _, rows in parts.train_batches(epoch):
            images = _pixels(images)
            _, flips = plan.of_rows(rows)
            out = augment.prepare(images, step.augment, zero, one, plan.generator, True, None, flips)
            seen.append(measure(out, images, rows))
    return torch.cat(seen, dim=-1)


@pytest.mark.parametrize("name", ["hflip", "alternating_flip", "random_crop", "color_jitter"])
def test_each_augmentation_s_statistics_match_the_loader_s(tiny_shards, name):
    augmentation = augment.only(name).model_dump(mode="json")
    paths = {data_on: _built(tiny_shards, data_on, augment=augmentation) for data_on in ("loader", "resident")}
    epochs = 4
    if name in ("hflip", "alternating_flip"):
        flips = {k: _augmented(p, epochs, _flipped) for k, p in paths.items()}
        n = flips["resident"].shape[1]
        assert n == epochs * _rows(tiny_shards, "train")
        shares = {k: f[1].float().mean().item() for k, f in flips.items()}
        for share in shares.values():
            assert abs(share - 0.5) < 4 * math.sqrt(0.25 / n)
        assert abs(shares["loader"] - shares["resident"]) < 2 * math.sqrt(0.5 / n)
        if name == "alternating_flip":  # every image one way in an even epoch and the other way in the odd one
            rows, mirrored = flips["resident"].view(2, epochs, -1)
            by_row = [mirrored[e][rows[e].argsort()] for e in range(2)]
            assert (by_row[0] ^ by_row[1]).all()
    elif name == "random_crop":
        offsets = {k: _augmented(p, epochs, _crop_offsets) for k, p in paths.items()}
        for tops_lefts in offsets.values():
            assert tops_lefts.min(dim=1).values.tolist() == [0, 0]  # 40x32 cropped to 32x24: offsets 0 to 8
            assert tops_lefts.max(dim=1).values.tolist() == [8, 8]
            n = tops_lefts.shape[1]
            assert (tops_lefts.mean(dim=1) - 4).abs().max() < 4 * math.sqrt(80 / 12 / n)
        assert (offsets["loader"].mean(dim=1) - offsets["resident"].mean(dim=1)).abs().max() < 0.3
    else:
        jitter = {k: _augmented(p, epochs, _jitter) for k, p in paths.items()}
        for stat in jitter.values():
            assert stat.var(dim=1).min() > 1e-3  # each image jittered differently
        means = [jitter[k].mean(dim=1) for k in ("loader", "resident")]
        variances = [jitter[k].var(dim=1) for k in ("loader", "resident")]
        assert torch.allclose(means[0], means[1], atol=0.02) and torch.allclose(variances[0], variances[1], rtol=0.2)


def test_each_rank_holds_only_its_share_and_the_shares_cover_the_split_once(tiny_shards):
    dataset = ShardDataset(tiny_shards, "train", Targets(("Smiling",)))
    decoded = {}
    for rank in range(2):
        parts = _built(tiny_shards, "resident", World(rank, 2))
        split = parts.train_batches(0).split
        assert len(split.images) == len(split.rows) < len(dataset)  # no room taken by the other rank's images
        for place, row in enumerate(split.rows.tolist()):
            assert torch.equal(split.images[place], dataset[row][0])
        held = set(split.rows.tolist())
        for epoch in range(2):  # each epoch shuffles the same share
            assert {r for *_, rows in parts.train_batches(epoch) for r in rows.tolist()} == held
        loader_deal = list(RankSampler(_rows(tiny_shards, "val"), 3, 0, World(rank, 2), shuffle=False))
        assert torch.cat([rows for *_, rows in parts.val_batches(0)]).tolist() == loader_deal
        decoded[rank] = held
    assert not decoded[0] & decoded[1] and decoded[0] | decoded[1] == set(range(len(dataset)))
    assert abs(len(decoded[0]) - len(decoded[1])) <= 1


def test_splits_that_do_not_fit_are_refused_in_one_line_before_decoding(tiny_shards, monkeypatch):
    monkeypatch.setattr(resident, "free_bytes", lambda device: 100_000)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded before the memory check")

    monkeypatch.setattr(resident.ResidentSplit, "decode", no_decoding)
    images = _rows(tiny_shards, "train") + _rows(tiny_shards, "val")
    need = images * (3 * 40 * 32 + 40)  # pixels and the 40 targets
    with pytest.raises(InputError) as refused:
        _built(tiny_shards, "resident")
    line = str(refused.value)
    assert "\n" not in line
    assert line == (
        f"train.data_on: resident needs {need / 2**30:.2f} GB of cpu memory for {images} decoded images "
        f"and {100_000 / 2**30:.2f} GB is free; set train.data_on: loader"
    )
    with pytest.raises(InputError, match="for its 2 processes"):
        resident.check_fits(60_000, 10, CPU, processes=2)
    resident.check_fits(60_000, 10, CPU)  # one process fits


def test_the_host_s_free_memory_is_read():
    free = resident.free_bytes(CPU)
    assert free is not None and 2**20 < free < 2**50
