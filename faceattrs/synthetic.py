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

from faceattrs import archive, celeba
from faceattrs.celeba import ATTRIBUTES, POSITIVE_RATES
from faceattrs.faces import DRAWN, Look, draw_face, draw_no_face, random_look
from faceattrs.params import SyntheticParams
from faceattrs.parallel import imap

TRUTH_FILE = "synthetic_truth.json"
P_MALE = POSITIVE_RATES["Male"]

# Share of each attribute's positives that are men; attributes absent here are independent of Male.
MALE_SHARE = {
    "5_o_Clock_Shadow": 1.0, "Goatee": 1.0, "Mustache": 1.0, "Sideburns": 1.0,
    "Bald": 0.97, "Wearing_Necktie": 0.95, "Receding_Hairline": 0.65, "Bushy_Eyebrows": 0.7,
    "Big_Nose": 0.75, "Chubby": 0.75, "Double_Chin": 0.7, "Gray_Hair": 0.7,
    "No_Beard": 0.3016, "Young": 0.35, "Attractive": 0.25, "High_Cheekbones": 0.3,
    "Wavy_Hair": 0.3, "Arched_Eyebrows": 0.1, "Rosy_Cheeks": 0.05, "Wearing_Earrings": 0.05,
    "Wearing_Necklace": 0.05, "Heavy_Makeup": 0.01, "Wearing_Lipstick": 0.01,
    "Black_Hair": 0.5, "Blond_Hair": 0.07, "Brown_Hair": 0.35,
}
# Traits of the person rather than of the photo: drawn once per identity.
IDENTITY_LEVEL = ("Male", "Pale_Skin", "Big_Nose", "Pointy_Nose", "Big_Lips", "Oval_Face", "Narrow_Eyes",
                  "Chubby", "Double_Chin", "Young", "Attractive", "Arched_Eyebrows", "Bushy_Eyebrows",
                  "Receding_Hairline", "Bald")
HAIR_COLOURS = ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair")
HAIR_STYLES = ("Straight_Hair", "Wavy_Hair")
# Official partition sizes, as fractions of 202,599.
PARTITION_FRACTIONS = (162_770 / 202_599, 19_867 / 202_599)
UNREADABLE_KINDS = ("truncated", "empty", "not_jpeg")


def rate_given_sex(attribute: str, male: np.ndarray) -> np.ndarray:
    """P(attribute | sex) that keeps the published overall rate."""
    rate = POSITIVE_RATES[attribute]
    share = MALE_SHARE.get(attribute, P_MALE)
    return np.where(male, rate * share / P_MALE, rate * (1 - share) / (1 - P_MALE))


def _exclusive(rng, male, names) -> np.ndarray:
    """One-hot choice among mutually exclusive attributes (or none), per sex."""
    probs = np.stack([rate_given_sex(n, male) for n in names], axis=1)
    cumulative = np.cumsum(probs, axis=1)
    u = rng.random(len(male))[:, None]
    pick = (u < cumulative).argmax(axis=1)
    pick[u[:, 0] >= cumulative[:, -1]] = -1
    return (pick[:, None] == np.arange(len(names))[None, :]).astype(np.int8)


def sample_labels(rng: np.random.Generator, identity_of_image: np.ndarray, n_identities: int) -> pd.DataFrame:
    """Clean labels (0/1) for every image: identity traits shared, per-photo traits drawn per image."""
    n = len(identity_of_image)
    # Exactly the published share of men among identities: sex is the strongest
    # correlate of other attributes, and a few hundred identities drift far otherwise.
    id_male = np.zeros(n_identities, dtype=bool)
    id_male[rng.permutation(n_identities)[: round(P_MALE * n_identities)]] = True
    labels = {"Male": id_male[identity_of_image].astype(np.int8)}
    for name in IDENTITY_LEVEL[1:]:
        labels[name] = (rng.random(n_identities) < rate_given_sex(name, id_male))[identity_of_image].astype(np.int8)
    male = labels["Male"].astype(bool)
    hair = _exclusive(rng, id_male, HAIR_COLOURS)[identity_of_image]
    style = _exclusive(rng, id_male, HAIR_STYLES)[identity_of_image]
    for k, name in enumerate(HAIR_COLOURS):
        labels[name] = hair[:, k]
    for k, name in enumerate(HAIR_STYLES):
        labels[name] = style[:, k]

    def draw(name, p=None):
        p = rate_given_sex(name, male) if p is None else p
        return (rng.random(n) < p).astype(np.int8)

    # Conditional pairs keep each marginal rate: P(B) = P(B|A) P(A) + P(B|not A) (1 - P(A)).
    def given(name, cond, p_if):
        p_b, p_a = rate_given_sex(name, male), cond.astype(bool)
        p_a_rate = rate_given_sex_marginal(cond, male)
        # Where P(B|A) P(A) alone would pass P(B), lower P(B|A) rather than lose the marginal.
        p_if = np.minimum(p_if, p_b / np.maximum(p_a_rate, 1e-9))
        p_else = np.clip((p_b - p_if * p_a_rate) / np.maximum(1 - p_a_rate, 1e-9), 0, 1)
        return draw(name, np.where(p_a, p_if, p_else))

    labels["Smiling"] = draw("Smiling")
    labels["High_Cheekbones"] = given("High_Cheekbones", labels["Smiling"], 0.85)
    labels["Mouth_Slightly_Open"] = given("Mouth_Slightly_Open", labels["Smiling"], 0.7)
    labels["Heavy_Makeup"] = draw("Heavy_Makeup")
    labels["Wearing_Lipstick"] = given("Wearing_Lipstick", labels["Heavy_Makeup"], 0.97)
    for name in ATTRIBUTES:
        if name not in labels:
            labels[name] = draw(name)
    return pd.DataFrame({name: labels[name] for name in ATTRIBUTES}).astype(np.int8)


def rate_given_sex_marginal(cond: np.ndarray, male: np.ndarray) -> np.ndarray:
    """The observed rate of a drawn 0/1 column within each sex, broadcast back to the images."""
    rate_m = cond[male].mean() if male.any() else 0.0
    rate_f = cond[~male].mean() if (~male).any() else 0.0
    return np.where(male, rate_m, rate_f)


@dataclass(frozen=True)
class _Job:
    index: int
    labels: dict
    look: Look | None  # None: a picture with no face
    seed: tuple[int, int]
    quality: int


def _render(job: _Job) -> tuple[int, bytes, np.ndarray]:
    rng = np.random.default_rng(job.seed)
    if job.look is None:
        img, landmarks = draw_no_face(rng), np.zeros(10, dtype=np.int32)
    else:
        img, landmarks = draw_face(job.labels, job.look, rng)
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


def generate(out: Path | str, params: SyntheticParams, workers: int = 0, progress: bool = True) -> dict:
    """Write a synthetic CelebA folder at ``out``; returns the ground truth also saved in it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = params.num_images
    rng = np.random.default_rng([params.seed, 0])
    names = [celeba.image_name(i + 1) for i in range(n)]

    # Partitions in published order, identities disjoint between them.
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
    identity_ids = rng.permutation(offset) + 1  # published ids are not in image order

    clean = sample_labels(rng, identity_index, offset)
    clean.index = pd.Index(names, name="image_id")
    looks = [random_look(np.random.default_rng([params.seed, 1, i]), bool(m))
             for i, m in enumerate(clean.groupby(identity_index)["Male"].first().reindex(range(offset)).fillna(0))]

    # Planted flaws on disjoint sets of images.
    counts = {k: round(n * getattr(params, f"{k}_rate")) for k in ("exact_duplicate", "near_duplicate", "no_face", "unreadable")}
    order = rng.permutation(n)
    taken = iter(order)
    pick = lambda k: sorted(int(next(taken)) for _ in range(k))  # noqa: E731
    exact_src, exact_dst = pick(counts["exact_duplicate"]), pick(counts["exact_duplicate"])
    near_src, near_dst = pick(counts["near_duplicate"]), pick(counts["near_duplicate"])
    no_face, unreadable = pick(counts["no_face"]), pick(counts["unreadable"])
    exact_pairs = list(zip(exact_src, rng.permutation(exact_dst).tolist()))
    near_pairs = list(zip(near_src, rng.permutation(near_dst).tolist()))

    # A copied photo shows the same face: its clean labels are its source's.
    for src, dst in exact_pairs + near_pairs:
        clean.iloc[dst] = clean.iloc[src]
    published = clean.copy()
    noise_mask = np.zeros(published.shape, dtype=bool)
    for j, name in enumerate(ATTRIBUTES):
        noise_mask[:, j] = rng.random(n) < params.noise_rate(name)
    published = published.where(~noise_mask, 1 - published).astype(np.int8)
    # Copies carry the labels their annotators gave: half the exact copies and every
    # near copy disagree with their source on a few attributes.
    contradictions = []
    for k, (src, dst) in enumerate(exact_pairs + near_pairs):
        published.iloc[dst] = published.iloc[src]
        if k >= len(exact_pairs) or k % 2 == 1:
            flip = rng.choice(len(ATTRIBUTES), size=int(rng.integers(1, 4)), replace=False)
            row = published.iloc[dst].to_numpy().copy()
            row[flip] = 1 - row[flip]
            published.iloc[dst] = row
            contradictions.append(names[dst])
    # Most published duplicate pairs carry different identity ids; some share one, but
    # only inside a partition, since CelebA shares no identity between partitions.
    for src, dst in exact_pairs + near_pairs:
        if rng.random() < 0.3 and partition[src] == partition[dst]:
            identity_index[dst] = identity_index[src]

    no_face_set = set(no_face)
    copies = {dst for _, dst in exact_pairs + near_pairs}
    # A generator: 202,599 jobs held at once would cost more memory than the images.
    jobs = (_Job(i, clean.iloc[i].to_dict(), None if i in no_face_set else looks[identity_index[i]],
                 (params.seed, 2, i), params.jpeg_quality)
            for i in range(n) if i not in copies)
    landmarks = np.zeros((n, 10), dtype=np.int32)
    data: dict[int, bytes] = {}
    bar = tqdm(total=n, desc="synthetic images", unit="img", disable=not progress)
    keep = set(exact_src) | set(near_src) | set(unreadable)
    broken = set(unreadable)
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
    for src, dst in exact_pairs:
        store(dst, data[src], landmarks[src])
    for src, dst in near_pairs:
        blob, kind = near_copy(data[src], np.random.default_rng([params.seed, 3, dst]))
        near_kinds[names[dst]] = kind
        store(dst, blob, landmarks[src])
    bar.close()
    unreadable_kinds = {}
    for k, i in enumerate(unreadable):
        kind = UNREADABLE_KINDS[k % len(UNREADABLE_KINDS)]
        writer.add(names[i], _unreadable_bytes(kind, data[i]))
        unreadable_kinds[names[i]] = kind
    writer.close()

    index = pd.Index(names, name="image_id")
    bbox = pd.DataFrame(rng.integers([40, 40, 120, 160], [160, 120, 260, 340], size=(n, 4)),
                        index=index, columns=list(celeba.BBOX_HEADER[1:]))
    files = {
        celeba.ATTR_FILE: celeba.format_attributes(published),
        celeba.PARTITION_FILE: celeba.format_pairs(pd.Series(partition, index=index)),
        celeba.IDENTITY_FILE: celeba.format_pairs(pd.Series(identity_ids[identity_index], index=index)),
        celeba.BBOX_FILE: celeba.format_table(bbox, celeba.BBOX_HEADER),
        celeba.LANDMARKS_FILE: celeba.format_table(pd.DataFrame(landmarks, index=index), celeba.LANDMARK_HEADER),
    }
    for name, blob in files.items():
        (out / name).write_bytes(blob)

    truth = {
        "seed": params.seed,
        "num_images": n,
        "counts": {**counts, "label_contradictions": len(contradictions)},
        "drawn_attributes": list(DRAWN),
        "noise_rate": {a: params.noise_rate(a) for a in ATTRIBUTES},
        "flipped_labels": int(noise_mask.sum()),
        "exact_duplicates": [[names[s], names[d]] for s, d in exact_pairs],
        "near_duplicates": [[names[s], names[d], near_kinds[names[d]]] for s, d in near_pairs],
        "label_contradictions": contradictions,
        "no_face": [names[i] for i in no_face],
        "unreadable": unreadable_kinds,
        "clean_labels": {name: "".join(map(str, row)) for name, row in zip(names, clean.to_numpy())},
    }
    (out / TRUTH_FILE).write_text(json.dumps(truth, indent=1))
    return truth


def read_truth(folder: Path | str) -> dict:
    """The ground truth a synthetic folder was written with."""
    return json.loads((Path(folder) / TRUTH_FILE).read_text())


def clean_labels(truth: dict) -> pd.DataFrame:
    """The labels before noise, as a 0/1 frame indexed by file name."""
    names = list(truth["clean_labels"])
    values = np.array([[int(c) for c in s] for s in truth["clean_labels"].values()], dtype=np.int8)
    return pd.DataFrame(values, index=pd.Index(names, name="image_id"), columns=list(ATTRIBUTES))
