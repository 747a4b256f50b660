"""Faces in ordinary photos brought to CelebA's aligned geometry: photo read, eyes found, similarity warp to 178x218.

CelebA's aligned images were made by a similarity transform that put each face's
landmarks near fixed positions. A photo's face gets the same treatment here: the
eye centres (OpenCV's Haar eye cascades inside dlib's face box; both ship inside
their packages) are mapped onto the mean eye positions of the images the model
was trained on, which the model file carries.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from faceattrs.core.errors import InputError
from faceattrs.data import celeba
from faceattrs.faces.detect import FaceBox, find_faces

ALIGNED_SIZE = (celeba.IMAGE_WIDTH, celeba.IMAGE_HEIGHT)
# A photo is scaled down to this longest side as it is read. JPEGs are decoded at a
# reduced scale already, so a 50-megapixel photo costs what a 12-megapixel one does;
# other formats are decoded whole first, up to MAX_DECODED_PIXELS.
MAX_SIDE = 2048
MAX_DECODED_PIXELS = 50_000_000
# dlib finds faces from about 80 pixels; pictures up to this side are doubled first so
# that faces down to about 40 pixels are found. Larger ones are not: 4x the pixels.
UPSAMPLE_UP_TO = 1024
# Where the eyes sit in dlib's box when no eye pair is found: the mean over 200 drawn
# faces (standard deviation about 0.035 of the box). On the two real photos tried
# (scikit-image's astronaut, matplotlib's grace_hopper) the eyes sat higher, at 0.20 to
# 0.26 of the box height, so the box path is the rough one; the table says which path ran.
EYES_IN_BOX = np.array([[0.296, 0.308], [0.683, 0.308]])
# The cascades, most precise first: the eyeglasses one also finds bare eyes, and placed
# them within 5 pixels on every drawn face where it found a pair (152 of 200).
EYE_CASCADES = ("haarcascade_eye_tree_eyeglasses.xml", "haarcascade_eye.xml")
# In-plane turns (degrees) at which the eyes are looked for, in order: dlib's tilted
# filters find faces turned by up to about 25 degrees; the cascades want them within 10.
EYE_SEARCH_ANGLES = (0, 12, -12, 24, -24)
# The EXIF orientations that turn or mirror a stored picture for display (1 is as stored).
_TURNED = range(2, 9)
# Eye cascades scan the box's upper part at this box width: fast, and the same scale for any photo.
_EYE_BOX_WIDTH = 160


# A box in which no eye pair is found is kept only if dlib is this much surer than its
# threshold: on scikit-image's astronaut photo, dlib's one false face (a patch of the
# space suit, score 0.13) has no eyes, and the two detectors rarely err together.
UNCONFIRMED_MARGIN = 0.5


@dataclass(frozen=True)
class Face:
    box: FaceBox
    eyes: np.ndarray  # (2, 2): (x, y) of the eye at the picture's left, then the right one
    eyes_from: str  # "haar": both eyes found; "box": placed where eyes sit in the box
    aligned: Image.Image  # 178x218, CelebA's geometry


def open_photo(path: Path | str) -> Image.Image:
    """An RGB photo, upright by its EXIF orientation, no side over ``MAX_SIDE``; bad files raise InputError.

    ``info["scale"]`` of the result is how many of the file's pixels one of its pixels
    stands for (1 unless the photo was scaled down); ``info["orientation"]`` is the EXIF
    orientation it was turned by (1: stored upright, or no orientation that PIL applies).
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            shrink = MAX_SIDE / max(width, height)
            if img.format == "JPEG" and shrink < 1:
                # libjpeg decodes at 1/2, 1/4 or 1/8 scale in the DCT, as far as this size allows.
                img.draft("RGB", (math.ceil(width * shrink), math.ceil(height * shrink)))
            elif width * height > MAX_DECODED_PIXELS:
                raise InputError(
                    f"{path}: {width}x{height} {img.format or 'image'} is too large to decode here "
                    f"(over {MAX_DECODED_PIXELS // 10**6} megapixels); scale it down or save it as JPEG"
                )
            orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
            upright = ImageOps.exif_transpose(img).convert("RGB")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image (PIL recognises no image format in it)") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: refused, too many pixels ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data inside a known format
        raise InputError(f"{path}: cannot decode image ({err})") from None
    full_side = max(width, height)
    upright.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
    upright.info["scale"] = full_side / max(upright.size)
    upright.info["orientation"] = orientation if orientation in _TURNED else 1
    return upright


def is_aligned(img: Image.Image) -> bool:
    """Whether a picture has CelebA's aligned size, and so is scored as it is."""
    return img.size == ALIGNED_SIZE


@functools.cache
def _cascade(name: str):
    import cv2

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV could not load its own {name}")
    return cascade


def find_eyes(rgb: np.ndarray, box: FaceBox) -> tuple[np.ndarray, str]:
    """The two eye centres of the face in ``box``, and how they were found ("haar" or "box").

    The eye cascades look for upright eyes, and dlib finds faces turned further than
    that in the picture's plane: where no pair is found upright, the box is searched
    again turned by ``EYE_SEARCH_ANGLES``.
    """
    import cv2

    # The box and a margin around it (turning must not bring in emptiness), shrunk with
    # an area filter to the cascades' scale: a warp alone would alias a large face.
    margin = box.width // 4
    x0, y0 = box.left - margin, box.top - margin
    side = box.width + 2 * margin
    height, width = rgb.shape[:2]
    region = rgb[max(y0, 0) : min(y0 + side, height), max(x0, 0) : min(x0 + side, width)]
    region = cv2.copyMakeBorder(
        np.ascontiguousarray(region),
        max(-y0, 0),
        max(y0 + side - height, 0),
        max(-x0, 0),
        max(x0 + side - width, 0),
        cv2.BORDER_REPLICATE,
    )
    scale = _EYE_BOX_WIDTH / box.width
    size = round(side * scale)
    grey = cv2.resize(cv2.cvtColor(region, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
    to_patch = np.array([[size / side, 0, -x0 * size / side], [0, size / side, -y0 * size / side], [0, 0, 1]])
    inner = round(margin * size / side)
    for angle in EYE_SEARCH_ANGLES:
        turn = np.vstack([cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0), [0, 0, 1]])
        patch = grey if angle == 0 else cv2.warpAffine(grey, turn[:2], (size, size), borderMode=cv2.BORDER_REPLICATE)
        upper = patch[inner : inner + round(box.height * scale * 0.6), inner : inner + _EYE_BOX_WIDTH]
        for name in EYE_CASCADES:
            found = _cascade(name).detectMultiScale(
                upper, 1.05, 3, minSize=(_EYE_BOX_WIDTH // 8,) * 2, maxSize=(_EYE_BOX_WIDTH // 2,) * 2
            )
            pair = _eye_pair([(x + w / 2, y + h / 2) for x, y, w, h in found], _EYE_BOX_WIDTH)
            if pair is not None:
                back = np.linalg.inv(turn @ to_patch)
                points = np.c_[pair + inner, np.ones(2)] @ back[:2].T
                return points[np.argsort(points[:, 0])], "haar"
    corner = np.array([box.left, box.top], float)
    return corner + EYES_IN_BOX * [box.width, box.height], "box"


def _eye_pair(centres: list[tuple[float, float]], box_width: float) -> np.ndarray | None:
    """The most eye-like pair of candidate centres (box coordinates), left one first, or None.

    A pair must sit either side of the box's middle, level within a quarter of its
    distance, and 25 to 65% of the box width apart; of those, the one closest to the
    typical spacing and eye line wins.
    """
    best, best_cost = None, np.inf
    for i, a in enumerate(centres):
        for b in centres[i + 1 :]:
            (lx, ly), (rx, ry) = sorted((a, b))
            spread = rx - lx
            if not (lx < box_width / 2 < rx and 0.25 * box_width <= spread <= 0.65 * box_width):
                continue
            if abs(ry - ly) > 0.25 * spread:
                continue
            cost = abs(spread / box_width - 0.39) + abs((ly + ry) / 2 / box_width - 0.3)
            if cost < best_cost:
                best, best_cost = np.array([[lx, ly], [rx, ry]], float), cost
    return best


def similarity(src: np.ndarray, dst: np.ndarray) -> complex:
    """The scale and rotation (as one complex factor) taking the eye pair ``src`` onto ``dst``."""
    s, d = complex(*(src[1] - src[0])), complex(*(dst[1] - dst[0]))
    if s == 0:
        raise InputError("the two eyes found are at one point")
    return d / s


def align(img: Image.Image, eyes: np.ndarray, target_eyes: np.ndarray) -> Image.Image:
    """The 178x218 picture in which ``eyes`` (photo coordinates) land on ``target_eyes``."""
    factor = similarity(eyes, target_eyes)
    if abs(factor) < 0.5:  # shrink first with a proper filter: bilinear sampling alone would alias
        keep = 2 * abs(factor)
        size = (max(1, round(img.width * keep)), max(1, round(img.height * keep)))
        eyes = eyes * [size[0] / img.width, size[1] / img.height]
        img = img.resize(size, Image.LANCZOS)
        factor = similarity(eyes, target_eyes)
    shift = complex(*target_eyes[0]) - factor * complex(*eyes[0])
    # PIL asks for the inverse map, from output pixel to input pixel: z = (z' - shift) / factor.
    inv = 1 / factor
    offset = -inv * shift
    coeffs = (inv.real, -inv.imag, offset.real, inv.imag, inv.real, offset.imag)
    return img.transform(ALIGNED_SIZE, Image.AFFINE, coeffs, resample=Image.BILINEAR, fillcolor=(0, 0, 0))


def faces_in(img: Image.Image, target_eyes: np.ndarray, min_score: float = 0.0) -> list[Face]:
    """Every face dlib finds in a photo, best first, each aligned to ``target_eyes``."""
    rgb = np.asarray(img)
    upsample = int(max(img.size) <= UPSAMPLE_UP_TO)
    faces = []
    for box in find_faces(rgb, min_score=min_score, upsample=upsample):
        eyes, how = find_eyes(rgb, box)
        if how == "box" and box.score < min_score + UNCONFIRMED_MARGIN:
            continue
        faces.append(Face(box, eyes, how, align(img, eyes, target_eyes)))
    return faces
