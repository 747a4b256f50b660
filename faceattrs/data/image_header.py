"""An image's dimensions read from its header, before any decoding: the pixel cap on images from outside.

A decoder sizes its buffer by the header alone, so a few hundred bytes that claim
30000x30000 pixels cost gigabytes before the decoder finds the data missing.
"""

from __future__ import annotations

import io

import simplejpeg
from PIL import Image

from faceattrs.core.errors import InputError

# CelebA's aligned images are 178x218 (38,804 pixels); 4096x4096 is over 400 times that, and
# decodes to 50 MB of RGB. Photos of any size go through faces.align.open_photo, which scales
# them down as it reads, and never through here.
MAX_PIXELS = 4096 * 4096


class ImageTooLarge(InputError):
    """An image whose header claims more pixels than any image here may have; it is never decoded."""


def dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG, or of any format PIL knows; None where none is recognised."""
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        return width, height
    except ValueError:  # not a JPEG libjpeg-turbo reads: PIL's lazy open reads the header only
        pass
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Image.DecompressionBombError:  # PIL's own cap, far above ours: the caller refuses it
        raise
    except Exception:  # PIL raises many unrelated types for bytes that are no image; the decoder will say so
        return None


def check(data: bytes, name: str, limit: int = MAX_PIXELS) -> tuple[int, int] | None:
    """The image's (width, height), or None if no header is recognised; ImageTooLarge over ``limit`` pixels."""
    try:
        size = dimensions(data)
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"{name}: {err}; not decoded") from None
    if size is not None and size[0] * size[1] > limit:
        width, height = size
        raise ImageTooLarge(
            f"{name}: {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), over the "
            f"{limit / 1e6:.1f}-megapixel cap for one image; not decoded"
        )
    return size
