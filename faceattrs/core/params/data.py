"""The ``data`` section: where CelebA comes from, and the synthetic CelebA's size, seed and planted flaws."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from faceattrs.core.attributes import ATTRIBUTES
from faceattrs.core.params.base import Section


class SyntheticParams(Section):
    """The embedded synthetic CelebA: size, seed and the flaws planted in it."""

    num_images: int = Field(6000, ge=50, le=202_599, description="202599 for CelebA's full size")
    images_per_identity: float = Field(8.0, ge=1.0, le=35.0, description="CelebA averages about 20")
    seed: int = 1234
    exact_duplicate_rate: float = Field(
        0.005, ge=0, le=0.1, description="planted flaws, as fractions of num_images (the truth sidecar counts them)"
    )
    near_duplicate_rate: float = Field(0.01, ge=0, le=0.1, description="re-encoded, shifted or rescaled copies")
    no_face_rate: float = Field(0.01, ge=0, le=0.1, description="pictures with no face in them")
    lookalike_rate: float = Field(
        0.01, ge=0, le=0.1, description="different photos in one scene and pose: a small change, or another person"
    )
    unreadable_rate: float = Field(0.002, ge=0, le=0.1, description="truncated, empty or not a JPEG")
    label_noise: dict[str, float] = Field(
        default_factory=lambda: {"default": 0.02, "High_Cheekbones": 0.08, "Pointy_Nose": 0.08, "Oval_Face": 0.08},
        description="chance that a published label is flipped, per attribute; annotators barely agree "
        "on High_Cheekbones, Pointy_Nose and Oval_Face in CelebA",
    )
    jpeg_quality: int = Field(90, ge=50, le=100)

    @field_validator("label_noise")
    @classmethod
    def _knownattribute_names(cls, value: dict[str, float]) -> dict[str, float]:
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
    """An existing CelebA on disk."""

    path: str | None = Field(None, description="an extracted CelebA, the zip + txt files, or the Kaggle layout")


class UrlSourceParams(Section):
    """An HTTP(S) mirror that serves the published files."""

    base: str | None = Field(None, description="a mirror serving img_align_celeba.zip and the txt files")
    md5: dict[str, str] = Field(
        default_factory=dict, description="per-file md5 overrides; the published checksums otherwise"
    )
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(3, ge=0)


class DataParams(Section):
    """Where CelebA comes from."""

    source: Literal["synthetic", "local", "url", "gdrive"] = "synthetic"
    synthetic: SyntheticParams = SyntheticParams()
    local: LocalSourceParams = LocalSourceParams()
    url: UrlSourceParams = UrlSourceParams()

    @model_validator(mode="after")
    def _source_is_configured(self) -> DataParams:
        if self.source == "local" and not self.local.path:
            raise ValueError("data.source is 'local' but data.local.path is not set")
        if self.source == "url" and not self.url.base:
            raise ValueError("data.source is 'url' but data.url.base is not set")
        return self
