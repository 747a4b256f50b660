"""Drawing of synthetic aligned faces: one 178x218 RGB image from 40 attribute values.

Each drawn attribute changes the pixels in a way a small CNN can learn (a hat, glasses,
a smile); pose, lighting, background, noise and blur vary so the task is not trivial.
A face is laid out once (``layout``), then drawn by the functions listed in ``PARTS``, in
that order: to draw a new attribute, write a part (or extend one) and list it there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceattrs.data.celeba import ATTRIBUTES, IMAGE_HEIGHT, IMAGE_WIDTH

# Attributes whose value the drawing does not show: they are learnable only through
# their correlation with drawn ones, so evaluation treats them apart.
UNDRAWN = frozenset({"Attractive"})
DRAWN = tuple(a for a in ATTRIBUTES if a not in UNDRAWN)

HAIR_COLOURS = {
    "Black_Hair": (25, 20, 18),
    "Blond_Hair": (226, 196, 110),
    "Brown_Hair": (110, 70, 40),
    "Gray_Hair": (170, 170, 172),
}
OTHER_HAIR = ((150, 60, 30), (70, 50, 40))  # auburn and dark brown: labelled as no colour, as in CelebA


@dataclass(frozen=True)
class Look:
    """The identity-level appearance that no label names: it stays fixed across one identity."""

    skin: float  # 0 light .. 1 dark
    face_width: float
    face_height: float
    eye_colour: tuple[int, int, int]
    shirt: tuple[int, int, int]
    other_hair: int
    long_hair: bool


def random_look(rng: np.random.Generator, male: bool) -> Look:
    return Look(
        skin=float(rng.beta(2.0, 3.0)),
        face_width=float(rng.uniform(40, 47)),
        face_height=float(rng.uniform(54, 60)),
        eye_colour=tuple(int(c) for c in rng.integers(20, 140, size=3)),
        shirt=tuple(int(c) for c in rng.integers(30, 230, size=3)),
        other_hair=int(rng.integers(0, len(OTHER_HAIR))),
        long_hair=bool(rng.random() < (0.15 if male else 0.85)),
    )


def _mix(a, b, t: float) -> tuple[int, int, int]:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


def _skin_colour(look: Look, pale: bool) -> tuple[int, int, int]:
    if pale:
        return (246, 232, 224)
    return _mix((236, 200, 170), (105, 70, 48), look.skin)


def _background(rng: np.random.Generator) -> Image.Image:
    top = rng.integers(0, 256, size=3)
    bottom = rng.integers(0, 256, size=3)
    t = np.linspace(0.0, 1.0, IMAGE_HEIGHT)[:, None, None]
    grad = top[None, None, :] * (1 - t) + bottom[None, None, :] * t
    grad = np.broadcast_to(grad, (IMAGE_HEIGHT, IMAGE_WIDTH, 3)).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(grad), "RGB")
    # Clutter behind the person, as in photos taken anywhere: it also keeps the
    # perceptual hashes of different pictures apart, as they are in CelebA.
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 7))):
        x, y = rng.integers(-20, IMAGE_WIDTH + 20), rng.integers(-20, IMAGE_HEIGHT + 20)
        w, h = rng.integers(20, 90, size=2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x - w, y - h, x + w, y + h], fill=colour)
    return img


# RGB to YIQ: Y is the brightness a hue turn keeps, I and Q the chroma it rotates.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def turn_hue(img: Image.Image, turns: float) -> Image.Image:
    """``img`` with its hue turned by ``turns`` of a full circle and its brightness (luma) unchanged."""
    c, s = math.cos(2 * math.pi * turns), math.sin(2 * math.pi * turns)
    rotate = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    matrix = np.linalg.inv(_YIQ) @ rotate @ _YIQ
    rgb = np.asarray(img, dtype=np.float64) @ matrix.T
    return Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), "RGB")


def _ellipse_points(cx, cy, rx, ry, start_deg, end_deg, n=24):
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start_deg, end_deg, n)
    ]


def _finish(img: Image.Image, rng: np.random.Generator, blurry: bool) -> Image.Image:
    """Lighting, sensor noise and blur, applied to the whole picture."""
    arr = np.asarray(img, dtype=np.float32)
    gain = rng.uniform(0.75, 1.2)
    side = np.linspace(-1, 1, IMAGE_WIDTH)[None, :, None] * rng.uniform(-0.18, 0.18)
    arr = arr * (gain + side) + rng.normal(0, rng.uniform(2, 6), size=arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    radius = rng.uniform(2.2, 3.2) if blurry else rng.uniform(0.0, 0.7)
    return img.filter(ImageFilter.GaussianBlur(radius)) if radius > 0.05 else img


def draw_no_face(rng: np.random.Generator) -> Image.Image:
    """A picture with no face in it: background and a few blobs, as CelebA's stray non-faces."""
    img = _background(rng)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        x, y = rng.integers(0, IMAGE_WIDTH), rng.integers(0, IMAGE_HEIGHT)
        w, h = rng.integers(15, 80, size=2)
        draw.ellipse([x - w, y - h, x + w, y + h], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return _finish(img, rng, blurry=False)


@dataclass
class Face:
    """Where everything of one face goes and its colours: computed once, read by every part."""

    on: dict[str, bool]
    look: Look
    cx: float
    cy: float
    a: float  # half-width of the head
    b: float  # half-height of the head
    skin: tuple[int, int, int]
    shade: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_dark: tuple[int, int, int]
    hair_named: bool  # the hair has one of the four labelled colours
    mouth_y: float
    mouth_half: float  # half the mouth's width
    nose_y: float
    eyes: list[tuple[float, float]]

    @property
    def top_hair(self) -> bool:
        return not self.on["Bald"]

    @property
    def wavy(self) -> bool:
        return self.on["Wavy_Hair"]

    @property
    def straight(self) -> bool:
        return self.on["Straight_Hair"]

    def landmarks(self) -> list[tuple[float, float]]:
        """CelebA's five landmarks before the pose rotation: eyes, nose, mouth corners."""
        return [
            self.eyes[0],
            self.eyes[1],
            (self.cx, self.nose_y),
            (self.cx - self.mouth_half, self.mouth_y),
            (self.cx + self.mouth_half, self.mouth_y),
        ]


def layout(attrs: dict[str, int], look: Look, rng: np.random.Generator) -> Face:
    on = {name: bool(attrs[name]) for name in ATTRIBUTES}
    cx = IMAGE_WIDTH / 2 + rng.uniform(-6, 6)
    cy = 112 + rng.uniform(-5, 5)
    scale = rng.uniform(0.92, 1.08)
    a, b = look.face_width * scale, look.face_height * scale
    if on["Chubby"]:
        a += 7
    if on["Oval_Face"]:
        a, b = a - 6, b + 8
    skin = _skin_colour(look, on["Pale_Skin"])
    hair_name = next((h for h in HAIR_COLOURS if on[h]), None)
    hair = HAIR_COLOURS[hair_name] if hair_name else OTHER_HAIR[look.other_hair]
    eye_y = cy - b * 0.1
    return Face(
        on=on,
        look=look,
        cx=cx,
        cy=cy,
        a=a,
        b=b,
        skin=skin,
        shade=_mix(skin, (40, 25, 20), 0.35),
        hair=hair,
        hair_dark=_mix(hair, (0, 0, 0), 0.35),
        hair_named=hair_name is not None,
        mouth_y=cy + b * 0.52,
        mouth_half=18 if on["Smiling"] else 14,
        nose_y=cy + b * 0.27 + (4 if on["Big_Nose"] else 0),
        eyes=[(cx + side * a * 0.4, eye_y) for side in (-1, 1)],
    )


Part = Callable[[ImageDraw.ImageDraw, Face, np.random.Generator], None]


def long_hair(d, f: Face, rng) -> None:
    """Hair that falls behind the head and onto the shoulders: wavy edges wiggle, straight ones do not."""
    if not (f.look.long_hair and f.top_hair):
        return
    bottom = f.cy + f.b + rng.uniform(5, 35)

    def edge(x0, y0, y1, n=10):
        pts = []
        for i in range(n + 1):
            y = y0 + (y1 - y0) * i / n
            wiggle = 8 * math.sin(i * 1.6) if f.wavy else (0 if f.straight else 3 * math.sin(i * 0.8))
            pts.append((x0 + wiggle, y))
        return pts

    left = edge(f.cx - f.a - 12, f.cy - f.b * 0.6, bottom)
    right = edge(f.cx + f.a + 12, f.cy - f.b * 0.6, bottom)
    d.polygon(left + right[::-1], fill=f.hair)
    if f.straight:  # straight strands down the long hair, bold enough to survive downscaling
        for x0 in (f.cx - f.a - 8, f.cx - f.a - 2, f.cx + f.a + 2, f.cx + f.a + 8):
            d.line([x0, f.cy - f.b * 0.3, x0, bottom - 4], fill=f.hair_dark, width=2)


def clothes(d, f: Face, rng) -> None:
    """Shoulders, shirt and neck, necktie and necklace."""
    cx, cy, a, b = f.cx, f.cy, f.a, f.b
    shoulder = 92 if f.on["Male"] else 78
    d.ellipse([cx - shoulder, cy + b + 14, cx + shoulder, cy + b + 150], fill=f.look.shirt)
    d.rectangle([cx - a * 0.42, cy + b * 0.5, cx + a * 0.42, cy + b + 24], fill=f.skin)
    if f.on["Wearing_Necktie"]:
        tie = (170, 20, 40) if f.look.shirt[0] < 128 else (20, 40, 150)
        d.polygon(
            [(cx - 6, cy + b + 20), (cx + 6, cy + b + 20), (cx + 3, cy + b + 28), (cx - 3, cy + b + 28)], fill=tie
        )
        d.polygon(
            [
                (cx - 3, cy + b + 28),
                (cx + 3, cy + b + 28),
                (cx + 9, cy + b + 80),
                (cx, cy + b + 90),
                (cx - 9, cy + b + 80),
            ],
            fill=tie,
        )
    if f.on["Wearing_Necklace"]:
        for x, y in _ellipse_points(cx, cy + b + 4, a * 0.48, 16, 20, 160, n=13):
            d.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=(235, 205, 90))


def ears(d, f: Face, rng) -> None:
    """Ears, and earrings below them."""
    for side in (-1, 1):
        ex = f.cx + side * f.a
        d.ellipse([ex - 6, f.cy - 12, ex + 6, f.cy + 14], fill=f.skin)
        if f.on["Wearing_Earrings"]:
            d.ellipse([ex - 5, f.cy + 13, ex + 5, f.cy + 24], fill=(240, 210, 60))


def head(d, f: Face, rng) -> None:
    """The head (a square jaw for men, an ellipse otherwise), a double chin, and the lines of age."""
    cx, cy, a, b = f.cx, f.cy, f.a, f.b
    # A darker rim inside the outline: the edge of the face is shaded, as in a lit photo.
    for inset, colour in ((0, _mix(f.skin, (40, 25, 20), 0.25)), (4, f.skin)):
        box = [cx - a + inset, cy - b + inset, cx + a - inset, cy + b - inset]
        if f.on["Male"]:
            d.rounded_rectangle(box, radius=a * 0.75 - inset, fill=colour)
        else:
            d.ellipse(box, fill=colour)
    if f.on["Double_Chin"]:
        d.arc([cx - a * 0.5, cy + b - 12, cx + a * 0.5, cy + b + 6], 10, 170, fill=f.shade, width=2)
    if not f.on["Young"]:  # forehead lines, and folds beside the mouth that bangs cannot hide
        wrinkle = _mix(f.skin, (30, 15, 10), 0.55)
        for k in range(3):
            y = cy - b * 0.62 + k * 7
            d.line([cx - a * 0.5, y, cx + a * 0.5, y], fill=wrinkle, width=3)
        for side in (-1, 1):
            d.line([cx + side * a * 0.25, cy + b * 0.2, cx + side * a * 0.45, cy + b * 0.62], fill=wrinkle, width=3)


def facial_hair(d, f: Face, rng) -> None:
    """Stubble, beard, sideburns and goatee, before the mouth so the lips stay on top."""
    cx, cy, a, b = f.cx, f.cy, f.a, f.b
    beard = _mix(_mix(f.hair, (90, 90, 90), 0.4), f.skin, 0.5)  # skin shows through: the jaw and cheeks stay lit
    if f.on["5_o_Clock_Shadow"]:
        pts = rng.uniform(-1, 1, size=(260, 2))
        for px, py in pts:
            x, y = cx + px * a * 0.8, cy + b * 0.45 + abs(py) * b * 0.5
            d.point((x, y), fill=(70, 70, 70))
            d.point((x + 1, y), fill=(70, 70, 70))
    if not f.on["No_Beard"]:
        d.chord([cx - a, cy - b * 0.05, cx + a, cy + b + 4], 5, 175, fill=beard)
    if f.on["Sideburns"]:
        for side in (-1, 1):
            x0 = cx + side * (a - 4)
            d.rectangle([min(x0, x0 - side * 8), cy - b * 0.35, max(x0, x0 - side * 8), cy + b * 0.2], fill=beard)
    if f.on["Goatee"]:
        d.ellipse([cx - 10, f.mouth_y + 5, cx + 10, cy + b + 2], fill=beard)


def mouth(d, f: Face, rng) -> None:
    """Lips (big, painted), an open mouth with teeth when smiling, the smile's arc, and a mustache."""
    cx, mouth_y, half = f.cx, f.mouth_y, f.mouth_half
    lip_w = 8 if f.on["Big_Lips"] else 3
    lips = (205, 20, 60) if f.on["Wearing_Lipstick"] else _mix(f.skin, (110, 40, 45), 0.6)
    if f.on["Mouth_Slightly_Open"]:
        d.ellipse([cx - half * 0.7, mouth_y - 4, cx + half * 0.7, mouth_y + 7], fill=(60, 10, 15))
        if f.on["Smiling"]:
            d.rectangle([cx - half * 0.5, mouth_y - 3, cx + half * 0.5, mouth_y], fill=(240, 240, 235))
    if f.on["Smiling"]:
        d.arc([cx - half, mouth_y - 14, cx + half, mouth_y + 7], 10, 170, fill=lips, width=lip_w + 1)
    else:
        d.line([cx - half, mouth_y, cx + half, mouth_y], fill=lips, width=lip_w)
        if f.on["Big_Lips"]:
            d.line([cx - half * 0.7, mouth_y + 4, cx + half * 0.7, mouth_y + 4], fill=lips, width=3)
    if f.on["Mustache"]:
        mustache = _mix(f.hair_dark, (0, 0, 0), 0.5)  # darker than the beard, so it shows on a bearded face
        d.polygon(
            [
                (cx - 17, mouth_y - 4),
                (cx, mouth_y - 13),
                (cx + 17, mouth_y - 4),
                (cx + 14, mouth_y - 1),
                (cx - 14, mouth_y - 1),
            ],
            fill=mustache,
        )


def nose(d, f: Face, rng) -> None:
    """A nose on a lit bridge that runs up between the eyes: wide with nostrils when big, a wedge when pointy."""
    cx, nose_y = f.cx, f.nose_y
    nose_top = f.cy - f.b * 0.05
    d.line([cx, f.eyes[0][1] - 12, cx, nose_top + 14], fill=_mix(f.skin, (255, 255, 255), 0.4), width=12)
    nose_w = 15 if f.on["Big_Nose"] else 6
    if f.on["Big_Nose"]:
        for side in (-1, 1):  # wide nostrils
            d.ellipse(
                [cx + side * 8 - 4, nose_y - 3, cx + side * 8 + 4, nose_y + 3], fill=_mix(f.shade, (0, 0, 0), 0.3)
            )
    if f.on["Pointy_Nose"]:
        d.polygon(
            [(cx, nose_top), (cx - nose_w * 0.5, nose_y), (cx, nose_y + 9), (cx + nose_w * 0.5, nose_y)], fill=f.shade
        )
    else:
        d.line([cx, nose_top, cx - 2, nose_y], fill=f.shade, width=2)
        d.arc([cx - nose_w, nose_y - 6, cx + nose_w, nose_y + 6], 0, 180, fill=f.shade, width=3)


def cheeks(d, f: Face, rng) -> None:
    """Rosy cheeks and the highlight of high cheekbones."""
    for side in (-1, 1):
        chx, chy = f.cx + side * f.a * 0.55, f.cy + f.b * 0.22
        if f.on["Rosy_Cheeks"]:
            d.ellipse([chx - 9, chy - 6, chx + 9, chy + 6], fill=_mix(f.skin, (235, 80, 100), 0.55))
        if f.on["High_Cheekbones"]:
            d.arc([chx - 13, chy - 13, chx + 13, chy + 4], 200, 340, fill=_mix(f.skin, (255, 255, 255), 0.7), width=4)


def eyes(d, f: Face, rng) -> None:
    """Eyes in shaded sockets (narrow or open), eye makeup, bags under the eyes, and eyebrows (bushy, arched).

    The sockets, darker than the cheeks and the nose bridge, make the face one that
    OpenCV's frontal-face cascades find, as they find a lit face in a photo.
    """
    for ex, eye_y in f.eyes:
        h = 1.9 if f.on["Narrow_Eyes"] else 4.3
        for (rx, top, bottom), t in (((16, 14, 5), 0.3), ((13, 11, 3), 0.6)):
            d.ellipse([ex - rx, eye_y - top, ex + rx, eye_y + bottom], fill=_mix(f.skin, (40, 25, 20), t))
        if f.on["Heavy_Makeup"]:
            d.ellipse([ex - 11, eye_y - 10, ex + 11, eye_y + 1], fill=(120, 60, 140))
        if f.on["Bags_Under_Eyes"]:
            d.chord([ex - 10, eye_y - 2, ex + 10, eye_y + 12], 10, 170, fill=_mix(f.skin, (70, 40, 60), 0.55))
        d.ellipse(
            [ex - 7, eye_y - h, ex + 7, eye_y + h],
            fill=(215, 215, 215),
            outline=(10, 10, 10) if f.on["Heavy_Makeup"] else None,
            width=2,
        )
        r = min(3.5, h)
        d.ellipse([ex - r, eye_y - r, ex + r, eye_y + r], fill=f.look.eye_colour)
        brow_w = 6 if f.on["Bushy_Eyebrows"] else 3
        brow = f.hair_dark if f.top_hair else (60, 50, 45)
        if f.on["Arched_Eyebrows"]:
            d.arc([ex - 11, eye_y - 24, ex + 11, eye_y - 4], 195, 345, fill=brow, width=brow_w)
        else:
            d.line([ex - 11, eye_y - 11, ex + 11, eye_y - 11], fill=brow, width=brow_w)
    nose_top = f.cy - f.b * 0.05
    d.line([f.cx, f.eyes[0][1] - 12, f.cx, nose_top], fill=_mix(f.skin, (255, 255, 255), 0.4), width=6)


def top_hair(d, f: Face, rng) -> None:
    """Hair on the head: the hairline rises when receding, bangs cover the forehead; a bald head keeps a fringe."""
    cx, cy, a, b = f.cx, f.cy, f.a, f.b
    if not f.top_hair:
        if f.hair_named:
            for side in (-1, 1):  # a bald head keeps a fringe of its colour above the ears
                x0 = cx + side * (a - 2)
                d.rectangle([min(x0, x0 - side * 6), cy - b * 0.35, max(x0, x0 - side * 6), cy - 8], fill=f.hair)
        return
    hairline = cy - b * (0.72 if f.on["Receding_Hairline"] else 0.45)
    outer = _ellipse_points(cx, cy - 2, a + 5, b + 9, 180, 360, n=30)
    cap = [(x, min(y, hairline)) for x, y in outer]
    if f.on["Receding_Hairline"]:
        cap = [(x, y - (8 if abs(x - cx) > a * 0.4 and y >= hairline - 1 else 0)) for x, y in cap]
    d.polygon(cap, fill=f.hair)
    if f.wavy:
        for k in range(5):
            x = cx - a * 0.6 + k * a * 0.3
            d.arc([x - 7, hairline - 24, x + 7, hairline - 10], 180, 360, fill=f.hair_dark, width=3)
    elif f.straight:
        for k in range(6):
            x = cx - a * 0.6 + k * a * 0.24
            d.line([x, hairline - 30, x, hairline - 2], fill=f.hair_dark, width=2)
    if f.on["Bangs"]:
        pts = [(cx - a * 0.85, hairline - 4), (cx + a * 0.85, hairline - 4)]
        for k in range(8, -1, -1):
            x = cx - a * 0.8 + k * a * 0.2
            pts.append((x, cy - b * 0.36 + (4 if k % 2 else 0)))
        d.polygon(pts, fill=f.hair)


def hat(d, f: Face, rng) -> None:
    """A hat worn high enough that the hairline (or its absence) shows below the brim."""
    if not f.on["Wearing_Hat"]:
        return
    colour = (40, 40, 90) if f.look.shirt[2] < 128 else (120, 30, 30)
    # High on the head: a brim over the brows hides what face detectors look for first.
    brim_y = f.cy - f.b * 0.78
    d.rectangle([f.cx - f.a - 2, brim_y - 40, f.cx + f.a + 2, brim_y], fill=colour)
    d.rectangle([f.cx - f.a - 16, brim_y - 4, f.cx + f.a + 16, brim_y + 4], fill=_mix(colour, (0, 0, 0), 0.3))


def glasses(d, f: Face, rng) -> None:
    """Glasses, dark or light framed, sometimes sunglasses."""
    if not f.on["Eyeglasses"]:
        return
    frame = (15, 15, 15) if rng.random() < 0.7 else (190, 190, 200)
    sun = rng.random() < 0.3
    for ex, ey in f.eyes:
        d.rounded_rectangle(
            [ex - 13, ey - 9, ex + 13, ey + 9], radius=5, outline=frame, width=3, fill=(30, 30, 40) if sun else None
        )
    eye_y = f.eyes[0][1]
    d.line([f.eyes[0][0] + 13, eye_y - 2, f.eyes[1][0] - 13, eye_y - 2], fill=frame, width=3)
    for side, (ex, ey) in zip((-1, 1), f.eyes, strict=True):
        d.line([ex + side * 13, ey - 3, f.cx + side * f.a, ey - 1], fill=frame, width=2)


# The parts of a face in drawing order: later ones cover earlier ones, and each draws from the parts'
# random stream in turn, so this order, not the order of the functions in this file, fixes every image.
PARTS: tuple[Part, ...] = (
    long_hair,
    clothes,
    ears,
    head,
    facial_hair,
    mouth,
    nose,
    cheeks,
    eyes,
    top_hair,
    hat,
    glasses,
)


def draw_face(
    attrs: dict[str, int], look: Look, rng: np.random.Generator, background_hue: float = 0.0
) -> tuple[Image.Image, np.ndarray]:
    """Draw one face, part by part; returns the image and its 5 landmarks (10 ints, aligned coordinates).

    Background, layout, parts and pose with lighting each draw from their own stream of
    ``rng``: the same ``rng`` with another face, or one attribute changed, gives a
    look-alike in the same scene, pose and light. ``background_hue`` turns the background's
    hue (its brightness kept): the same face, pose and light in front of another colour.
    """
    scene, placement, parts, pose = rng.spawn(4)
    img = _background(scene)
    if background_hue:
        img = turn_hue(img, background_hue)
    face = layout(attrs, look, placement)
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    for draw_part in PARTS:
        draw_part(d, face, parts)
    # Pose: a small in-plane rotation of everything drawn about the face centre.
    angle = pose.uniform(-9, 9)
    layer = layer.rotate(angle, resample=Image.BILINEAR, center=(face.cx, face.cy))
    img.paste(layer, (0, 0), layer)
    img = _finish(img, pose, blurry=face.on["Blurry"])
    theta = math.radians(-angle)  # PIL rotates counter-clockwise in image coordinates
    landmarks = []
    for x, y in face.landmarks():
        dx, dy = x - face.cx, y - face.cy
        landmarks += [
            face.cx + dx * math.cos(theta) - dy * math.sin(theta),
            face.cy + dx * math.sin(theta) + dy * math.cos(theta),
        ]
    return img, np.rint(landmarks).astype(np.int32)
