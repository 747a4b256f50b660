"""What every benchmark shares: the machine's description, the images to time, warmed-up timing, and the ratio line."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from faceattrs.cleaning.clean import load_raw
from faceattrs.synthetic.truth import TRUTH_FILE, read_truth


def machine() -> str:
    """The machine a figure came from: the CPU with its highest instruction set (two CPUs of one name, with and
    without AVX-512, differ in speed and in the model they train), cores, Python, torch and the date."""
    import torch

    from faceattrs.core import provenance

    found = provenance.machine()
    cpu = f"{found['cpu']} ({found['instruction_set']})" if found["instruction_set"] else found["cpu"]
    return (
        f"{cpu}, {found['cores']} cores, Python {platform.python_version()}, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


def readable_images(raw: Path, n: int) -> pd.DataFrame:
    """The first ``n`` images of a raw folder's label table, less those the synthetic truth lists as unreadable."""
    unreadable = set(read_truth(raw)["unreadable"]) if (raw / TRUTH_FILE).exists() else set()
    return load_raw(raw).drop(index=list(unreadable), errors="ignore").iloc[:n]


def rate(fn: Callable[[], int], warmup: Callable[[], object] | None = None, repeat: int = 3) -> float:
    """Items per second of ``fn`` (which returns how many items it processed), best of ``repeat`` after a warm-up."""
    if warmup is not None:
        warmup()
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        n = fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def report(name: str, baseline: float, ours: float, unit: str = "img/s", target: float | None = None) -> float:
    ratio = ours / baseline
    verdict = "" if target is None else (f"  (target {target}x: {'met' if ratio >= target else 'NOT met'})")
    print(f"{name}: baseline {baseline:,.0f} {unit}, ours {ours:,.0f} {unit}, ratio {ratio:.2f}x{verdict}")
    return ratio


RESULTS = Path(__file__).resolve().parent / "results"


def save_result(name: str, payload: dict) -> Path:
    """A benchmark's figures as ``bench/results/NAME.json``, with the machine, the date and the command, for the
    README's figure blocks (tools/readme_figures.py) to quote instead of a figure typed by hand."""
    import json
    import shlex
    import sys

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {"machine": machine(), "command": shlex.join(["python", *sys.argv]), **payload}
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"results -> {path}")
    return path
