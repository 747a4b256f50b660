"""A local web page to try the model: upload a photo or pick a test image, see the aligned faces, bars and saliency.

FastAPI and uvicorn come with Prefect. Uploads are read into memory up to
``MAX_UPLOAD`` bytes and never written to disk; the faces of the last few
pictures are kept in memory so that a click on an attribute can draw its map.
"""

from __future__ import annotations

import base64
import io
import itertools
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from PIL import Image
from scipy.special import expit

from faceattrs.core.errors import InputError
from faceattrs.data.archive import ImageArchive
from faceattrs.prediction import outputs, photos, saliency
from faceattrs.prediction.predictor import Predictor

PAGE = Path(__file__).resolve().parents[1] / "resources" / "serve.html"
MAX_UPLOAD = 20 * 1024 * 1024
# Pictures whose faces stay in memory for saliency clicks (each face is 116 kB).
KEEP = 32
TEST_IMAGES = 24


def _png(img: Image.Image | np.ndarray) -> str:
    picture = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def create_app(
    predictor: Predictor, thresholds: np.ndarray, raw: Path | None = None, test_ids: list[str] | None = None
) -> FastAPI:
    """The page's app; ``raw`` and ``test_ids`` offer test images to pick (aligned images of the raw folder)."""
    app = FastAPI(title="faceattrs")
    kept: OrderedDict[str, list[photos.PhotoFace]] = OrderedDict()
    # One request at a time uses the model: Grad-CAM hooks it, and a hook would fire in another's forward.
    model_lock = threading.Lock()
    archive, offered = None, []
    if raw is not None:
        try:
            archive = ImageArchive.of(raw)
            offered = list(itertools.islice((i for i in test_ids or [] if i in archive), TEST_IMAGES))
        except Exception as err:  # the page still scores uploads without test images to offer
            print(f"faceattrs serve: no test images to offer ({err})")
    cut = expit(thresholds)

    def score(name: str, data: bytes) -> dict:
        # The photo is read from memory: the upload never touches the disk.
        try:
            with model_lock:
                found = photos.find([_Named(name, data)], predictor.mean_eyes)
                probs = expit(predictor.logits_for(f.source for f in found.faces))
        except InputError as err:
            raise HTTPException(422, str(err).replace(f"{name}: ", "")) from None
        if not found.faces:
            raise HTTPException(422, f"no face found in {name} (frontal faces from about 30 pixels wide)")
        token = uuid.uuid4().hex
        kept[token] = found.faces
        while len(kept) > KEEP:
            kept.popitem(last=False)
        return {
            "token": token,
            "faces": [
                {
                    "face": f.face,
                    "box": f.box,
                    "eyes": f.eyes_from,
                    "aligned": _png(f.aligned),
                    "attributes": [
                        {"name": n, "probability": round(float(p), 4), "threshold": round(float(t), 4)}
                        for n, p, t in zip(predictor.targets, row, cut, strict=True)
                    ],
                }
                for f, row in zip(found.faces, probs, strict=True)
            ],
        }

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/api/test-images")
    def test_images() -> list[str]:
        return offered

    @app.get("/api/test-images/{name}")
    def test_image(name: str) -> dict:
        if name not in offered:
            raise HTTPException(404, f"{name} is not one of the offered test images")
        return score(name, archive.read(name))

    @app.post("/api/predict")
    async def predict(request: Request) -> dict:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD:
                raise HTTPException(413, f"uploads are limited to {MAX_UPLOAD // 2**20} MB")
        if not body:
            raise HTTPException(400, "no image in the request body")
        # Scored in the thread pool, as the other endpoints are: the event loop stays free.
        return await run_in_threadpool(score, unquote(request.headers.get("x-filename", "upload")), bytes(body))

    @app.get("/api/explain/{token}/{face}/{attribute}")
    def explain(token: str, face: int, attribute: str) -> dict:
        chosen = next((f for f in kept.get(token, []) if f.face == face), None)
        if chosen is None:
            raise HTTPException(404, "unknown picture or face; score the picture again")
        try:
            with model_lock:
                probability, heat, seen = saliency.explain(predictor, chosen.source, attribute)
        except InputError as err:
            raise HTTPException(404, str(err)) from None
        shown = np.asarray(Image.fromarray(seen).resize((seen.shape[1] * 3, seen.shape[0] * 3), Image.BICUBIC))
        return {
            "attribute": attribute,
            "probability": round(probability, 4),
            "method": saliency.method(predictor.model.backbone),
            "image": _png(saliency.overlay(shown, heat)),
        }

    return app


class _Named(io.BytesIO):
    """Bytes that ``photos.find`` can open like a file and name in its messages."""

    def __init__(self, name: str, data: bytes):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name


def serve(
    model: Path, thresholds: Path | None, raw: Path | None, shards: Path | None, host: str, port: int, tta: str
) -> None:
    import uvicorn

    from faceattrs.data.shards import read_labels

    predictor = Predictor(model, tta=tta)
    cut = outputs.load_thresholds(thresholds, predictor.targets)
    test_ids = list(read_labels(shards, "test").index) if shards is not None and shards.exists() else []
    app = create_app(predictor, cut, raw if raw is not None and raw.exists() else None, test_ids)
    print(f"faceattrs serve: http://{host}:{port}/ (Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
