"""Label flags: confident learning on a split's probabilities, in one process against cleanlab's default pool.

cleanlab's ``find_multilabel_issues_per_class`` prunes each attribute as a two-class problem
and, by default, forks a pool of one process per physical core for it, once per attribute.
faceattrs passes ``n_jobs=1``. This times both on the same labels and probabilities, in a
process that holds torch as the evaluate and labels stages do (the forks copy its page
tables), checks that they flag the same labels, and prints the ratio.

    python bench/label_flags.py [--images 19867] [--attributes 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch  # noqa: F401  (held as the stages hold it: what a fork has to copy)

from bench.common import machine, report, save_result
from faceattrs.cleaning.label_errors import confident_learning


def problem(images: int, attributes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a model's probabilities that mostly agree with them, 5% of labels against the model."""
    rng = np.random.default_rng(seed)
    truth = rng.random((images, attributes)) < rng.uniform(0.02, 0.5, attributes)
    probs = np.clip(np.where(truth, rng.beta(5, 2, truth.shape), rng.beta(2, 5, truth.shape)), 1e-4, 1 - 1e-4)
    labels = truth ^ (rng.random(truth.shape) < 0.05)
    return labels.astype(np.int8), probs


def cleanlab_default(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The same call with cleanlab's own n_jobs (a pool per attribute)."""
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class

    given = [list(np.flatnonzero(row)) for row in labels]
    found = find_multilabel_issues_per_class(labels=given, pred_probs=probs)
    return np.asarray(found, dtype=bool).reshape(labels.shape)


def seconds(fn, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=19_867, help="rows: CelebA's official test partition by default")
    p.add_argument("--attributes", type=int, default=40)
    args = p.parse_args()
    print(machine(), flush=True)
    labels, probs = problem(args.images, args.attributes)
    confident_learning(labels[:200], probs[:200])  # imports cleanlab outside the timing
    base_s, base = seconds(cleanlab_default, labels, probs)
    ours_s, ours = seconds(confident_learning, labels, probs)
    same = bool(np.array_equal(base, ours))
    print(
        f"{args.images:,} images x {args.attributes} attributes: {int(ours.sum()):,} labels flagged, same flags: {same}"
    )
    ratio = report("confident learning", args.images / base_s, args.images / ours_s, unit="images/s")
    save_result(
        "label_flags",
        {"images": args.images, "baseline_s": round(base_s, 2), "ours_s": round(ours_s, 2), "ratio": round(ratio, 2)}
        | {"same_flags": same},
    )
    if not same:
        raise SystemExit("the flags differ")


if __name__ == "__main__":
    main()
