"""The page of `faceattrs serve`: its API on bad uploads, and what a person sees in headless Chromium."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceattrs.data.archive import ImageArchive
from faceattrs.data.shards import read_labels
from faceattrs.faces import align
from faceattrs.prediction import serve
from faceattrs.prediction.predictor import Predictor
from tests.browser import CHROMIUM, browser_page
from tests.conftest import draw_faces, free_port
from tests.test_photos import place

TOKEN_VARIABLE = "FACEATTRS_SERVE_TOKEN"


@pytest.fixture(scope="module")
def predictor(learned_model) -> Predictor:
    return Predictor(learned_model)


def make_app(predictor: Predictor, **options):
    """The page's app for the learned model, offering its test images."""
    root = predictor.path.parents[1]
    thresholds = np.zeros(len(predictor.targets))
    test_ids = list(read_labels(root / "shards", "test").index)
    return serve.create_app(predictor, thresholds, root / "raw", test_ids, **options)


@pytest.fixture(scope="module")
def app(predictor):
    return make_app(predictor)


def client(app) -> TestClient:
    """A client that names the page as a browser on this machine does (the page refuses other Host names)."""
    return TestClient(app, base_url="http://127.0.0.1:8000")


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
    api = client(app)
    scored = api.post("/api/predict", content=photo.read_bytes(), headers={"x-filename": "portrait.jpg"})
    assert scored.status_code == 200
    (face,) = scored.json()["faces"]
    assert face["eyes"] == "haar" and face["aligned"].startswith("data:image/png;base64,")
    assert [a["name"] for a in face["attributes"]] == ["Eyeglasses", "Wearing_Hat", "Smiling"]
    token = scored.json()["token"]
    explained = api.get(f"/api/explain/{token}/1/Eyeglasses").json()
    assert explained["method"] == "Grad-CAM" and explained["image"].startswith("data:image/png")
    assert api.get(f"/api/explain/{token}/2/Eyeglasses").status_code == 404
    blank = io.BytesIO()
    Image.new("RGB", (400, 300), "white").save(blank, format="PNG")
    assert "no face found" in api.post("/api/predict", content=blank.getvalue()).json()["detail"]
    assert "not an image" in api.post("/api/predict", content=b"plain text").json()["detail"]
    too_big = api.post("/api/predict", content=b"\0" * (serve.MAX_UPLOAD + 1))
    assert too_big.status_code == 413
    offered = api.get("/api/test-images").json()
    assert offered and api.get(f"/api/test-images/{offered[0]}").status_code == 200
    refused = api.get("/api/test-images/not-offered.jpg")
    assert refused.status_code == 404 and "not one of the offered" in refused.json()["detail"]
    # Only names on the list are read: a path to elsewhere gets no further than the router.
    assert api.get("/api/test-images/..%2F..%2Fetc%2Fpasswd").status_code == 404


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
    assert client(app).post("/api/predict", content=photo.read_bytes()).status_code == 200
    assert opened == []


def start(app, host: str, port: int, **options):
    """A real uvicorn server for ``app`` in a thread of this process, once it listens: (server, thread)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **{"log_level": "warning", **options}))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, thread


def stop(server, thread) -> None:
    server.should_exit = True
    thread.join(10)


@contextlib.contextmanager
def running(app):
    port = free_port()
    server, thread = start(app, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(server, thread)


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


# ---------------------------------------------------------------- many requests at once


def _in_threads(*calls):
    """Runs each call in its own thread; returns the threads and a dict that fills with their results by index."""
    results = {}

    def run(i, call):
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call), daemon=True) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    return threads, results


@pytest.fixture
def held_detection(monkeypatch):
    """Face detection that waits, once entered, until the test lets it go: a slow photo on demand."""
    entered, release = threading.Event(), threading.Event()
    real = align.faces_in

    def slow(*args, **kwargs):
        entered.set()
        release.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(align, "faces_in", slow)
    yield entered, release
    release.set()


def test_a_photo_in_detection_does_not_hold_up_the_scoring_of_others(predictor, photo, held_detection):
    app = make_app(predictor)
    entered, release = held_detection
    offered = client(app).get("/api/test-images").json()
    uploads, uploaded = _in_threads(lambda: client(app).post("/api/predict", content=photo.read_bytes()))
    try:
        assert entered.wait(60)
        picks, picked = _in_threads(lambda: client(app).get(f"/api/test-images/{offered[0]}"))
        picks[0].join(60)
        # The test image is scored while the upload is still in face detection.
        assert not release.is_set() and 0 in picked and picked[0].status_code == 200
    finally:
        release.set()
        uploads[0].join(120)
    assert uploaded[0].status_code == 200


def test_inference_and_saliency_never_overlap(predictor, monkeypatch):
    """Grad-CAM hooks the model: a forward pass of one request inside another's would feed its hooks."""
    app = make_app(predictor)
    api = client(app)
    offered = api.get("/api/test-images").json()
    token = api.get(f"/api/test-images/{offered[0]}").json()["token"]
    active, most, count = [0], [0], threading.Lock()
    forward = predictor.model.forward

    def counted(x):
        with count:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.05)  # room for another request to come in
            return forward(x)
        finally:
            with count:
                active[0] -= 1

    monkeypatch.setattr(predictor.model, "forward", counted)
    calls = [lambda n=n: client(app).get(f"/api/test-images/{n}") for n in offered[1:3]]
    calls += [lambda a=a: client(app).get(f"/api/explain/{token}/0/{a}") for a in ("Eyeglasses", "Smiling")]
    threads, results = _in_threads(*calls)
    for thread in threads:
        thread.join(120)
    assert [results[i].status_code for i in range(len(calls))] == [200] * len(calls)
    assert most[0] == 1


def test_the_page_still_answers_while_many_uploads_wait(predictor, photo, held_detection):
    """Waiting uploads are refused beyond a few, so they never take the threads that serve the page."""
    app = make_app(predictor)
    _, release = held_detection
    data = photo.read_bytes()
    with running(app) as url:
        uploads, statuses = _in_threads(*[lambda: httpx.post(f"{url}/api/predict", content=data, timeout=180)] * 45)
        try:
            deadline = time.monotonic() + 20
            while len(statuses) < 30 and time.monotonic() < deadline:
                time.sleep(0.1)
            try:
                page = httpx.get(f"{url}/", timeout=10).status_code
            except httpx.TimeoutException:
                page = "no answer in 10 s"
        finally:
            release.set()
            for thread in uploads:
                thread.join(180)
    assert page == 200
    codes = sorted(r.status_code for r in statuses.values())
    assert codes.count(503) >= 30 and set(codes) <= {200, 503}, codes
    assert "try again" in next(r for r in statuses.values() if r.status_code == 503).json()["detail"]


def _headers_only(url: str, path: str, length: int) -> socket.socket:
    """A connection that has sent a request's headers, announcing ``length`` bytes of body, and none of it."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n\r\n".encode())
    return sock


def _status(sock: socket.socket, wait: float) -> int | None:
    """The status of the response on ``sock``, or None if none came within ``wait`` seconds."""
    sock.settimeout(wait)
    try:
        head = sock.recv(4096)
    except TimeoutError:
        return None
    return int(head.split()[1]) if head else None


def test_an_upload_over_the_size_limit_is_refused_by_its_announced_length(app):
    with running(app) as url, _headers_only(url, "/api/predict", serve.MAX_UPLOAD + 1) as sock:
        assert _status(sock, 10) == 413


def test_scoring_beyond_the_limit_is_refused_before_the_body_is_read(predictor, photo):
    app = make_app(predictor)
    with running(app) as url:
        socks = [_headers_only(url, "/api/predict", 1000) for _ in range(16)]
        time.sleep(2)
        statuses = [_status(sock, 0.5) for sock in socks]
        for sock in socks:
            sock.close()
        # Those let in wait for their bodies; every other is refused at once, its body never read.
        assert statuses.count(503) > 0
        assert statuses.count(503) == 16 - serve.Limits().scoring
        assert statuses.count(None) == serve.Limits().scoring
        # The slots of connections that went away are free again.
        deadline = time.monotonic() + 20
        while (answer := httpx.post(f"{url}/api/predict", content=photo.read_bytes(), timeout=60)).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert answer.status_code == 200


def test_a_body_that_never_comes_is_given_up(predictor):
    app = make_app(predictor, limits=serve.Limits(body_seconds=1))
    with running(app) as url, _headers_only(url, "/api/predict", 1000) as sock:
        assert _status(sock, 10) == 408


def test_a_crowd_is_scored_by_its_best_faces_and_says_so(app, predictor, tmp_path):
    canvas = Image.new("RGB", (1110, 690), (70, 90, 110))
    for i, (_, data, _, landmarks) in enumerate(draw_faces(18, 41)):
        face = Image.open(io.BytesIO(data)).convert("RGB")
        place(face, landmarks, canvas, 0, 1.0, (10 + 183 * (i % 6), 10 + 225 * (i // 6)))
    canvas.save(tmp_path / "crowd.jpg", quality=92)
    found = sorted(f.box.score for f in align.faces_in(align.open_photo(tmp_path / "crowd.jpg"), predictor.mean_eyes))
    assert len(found) > 16
    scored = client(app).post("/api/predict", content=(tmp_path / "crowd.jpg").read_bytes()).json()
    assert len(scored["faces"]) == 16 and scored["found"] == len(found)
    assert sorted(f["score"] for f in scored["faces"]) == pytest.approx(found[-16:], abs=1e-3)
    assert scored["note"] == f"the 16 best-scoring faces of the {len(found)} found"


def test_the_page_scores_an_aligned_face_stored_turned_upright(app, predictor, tmp_path):
    from scipy.special import expit

    from tests.test_photos import _drawn, _turned_by_exif

    ((face, _, _),) = _drawn(33, 1)
    photo = _turned_by_exif(face, 6, tmp_path / "turned.jpg")
    api = client(app)
    scored = api.post("/api/predict", content=photo.read_bytes())
    assert scored.status_code == 200, scored.text
    (shown,) = scored.json()["faces"]
    expected = expit(predictor.logits_for([np.asarray(align.open_photo(photo))]))[0]
    assert np.allclose([a["probability"] for a in shown["attributes"]], expected, atol=1e-3)
    assert api.get(f"/api/explain/{scored.json()['token']}/0/Smiling").status_code == 200


# ---------------------------------------------------------------- who may use the page


def test_a_request_naming_another_host_is_refused(app, photo):
    """A page on 127.0.0.1 answers to its own names only: a site whose name was rebound to 127.0.0.1 gets nothing."""
    api = client(app)
    for name in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "localhost"):
        assert api.get("/api/test-images", headers={"host": name}).status_code == 200, name
    for name in ("attacker.example:8000", "attacker.example", "127.0.0.1.attacker.example"):
        assert api.get("/", headers={"host": name}).status_code == 400, name
        assert api.post("/api/predict", content=photo.read_bytes(), headers={"host": name}).status_code == 400


@pytest.fixture
def serve_cli(learned_model, monkeypatch, capsys, tmp_path):
    """`faceattrs serve ARGS` run in this process: (exit code, stdout, stderr); the server, if it starts, runs
    in a thread until the test ends. Addresses outside 127.0.0.0/8 are never bound: the call is recorded."""
    import uvicorn

    from faceattrs import cli

    servers, recorded = [], []

    def run_server(app, host, port, **options):
        if not host.startswith("127."):
            recorded.append((host, port))
            return
        servers.append(start(app, host, port, **options))

    monkeypatch.setattr(uvicorn, "run", run_server)
    monkeypatch.chdir(tmp_path)  # outside a DVC project: no test images, probability 0.5

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            cli.main(["serve", "--model", str(learned_model), *args])
            code = 0
        except SystemExit as done:
            code = done.code or 0
        out = capsys.readouterr()
        return code, out.out, out.err

    run.servers, run.recorded = servers, recorded
    yield run
    for server, thread in servers:
        stop(server, thread)


@pytest.mark.parametrize("host", ["127.0.0.2", "0.0.0.0", "192.168.1.20", "localhost"])
def test_serving_beyond_the_loopback_without_a_token_is_refused(serve_cli, monkeypatch, host):
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    code, _, err = serve_cli("--host", host, "--port", str(free_port()))
    assert code == 1 and f"--host {host}" in err and "--token" in err and TOKEN_VARIABLE in err
    assert serve_cli.servers == [] and serve_cli.recorded == []


@pytest.mark.parametrize("via", ["option", "variable"])
def test_a_shared_page_asks_every_request_for_its_token(serve_cli, monkeypatch, photo, via):
    token = secrets.token_hex(16)
    port = free_port("127.0.0.2")
    url = f"http://127.0.0.2:{port}"
    if via == "variable":
        monkeypatch.setenv(TOKEN_VARIABLE, token)
    code, out, err = serve_cli("--host", "127.0.0.2", "--port", str(port), *(["--token", token] * (via == "option")))
    assert code == 0 and f"{url}/?token={token}" in out and "other machines" in err
    data = photo.read_bytes()
    # Without the token: nothing, not even the page.
    assert httpx.get(f"{url}/").status_code == 401
    assert httpx.get(f"{url}/api/test-images").status_code == 401
    assert httpx.post(f"{url}/api/predict", content=data).status_code == 401
    assert httpx.get(f"{url}/?token=not-{token}").status_code == 403
    assert httpx.post(f"{url}/api/predict", content=data, headers={"authorization": "Bearer nope"}).status_code == 403
    # The printed address opens the page, which then leaves the token out of the address bar and in a cookie.
    with httpx.Client() as browser:
        opened = browser.get(f"{url}/?token={token}", follow_redirects=True)
        assert opened.status_code == 200 and "<title>faceattrs</title>" in opened.text
        assert str(opened.url) == f"{url}/"
        assert browser.post(f"{url}/api/predict", content=data).status_code == 200
    # A program gives it as a bearer token.
    answer = httpx.post(f"{url}/api/predict", content=data, headers={"authorization": f"Bearer {token}"}, timeout=60)
    assert answer.status_code == 200
    # The token does not make another Host name acceptable.
    refused = httpx.get(f"{url}/?token={token}", headers={"host": f"attacker.example:{port}"})
    assert refused.status_code == 400


def test_serving_on_every_address_warns_and_answers_to_this_machine_s_names(serve_cli):
    # A token may begin with "-" (secrets.token_urlsafe() gives one in 64): --token=TOKEN takes it.
    token = "-" + secrets.token_urlsafe(24)
    code, out, err = serve_cli("--host", "0.0.0.0", "--port", "8123", f"--token={token}")
    assert code == 0 and serve_cli.recorded == [("0.0.0.0", 8123)]
    assert "faceattrs serve: warning" in err and "every address of this machine" in err
    assert f"http://{socket.gethostname()}:8123/?token={token}" in out


def test_a_token_too_short_to_guess_is_refused(serve_cli):
    code, _, err = serve_cli("--host", "127.0.0.2", "--port", str(free_port("127.0.0.2")), "--token", "secret")
    assert code == 1 and "--token" in err and "secrets.token_hex" in err
