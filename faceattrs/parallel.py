"""Ordered parallel map over worker processes with a progress bar, used by every per-image stage."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def resolve_workers(workers: int) -> int:
    """0 means one worker per core."""
    return workers or os.cpu_count() or 1


def imap(fn: Callable[[T], R], items: Iterable[T], total: int, workers: int = 0, desc: str = "",
         unit: str = "img", progress: bool = True, chunksize: int = 64) -> Iterator[R]:
    """Results of ``fn`` in input order; one process needs no pool and keeps tracebacks plain."""
    workers = resolve_workers(workers)
    with tqdm(total=total, desc=desc, unit=unit, disable=not progress) as bar:
        if workers == 1:
            for item in items:
                result = fn(item)
                bar.update()
                yield result
            return
        with ProcessPoolExecutor(workers) as pool:
            for result in pool.map(fn, items, chunksize=chunksize):
                bar.update()
                yield result
