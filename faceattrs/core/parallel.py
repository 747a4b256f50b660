"""Ordered parallel map over worker processes with a progress bar, used by every per-image stage."""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

# Chunks in flight per worker: enough to keep every worker busy, few enough that
# results never pile up when the consumer (say, the Parquet writer) is slower.
AHEAD = 4


def resolve_workers(workers: int) -> int:
    """0 means one worker per core."""
    return workers or os.cpu_count() or 1


def _run_chunk(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [fn(item) for item in chunk]


def imap(
    fn: Callable[[T], R],
    items: Iterable[T],
    total: int,
    workers: int = 0,
    desc: str = "",
    unit: str = "img",
    progress: bool = True,
    chunksize: int = 64,
) -> Iterator[R]:
    """Results of ``fn`` in input order; one process needs no pool and keeps tracebacks plain.

    Unlike ``Executor.map``, which submits every item at once, at most AHEAD chunks per
    worker are queued or done-but-unread, so memory stays flat over 202,599 images.
    """
    workers = resolve_workers(workers)
    with tqdm(total=total, desc=desc, unit=unit, disable=not progress) as bar:
        if workers == 1:
            for item in items:
                result = fn(item)
                bar.update()
                yield result
            return
        source = iter(items)
        with ProcessPoolExecutor(workers) as pool:
            pending: deque = deque()

            def submit() -> None:
                chunk = list(itertools.islice(source, chunksize))
                if chunk:
                    pending.append(pool.submit(_run_chunk, fn, chunk))

            for _ in range(workers * AHEAD):
                submit()
            while pending:
                results = pending.popleft().result()
                submit()
                for result in results:
                    bar.update()
                    yield result
