"""The page of `faceattrs serve`: its API on bad uploads, and what a person sees in headless Chromium."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceattrs.data.archive import ImageArchive
from faceattrs.data.shards import read_labels
from faceattrs.prediction import serve
from faceattrs.prediction.predictor import Predictor
from tests.browser import CHROMIUM, browser_page
from tests.conftest import draw_faces
from tests.test_photos import place


@pytest.fixture(scope="module")
def app(learned_model):
    root = learned_model.parents[1]
    predictor = Predictor(learned_model)
    thresholds = np.zeros(len(predictor.targets))
    return serve.create_app(predictor, thresholds, root / "raw", list(read_labels(root / "shards", "test").index))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A drawn face turned and enlarged inside a larger picture: what a person would upload."""
    ((_, data, _, landmarks),) = draw_faces(1, 21)
    canvas = Image.new("RGB", (520, 440), (60, 110, 140))
    place(Image.open(io.BytesIO(data)).convert("RGB"), landmarks, canvas, 6, 1.5, (100, 40))
    path = tmp_path_factory.mktemp("upload") / "portrait.jpg"
    canvas.save(path, quality=92)
    return path


def test_the_api_scores_an_upload_and_refuses_what_it_cannot(app, photo, tmp_path):
    client = TestClient(app)
    scored = client.post("/api/predict", content=photo.read_bytes(), headers={"x-filename": "portrait.jpg"})
    assert scored.status_code == 200
    (face,) = scored.json()["faces"]
    assert face["eyes"] == "haar" and face["aligned"].startswith("data:image/png;base64,")
    assert [a["name"] for a in face["attributes"]] == ["Eyeglasses", "Wearing_Hat", "Smiling"]
    token = scored.json()["token"]
    explained = client.get(f"/api/explain/{token}/1/Eyeglasses").json()
    assert explained["method"] == "Grad-CAM" and explained["image"].startswith("data:image/png")
    assert client.get(f"/api/explain/{token}/2/Eyeglasses").status_code == 404
    blank = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(blank, format="PNG")
    assert "no face found" in client.post("/api/predict", content=blank.getvalue()).json()["detail"]
    assert "not an image" in client.post("/api/predict", content=b"plain text").json()["detail"]
    too_big = client.post("/api/predict", content=b"\0" * (serve.MAX_UPLOAD + 1))
    assert too_big.status_code == 413
    offered = client.get("/api/test-images").json()
    assert offered and client.get(f"/api/test-images/{offered[0]}").status_code == 200
    refused = client.get("/api/test-images/not-offered.jpg")
    assert refused.status_code == 404 and "not one of the offered" in refused.json()["detail"]
    # Only names on the list are read: a path to elsewhere gets no further than the router.
    assert client.get("/api/test-images/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_an_upload_is_never_written_to_disk(app, photo, tmp_path, monkeypatch):
    """Scoring opens no file for writing: the bytes go from the request to PIL in memory."""
    import builtins

    opened = []
    real_open, real_os_open = builtins.open, os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

    def watch(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            opened.append(file)
        return real_open(file, mode, *args, **kwargs)

    def watch_os(path, flags, *args, **kwargs):
        if flags & writing:
            opened.append(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watch)
    monkeypatch.setattr(os, "open", watch_os)
    assert TestClient(app).post("/api/predict", content=photo.read_bytes()).status_code == 200
    assert opened == []


@contextlib.contextmanager
def running(app):
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.skipif(
    not CHROMIUM, reason="chromium is not installed (the Makefile's test set-up installs it with apt-get)"
)
def test_the_page_shows_the_face_bars_and_a_saliency_map(app, photo, learned_model, tmp_path):
    predictor = Predictor(learned_model)
    with running(app) as url, browser_page(offline=False, size=(1000, 640)) as page:
        page.goto(url)
        page.set_input_files("#upload", str(photo))
        page.wait_for_selector(".bar", timeout=60_000)
        bars = page.eval_on_selector_all(
            ".bar", "rows => rows.map(r => [r.dataset.attribute, Number(r.dataset.probability)])"
        )
        aligned = page.get_attribute(".aligned", "src")
        page.click('.bar[data-attribute="Eyeglasses"]')
        page.wait_for_selector('.saliency[src^="data:image/png"]', timeout=60_000)
        title = page.inner_text(".saliency-title")
        # A test image picked from the list replaces the upload.
        picked = page.eval_on_selector_all("#tests option", "options => options.map(o => o.value)")[1]
        page.select_option("#tests", picked)
        page.wait_for_function("document.querySelector('.pictures div').textContent.includes('aligned')")
        page.select_option("#tests", "")
        page.set_input_files("#upload", str(photo))
        page.wait_for_selector(".bar")
        page.click('.bar[data-attribute="Eyeglasses"]')
        page.wait_for_selector('.saliency[src^="data:image/png"]', timeout=60_000)
        shot = page.screenshot()
        assert page.refused == []
    # What the page shows is what the model says about the aligned face it shows.
    from faceattrs.faces import align

    (face,) = align.faces_in(align.open_photo(photo), predictor.mean_eyes)
    expected = 1 / (1 + np.exp(-predictor.logits_for([np.asarray(face.aligned)])[0]))
    assert [name for name, _ in bars] == list(predictor.targets)
    assert np.allclose([p for _, p in bars], expected, atol=1e-3)
    assert aligned.startswith("data:image/png") and title.startswith("Eyeglasses: p = ")
    assert picked in set(ImageArchive.of(learned_model.parents[1] / "raw").names())
    assert len(shot) > 20_000
    if os.environ.get("FACEATTRS_SCREENSHOT"):  # how the README's picture is made
        Path(os.environ["FACEATTRS_SCREENSHOT"]).write_bytes(shot)
