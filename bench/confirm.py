"""The near-pair confirmation with and without its thumbnail screen, on the pairs the hashes propose.

Hashes every image of a raw folder, takes the pairs within ``dedupe.max_distance``, and
confirms them twice: every pair registered and compared at full size (the baseline), and
screened by thumbnails first (ours). Prints both times, the ratio, and whether any verdict
differs. Proposed pairs grow with the square of the images of a look-alike cluster, so run
it on a larger synthetic folder too (``bench/full_scale.py --sizes 24000 --keep``, then
``--raw /tmp/faceattrs-full/24000/data/raw``).

    python bench/confirm.py [--raw data/raw]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from bench.common import machine
from faceattrs.cleaning import duplicates
from faceattrs.cleaning.clean import load_raw
from faceattrs.cleaning.confirm import confirm_pairs
from faceattrs.core.params import DedupeParams
from faceattrs.data.archive import ImageArchive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--raw", type=Path, default=Path("data/raw"))
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args()
    params = DedupeParams()
    images = ImageArchive.of(args.raw)
    names = list(load_raw(args.raw).index)
    hashes = duplicates.hash_images(images, names, params.hash_size, args.workers, progress=False)
    _, pairs = duplicates.group_duplicates(hashes, params.max_distance)
    first, second = pairs["image_a"].tolist(), pairs["image_b"].tolist()
    print(f"{machine()}\n{len(names):,} images in {args.raw}, {len(pairs):,} pairs within {params.max_distance} bits")
    limits = (params.max_difference, params.max_difference_ratio)
    timed = {}
    for name, screen in (("every pair compared", float("inf")), ("thumbnail screen", params.max_thumbnail_difference)):
        start = time.perf_counter()
        timed[name] = confirm_pairs(images, first, second, *limits, screen, args.workers, progress=False)
        seconds = time.perf_counter() - start
        compared = int(timed[name]["peak"].notna().sum())
        print(f"  {name:20s} {seconds:7.1f} s  {compared:,} pairs compared at full size", flush=True)
        timed[name] = (timed[name], seconds)
    (base, base_s), (ours, ours_s) = timed.values()
    same = np.array_equal(base["same_photo"].to_numpy(), ours["same_photo"].to_numpy())
    print(
        f"ratio {base_s / ours_s:.1f}x; verdicts identical: {'yes' if same else 'NO'} "
        f"({int(ours['same_photo'].sum())} same-photo pairs)"
    )


if __name__ == "__main__":
    main()
