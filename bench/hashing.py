"""Dedupe hashing and near-duplicate search, each against its plain baseline, plus the quality of what is found.

1. Per-core images/s of the dedupe check (sha256, pHash, readability)
   against plain `imagehash.phash(Image.open(file))`, one process each, same images.
2. Duplicate pairs found on the synthetic data against its planted truth, with our
   hashes and with imagehash's (the same grouping code for both).
3. The multi-index near-duplicate search over N hashes against an all-pairs
   comparison timed on a subsample and scaled by (N / n)^2, with the found pairs
   checked equal on that subsample.

    python bench/hashing.py [--raw data/raw] [--images 2000] [--hashes 202599] [--radius 8]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import imagehash
import numpy as np
from PIL import Image

from bench.common import machine, rate, report
from faceattrs.cleaning import duplicates
from faceattrs.cleaning.clean import clean_and_score
from faceattrs.core.params import DedupeParams
from faceattrs.data.archive import ImageArchive
from faceattrs.synthetic.truth import read_truth


def imagehash_check(name: str, data: bytes, hash_size: int = 8) -> duplicates.ImageCheck:
    """The dedupe check built the plain way: PIL full decode and imagehash.phash."""
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            bits = imagehash.phash(img, hash_size=hash_size).hash.ravel()
    except Exception as err:
        return duplicates.ImageCheck(name, sha, None, f"corrupt: {err}")
    return duplicates.ImageCheck(name, sha, np.packbits(bits).tobytes(), None)


def all_pairs(packed: np.ndarray, radius: int, block: int = 512):
    """Every pair within ``radius``, by comparing each hash with every later one."""
    words = duplicates._words(packed)
    found = []
    for start in range(0, len(words), block):
        stop = min(start + block, len(words))
        dist = np.bitwise_count(words[start:stop, None, :] ^ words[None, start:, :]).sum(axis=2)
        i, j = np.nonzero(dist <= radius)
        i, j = i + start, j + start
        keep = j > i
        found.append(np.stack([i[keep], j[keep]], axis=1))
    return np.concatenate(found) if found else np.empty((0, 2), int)


def random_hashes(n: int, rng: np.random.Generator, planted: int, radius: int) -> np.ndarray:
    """``n`` random 64-bit hashes with ``planted`` near copies (1..radius bits flipped)."""
    bits = rng.integers(0, 2, size=(n, 64), dtype=np.uint8)
    src = rng.choice(n, size=planted, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), size=planted, replace=False)
    for s, d in zip(src, dst, strict=True):
        flip = rng.choice(64, size=int(rng.integers(1, radius + 1)), replace=False)
        bits[d] = bits[s]
        bits[d, flip] ^= 1
    return np.packbits(bits, axis=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"), help="a raw folder of synthetic data")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--hashes", type=int, default=202_599)
    p.add_argument("--subsample", type=int, default=20_000)
    p.add_argument("--radius", type=int, default=DedupeParams().max_distance)
    args = p.parse_args()
    print(machine())

    # 1. Per-core speed on the same images, bytes already in memory for both.
    archive = ImageArchive.of(args.raw)
    truth = read_truth(args.raw)
    names = [n for n in archive.names() if n not in set(truth["unreadable"])][: args.images]
    blobs = [archive.read(n) for n in names]

    def plain() -> int:
        for data in blobs:
            imagehash.phash(Image.open(io.BytesIO(data)))
        return len(blobs)

    def ours() -> int:
        for name, data in zip(names, blobs, strict=True):
            duplicates.check_image(name, data)
        return len(blobs)

    base, fast = rate(plain, warmup=plain), rate(ours, warmup=ours)
    print(f"{len(blobs)} images of {args.raw}, one process each")
    report("hashing per core (imagehash.phash(Image.open) vs the dedupe check)", base, fast, target=2.5)

    # 2. What each finds against the planted truth, through the same grouping.
    params = DedupeParams()
    scores = {}
    for label, check in (("imagehash", imagehash_check), ("ours", duplicates.check_image)):
        original = duplicates.check_image
        duplicates.check_image = check
        try:
            scores[label] = clean_and_score(args.raw, params, workers=2, progress=False).summary[
                "against_planted_truth"
            ]
        finally:
            duplicates.check_image = original
    print(f"against the planted truth of {args.raw} (max_distance {params.max_distance}):")
    for key in scores["ours"]:
        a, b = scores["imagehash"][key], scores["ours"][key]
        print(f"  {key:26s} imagehash {a:.4f}  ours {b:.4f}  {'same' if a == b else ('better' if b > a else 'LOWER')}")

    # 3. Near-duplicate search at full scale against all pairs.
    rng = np.random.default_rng(0)
    packed = random_hashes(args.hashes, rng, planted=2000, radius=args.radius)
    start = time.perf_counter()
    found, _, _ = duplicates.near_pairs(packed, args.radius)
    index_s = time.perf_counter() - start
    sub = packed[: args.subsample]
    start = time.perf_counter()
    brute = all_pairs(sub, args.radius)
    brute_s = time.perf_counter() - start
    si, sj, _ = duplicates.near_pairs(sub, args.radius)
    index_pairs = set(zip(si.tolist(), sj.tolist(), strict=True))
    assert {tuple(x) for x in brute.tolist()} == index_pairs, "index and all-pairs disagree"
    scaled = brute_s * (args.hashes / args.subsample) ** 2
    print(
        f"near search over {args.hashes:,} hashes, radius {args.radius}: {index_s:.2f} s, {len(found):,} pairs; "
        f"all pairs on {args.subsample:,}: {brute_s:.2f} s (same {len(brute):,} pairs as the index), "
        f"scaled to {args.hashes:,}: {scaled:.0f} s"
    )
    print(f"near search: all pairs (scaled) {scaled:.0f} s, multi-index {index_s:.2f} s, ratio {scaled / index_s:.0f}x")
    print(f"under 10 s at {args.hashes:,}: {'yes' if index_s < 10 else 'NO'}")


if __name__ == "__main__":
    main()
