"""Resident training data (train.data_on: resident): each split decoded once on the device, batches drawn by index.

Each split is one uint8 NCHW tensor in the training device's memory. A GPU fed by
loader processes waits for them; here an epoch's batches are gathers from memory the
device already holds, and nothing is decoded after the first epoch. The batches are
those of the loader path (``build._loader_feed``) on one process, bit for bit: the
same row order (``RankSampler``'s permutation of the rows, or of the rows
``groups.pool`` deals), the same batch sizes and the same last-batch rule
(``loader.drops_last``). Augmentation is not here: ``augment.prepare`` runs on each
batch in ``model_step``, as for the loader's batches.

Under torchrun each rank holds only a share of the training split, dealt once for the
run from a permutation fixed by the seed, and shuffles its share (or the entries of
each epoch's pool that fall in it) every epoch. The loader path deals a fresh
permutation of the whole split to the ranks every epoch instead, so with several
processes the two paths train on different batches. Validation keeps the loader's own
fixed deal (every ``world.size``-th row), so both paths validate on the same images.
With ``train.subset``, only the subset's training rows are decoded and dealt: no epoch
draws any other.

The decoding is the loader's own: ``ShardDataset`` in ``train.workers`` processes, or,
with ``train.decode_on: device``, whole chunks of JPEGs at once on the device
(``decode_batch``: nvJPEG on a GPU). Before any image is decoded, the splits' size is
checked against the device's free memory (``check_fits``); a run that would not fit is
refused in one line naming both sizes. The labels stage's fold models read the shards
through the loader whatever ``train.data_on`` says.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch

from faceattrs.core.errors import InputError
from faceattrs.training.distributed import World
from faceattrs.training.loader import ShardDataset, batches_per_epoch, decode_batch, epoch_generator, loader

# Images per decoding batch: big enough that workers and nvJPEG stay busy, small next to a split.
CHUNK = 1024


def held_rows(rows: torch.Tensor, seed: int, world: World, shuffle: bool) -> torch.Tensor:
    """Which of a split's ``rows`` (those it may train on, in order) this rank holds: all of them on one process.

    Training (``shuffle``): every ``world.size``-th entry of a permutation fixed by the seed, the
    same every epoch. Validation: every ``world.size``-th row, the loader's own deal.
    """
    if not world.distributed:
        return rows
    if not shuffle:
        return rows[world.rank :: world.size]
    # The "epoch" before the first: a stream that no epoch of this seed draws its order from.
    dealt = torch.randperm(len(rows), generator=epoch_generator(seed, -1))
    return rows[dealt[world.rank :: world.size].sort().values]


def image_bytes(data: ShardDataset) -> int:
    """Bytes of one decoded image and its targets."""
    height, width = data.spec.size
    return 3 * height * width + data.targets.shape[1]


def free_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device``: the GPU's free memory, or the host's available memory.

    None where the host does not say (no /proc/meminfo and no sysconf figure).
    """
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(size: int) -> str:
    return f"{size / 2**30:.2f} GB"


def check_fits(need: int, images: int, device: torch.device, processes: int = 1) -> None:
    """Refuse, before decoding, splits of ``need`` bytes (``images`` images) that ``device`` has no room for.

    On the CPU the ``processes`` ranks of this machine each hold their share in the same memory.
    """
    free = free_bytes(device)
    total = need * (processes if device.type == "cpu" else 1)
    if free is not None and total > free:
        ranks = f" for its {processes} processes" if device.type == "cpu" and processes > 1 else ""
        raise InputError(
            f"train.data_on: resident needs {_gb(total)} of {device} memory{ranks} for {images:,} decoded images "
            f"and {_gb(free)} is free; set train.data_on: loader"
        )


class ResidentSplit:
    """Some rows of one split, decoded into one uint8 NCHW tensor on the device, with their targets there too."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, n: int):
        """``rows``: the split rows held, in the order of ``images``; ``n``: the split's rows in all."""
        self.images, self.targets, self.rows = images, targets, rows
        # Split row -> its place in ``images``; -1 where another rank holds it.
        self.where = torch.full((n,), -1, dtype=torch.long)
        self.where[rows] = torch.arange(len(rows))

    @classmethod
    def decode(cls, data: ShardDataset, rows: torch.Tensor, device: torch.device, workers: int) -> ResidentSplit:
        """``data``'s ``rows`` decoded as the loader decodes them (JPEGs on the device where ``data`` is encoded)."""
        height, width = data.spec.size
        images = torch.empty((len(rows), 3, height, width), dtype=torch.uint8, device=device)
        chunks = loader(
            data,
            batch_size=CHUNK,
            shuffle=False,
            seed=0,
            epoch=0,
            workers=workers,
            pin_memory=device.type == "cuda",
            sampler=rows.tolist(),
        )
        start = 0
        for chunk, _, _ in chunks:
            if isinstance(chunk, list):  # still-encoded JPEGs
                chunk = decode_batch(chunk, device)
            images[start : start + len(chunk)].copy_(chunk, non_blocking=True)
            start += len(chunk)
        return cls(images, data.targets[rows].to(device), rows, len(data))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return self.images.nbytes + self.targets.nbytes

    def order(self, seed: int, epoch: int, shuffle: bool, pool: torch.Tensor | None = None) -> torch.Tensor:
        """The rows of one epoch in the order they are trained on, as ``RankSampler`` orders them on one process.

        ``pool``: the epoch's rows to deal (``groups.pool``), of which this rank takes those it holds.
        """
        items = self.rows if pool is None else pool[self.where[pool] >= 0]
        if not shuffle:
            return items
        return items[torch.randperm(len(items), generator=epoch_generator(seed, epoch))]

    def batches(self, order: torch.Tensor, batch_size: int, shuffle: bool) -> ResidentBatches:
        return ResidentBatches(self, order, batch_size, batches_per_epoch(len(order), batch_size, shuffle))


class ResidentBatches:
    """One pass's batches of a ``ResidentSplit``: (uint8 NCHW images, int8 targets, rows), as the loader yields them.

    Images and targets are on the split's device; the rows stay on the CPU, where the epoch's
    flips and loss weights are looked up.
    """

    def __init__(self, split: ResidentSplit, order: torch.Tensor, batch_size: int, count: int):
        self.split, self.order, self.batch_size, self.count = split, order, batch_size, count

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        split, size = self.split, self.batch_size
        # The places of the whole epoch's rows go to the device in one copy, not one per batch.
        places = split.where[self.order].to(split.images.device)
        for k in range(self.count):
            at, rows = places[k * size : (k + 1) * size], self.order[k * size : (k + 1) * size]
            yield split.images.index_select(0, at), split.targets.index_select(0, at), rows
