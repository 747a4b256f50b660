"""The README's prediction pictures, made with the default run's model: annotated photo, saliency map, serve page.

    python -m tools.readme_pictures      # after `make repro`; writes docs/predict-*.png and docs/serve-page.png

The photo is scikit-image's astronaut (public domain, NASA), one no generator here drew.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def main() -> None:
    from skimage import data

    from faceattrs.core.project import stage_path
    from faceattrs.data.shards import read_labels
    from faceattrs.prediction import outputs, serve
    from faceattrs.prediction.predictor import Predictor
    from tests.browser import browser_page
    from tests.test_serve import running

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.png"
        Image.fromarray(data.astronaut()).save(photo)
        for command in (["predict", str(photo)], ["explain", str(photo), "--attribute", "Smiling"]):
            subprocess.run([sys.executable, "-m", "faceattrs.cli", *command, "--out", tmp], cwd=ROOT, check=True)
        shutil.copy(Path(tmp) / "annotated" / "astronaut.png", DOCS / "predict-annotated.png")
        shutil.copy(Path(tmp) / "explain" / "astronaut.Smiling.png", DOCS / "predict-saliency.png")
        predictor = Predictor(ROOT / stage_path("predict", "model.pt", ROOT))
        thresholds = outputs.load_thresholds(ROOT / stage_path("predict", "thresholds.json", ROOT), predictor.targets)
        shards = ROOT / stage_path("predict", "shards", ROOT)
        app = serve.create_app(predictor, thresholds, ROOT / "data" / "raw", list(read_labels(shards, "test").index))
        with running(app) as url, browser_page(offline=False, size=(1000, 860)) as page:
            page.goto(url)
            page.set_input_files("#upload", str(photo))
            page.wait_for_selector(".bar", timeout=60_000)
            page.click('.bar[data-attribute="Smiling"]')
            page.wait_for_selector('.saliency[src^="data:image/png"]', timeout=60_000)
            page.screenshot(path=str(DOCS / "serve-page.png"))
    print(f"wrote {DOCS / 'predict-annotated.png'}, {DOCS / 'predict-saliency.png'}, {DOCS / 'serve-page.png'}")


if __name__ == "__main__":
    main()
