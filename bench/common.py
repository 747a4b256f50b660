"""What every benchmark shares: the machine's description, warmed-up timing, and the ratio line."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
from typing import Callable


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}")


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


def peak_rss_mb(children: bool = False) -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"
