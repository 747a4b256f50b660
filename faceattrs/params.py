"""The one typed schema of params.yaml, loaded and validated here and nowhere else.

An unknown key, a wrong type or an unknown choice is a ``ParamsError`` that names
the dotted key and, for choices, the valid values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from faceattrs.celeba import ATTRIBUTES


class ParamsError(ValueError):
    """params.yaml does not match the schema."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticParams(Section):
    """The embedded synthetic CelebA: size, seed and the flaws planted in it."""

    num_images: int = Field(6000, ge=50, le=202_599)
    images_per_identity: float = Field(20.0, ge=1.0, le=35.0)
    seed: int = 1234
    # Rates of planted flaws, as fractions of num_images (the sidecar records the exact counts).
    exact_duplicate_rate: float = Field(0.005, ge=0, le=0.1)
    near_duplicate_rate: float = Field(0.01, ge=0, le=0.1)
    no_face_rate: float = Field(0.003, ge=0, le=0.1)
    unreadable_rate: float = Field(0.002, ge=0, le=0.1)
    # Probability that a published label is flipped, per attribute ("default" for the rest).
    label_noise: dict[str, float] = Field(default_factory=lambda: {"default": 0.02})
    jpeg_quality: int = Field(90, ge=50, le=100)

    @field_validator("label_noise")
    @classmethod
    def _known_attributes(cls, value: dict[str, float]) -> dict[str, float]:
        valid = {"default", *ATTRIBUTES}
        for key, rate in value.items():
            if key not in valid:
                raise ValueError(f"unknown attribute {key!r}; valid: default or one of {', '.join(ATTRIBUTES)}")
            if not 0 <= rate < 0.5:
                raise ValueError(f"noise rate for {key} must be in [0, 0.5), got {rate}")
        return value

    def noise_rate(self, attribute: str) -> float:
        return self.label_noise.get(attribute, self.label_noise.get("default", 0.0))


class LocalSourceParams(Section):
    """An existing CelebA on disk: an extracted folder, the zip and txt files, or the Kaggle layout."""

    path: str | None = None


class UrlSourceParams(Section):
    """An HTTP(S) mirror that serves the published files under ``base``."""

    base: str | None = None
    # md5 per file name; the published checksums unless a mirror serves other bytes.
    md5: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0)


class DataParams(Section):
    source: Literal["synthetic", "local", "url", "gdrive"] = "synthetic"
    synthetic: SyntheticParams = SyntheticParams()
    local: LocalSourceParams = LocalSourceParams()
    url: UrlSourceParams = UrlSourceParams()

    @model_validator(mode="after")
    def _source_is_configured(self) -> "DataParams":
        if self.source == "local" and not self.local.path:
            raise ValueError("data.source is 'local' but data.local.path is not set")
        if self.source == "url" and not self.url.base:
            raise ValueError("data.source is 'url' but data.url.base is not set")
        return self


class DedupeParams(Section):
    hash_size: int = Field(8, ge=4, le=16)
    # Largest Hamming distance between perceptual hashes that still counts as a near duplicate.
    max_distance: int = Field(6, ge=0, le=16)
    # Mean absolute grey-level difference (0-255) of 16x16 thumbnails above which a
    # hash match is rejected as two different pictures; 255 accepts every match.
    max_thumbnail_difference: float = Field(12.0, ge=0, le=255)
    # What to keep of a duplicate group whose members' labels disagree.
    conflict_policy: Literal["drop", "majority", "first"] = "majority"
    workers: int = Field(0, ge=0, description="0: one per core")
    sample_groups: int = Field(12, ge=0, description="duplicate groups drawn on the contact sheet")


class SplitParams(Section):
    method: Literal["official", "random", "identity"] = "official"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0

    @field_validator("ratios")
    @classmethod
    def _ratios_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(r < 0 for r in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"train/val/test ratios must be non-negative and sum to 1, got {list(value)}")
        return value


class PreprocessParams(Section):
    # Box cut from the 178x218 aligned image before resizing: [left, top, right, bottom]; null keeps it whole.
    crop: tuple[int, int, int, int] | None = None
    # Stored size as [height, width].
    size: tuple[int, int] = (80, 64)
    format: Literal["jpeg", "raw"] = "jpeg"
    jpeg_quality: int = Field(90, ge=50, le=100)
    rows_per_shard: int = Field(4096, ge=16)
    workers: int = Field(0, ge=0, description="0: one per core")

    @field_validator("crop")
    @classmethod
    def _crop_inside_image(cls, value):
        if value is not None:
            left, top, right, bottom = value
            if not (0 <= left < right <= 178 and 0 <= top < bottom <= 218):
                raise ValueError(f"crop [left, top, right, bottom] must lie inside 178x218, got {list(value)}")
        return value

    @field_validator("size")
    @classmethod
    def _positive_size(cls, value):
        if min(value) < 8:
            raise ValueError(f"size [height, width] must be at least 8 pixels each, got {list(value)}")
        return value


class Params(Section):
    data: DataParams = DataParams()
    dedupe: DedupeParams = DedupeParams()
    split: SplitParams = SplitParams()
    preprocess: PreprocessParams = PreprocessParams()


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<top level>"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "literal_error":
        return f"{key}: {error['msg']} (got {error['input']!r})"
    return f"{key}: {error['msg']}"


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed at the section that holds ``loc``, for the unknown-key message."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def parse_params(raw: dict | None, source: str = "params.yaml") -> Params:
    """Validate a params mapping; errors name the dotted key and the valid choices."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        lines = []
        for error in err.errors():
            line = _describe(error)
            if error["type"] == "extra_forbidden":
                valid = _valid_keys(Params, error["loc"])
                if valid:
                    line += f"; valid keys here: {', '.join(valid)}"
            lines.append(line)
        raise ParamsError(f"{source}: invalid parameters:\n  " + "\n  ".join(lines)) from None


def load_params(path: Path | str = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level")
    return parse_params(raw, str(path))
