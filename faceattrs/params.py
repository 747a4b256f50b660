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
    images_per_identity: float = Field(8.0, ge=1.0, le=35.0)
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
    # "reduced": let the JPEG decoder scale down by 2, 4 or 8 when the crop stays at least
    # the stored size (faster; a slightly softer image than "full" decoding then resizing).
    decode: Literal["reduced", "full"] = "reduced"
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


class ModelParams(Section):
    # Any timm model name; timm is the backbone registry.
    backbone: str = "resnet10t"
    pretrained: bool = False
    # A local weights file for the backbone (offline machines); implies pretrained weights.
    weights: str | None = None
    head: Literal["linear", "mlp", "per_attribute"] = "linear"
    head_hidden: int = Field(512, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    # Freeze the backbone's first N top-level blocks (its stem counts as blocks).
    freeze_blocks: int = Field(0, ge=0)
    # Resize batches on the device to [height, width] before the model; null keeps the shard size.
    input_size: tuple[int, int] | None = None


class TargetParams(Section):
    # A subset of attribute names; null means all 40.
    attributes: list[str] | None = None
    # One derived binary target written over attribute names, e.g. "Blond_Hair ^ Eyeglasses".
    expression: str | None = None

    @field_validator("attributes")
    @classmethod
    def _known(cls, value):
        if value is not None:
            unknown = [a for a in value if a not in ATTRIBUTES]
            if unknown or not value:
                raise ValueError(f"unknown attributes {unknown}; valid: {', '.join(ATTRIBUTES)}")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> "TargetParams":
        if self.attributes is not None and self.expression is not None:
            raise ValueError("set target.attributes or target.expression, not both")
        return self


class LossParams(Section):
    name: Literal["bce", "focal", "mse"] = "bce"
    gamma: float = Field(2.0, ge=0)
    # Focal alpha: one value for every attribute, or "frequency" for alpha_rare on
    # attributes whose positive rate is under rare_below and alpha_common on the rest.
    alpha: float | Literal["frequency"] | None = None
    alpha_rare: float = Field(0.75, ge=0, le=1)
    alpha_common: float = Field(0.25, ge=0, le=1)
    rare_below: float = Field(0.25, gt=0, lt=1)
    # "frequency" weighs positives and negatives of each attribute by the inverse of their share.
    weighting: Literal["none", "frequency"] = "none"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)


class AffineParams(Section):
    degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.0, ge=0, le=0.5)
    scale: tuple[float, float] = (1.0, 1.0)


class ResizedCropParams(Section):
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.75, 1.333)


class ColorJitterParams(Section):
    brightness: float = Field(0.0, ge=0, le=1)
    saturation: float = Field(0.0, ge=0, le=1)
    hue: float = Field(0.0, ge=0, le=0.5)


class AugmentParams(Section):
    hflip: float = Field(0.5, ge=0, le=1)
    affine: AffineParams | None = None
    random_resized_crop: ResizedCropParams | None = None
    # [height, width] cut from the centre, in training and evaluation alike.
    center_crop: tuple[int, int] | None = None
    color_jitter: ColorJitterParams | None = None
    noise_std: float = Field(0.0, ge=0, le=1)
    erasing: float = Field(0.0, ge=0, le=1)
    mixup_alpha: float = Field(0.0, ge=0)


class OptimizerParams(Section):
    name: Literal["sgd", "adam", "adamw", "adamax"] = "adamw"
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False


class ScheduleParams(Section):
    name: Literal["none", "onecycle", "cosine", "plateau", "step"] = "cosine"
    warmup_epochs: float = Field(0.5, ge=0)
    min_lr: float = Field(0.0, ge=0)
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(2, ge=0)
    step_epochs: int = Field(5, ge=1)


class TrainParams(Section):
    epochs: int = Field(8, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int = Field(2, ge=0)
    # Stop after this many epochs without a better validation mean accuracy; 0 never stops early.
    early_stopping: int = Field(0, ge=0)
    compile: bool = False
    # Batches per epoch at most (0: all); for smoke runs.
    limit_batches: int = Field(0, ge=0)
    # Data-parallel processes on this machine (one per GPU); more than 1 relaunches the
    # stage under torchrun, so dvc.yaml's command stays the same.
    processes: int = Field(1, ge=1)
    # Where the stored JPEGs are decoded: "loader" (worker processes, libjpeg-turbo) or
    # "device" (torchvision.io.decode_jpeg in batches on the training device, nvJPEG on a GPU).
    decode_on: Literal["loader", "device"] = "loader"


class EvaluateParams(Section):
    thresholds: Literal["fixed", "tuned"] = "fixed"
    # Attribute that splits people into the two groups of the group-fair score.
    fair_group: str = "Male"
    curves_for: list[str] = Field(default_factory=lambda: ["Smiling", "Eyeglasses", "Male", "Bald", "Young"])


class PredictParams(Section):
    # "test": the test shards; or a folder of images, the way a private test set is given.
    source: str = "test"


class Params(Section):
    data: DataParams = DataParams()
    dedupe: DedupeParams = DedupeParams()
    split: SplitParams = SplitParams()
    preprocess: PreprocessParams = PreprocessParams()
    model: ModelParams = ModelParams()
    target: TargetParams = TargetParams()
    loss: LossParams = LossParams()
    augment: AugmentParams = AugmentParams()
    optimizer: OptimizerParams = OptimizerParams()
    schedule: ScheduleParams = ScheduleParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    predict: PredictParams = PredictParams()


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
