"""The synthetic CelebA as a source of the download stage (``data.source: synthetic``), registered on import."""

from __future__ import annotations

from pathlib import Path

from faceattrs.core.params import DataParams
from faceattrs.data import sources
from faceattrs.synthetic import generator


@sources.register("synthetic")
def from_synthetic(params: DataParams, out: Path, downloads: Path, workers: int, progress: bool) -> sources.Origins:
    generator.generate(out, params.synthetic, workers=workers, progress=progress)
    return {}
