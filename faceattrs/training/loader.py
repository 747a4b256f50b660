"""Batches from the Parquet shards: uint8 NCHW images and int8 targets, decoded in worker processes.

Pixels stay uint8 until they reach the device (a quarter of the bytes of float32
through the loader and the host-to-device copy); normalization and augmentation
happen there (``faceattrs.augment``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from faceattrs.core.errors import InputError
from faceattrs.data import shards
from faceattrs.training.targets import Targets


class ShardDataset(Dataset):
    """One split's shards (or the given shard files), memory-mapped.

    Items are (uint8 CHW image, int8 targets, row index).

    With ``encoded``, items carry the stored JPEG bytes instead of pixels, for decoding
    a whole batch on the training device (``decode_batch``).
    """

    def __init__(
        self,
        shard_dir: Path,
        split: str,
        targets: Targets,
        paths: list[Path] | None = None,
        encoded: bool = False,
        labels: pd.DataFrame | None = None,
    ):
        paths = paths or shards.shard_paths(shard_dir, split)
        if not paths:
            raise InputError(f"{shard_dir}: no shards for split {split!r}; run the preprocess stage")
        self.spec = shards.read_spec(paths[0])
        tables = [pq.read_table(p, memory_map=True) for p in paths]
        table = pa.concat_tables(tables)
        self.images = table.column("image").combine_chunks()
        frame = table.drop(["image"]).to_pandas()
        self.ids = frame["image_id"].tolist()
        self.frame = frame.set_index("image_id")
        if labels is not None:  # the labels stage's: some flipped, some left out (-1)
            self.frame.update(labels.reindex(self.frame.index).dropna(how="all"))
            self.frame[labels.columns] = self.frame[labels.columns].astype(np.int8)
        self.targets = torch.from_numpy(targets.labels(self.frame).copy())
        self.encoded = encoded and self.spec.format == "jpeg"

    def __len__(self) -> int:
        return len(self.ids)

    def decode(self, index: int) -> np.ndarray:
        return shards.decode_image(self.images[index].as_py(), self.spec)

    def __getitem__(self, index: int):
        if self.encoded:
            return (
                torch.frombuffer(bytearray(self.images[index].as_py()), dtype=torch.uint8),
                self.targets[index],
                index,
            )
        image = torch.from_numpy(np.ascontiguousarray(self.decode(index).transpose(2, 0, 1)))
        return image, self.targets[index], index


def collate_encoded(batch):
    """A batch of still-encoded images: their byte tensors as a list (they differ in length)."""
    images, targets, rows = zip(*batch, strict=True)
    return list(images), torch.stack(targets), torch.as_tensor(rows)


def decode_batch(images: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Decode a batch of JPEGs on ``device`` (nvJPEG on a GPU) into one uint8 NCHW tensor."""
    from torchvision.io import ImageReadMode, decode_jpeg

    return torch.stack(decode_jpeg(images, mode=ImageReadMode.RGB, device=device))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random source of one epoch's sample order (and its loader workers' seeds)."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def drops_last(n: int, batch_size: int, shuffle: bool) -> bool:
    """Whether a shuffled (training) pass over ``n`` items leaves out its last batch: only when it holds one.

    BatchNorm cannot train on a single image where it follows a global pool (ResNeSt's
    split attention, the MLP head): torch raises. Any other last batch is kept, so no
    image is left out of an epoch for nothing.
    """
    return shuffle and n > 1 and n % batch_size == 1


def batches_per_epoch(n: int, batch_size: int, shuffle: bool = True) -> int:
    """The batches ``loader`` yields for ``n`` items: what the schedule counts as one epoch's steps."""
    return n // batch_size if drops_last(n, batch_size, shuffle) else math.ceil(n / batch_size)


def loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    workers: int,
    pin_memory: bool = False,
    sampler=None,
) -> DataLoader:
    """A DataLoader whose order is a pure function of (seed, epoch), so a resumed run sees the same batches."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=epoch_generator(seed, epoch),
        pin_memory=pin_memory,
        persistent_workers=False,
        drop_last=drops_last(len(sampler) if sampler is not None else len(dataset), batch_size, shuffle),
        collate_fn=collate_encoded if getattr(dataset, "encoded", False) else None,
    )
