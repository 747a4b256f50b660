"""How well photos are brought to CelebA's geometry: detection rate and eye-position error, per kind of picture.

Three kinds of held-out pictures, none of them seen when the thresholds in
faceattrs/faces were chosen (those used seeds 1000-1199 and 5000-5099):

- drawn: the generator's aligned faces as they are (178x218), detected as a photo would be;
- placed: drawn faces turned by up to +-15 degrees (on top of the generator's own +-9)
  and enlarged 1.2-1.8x inside a 640x480 picture;
- real: scikit-image's astronaut and matplotlib's grace_hopper, eyes read off by eye
  (their error in the photo's own pixels).

Beside it, how many of the same faces OpenCV's frontal-face Haar cascade finds.

    python bench/face_alignment.py [--faces 200]

The eye error is the larger of the two eyes' distances, in pixels of the aligned
178x218 face (a placed face's error is divided by its enlargement).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from faceattrs.faces import align
from tests.conftest import draw_faces
from tests.test_photos import REAL_EYES, _real, place

TARGET = np.array([[72.0, 106.0], [106.0, 106.0]])


def haar_face_found(picture: Image.Image, eyes: np.ndarray) -> bool:
    """Whether OpenCV's frontal-face Haar cascade, the other detector that ships in a package, finds this face."""
    import cv2

    grey = cv2.cvtColor(np.asarray(picture), cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    boxes = cascade.detectMultiScale(grey, 1.1, 5, minSize=(40, 40))
    return any(((eyes >= [x, y]) & (eyes <= [x + w, y + h])).all() for x, y, w, h in boxes)


def measure(kind: str, count: int) -> tuple[int, int, list[float], dict[str, int]]:
    rng = np.random.default_rng(77)
    found, errors, paths = 0, [], {"haar": 0, "box": 0, "opencv_face": 0}
    faces = draw_faces(count, 31337 if kind == "drawn" else 4242)
    for _, data, _, landmarks in faces:
        face = Image.open(io.BytesIO(data)).convert("RGB")
        if kind == "drawn":
            picture, eyes, scale = face, landmarks[:2].astype(float), 1.0
        else:
            picture = Image.new("RGB", (640, 480), tuple(int(v) for v in rng.integers(30, 220, 3)))
            angle, scale = rng.uniform(-15, 15), rng.uniform(1.2, 1.8)
            at = (int(rng.integers(0, 120)), int(rng.integers(0, 20)))
            eyes = place(face, landmarks, picture, angle, scale, at)
        paths["opencv_face"] += haar_face_found(picture, eyes)
        result = align.faces_in(picture, TARGET)
        if result:
            found += 1
            paths[result[0].eyes_from] += 1
            errors.append(float(np.linalg.norm(result[0].eyes - eyes, axis=1).max() / scale))
    return found, len(faces), errors, paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=200, help="drawn faces per kind")
    args = parser.parse_args()
    print(machine())
    print(
        f"{'kind':<8} {'found':>9} {'eyes by':>18} {'median px':>10} {'90th px':>8} {'max px':>7}"
        f"  {'OpenCV face cascade found':>26}"
    )
    for kind in ("drawn", "placed"):
        found, total, errors, paths = measure(kind, args.faces)
        print(
            f"{kind:<8} {found:>4}/{total:<4} {paths['haar']:>7} haar {paths['box']:>3} box "
            f"{np.median(errors):>10.2f} {np.percentile(errors, 90):>8.2f} {max(errors):>7.2f}"
            f"  {paths['opencv_face']:>21}/{total}"
        )
    # Where detection gives out: turned further in the picture's plane, and smaller.
    faces = [(Image.open(io.BytesIO(d)).convert("RGB"), lm) for _, d, _, lm in draw_faces(args.faces // 4, 999)]
    for label, angle, scale in [
        *((f"turned {a:>2} deg", a, 1.4) for a in (0, 15, 25, 35)),
        *((f"scaled {s:.2f}", 0, s) for s in (0.6, 0.45, 0.35, 0.25)),
    ]:
        found = 0
        for face, landmarks in faces:
            picture = Image.new("RGB", (640, 480), (90, 120, 150))
            eyes = place(face, landmarks, picture, angle, scale, (150, 20))
            found += any(
                np.linalg.norm(f.eyes - eyes, axis=1).max() < 10 * scale for f in align.faces_in(picture, TARGET)
            )
        width = scale * 0.49 * 178  # dlib's box is about half the aligned image's width
        print(f"{label:<16} face box about {width:>4.0f} px wide: found with both eyes right {found}/{len(faces)}")
    for name, eyes in REAL_EYES.items():
        result = align.faces_in(_real(name), TARGET)
        error = np.linalg.norm(result[0].eyes - eyes, axis=1).max() if result else float("nan")
        print(f"{name:<14} faces {len(result)}, eyes by {result[0].eyes_from if result else '-'}, error {error:.1f} px")


if __name__ == "__main__":
    main()
