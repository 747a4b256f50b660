"""The files training writes, each one versioned record: model.pt (the model), best.pt and last.pt (checkpoints).

Every file is a plain dict of tensors and values on disk (``torch.save``), loaded with
``weights_only=True``; in memory it is one of the dataclasses below, made by
``from_dict``, which refuses another kind of file or another format in one line. A
checkpoint (last.pt) carries the ``RunKey`` of the run that wrote it: the digest of
everything the train stage's dvc.lock entry hashes (its code files, its params, its
data), so a run resumes only what DVC would call the same run.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from faceattrs.core.atomic import atomic_file
from faceattrs.core.errors import InputError

# The layout of the records below; a file of another format is refused, naming both.
FORMAT = 2


class CheckpointError(InputError):
    """A file that is not the faceattrs record asked for, or of another format."""


@dataclass(frozen=True)
class RunKey:
    """What a run was made with, as the train stage's dvc.lock entry hashes it: code, params and data."""

    code: dict[str, str]  # project file -> sha256, every file the train stage imports
    params: dict[str, Any]  # the values of the sections the train stage reads
    data: dict[str, str]  # input -> sha256 (the shards' manifest, the labels table)

    def changes(self, older: RunKey) -> list[str]:
        """What differs from ``older``, in words: the changed code files, the params, the data."""
        files = sorted(set(self.code) | set(older.code))
        out = [f for f in files if self.code.get(f) != older.code.get(f)]
        sections = sorted(set(self.params) | set(older.params))
        out += [f"params {s}" for s in sections if self.params.get(s) != older.params.get(s)]
        out += [
            name for name in sorted(set(self.data) | set(older.data)) if self.data.get(name) != older.data.get(name)
        ]
        return out


def _plain(value):
    """JSON's view of a value: what a record reads back, so a record equals itself after a round trip."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True, eq=False)
class Record:
    """A dict on disk with a kind and a format."""

    KIND: ClassVar[str] = ""
    WHAT: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {
            "kind": self.KIND,
            "format": FORMAT,
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)},
        }

    @classmethod
    def from_dict(cls, raw: dict, path: Path | str = "<memory>"):
        kind, found = raw.get("kind"), raw.get("format", 1)
        if kind != cls.KIND and found != 1:
            raise CheckpointError(f"{path}: {_kind_name(kind)}, not {cls.WHAT}")
        if found != FORMAT:
            raise CheckpointError(
                f"{path}: {cls.WHAT} of format {found}, and this faceattrs reads format {FORMAT}: "
                "train again (`dvc repro train`) with this version"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(raw)
        if missing:
            raise CheckpointError(f"{path}: {cls.WHAT} without {', '.join(sorted(missing))}")
        return cls(**{k: raw[k] for k in names})

    def save(self, path: Path) -> None:
        with atomic_file(path) as tmp:
            torch.save(self.to_dict(), tmp)

    @classmethod
    def load(cls, path: Path | str):
        return cls.from_dict(read(path), path)


def _kind_name(kind: str | None) -> str:
    names = {c.KIND: c.WHAT for c in (ModelFile, BestWeights, ResumePoint)}
    return names.get(kind, "not a faceattrs file")


def read(path: Path | str) -> dict:
    """A file as saved by training, loaded safely (tensors and plain values only)."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file; run the train stage first") from None
    except Exception as err:  # pickle errors for anything but plain values
        raise CheckpointError(f"{path}: not a faceattrs file ({err})") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: not a faceattrs file (a {type(raw).__name__})")
    return raw


# Tensors inside: compared by identity, not by value.
@dataclass(frozen=True, eq=False)
class ModelFile(Record):
    """model.pt: the kept weights and everything prediction needs to feed them as training did."""

    KIND: ClassVar[str] = "faceattrs.model"
    WHAT: ClassVar[str] = "a faceattrs model file (model.pt)"

    signature: dict
    state_dict: dict
    epoch: int
    val_mean_accuracy: float
    targets: list[str]
    expression: str | None
    image: dict  # the shards' ImageSpec
    mean_eyes: list | None  # where the training images' eyes sit, for aligning photos
    mean: list[float]
    std: list[float]
    # The crops that apply in evaluation, by augment key: prediction crops as evaluation did.
    eval_geometry: dict[str, list[int] | None]
    input_size: list[int] | None
    model_params: dict
    positive_rates: list[float]
    provenance: str  # JSON: the params and git commit of the run
    world_size: int

    def __post_init__(self):
        object.__setattr__(self, "targets", list(self.targets))


# Tensors inside: compared by identity, not by value.
@dataclass(frozen=True, eq=False)
class BestWeights(Record):
    """best.pt: the weights of the epoch the monitor keeps so far."""

    KIND: ClassVar[str] = "faceattrs.best"
    WHAT: ClassVar[str] = "a faceattrs best-epoch checkpoint (best.pt)"

    signature: dict
    state_dict: dict
    epoch: int
    val_mean_accuracy: float


# Tensors inside: compared by identity, not by value.
@dataclass(frozen=True, eq=False)
class ResumePoint(Record):
    """last.pt: everything to go on after the last finished epoch, and the key of the run that wrote it."""

    KIND: ClassVar[str] = "faceattrs.resume"
    WHAT: ClassVar[str] = "a faceattrs training checkpoint (last.pt)"

    key: dict  # RunKey as a dict
    signature: dict
    state_dict: dict
    ema: dict | None
    optimizer: dict
    schedule: dict
    scaler: dict
    state: dict  # the fit's state after its last epoch

    @property
    def run_key(self) -> RunKey:
        return RunKey(**self.key)

    @staticmethod
    def key_of(key: RunKey) -> dict:
        return _plain(dataclasses.asdict(key))
