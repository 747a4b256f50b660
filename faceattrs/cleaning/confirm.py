"""Telling the same photo (re-encoded, shifted, rescaled) from a different photo that looks alike.

Perceptual hashes only propose near duplicates: aligned faces in similar scenes share
hashes, and a photo with glasses added differs in a few hash bits at most. Each
proposed pair is therefore registered (an integer shift, then a sub-pixel affine fit
by OpenCV's ECC when needed) and compared in colour at full resolution. The signed
difference is smoothed, so re-encoding noise, random from pixel to pixel, averages
out while a real change (glasses, a smile, an earring) stays. A pair is the same
photo when the largest smoothed difference stays small, both in grey levels and
against the typical difference of the pair: a local change over an otherwise
identical picture is a different photo.

A copy whose colours were changed as a whole (re-graded, white-balanced) differs
everywhere, so a pair that fails is compared once more through colour maps: an
affine map of RGB fitted on the face (the middle of an aligned picture), and one
fitted on the rest, each applied to the whole picture. A re-grade is one map, so
each explains the whole picture. The same face before a background of another hue
is two maps: the face's leaves the background apart and the rest's leaves the face
apart, so it stays another photo. Both maps must explain it: the better of the two
alone would let a face region that holds some background fit a compromise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import pandas as pd
import simplejpeg

from faceattrs.core.parallel import imap

THUMBNAIL = (10, 8)  # (height, width) of the colour thumbnails that screen pairs before the full comparison
SCREENED_AT_ONCE = 65536  # pairs per vectorised thumbnail subtraction: about 60 MB of float32 each
SIGMA = 2.0  # the smoothing of the difference, in pixels
SHIFT = 3  # integer shifts searched, in pixels each way
MARGIN = SHIFT + 3 * round(SIGMA)  # border left out: shifted-in edges and the blur's reach
FACE_BOX = (0.3, 0.75, 0.3, 0.7)  # top, bottom, left, right of an aligned face, as fractions of the picture


@dataclass(frozen=True)
class Comparison:
    peak: float  # the largest smoothed colour difference, in grey levels
    typical: float  # its 95th percentile: the pair's noise
    refined: bool  # whether an affine fit was needed

    @property
    def ratio(self) -> float:
        """How far the peak stands above the pair's own noise (plus one grey level)."""
        return self.peak / (self.typical + 1.0)

    def same_photo(self, max_difference: float, max_ratio: float) -> bool:
        return self.peak <= max_difference and self.ratio <= max_ratio


def decode(data: bytes) -> np.ndarray:
    """RGB float32 pixels of a JPEG (libjpeg-turbo), or of anything else PIL reads."""
    return decode_rgb(data).astype(np.float32)


def decode_rgb(data: bytes, min_size: tuple[int, int] = (0, 0)) -> np.ndarray:
    """RGB uint8 pixels of a JPEG (libjpeg-turbo), or of anything else PIL reads.

    ``min_size`` (height, width) lets libjpeg-turbo scale a JPEG down in the DCT, to the
    smallest of 1/2, 1/4 or 1/8 that keeps at least that size.
    """
    try:
        return simplejpeg.decode_jpeg(data, min_height=min_size[0], min_width=min_size[1])
    except ValueError:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))


def thumbnail(data: bytes) -> np.ndarray:
    """A THUMBNAIL-sized float32 colour picture: libjpeg-turbo scales in the DCT, then an area average."""
    height, width = THUMBNAIL
    rgb = decode_rgb(data, (4 * height, 4 * width))
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)


def _thumbnail_member(name: str, images) -> np.ndarray:
    return thumbnail(images.read(name))


def _interior(x: np.ndarray) -> np.ndarray:
    return x[MARGIN:-MARGIN, MARGIN:-MARGIN]


def _shifted(b: np.ndarray, dx: int, dy: int) -> np.ndarray:
    return np.roll(b, (-dy, -dx), axis=(0, 1))


def _best_shift(ga: np.ndarray, gb: np.ndarray) -> tuple[int, int]:
    """The integer shift of ``gb`` onto ``ga`` with the least mean absolute grey difference."""
    h, w = ga.shape
    core = ga[SHIFT : h - SHIFT, SHIFT : w - SHIFT]
    scores = {
        (dx, dy): np.abs(core - gb[SHIFT + dy : h - SHIFT + dy, SHIFT + dx : w - SHIFT + dx]).mean()
        for dx in range(-SHIFT, SHIFT + 1)
        for dy in range(-SHIFT, SHIFT + 1)
    }
    return min(scores, key=scores.get)


def _warped(b: np.ndarray, warp: np.ndarray) -> np.ndarray:
    h, w = b.shape[:2]
    return cv2.warpAffine(
        b, warp, (w, h), flags=cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def _measure(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    smooth = _interior(cv2.GaussianBlur(a - b, (0, 0), SIGMA))
    magnitude = np.sqrt((smooth**2).sum(axis=2))
    return float(magnitude.max()), float(np.percentile(magnitude, 95))


def _colour_mapped(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> np.ndarray:
    """``b`` through the affine RGB map that best takes its ``region`` pixels to ``a``'s (least squares)."""
    lifted = np.concatenate([b, np.ones((*b.shape[:2], 1), dtype=b.dtype)], axis=2)
    fitted, *_ = np.linalg.lstsq(lifted[region], a[region], rcond=None)
    return (lifted @ fitted.astype(np.float32)).astype(np.float32)


def _halves(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Where an aligned face is (CelebA's eyes and mouth lie at about 0.5 and 0.7 of the height, within the
    middle fifth of the width) and the rest of the picture."""
    h, w = shape[:2]
    top, bottom, left, right = FACE_BOX
    centre = np.zeros((h, w), dtype=bool)
    centre[round(top * h) : round(bottom * h), round(left * w) : round(right * w)] = True
    inside = np.zeros((h, w), dtype=bool)
    inside[MARGIN:-MARGIN, MARGIN:-MARGIN] = True
    return centre & inside, ~centre & inside


def _recoloured(a: np.ndarray, b: np.ndarray, unmapped: Comparison, max_difference: float) -> Comparison:
    """``unmapped``, or the comparison through the face's and the rest's colour maps (the worse of the two)
    where that is closer."""
    if unmapped.peak <= max_difference or unmapped.peak > 3 * max_difference:
        return unmapped
    mapped = [Comparison(*_measure(a, _colour_mapped(a, b, region)), unmapped.refined) for region in _halves(a.shape)]
    worse = max(mapped, key=lambda c: c.peak)
    return worse if worse.peak < unmapped.peak else unmapped


def compare(a: np.ndarray, b: np.ndarray, max_difference: float) -> Comparison:
    """How far two decoded pictures of one size differ once registered, in place and in colour."""
    if a.shape != b.shape:
        b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    registered, unmapped = _registered(a, b, max_difference)
    return _recoloured(a, registered, unmapped, max_difference)


def _registered(a: np.ndarray, b: np.ndarray, max_difference: float) -> tuple[np.ndarray, Comparison]:
    """``b`` moved onto ``a`` (integer shift, then an affine fit where it helps) and how far they differ."""
    ga, gb = a.mean(axis=2), b.mean(axis=2)
    dx, dy = _best_shift(ga, gb)
    shifted = _shifted(b, dx, dy)
    unfitted = Comparison(*_measure(a, shifted), refined=False)
    # A shift explains copies that were shifted or re-encoded; a peak far beyond the limit
    # is another face, which no fit would make the same. In between, fit scale and
    # sub-pixel shift too (a rescaled copy), and keep the fit only where it helps.
    if unfitted.peak <= max_difference or unfitted.peak > 3 * max_difference:
        return shifted, unfitted
    warp = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-5)
    try:
        _, fitted = cv2.findTransformECC(ga, gb, warp.copy(), cv2.MOTION_AFFINE, criteria, None, 5)
    except cv2.error:  # no convergence: the pictures do not correspond
        return shifted, unfitted
    warped = _warped(b, fitted)
    refit = Comparison(*_measure(a, warped), refined=True)
    return (warped, refit) if refit.peak < unfitted.peak else (shifted, unfitted)


def compare_bytes(first: bytes, second: bytes, max_difference: float) -> Comparison:
    return compare(decode(first), decode(second), max_difference)


def _compare_members(pair: tuple[str, str], images, max_difference: float) -> Comparison:
    return compare_bytes(images.read(pair[0]), images.read(pair[1]), max_difference)


def confirm_pairs(
    images,
    first: list[str],
    second: list[str],
    max_difference: float,
    max_ratio: float,
    max_thumbnail_difference: float = float("inf"),
    workers: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """thumbnail_difference, peak, ratio and same_photo for each pair of images of an archive, in order.

    Aligned faces share hashes, so proposed pairs grow with the square of the images in a
    look-alike cluster. Thumbnails, made once per image, settle the pairs that differ
    everywhere (different faces) at the cost of a subtraction; only pairs whose mean
    thumbnail difference is within ``max_thumbnail_difference`` get the full comparison,
    and the others keep no peak or ratio.
    """
    names, codes = np.unique(np.asarray(first + second, dtype=object), return_inverse=True)
    thumbs = np.zeros((len(names), THUMBNAIL[0] * THUMBNAIL[1] * 3), dtype=np.float32)
    made = imap(
        partial(_thumbnail_member, images=images),
        names,
        total=len(names),
        workers=workers,
        desc="thumbnails of near pairs",
        unit="image",
        progress=progress,
        chunksize=64,
    )
    for k, thumb in enumerate(made):
        thumbs[k] = thumb.reshape(-1)
    ia, ib = codes[: len(first)], codes[len(first) :]
    screen = np.empty(len(first))
    for k in range(0, len(first), SCREENED_AT_ONCE):
        part = slice(k, k + SCREENED_AT_ONCE)
        screen[part] = np.abs(thumbs[ia[part]] - thumbs[ib[part]]).mean(axis=1)
    close = np.flatnonzero(screen <= max_thumbnail_difference)
    compared = list(
        imap(
            partial(_compare_members, images=images, max_difference=max_difference),
            ((first[k], second[k]) for k in close),
            total=len(close),
            workers=workers,
            desc="compare near pairs",
            unit="pair",
            progress=progress,
            chunksize=8,
        )
    )
    peak = np.full(len(first), np.nan)
    ratio = np.full(len(first), np.nan)
    same = np.zeros(len(first), dtype=bool)
    for k, c in zip(close, compared, strict=True):
        peak[k], ratio[k], same[k] = round(c.peak, 2), round(c.ratio, 2), c.same_photo(max_difference, max_ratio)
    return pd.DataFrame({"thumbnail_difference": np.round(screen, 2), "peak": peak, "ratio": ratio, "same_photo": same})
