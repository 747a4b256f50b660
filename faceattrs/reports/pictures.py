"""Pictures for the reports: labelled contact sheets of images, and matplotlib figures saved atomically."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from faceattrs.core import atomic


def save_figure(fig: Figure, path: Path) -> None:
    """Write a matplotlib figure as a PNG under a temporary name.

    Figures are made with ``matplotlib.figure.Figure``, never pyplot: no backend to
    choose on a machine without a display, and no global figure list to close.
    """
    with atomic.atomic_file(path) as tmp:
        fig.savefig(tmp, format="png")


def dealt_rows(cells: Sequence, per_row: int, title: Callable[[int, int], str]) -> list:
    """``cells`` dealt into contact-sheet rows of ``per_row``; ``title(first, last)`` (1-based) names each row."""
    return [
        (title(k + 1, min(k + per_row, len(cells))), list(cells[k : k + per_row]))
        for k in range(0, len(cells), per_row)
    ]


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[tuple[bytes | None, str]]]], path: Path, thumb: tuple[int, int] = (89, 109)
) -> None:
    """A PNG with one row per entry: a title, then thumbnails each captioned below.

    Images that cannot be decoded are drawn as a grey box, so a sheet of dropped
    images still shows where each one stands.
    """
    font = ImageFont.load_default()
    cols = max((len(images) for _, images in rows), default=1)
    title_h, caption_h, pad = 14, 26, 6
    row_h = title_h + thumb[1] + caption_h + pad
    width = max(cols * (thumb[0] + pad) + pad, 360)
    sheet = Image.new("RGB", (width, max(1, len(rows)) * row_h + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (title, images) in enumerate(rows):
        y = pad + r * row_h
        draw.text((pad, y), title[:90], fill="black", font=font)
        for c, (data, caption) in enumerate(images):
            x = pad + c * (thumb[0] + pad)
            try:
                img = Image.open(io.BytesIO(data or b"")).convert("RGB").resize(thumb)
            except Exception:  # a broken file still gets its place on the sheet
                img = Image.new("RGB", thumb, (190, 190, 190))
                ImageDraw.Draw(img).line([0, 0, *thumb], fill="red", width=2)
            sheet.paste(img, (x, y + title_h))
            for k, line in enumerate(caption.split("\n")[:2]):
                draw.text((x, y + title_h + thumb[1] + 2 + k * 11), line[:16], fill="black", font=font)
    with atomic.atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
