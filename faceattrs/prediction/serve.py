"""A local web page to try the model: upload a photo or pick a test image, see the aligned faces, bars and saliency.

FastAPI and uvicorn come with Prefect. Uploads are read into memory up to the upload
limit and never written to disk; the faces of the last few pictures are kept in memory
so that a click on an attribute can draw its map. Pictures are decoded, searched for
faces and aligned side by side; the model scores and explains one request at a time.
Who may use the page and how much it takes on at once: ``faceattrs.prediction.gate``.
"""

from __future__ import annotations

import base64
import io
import itertools
import sys
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote

import anyio
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from PIL import Image
from scipy.special import expit
from starlette.requests import ClientDisconnect

from faceattrs.core.errors import InputError
from faceattrs.data.archive import ImageArchive
from faceattrs.prediction import gate, outputs, photos, saliency
from faceattrs.prediction.gate import Access, Limits
from faceattrs.prediction.predictor import Predictor

PAGE = Path(__file__).resolve().parents[1] / "resources" / "serve.html"
MAX_UPLOAD = Limits.upload
# Pictures whose faces stay in memory for saliency clicks (each face is 116 kB).
KEEP = 32
TEST_IMAGES = 24
# The routes that run the model, and so count against Limits.scoring.
SCORING = ("/api/predict", "/api/test-images/", "/api/explain/")


def _png(img: Image.Image | np.ndarray) -> str:
    picture = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _is_scoring(method: str, path: str) -> bool:
    return path.startswith(SCORING)


class Scorer:
    """The model behind the page: the faces of a picture scored, and kept for the saliency map of a click."""

    def __init__(self, predictor: Predictor, thresholds: np.ndarray, max_faces: int):
        self.predictor, self.cut, self.max_faces = predictor, expit(thresholds), max_faces
        # One request at a time runs the model: Grad-CAM hooks it, and a hook would fire in another's forward.
        self.model_lock = threading.Lock()
        self.kept: OrderedDict[str, list[photos.PhotoFace]] = OrderedDict()
        self.kept_lock = threading.Lock()

    def score(self, name: str, data: bytes) -> dict:
        """The faces of a picture (read from memory: the upload never touches the disk), each with its bars."""
        try:
            faces, found = self._faces(name, data)
            with self.model_lock:
                probs = expit(self.predictor.logits_for(f.source for f in faces))
        except InputError as err:
            raise HTTPException(422, str(err).replace(f"{name}: ", "")) from None
        token = uuid.uuid4().hex
        with self.kept_lock:
            self.kept[token] = faces
            while len(self.kept) > KEEP:
                self.kept.popitem(last=False)
        return {
            "token": token,
            "found": found,
            "note": f"the {len(faces)} best-scoring faces of the {found} found" if found > len(faces) else None,
            "faces": [self._face(f, row) for f, row in zip(faces, probs, strict=True)],
        }

    def _faces(self, name: str, data: bytes) -> tuple[list[photos.PhotoFace], int]:
        """The surest ``max_faces`` faces of a picture, surest first, and how many were found."""
        found = photos.find([_Named(name, data)], self.predictor.mean_eyes).faces
        if not found:
            raise HTTPException(422, f"no face found in {name} (frontal faces from about 30 pixels wide)")
        # An aligned image is its one face, with no detector's score.
        return sorted(found, key=lambda f: -(f.score or 0.0))[: self.max_faces], len(found)

    def _face(self, face: photos.PhotoFace, probs: np.ndarray) -> dict:
        return {
            "face": face.face,
            "box": face.box,
            "score": face.score,
            "eyes": face.eyes_from,
            "aligned": _png(face.aligned),
            "attributes": [
                {"name": n, "probability": round(float(p), 4), "threshold": round(float(t), 4)}
                for n, p, t in zip(self.predictor.targets, probs, self.cut, strict=True)
            ],
        }

    def explain(self, token: str, face: int, attribute: str) -> dict:
        """The saliency map of one attribute on a face of a picture scored before."""
        with self.kept_lock:
            chosen = next((f for f in self.kept.get(token, []) if f.face == face), None)
        if chosen is None:
            raise HTTPException(404, "unknown picture or face; score the picture again")
        try:
            with self.model_lock:
                probability, heat, seen = saliency.explain(self.predictor, chosen.source, attribute)
        except InputError as err:
            raise HTTPException(404, str(err)) from None
        shown = np.asarray(Image.fromarray(seen).resize((seen.shape[1] * 3, seen.shape[0] * 3), Image.BICUBIC))
        return {
            "attribute": attribute,
            "probability": round(probability, 4),
            "method": saliency.method(self.predictor.model.backbone),
            "image": _png(saliency.overlay(shown, heat)),
        }


class _Named(io.BytesIO):
    """Bytes that ``photos.find`` can open like a file and name in its messages."""

    def __init__(self, name: str, data: bytes):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


def _test_images(raw: Path | None, test_ids: list[str] | None) -> tuple[ImageArchive | None, list[str]]:
    """The archive of the raw folder and the first test images in it, to offer on the page."""
    if raw is None:
        return None, []
    try:
        archive = ImageArchive.of(raw)
        return archive, list(itertools.islice((i for i in test_ids or [] if i in archive), TEST_IMAGES))
    except Exception as err:  # the page still scores uploads without test images to offer
        print(f"faceattrs serve: no test images to offer ({err})")
        return None, []


async def _body(request: Request, limits: Limits) -> bytes:
    """The upload, up to the limit (counted as it comes where no length was announced), within the time allowed."""
    body = bytearray()
    try:
        with anyio.fail_after(limits.body_seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.upload:
                    raise HTTPException(413, f"uploads are limited to {limits.upload // 2**20} MB")
    except TimeoutError:
        raise HTTPException(408, f"the upload did not arrive within {limits.body_seconds:g} s") from None
    except ClientDisconnect:  # the client went away: nobody reads this answer
        raise HTTPException(400, "the upload was cut off") from None
    if not body:
        raise HTTPException(400, "no image in the request body")
    return bytes(body)


def _add_routes(app: FastAPI, scorer: Scorer, offered: tuple[ImageArchive | None, list[str]], limits: Limits):
    page = PAGE.read_text()
    archive, names = offered

    # The page and the list answer in the event loop: no thread of the pool, however busy scoring keeps it.
    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/api/test-images")
    async def test_images() -> list[str]:
        return names

    @app.get("/api/test-images/{name}")
    def test_image(name: str) -> dict:
        if name not in names:
            raise HTTPException(404, f"{name} is not one of the offered test images")
        return scorer.score(name, archive.read(name))

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        body = await _body(request, limits)
        # Scored in the thread pool, as the other scoring routes are: the event loop stays free.
        return await run_in_threadpool(scorer.score, unquote(request.headers.get("x-filename", "upload")), body)

    @app.get("/api/explain/{token}/{face}/{attribute}")
    def explain(token: str, face: int, attribute: str) -> dict:
        return scorer.explain(token, face, attribute)


def create_app(
    predictor: Predictor,
    thresholds: np.ndarray,
    raw: Path | None = None,
    test_ids: list[str] | None = None,
    access: Access | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """The page's app; ``raw`` and ``test_ids`` offer test images to pick (aligned images of the raw folder).

    ``access`` (default: this machine's names, no token) says who may use it; ``limits`` how much it takes on.
    """
    limits = limits or Limits()
    # No /docs or /openapi.json: the page is the interface, and there is less to reach.
    app = FastAPI(title="faceattrs", docs_url=None, redoc_url=None, openapi_url=None)
    _add_routes(app, Scorer(predictor, thresholds, limits.faces), _test_images(raw, test_ids), limits)
    gate.guard(app, access or Access(), limits, _is_scoring)
    return app


def serve(
    model: Path, thresholds: Path | None, raw: Path | None, shards: Path | None, tta: str, access: Access, port: int
) -> None:
    import uvicorn

    from faceattrs.data.shards import read_labels

    predictor = Predictor(model, tta=tta)
    cut = outputs.load_thresholds(thresholds, predictor.targets)
    test_ids = list(read_labels(shards, "test").index) if shards is not None and shards.exists() else []
    app = create_app(predictor, cut, raw if raw is not None and raw.exists() else None, test_ids, access)
    if access.host not in gate.LOOPBACK:
        where = "every address of this machine" if access.host in gate.EVERY_ADDRESS else access.host
        print(
            f"faceattrs serve: warning: listening on {where}: other machines can reach the page. Each request "
            "must carry the token, which plain HTTP carries unencrypted: share it on a network you trust only",
            file=sys.stderr,
        )
    print(f"faceattrs serve: {access.url(port)} (Ctrl-C stops it)")
    uvicorn.run(app, host=access.host, port=port, log_level="warning")
