"""The synthetic CelebA: determinism, frequencies, identities, planted flaws, and torchvision's reader."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from faceattrs.core.params import SyntheticParams
from faceattrs.data import celeba
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import ATTRIBUTES, POSITIVE_RATES
from faceattrs.data.sources import verify_layout
from faceattrs.synthetic import generator
from faceattrs.synthetic.drawing import DRAWN, draw_face, random_look
from faceattrs.synthetic.labels import HAIR_COLOURS, sample_labels
from faceattrs.synthetic.truth import BACKGROUND_HUE, clean_labels, read_truth


def _digest(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    params = SyntheticParams(num_images=60, seed=3)
    generator.generate(tmp_path / "a", params, workers=1, progress=False)
    generator.generate(tmp_path / "b", params, workers=2, progress=False)
    generator.generate(tmp_path / "c", params.model_copy(update={"seed": 4}), workers=1, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_label_frequencies_and_correlations_follow_celeba():
    rng = np.random.default_rng(0)
    n_ids = 20_000
    identity = rng.integers(0, n_ids, size=200_000)
    labels = sample_labels(rng, identity, n_ids)
    rates = labels.mean()
    for name in ATTRIBUTES:
        assert rates[name] == pytest.approx(POSITIVE_RATES[name], abs=0.012), name
    men = labels["Male"] == 1
    assert labels.loc[~men, "No_Beard"].mean() > 0.99
    assert labels.loc[men, "Wearing_Lipstick"].mean() < 0.03 < 0.7 < labels.loc[~men, "Wearing_Lipstick"].mean()
    assert labels.loc[labels["Smiling"] == 1, "High_Cheekbones"].mean() > 0.7
    assert labels.loc[labels["Smiling"] == 0, "High_Cheekbones"].mean() < 0.25
    assert (labels[list(HAIR_COLOURS)].sum(axis=1) <= 1).all()


def test_identity_traits_are_fixed_per_identity(synthetic_raw):
    truth = read_truth(synthetic_raw)
    clean = clean_labels(truth)
    identity = celeba.read_identity(synthetic_raw / celeba.IDENTITY_FILE)
    copies = {dst for _, dst, *rest in truth["exact_duplicates"] + truth["near_duplicates"]}
    originals = clean.drop(index=list(copies))
    per_identity = (
        originals[["Male", "Pale_Skin", "Oval_Face", "Big_Nose"]].groupby(identity.loc[originals.index]).nunique()
    )
    assert (per_identity == 1).all().all()
    assert originals["Smiling"].groupby(identity.loc[originals.index]).nunique().max() == 2


def test_planted_flaws_are_there_and_counted(synthetic_raw):
    truth = read_truth(synthetic_raw)
    images = ImageArchive.of(synthetic_raw)
    assert len(truth["exact_duplicates"]) == truth["counts"]["exact_duplicate"] == 8
    for src, dst in truth["exact_duplicates"]:
        assert images.read(src) == images.read(dst)
    for src, dst, _ in truth["near_duplicates"]:
        a = np.asarray(Image.open(io.BytesIO(images.read(src))), dtype=float)
        b = np.asarray(Image.open(io.BytesIO(images.read(dst))), dtype=float)
        assert images.read(src) != images.read(dst) and np.abs(a - b).mean() < 40
    published = celeba.read_attributes(synthetic_raw / celeba.ATTR_FILE)
    for src, dst, _ in truth["near_duplicates"]:
        assert (published.loc[src] != published.loc[dst]).any(), "near copies must contradict"
    for name in truth["unreadable"]:
        with pytest.raises((OSError, SyntaxError, ValueError)):  # what PIL raises for broken or foreign bytes
            Image.open(io.BytesIO(images.read(name))).load()
    assert sorted(set(truth["unreadable"].values())) == sorted(generator.UNREADABLE_KINDS)
    flipped = (published != clean_labels(truth)).to_numpy().sum()
    assert flipped > 0


def test_background_hue_lookalikes_are_the_source_s_face_before_another_colour(synthetic_raw):
    truth = read_truth(synthetic_raw)
    images = ImageArchive.of(synthetic_raw)
    identity = celeba.read_identity(synthetic_raw / celeba.IDENTITY_FILE)
    clean = clean_labels(truth)
    pairs = [(src, dst) for src, dst, change in truth["lookalikes"] if change == BACKGROUND_HUE]
    assert len(pairs) >= 3
    luma = np.array([0.299, 0.587, 0.114])
    for src, dst in pairs:
        assert identity[src] == identity[dst] and (clean.loc[src] == clean.loc[dst]).all()
        a = np.asarray(Image.open(io.BytesIO(images.read(src))).convert("RGB"), dtype=float)
        b = np.asarray(Image.open(io.BytesIO(images.read(dst))).convert("RGB"), dtype=float)
        # Brightness kept (up to JPEG and clipping), colour changed: a hue, not a copy.
        assert np.abs((a @ luma).mean() - (b @ luma).mean()) < 4
        assert np.abs(a - b).mean() > 15


def test_layout_verifies_and_partitions_keep_identities_apart(synthetic_raw):
    counts = verify_layout(synthetic_raw)
    assert counts["images"] == 400 and counts["unlisted_images"] == 0
    assert counts["partitions"]["train"] > counts["partitions"]["val"] > 0
    part = celeba.read_partition(synthetic_raw / celeba.PARTITION_FILE)
    identity = celeba.read_identity(synthetic_raw / celeba.IDENTITY_FILE)
    assert part.groupby(identity).nunique().max() == 1  # as in CelebA, duplicates included


@pytest.mark.parametrize("attribute", DRAWN)
def test_every_drawn_attribute_changes_the_pixels(attribute):
    base = dict.fromkeys(ATTRIBUTES, 0) | {"No_Beard": 1, "Young": 1, "Black_Hair": 1}
    look = random_look(np.random.default_rng(1), male=False)
    flip = {**base, attribute: 1 - base[attribute]}
    if attribute in HAIR_COLOURS and attribute != "Black_Hair":
        flip["Black_Hair"] = 0
    a, _ = draw_face(base, look, np.random.default_rng(5))
    b, _ = draw_face(flip, look, np.random.default_rng(5))
    changed = (np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max(axis=2) > 24).sum()
    assert changed >= 40, f"{attribute} changes only {changed} pixels visibly"


class _UncheckedCelebA(torchvision.datasets.CelebA):
    """torchvision's reader, minus its md5 check of the official text files."""

    def _check_integrity(self) -> bool:
        return True


def test_torchvision_reads_it_and_agrees(synthetic_raw, synthetic_photos, tmp_path):
    # torchvision reads the text files as published and the zip unpacked.
    (tmp_path / "celeba").mkdir()
    for name in celeba.TEXT_FILES:
        (tmp_path / "celeba" / name).symlink_to(synthetic_raw / name)
    (tmp_path / "celeba" / celeba.IMAGE_DIR).symlink_to(synthetic_photos)
    labels = celeba.read_attributes(synthetic_raw / celeba.ATTR_FILE)
    part = celeba.read_partition(synthetic_raw / celeba.PARTITION_FILE)
    identity = celeba.read_identity(synthetic_raw / celeba.IDENTITY_FILE)
    landmarks = celeba.read_landmarks(synthetic_raw / celeba.LANDMARKS_FILE)
    bbox = celeba.read_bbox(synthetic_raw / celeba.BBOX_FILE)
    for code, split in ((0, "train"), (1, "valid"), (2, "test")):
        ds = _UncheckedCelebA(
            str(tmp_path), split=split, target_type=["attr", "identity", "landmarks", "bbox"], download=False
        )
        names = part.index[part == code]
        assert list(ds.filename) == list(names)
        assert ds.attr_names[:40] == list(ATTRIBUTES)
        assert torch.equal(ds.attr, torch.as_tensor(labels.loc[names].to_numpy().copy(), dtype=ds.attr.dtype))
        assert ds.identity[:, 0].tolist() == identity.loc[names].tolist()
        assert torch.equal(
            ds.landmarks_align, torch.as_tensor(landmarks.loc[names].to_numpy().copy(), dtype=ds.landmarks_align.dtype)
        )
        assert torch.equal(ds.bbox, torch.as_tensor(bbox.loc[names].to_numpy().copy(), dtype=ds.bbox.dtype))
    truth = read_truth(synthetic_raw)
    readable = next(i for i, n in enumerate(ds.filename) if n not in truth["unreadable"])
    image, _ = ds[readable]
    assert image.size == (celeba.IMAGE_WIDTH, celeba.IMAGE_HEIGHT)
