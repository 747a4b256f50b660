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
# Under pytest-xdist, each worker and every process it starts share the cores out instead of each taking
# them all: torch's OpenMP threads spin while they wait, and two workers' threads spinning against each
# other on two cores made a run take several times as long.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _workers))

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


# Modules whose tests run DVC or Prefect end to end on a copy of the repository, or several processes that
# train: seconds to minutes each.
INTEGRATION_MODULES = {
    "test_journeys",
    "test_stages",
    "test_flows",
    "test_versioning",
    "test_distributed",
    "test_install",
}


def pytest_collection_modifyitems(items):
    """Mark ``integration`` the tests of those modules and those on the reproduced repository (others carry the
    mark themselves), so that ``make check`` can leave them out."""
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in INTEGRATION_MODULES or "reproduced_repo" in item.fixturenames:
            item.add_marker(pytest.mark.integration)


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


def draw_faces(count: int, seed: int, **rates: float) -> list[tuple]:
    """Drawn aligned faces as JPEG files: (name, bytes, attributes, 5 landmarks), attributes on at ``rates``."""
    import io

    import numpy as np

    from faceattrs.data.celeba import ATTRIBUTES
    from faceattrs.synthetic import drawing

    rng = np.random.default_rng(seed)
    faces = []
    for i in range(count):
        male = bool(rng.random() < 0.5)
        attrs = dict.fromkeys(ATTRIBUTES, 0) | {"No_Beard": 1, "Male": int(male)}
        attrs |= {name: int(rng.random() < rate) for name, rate in rates.items()}
        img, landmarks = drawing.draw_face(attrs, drawing.random_look(rng, male), rng)
        data = io.BytesIO()
        img.save(data, format="JPEG", quality=92)
        faces.append((f"{i + 1:06d}.jpg", data.getvalue(), attrs, landmarks.reshape(5, 2)))
    return faces


@pytest.fixture(scope="session")
def learned_model(tmp_path_factory) -> Path:
    """model.pt of a model that learned drawn glasses and hats (600 faces at the default 80x64, about 20 s).

    Made through preprocess's shard writer (with the mean eyes) and the training loop,
    so it carries what a pipeline-trained model carries.
    """
    import numpy as np
    import pandas as pd

    from faceattrs.core.params import PreprocessParams
    from faceattrs.data import shards
    from faceattrs.training import run

    root = tmp_path_factory.mktemp("learned")
    (root / "raw").mkdir()
    faces = draw_faces(600, 0, Eyeglasses=0.5, Wearing_Hat=0.3)
    archive.pack([(name, data) for name, data, _, _ in faces], root / "raw" / "img_align_celeba.zip")
    frame = pd.DataFrame(
        [{"image_id": name, "identity": i, **attrs} for i, (name, _, attrs, _) in enumerate(faces)]
    ).set_index("image_id")
    frame["split"] = np.where(np.arange(600) < 420, "train", np.where(np.arange(600) < 510, "val", "test"))
    eyes = np.array([lm[:2] for *_, lm in faces[:420]], float).mean(axis=0)
    shards.write_splits(
        frame, ImageArchive.of(root / "raw"), root / "shards", PreprocessParams(workers=1), progress=False, eyes=eyes
    )
    params = tiny_params(train={"epochs": 5}, target={"attributes": ["Eyeglasses", "Wearing_Hat", "Smiling"]})
    run.train(params, root / "shards", root / "models", root / "live", progress=False)
    return root / "models" / "model.pt"


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect(tmp_path_factory):
    """A real Prefect server (not the test harness) for the session's flow tests; stopped at the session's end."""
    from flows import server

    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    process = server.start(home, port)
    yield {
        "url": server.api_url(port),
        "ui": f"http://127.0.0.1:{port}",
        "env": server.server_env(home, port),
        "home": home,
    }
    server.stop(process)
    assert not server.healthy(server.api_url(port))


def prefect_home_like(prefect, home: Path) -> Path:
    """``home`` as a PREFECT_HOME whose database is a copy of the session's server's, so a server started there
    skips the migrations a new database takes (about 8 of a fresh start's 12 s here)."""
    import sqlite3

    home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(prefect["home"] / "prefect.db") as source, sqlite3.connect(home / "prefect.db") as copy:
        source.backup(copy)  # consistent while the session's server writes to it
    return home
