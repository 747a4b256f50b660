"""Shared fixtures: a small synthetic CelebA made once per session, and a quiet, offline environment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from faceattrs.core.params import SyntheticParams
from faceattrs.data import archive
from faceattrs.data.archive import ImageArchive
from faceattrs.synthetic import generator
from faceattrs.synthetic.truth import read_truth

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("FACEATTRS_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]

# Flaw rates far above CelebA's, so a few hundred images carry enough of each to score.
SMALL = SyntheticParams(
    num_images=400,
    images_per_identity=8,
    seed=7,
    exact_duplicate_rate=0.02,
    near_duplicate_rate=0.03,
    no_face_rate=0.06,
    unreadable_rate=0.015,
    lookalike_rate=0.04,
)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> Path:
    """A 400-image synthetic CelebA folder; tests must not modify it (copy it first)."""
    out = tmp_path_factory.mktemp("synthetic") / "celeba"
    generator.generate(out, SMALL, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def synthetic_photos(synthetic_raw, tmp_path_factory) -> Path:
    """The synthetic images unpacked as photo files, as a user would hand them to predict."""
    return unpack_images(synthetic_raw, tmp_path_factory.mktemp("photos"))


@pytest.fixture
def raw_copy(synthetic_raw, tmp_path) -> Path:
    """A private copy of the synthetic folder that a test may break."""
    dst = tmp_path / "raw"
    shutil.copytree(synthetic_raw, dst)
    return dst


def unpack_images(raw: Path, dest: Path) -> Path:
    """The images of a raw folder's zip as files in ``dest`` (an unpacked or Kaggle copy)."""
    images = ImageArchive.of(raw)
    dest.mkdir(parents=True, exist_ok=True)
    for name in images.names():
        (dest / name).write_bytes(images.read(name))
    return dest


def rewrite_images(raw: Path, drop: tuple[str, ...] = (), replace: dict[str, bytes] | None = None) -> None:
    """Rewrite a raw folder's zip without the ``drop`` images and with ``replace``'s bytes."""
    images = ImageArchive.of(raw)
    replace = replace or {}
    items = [(name, replace.get(name) or images.read(name)) for name in images.names() if name not in drop]
    archive.pack(items, images.path)


@pytest.fixture(scope="session")
def tiny_shards(synthetic_raw, tmp_path_factory) -> Path:
    """Shards at 40x32 of the readable synthetic images, split by the published partition."""
    from faceattrs.cleaning.clean import load_raw
    from faceattrs.data import shards

    frame = load_raw(synthetic_raw).drop(index=list(read_truth(synthetic_raw)["unreadable"]))
    out = tmp_path_factory.mktemp("shards")
    spec = shards.ImageSpec(None, (40, 32), "jpeg", 90)
    for code, split in enumerate(("train", "val", "test")):
        rows = frame[frame["partition"] == code]
        shards.write_split(rows, ImageArchive.of(synthetic_raw), out, split, spec, 128, workers=1, progress=False)
    return out


def tiny_params(**sections):
    """Params for a seconds-long training run on ``tiny_shards``; ``sections`` override."""
    from faceattrs.core.params import parse_params

    base = {
        "train": {"epochs": 2, "batch_size": 32, "workers": 0, "seed": 3},
        "optimizer": {"lr": 0.003},
        "model": {"backbone": "resnet10t"},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value}
    return parse_params(base)


@pytest.fixture(scope="session")
def reproduced_repo(tmp_path_factory) -> tuple[Path, str]:
    """A scratch project after its first `dvc repro` and a commit, and what that repro printed.

    Made once: tests copy it (``copy_repo``) instead of each reproducing the pipeline again.
    """
    import subprocess

    from tests.test_stages import ENV, scratch_repo

    repo = scratch_repo(tmp_path_factory.mktemp("reproduced"))
    first = subprocess.run(["dvc", "repro"], cwd=repo, env=ENV, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], cwd=repo, check=True, capture_output=True
    )
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "baseline"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    return repo, first.stdout


def copy_repo(template: Path, dest: Path) -> Path:
    """A copy of a scratch project, its git history and DVC cache included."""
    shutil.copytree(template, dest, symlinks=True)
    return dest
