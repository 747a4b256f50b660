"""The embedded synthetic CelebA: a folder in the published layout, deterministic from a seed.

Labels follow CelebA's attribute frequencies and the obvious correlations (beards on
men, lipstick on women); identity-level traits stay fixed per identity. The published
dataset's flaws are planted with known counts and listed, with the clean labels, in
``synthetic_truth.json`` beside the CelebA files.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from faceattrs.core.parallel import imap
from faceattrs.core.params import SyntheticParams
from faceattrs.data import archive, celeba
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.synthetic.drawing import DRAWN, Look, draw_face, draw_no_face, random_look
from faceattrs.synthetic.labels import sample_labels
from faceattrs.synthetic.truth import BACKGROUND_HUE, TRUTH_FILE

# Official partition sizes, as fractions of 202,599.
PARTITION_FRACTIONS = (162_770 / 202_599, 19_867 / 202_599)
UNREADABLE_KINDS = ("truncated", "empty", "not_jpeg")
# What a same-identity look-alike changes: one small thing in the same scene, pose and light.
LOOKALIKE_CHANGES = ("Eyeglasses", "Smiling", "Wearing_Earrings", "Wearing_Hat")
# How far a look-alike's background hue turns, in turns of the colour circle: at least 0.3 (108 degrees,
# blue against orange-red, say) so that the two are other colours and not a tint that a re-grade makes.
HUE_TURNS = (0.3, 0.7)


@dataclass(frozen=True)
class _Job:
    index: int
    labels: dict
    look: Look | None  # None: a picture with no face
    seed: tuple[int, ...]
    quality: int
    background_hue: float = 0.0


def _render(job: _Job) -> tuple[int, bytes, np.ndarray]:
    rng = np.random.default_rng(job.seed)
    if job.look is None:
        img, landmarks = draw_no_face(rng), np.zeros(10, dtype=np.int32)
    else:
        img, landmarks = draw_face(job.labels, job.look, rng, background_hue=job.background_hue)
    return job.index, encode_jpeg(img, job.quality), landmarks


def encode_jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def near_copy(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """A near duplicate as scraping makes them: re-encoded, shifted a few pixels, or rescaled."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    kind = str(rng.choice(["reencode", "shift", "rescale"]))
    if kind == "shift":
        dx, dy = (int(v) * int(rng.choice([-1, 1])) for v in rng.integers(1, 3, size=2))
        img = img.transform(img.size, Image.AFFINE, (1, 0, -dx, 0, 1, -dy), resample=Image.BILINEAR)
    elif kind == "rescale":
        s = float(rng.choice([-1, 1]) * rng.uniform(0.01, 0.03) + 1)
        w, h = round(img.width * s), round(img.height * s)
        big = img.resize((w, h), Image.BILINEAR)
        canvas = Image.new("RGB", img.size)
        canvas.paste(big, ((img.width - w) // 2, (img.height - h) // 2))
        img = canvas
    return encode_jpeg(img, int(rng.integers(70, 96))), kind


def _unreadable_bytes(kind: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) // 2]
    if kind == "empty":
        return b""
    return b"<html><body>Google Drive - Quota exceeded</body></html>\n"


def _plant_lookalikes(rng, taken, count: int, flawed: set, partition, identity_index, clean: pd.DataFrame) -> list:
    """(source, image, change) triples: each image is drawn in its source's scene, pose and light.

    A third are the source's identity with one small thing changed (glasses, smile,
    earrings, hat), so the image joins the source's identity and labels; a third are
    another identity in the same layout; a third are the source's face itself, labels
    and all, before its background turned to another hue of the same brightness.
    """
    planted = []
    pool = iter(rng.permutation(len(partition)).tolist())
    used = set(flawed)
    for k in range(count):
        dst = next(int(i) for i in taken if int(i) not in used)
        used.add(dst)
        # The source: an image the other flaws leave alone, in the image's partition when it
        # must share the identity (CelebA shares no identity between partitions).
        kind = k % 3
        src = next(i for i in pool if i not in used and (kind == 1 or partition[i] == partition[dst]))
        used.add(src)
        if kind == 1:
            planted.append((src, dst, "identity"))
            continue
        change = str(rng.choice(LOOKALIKE_CHANGES)) if kind == 0 else BACKGROUND_HUE
        identity_index[dst] = identity_index[src]
        row = clean.iloc[src].copy()
        if kind == 0:
            row[change] = 1 - row[change]
        clean.iloc[dst] = row
        planted.append((src, dst, change))
    return planted


@dataclass(frozen=True)
class _Flaws:
    """The planted flaws, on disjoint sets of images (row numbers)."""

    counts: dict[str, int]
    exact_pairs: list[tuple[int, int]]  # (source, copy)
    near_pairs: list[tuple[int, int]]
    no_face: list[int]
    unreadable: list[int]
    lookalikes: list[tuple[int, int, str]]  # (source, image, change)

    @property
    def copies(self) -> set[int]:
        return {dst for _, dst in self.exact_pairs + self.near_pairs}


def _people(n: int, params: SyntheticParams, rng) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Partitions in published order and identities disjoint between them: each image's partition and
    identity (a row of the identities), their count, and the published ids (not in image order)."""
    n_train = round(n * PARTITION_FRACTIONS[0])
    n_val = round(n * PARTITION_FRACTIONS[1])
    partition = np.repeat(np.array([0, 1, 2], dtype=np.int8), [n_train, n_val, n - n_train - n_val])
    identity_index = np.empty(n, dtype=np.int64)
    offset = 0
    for part in range(3):
        members = np.flatnonzero(partition == part)
        k = max(1, round(len(members) / params.images_per_identity))
        identity_index[members] = offset + rng.integers(0, k, size=len(members))
        offset += k
    return partition, identity_index, offset, rng.permutation(offset) + 1


def _plant(n: int, params: SyntheticParams, rng, partition, identity_index, clean: pd.DataFrame) -> _Flaws:
    """Choose the flawed images; look-alikes change ``identity_index`` and ``clean`` where they share a person."""
    counts = {
        k: round(n * getattr(params, f"{k}_rate"))
        for k in ("exact_duplicate", "near_duplicate", "no_face", "unreadable")
    }
    taken = iter(rng.permutation(n))
    pick = lambda k: sorted(int(next(taken)) for _ in range(k))  # noqa: E731
    exact_src, exact_dst = pick(counts["exact_duplicate"]), pick(counts["exact_duplicate"])
    near_src, near_dst = pick(counts["near_duplicate"]), pick(counts["near_duplicate"])
    no_face, unreadable = pick(counts["no_face"]), pick(counts["unreadable"])
    exact_pairs = list(zip(exact_src, rng.permutation(exact_dst).tolist(), strict=True))
    near_pairs = list(zip(near_src, rng.permutation(near_dst).tolist(), strict=True))
    flawed = set(exact_src + exact_dst + near_src + near_dst + no_face + unreadable)
    lookalikes = _plant_lookalikes(
        rng, taken, round(n * params.lookalike_rate), flawed, partition, identity_index, clean
    )
    return _Flaws(counts, exact_pairs, near_pairs, no_face, unreadable, lookalikes)


def _publish(params: SyntheticParams, rng, clean: pd.DataFrame, flaws: _Flaws, partition, identity_index):
    """The labels as published: noisy, and copies that disagree with their source; the noise, and the
    copies whose labels contradict their source's. Some copies share their source's identity id."""
    n = len(clean)
    noise_mask = np.zeros(clean.shape, dtype=bool)
    for j, name in enumerate(ATTRIBUTES):
        noise_mask[:, j] = rng.random(n) < params.noise_rate(name)
    published = clean.where(~noise_mask, 1 - clean).astype(np.int8)
    # Copies carry the labels their annotators gave: half the exact copies and every
    # near copy disagree with their source on a few attributes.
    contradictions = []
    pairs = flaws.exact_pairs + flaws.near_pairs
    for k, (src, dst) in enumerate(pairs):
        published.iloc[dst] = published.iloc[src]
        if k >= len(flaws.exact_pairs) or k % 2 == 1:
            flip = rng.choice(len(ATTRIBUTES), size=int(rng.integers(1, 4)), replace=False)
            row = published.iloc[dst].to_numpy().copy()
            row[flip] = 1 - row[flip]
            published.iloc[dst] = row
            contradictions.append(dst)
    # Most published duplicate pairs carry different identity ids; some share one, but
    # only inside a partition, since CelebA shares no identity between partitions.
    for src, dst in pairs:
        if rng.random() < 0.3 and partition[src] == partition[dst]:
            identity_index[dst] = identity_index[src]
    return published, noise_mask, contradictions


def _draw(out: Path, params: SyntheticParams, clean, looks, identity_index, flaws: _Flaws, workers, progress):
    """Render every image into the zip (copies and spoiled files last); the landmarks, and how each near copy
    and unreadable file was made. ``clean`` is indexed by file name."""
    names = list(clean.index)
    n = len(names)
    no_face_set = set(flaws.no_face)
    copies = flaws.copies
    scene_of = {dst: src for src, dst, _ in flaws.lookalikes}
    hue_of = {
        dst: float(np.random.default_rng([params.seed, 4, dst]).uniform(*HUE_TURNS))
        for _, dst, change in flaws.lookalikes
        if change == BACKGROUND_HUE
    }
    # A generator: 202,599 jobs held at once would cost more memory than the images.
    jobs = (
        _Job(
            i,
            clean.iloc[i].to_dict(),
            None if i in no_face_set else looks[identity_index[i]],
            (params.seed, 2, scene_of.get(i, i)),
            params.jpeg_quality,
            hue_of.get(i, 0.0),
        )
        for i in range(n)
        if i not in copies
    )
    landmarks = np.zeros((n, 10), dtype=np.int32)
    data: dict[int, bytes] = {}
    bar = tqdm(total=n, desc="synthetic images", unit="img", disable=not progress)
    keep = {src for src, _ in flaws.exact_pairs + flaws.near_pairs} | set(flaws.unreadable)
    broken = set(flaws.unreadable)
    writer = archive.ArchiveWriter(out / celeba.ZIP_FILE)

    def store(index, blob, points):
        if index not in broken:  # written last, spoiled
            writer.add(names[index], blob)
        landmarks[index] = points
        if index in keep:
            data[index] = blob
        bar.update()

    for result in imap(_render, jobs, total=n - len(copies), workers=workers, progress=False):
        store(*result)
    near_kinds = {}
    for src, dst in flaws.exact_pairs:
        store(dst, data[src], landmarks[src])
    for src, dst in flaws.near_pairs:
        blob, kind = near_copy(data[src], np.random.default_rng([params.seed, 3, dst]))
        near_kinds[names[dst]] = kind
        store(dst, blob, landmarks[src])
    bar.close()
    unreadable_kinds = {}
    for k, i in enumerate(flaws.unreadable):
        kind = UNREADABLE_KINDS[k % len(UNREADABLE_KINDS)]
        writer.add(names[i], _unreadable_bytes(kind, data[i]))
        unreadable_kinds[names[i]] = kind
    writer.close()
    return landmarks, near_kinds, unreadable_kinds


def _text_files(rng, published: pd.DataFrame, partition, identity_ids, landmarks) -> dict[str, bytes]:
    """The published text files, byte for byte as CelebA writes them (the boxes drawn at random)."""
    index = published.index
    bbox = pd.DataFrame(
        rng.integers([40, 40, 120, 160], [160, 120, 260, 340], size=(len(index), 4)),
        index=index,
        columns=list(celeba.BBOX_HEADER[1:]),
    )
    return {
        celeba.ATTR_FILE: celeba.format_attributes(published),
        celeba.PARTITION_FILE: celeba.format_pairs(pd.Series(partition, index=index)),
        celeba.IDENTITY_FILE: celeba.format_pairs(pd.Series(identity_ids, index=index)),
        celeba.BBOX_FILE: celeba.format_table(bbox, celeba.BBOX_HEADER),
        celeba.LANDMARKS_FILE: celeba.format_table(pd.DataFrame(landmarks, index=index), celeba.LANDMARK_HEADER),
    }


def generate(out: Path | str, params: SyntheticParams, workers: int = 0, progress: bool = True) -> dict:
    """Write a synthetic CelebA folder at ``out``; returns the ground truth also saved in it.

    Every random choice comes from one generator seeded by ``params.seed``, drawn in the
    order of the steps below, so the folder is the same bytes on every run.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = params.num_images
    rng = np.random.default_rng([params.seed, 0])
    names = [celeba.image_name(i + 1) for i in range(n)]
    partition, identity_index, people, identity_ids = _people(n, params, rng)
    clean = sample_labels(rng, identity_index, people)
    clean.index = pd.Index(names, name="image_id")
    looks = [
        random_look(np.random.default_rng([params.seed, 1, i]), bool(m))
        for i, m in enumerate(clean.groupby(identity_index)["Male"].first().reindex(range(people)).fillna(0))
    ]
    flaws = _plant(n, params, rng, partition, identity_index, clean)
    # A copied photo shows the same face: its clean labels are its source's.
    for src, dst in flaws.exact_pairs + flaws.near_pairs:
        clean.iloc[dst] = clean.iloc[src]
    published, noise_mask, contradictions = _publish(params, rng, clean.copy(), flaws, partition, identity_index)
    landmarks, near_kinds, unreadable_kinds = _draw(out, params, clean, looks, identity_index, flaws, workers, progress)
    files = _text_files(rng, published, partition, identity_ids[identity_index], landmarks)
    for name, blob in files.items():
        (out / name).write_bytes(blob)
    truth = {
        "seed": params.seed,
        "num_images": n,
        "counts": {**flaws.counts, "lookalike": len(flaws.lookalikes), "label_contradictions": len(contradictions)},
        "drawn_attributes": list(DRAWN),
        "noise_rate": {a: params.noise_rate(a) for a in ATTRIBUTES},
        "flipped_labels": int(noise_mask.sum()),
        "exact_duplicates": [[names[s], names[d]] for s, d in flaws.exact_pairs],
        "near_duplicates": [[names[s], names[d], near_kinds[names[d]]] for s, d in flaws.near_pairs],
        "label_contradictions": [names[i] for i in contradictions],
        "no_face": [names[i] for i in flaws.no_face],
        # Different photos that look alike: a duplicate check must keep both.
        "lookalikes": [[names[s], names[d], change] for s, d, change in flaws.lookalikes],
        "unreadable": unreadable_kinds,
        "clean_labels": {name: "".join(map(str, row)) for name, row in zip(names, clean.to_numpy(), strict=True)},
    }
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
    return truth
