"""Finding duplicates and unreadable images, and resolving the label conflicts inside duplicate groups.

Exact duplicates share a content hash; near duplicates have perceptual hashes
(imagehash's pHash, computed here as two matrix products on libjpeg-turbo's luma)
within a Hamming radius. The near search is a multi-index hash (``near_pairs``),
which compares only pairs that are close on one block of the hash, never all pairs.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import scipy.fft
import simplejpeg
from PIL import Image, UnidentifiedImageError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from faceattrs.cleaning.reasons import Unreadable
from faceattrs.core.errors import UnknownChoice
from faceattrs.core.parallel import imap
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import ATTRIBUTES


@dataclass(frozen=True)
class ImageCheck:
    image_id: str
    sha256: str
    phash: bytes | None  # packed bits; None when the image cannot be decoded
    problem: Unreadable | None  # why the image is unreadable
    detail: str | None = None  # the decoder's own words, where it gave some


@functools.lru_cache(maxsize=8)
def _resampling(size: int, out: int, method: int) -> np.ndarray:
    """PIL's resampling of ``size`` pixels to ``out`` as an (out x size) matrix (it is linear)."""
    eye = Image.fromarray(np.eye(size, dtype=np.float32), mode="F")
    return np.asarray(eye.resize((out, size), method), dtype=np.float64).T


@functools.lru_cache(maxsize=8)
def _projections(width: int, height: int, hash_size: int) -> tuple[np.ndarray, np.ndarray]:
    # imagehash's pHash is DCT(LANCZOS resize to 4h x 4h)[:h, :h]; both steps are linear, so
    # they fold into one (h x H) and one (W x h) matrix: two small float32 products per
    # image instead of a resize, two FFT calls and an ImageHash object.
    grid = 4 * hash_size
    dct = scipy.fft.dct(np.eye(grid), axis=0)
    left = (dct @ _resampling(height, grid, Image.LANCZOS))[:hash_size]
    right = (dct @ _resampling(width, grid, Image.LANCZOS))[:hash_size].T
    return left.astype(np.float32), right.astype(np.float32)


def perceptual_hash(grey: np.ndarray, hash_size: int = 8) -> np.ndarray:
    """imagehash's pHash bits of one grey (H x W) image."""
    left, right = _projections(grey.shape[1], grey.shape[0], hash_size)
    low = (left @ grey.astype(np.float32)) @ right
    return (low > np.median(low)).ravel()


def _grey(data: bytes) -> np.ndarray:
    """Luma of a JPEG through libjpeg-turbo (simplejpeg); PIL for what turbo refuses but PIL reads."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="GRAY")[:, :, 0]
    except ValueError:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "JPEG":
                raise _NotJpeg(img.format) from None
            img.load()  # decodes every byte: a truncated file fails here
            return np.asarray(img.convert("L"))


class _NotJpeg(Exception):
    pass


def check_image(name: str, data: bytes, hash_size: int = 8) -> ImageCheck:
    """Content hash, perceptual hash and readability of one image's bytes."""
    sha = hashlib.sha256(data).hexdigest()
    if not data:
        return ImageCheck(name, sha, None, Unreadable.EMPTY)
    try:
        bits = perceptual_hash(_grey(data), hash_size)
    except _NotJpeg as err:
        return ImageCheck(name, sha, None, Unreadable.NOT_JPEG, str(err))
    except UnidentifiedImageError:
        return ImageCheck(name, sha, None, Unreadable.NOT_AN_IMAGE)
    except Exception as err:  # PIL raises several unrelated types for a broken file it recognised
        return ImageCheck(name, sha, None, Unreadable.CORRUPT, str(err))
    return ImageCheck(name, sha, np.packbits(bits).tobytes(), None)


def _check_member(name: str, images: ImageArchive, hash_size: int) -> ImageCheck:
    return check_image(name, images.read(name), hash_size)


def hash_images(
    images: ImageArchive, names: list[str], hash_size: int, workers: int = 0, progress: bool = True
) -> pd.DataFrame:
    """One row per image: sha256, packed phash (or None) and the problem, if any."""
    rows = list(
        imap(
            partial(_check_member, images=images, hash_size=hash_size),
            names,
            total=len(names),
            workers=workers,
            desc="hash images",
            progress=progress,
        )
    )
    return pd.DataFrame([r.__dict__ for r in rows]).set_index("image_id")


def _words(packed: np.ndarray) -> np.ndarray:
    """Packed hash bytes as rows of uint64 words, padded, for fast popcounts."""
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def hamming(packed: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Hamming distances between rows ``i`` and ``j`` of a packed-bit matrix."""
    words = _words(packed)
    return np.bitwise_count(words[i] ^ words[j]).sum(axis=1, dtype=np.int32)


# Block keys index a direct-address table of 2**bits counts; 22 bits is a 32 MB table.
MAX_BLOCK_BITS = 22


def _flip_masks(bits: int, distance: int) -> np.ndarray:
    """Every ``bits``-bit mask with at most ``distance`` bits set: the keys within ``distance`` of 0."""
    masks = [0]
    for k in range(1, distance + 1):
        masks += [sum(1 << b for b in combo) for combo in itertools.combinations(range(bits), k)]
    return np.array(masks, dtype=np.int64)


def _block_plan(n: int, n_bits: int, radius: int) -> int:
    """The number of blocks whose search costs least: m blocks of n_bits/m bits, each searched within radius // m.

    Cost per block: one table probe per image and flip mask, plus the candidates the
    probes return (n images times the expected bucket size n / 2**bits, per mask).
    """
    best, best_cost = 1, float("inf")
    for m in range(1, n_bits + 1):
        bits = -(-n_bits // m)
        if bits > MAX_BLOCK_BITS:
            continue
        masks = sum(math.comb(bits, k) for k in range(radius // m + 1))
        cost = m * masks * (n + n * n / 2**bits)
        if cost < best_cost:
            best, best_cost = m, cost
    return best


def near_pairs(packed: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) whose hashes are within ``max_distance`` bits, with their distances.

    Multi-index hashing (Norouzi et al.): the hash is cut into m blocks; a pair within
    r bits differs by at most r // m bits in at least one block (pigeonhole), so each
    image's block key, with every flip of up to r // m bits, is looked up in a count
    table of that block, and only the pairs found there are compared whole.
    """
    n = len(packed)
    words = _words(packed)
    bits = np.unpackbits(packed, axis=1)
    m = _block_plan(n, bits.shape[1], max_distance)
    found_i, found_j = [], []
    for block in np.array_split(np.arange(bits.shape[1]), m):
        keys = bits[:, block].astype(np.int64) @ (1 << np.arange(len(block), dtype=np.int64))
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(keys, minlength=1 << len(block))
        starts = np.cumsum(counts) - counts
        for mask in _flip_masks(len(block), max_distance // m):
            probe = keys ^ mask
            hits = counts[probe]
            probing = np.flatnonzero(hits)  # the few images whose flipped key has a bucket
            if not len(probing):
                continue
            hits, first = hits[probing], starts[probe[probing]]
            total = int(hits.sum())
            a = np.repeat(probing, hits)
            rank = np.arange(total) - np.repeat(np.cumsum(hits) - hits, hits)
            b = order[np.repeat(first, hits) + rank]
            keep = a < b
            a, b = a[keep], b[keep]
            close = np.bitwise_count(words[a] ^ words[b]).sum(axis=1) <= max_distance
            found_i.append(a[close])
            found_j.append(b[close])
    if not found_i:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty, empty.astype(np.int32)
    # A pair close in several blocks, or under several masks, was found more than once.
    codes = np.unique(np.concatenate(found_i).astype(np.int64) * n + np.concatenate(found_j))
    i, j = codes // n, codes % n
    return i, j, hamming(packed, i, j)


CANDIDATE_COLUMNS = ["image_a", "image_b", "hash_distance", "thumbnail_difference", "peak", "ratio", "same_photo"]


def group_duplicates(hashes: pd.DataFrame, max_distance: int, confirm=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Duplicate groups among readable images, and every near candidate with its verdict.

    Groups: columns group, image_id, kind (exact or near). Perceptual hashes only
    propose near pairs; ``confirm(names_a, names_b)`` returns a frame of thumbnail_difference,
    peak, ratio and same_photo per pair (``faceattrs.cleaning.confirm``), and only pairs it calls the
    same photo join a group, since aligned faces that merely look alike share hashes.
    Without ``confirm`` every proposed pair joins.
    """
    readable = hashes[hashes["problem"].isna()]
    n = len(readable)
    sha_codes = pd.factorize(readable["sha256"])[0]
    exact_i, exact_j = [], []
    order = np.argsort(sha_codes, kind="stable")
    runs = np.split(order, np.flatnonzero(np.diff(sha_codes[order])) + 1)
    for run in runs:
        if len(run) > 1:
            exact_i += [run[0]] * (len(run) - 1)
            exact_j += list(run[1:])
    packed = (
        np.frombuffer(b"".join(readable["phash"]), dtype=np.uint8).reshape(n, -1) if n else np.zeros((0, 1), np.uint8)
    )
    near_i, near_j, distance = near_pairs(packed, max_distance)
    # Byte-identical pairs are settled; the rest of the hash matches need a second look.
    differ = sha_codes[near_i] != sha_codes[near_j]
    near_i, near_j, distance = near_i[differ], near_j[differ], distance[differ]
    names = readable.index.to_numpy()
    candidates = pd.DataFrame({"image_a": names[near_i], "image_b": names[near_j], "hash_distance": distance})
    if confirm is not None and len(candidates):
        verdicts = confirm(candidates["image_a"].tolist(), candidates["image_b"].tolist())
        candidates = pd.concat([candidates, verdicts.reset_index(drop=True)], axis=1)
    else:
        candidates = candidates.assign(thumbnail_difference=np.nan, peak=np.nan, ratio=np.nan, same_photo=True)
    same = candidates["same_photo"].to_numpy(bool)
    i = np.r_[np.array(exact_i, dtype=np.int64), near_i[same]]
    j = np.r_[np.array(exact_j, dtype=np.int64), near_j[same]]
    graph = coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    in_group = sizes[component] > 1
    frame = pd.DataFrame(
        {
            "image_id": readable.index[in_group],
            "component": component[in_group],
            "sha256": readable["sha256"].to_numpy()[in_group],
        }
    )
    candidates = candidates[CANDIDATE_COLUMNS]
    if frame.empty:
        return pd.DataFrame(columns=["group", "image_id", "kind"]), candidates
    frame = frame.sort_values("image_id")
    # Number groups by their first image, so the numbering is stable across runs.
    first = frame.groupby("component")["image_id"].transform("min")
    frame["group"] = pd.factorize(first, sort=True)[0]
    exact = frame.groupby("group")["sha256"].transform("nunique") == 1
    frame["kind"] = np.where(exact, "exact", "near")
    groups = frame[["group", "image_id", "kind"]].sort_values(["group", "image_id"]).reset_index(drop=True)
    return groups, candidates


POLICIES = ("drop", "majority", "first")


def resolve_groups(
    groups: pd.DataFrame, labels: pd.DataFrame, identity: pd.Series | None, policy: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Decide what each duplicate group keeps.

    Returns the group table (one row per member, with ``kept`` and the conflicts found)
    and the labels that replace the kept members' published ones (majority policy).
    Every policy keeps one image per group (the first by file name); a group whose
    labels disagree keeps it with its own labels (``first``), with the per-attribute
    majority of the group (``majority``, ties to the first), or not at all (``drop``).
    """
    if policy not in POLICIES:
        raise UnknownChoice(f"unknown conflict policy {policy!r}; valid: {', '.join(POLICIES)}")
    table = groups.copy()
    member_labels = labels.loc[table["image_id"]].to_numpy()
    by_group = pd.DataFrame(member_labels, columns=list(ATTRIBUTES)).groupby(table["group"].to_numpy())
    disagree = by_group.nunique() > 1
    table["labels_conflict"] = disagree.any(axis=1).loc[table["group"]].to_numpy()
    table["conflicting_attributes"] = [
        " ".join(a for a, d in zip(ATTRIBUTES, row, strict=True) if d)
        for row in disagree.loc[table["group"]].to_numpy()
    ]
    if identity is not None:
        ids = identity.loc[table["image_id"]].to_numpy()
        table["identity_conflict"] = (
            pd.Series(ids).groupby(table["group"].to_numpy()).transform("nunique").to_numpy() > 1
        )
    else:
        table["identity_conflict"] = False
    first = ~table.duplicated("group")
    table["kept"] = first & ~(table["labels_conflict"] & (policy == "drop"))
    relabel = pd.DataFrame(columns=list(ATTRIBUTES), dtype=np.int8)
    if policy == "majority":
        positives = by_group.sum()
        counts = by_group.size()
        first_labels = by_group.first()
        votes = np.where(
            positives.mul(2) > counts.to_numpy()[:, None],
            1,
            np.where(positives.mul(2) < counts.to_numpy()[:, None], 0, first_labels),
        )
        majority = pd.DataFrame(votes, index=positives.index, columns=list(ATTRIBUTES)).astype(np.int8)
        kept = table[table["kept"] & table["labels_conflict"]]
        relabel = majority.loc[kept["group"]].set_axis(pd.Index(kept["image_id"], name="image_id"))
    return table, relabel


def conflict_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many duplicate groups disagree on each attribute."""
    per_group = table.drop_duplicates("group")["conflicting_attributes"].str.split()
    counts = pd.Series([a for attrs in per_group for a in attrs], dtype=object).value_counts()
    return {a: int(counts.get(a, 0)) for a in ATTRIBUTES if counts.get(a, 0)}
