"""The one typed schema of params.yaml, loaded and validated here and nowhere else.

The schema is the single home of the defaults: each field's default and description
become the repository's params.yaml (``faceattrs params --defaults``), and a test
keeps the two equal. An unknown key, a wrong type or an unknown choice is a
``ParamsError`` that names the dotted key and, for choices, the valid values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from faceattrs.core.errors import InputError
from faceattrs.data.celeba import ATTRIBUTES


class ParamsError(InputError):
    """params.yaml does not match the schema."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _attributes(names: list[str], key: str) -> list[str]:
    unknown = [a for a in names if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown} in {key}; valid: {', '.join(ATTRIBUTES)}")
    return names


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


class DedupeParams(Section):
    """Duplicates, unreadable images and label conflicts."""

    hash_size: int = Field(8, ge=4, le=16)
    max_distance: int = Field(
        8, ge=0, le=16, description="largest perceptual-hash Hamming distance that proposes a near duplicate"
    )
    max_difference: float = Field(
        80.0,
        ge=0,
        description="largest smoothed colour difference (grey levels) of a registered pair that is the same photo",
    )
    max_difference_ratio: float = Field(
        6.0,
        gt=0,
        description="largest ratio of that difference to the pair's typical one: a local change is another photo",
    )
    max_thumbnail_difference: float = Field(
        25.0,
        gt=0,
        description="mean colour difference (grey levels) of 10x8 thumbnails over which a proposed pair is another "
        "photo, without the full comparison",
    )
    conflict_policy: Literal["drop", "majority", "first"] = Field(
        "majority", description="what a duplicate group whose labels disagree keeps"
    )
    no_face_policy: Literal["drop", "report", "off"] = Field(
        "drop", description="images where no face is found: dropped, only listed, or not looked for"
    )
    min_face_score: float = Field(
        -0.9,
        description="dlib HOG margin (the better of the image and its mirror) under which an image has no face; "
        "dlib's own call of a face is 0",
    )
    workers: int = Field(0, ge=0, description="0: one per core")
    sample_groups: int = Field(12, ge=0, description="duplicate groups drawn on the contact sheet")

    @field_validator("no_face_policy", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value):
        # YAML 1.1 (PyYAML, and DVC's `-S`) reads a bare `off` as false.
        return "off" if value is False else value


class SplitParams(Section):
    """Train/val/test assignment."""

    method: Literal["official", "random", "identity"] = "official"
    ratios: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train, val, test for random and identity")
    seed: int = 0

    @field_validator("ratios")
    @classmethod
    def _ratios_sum_to_one(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(r < 0 for r in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError(f"train/val/test ratios must be non-negative and sum to 1, got {list(value)}")
        return value


class PreprocessParams(Section):
    """How the images are stored in the Parquet shards."""

    crop: tuple[int, int, int, int] | None = Field(
        (19, 30, 159, 205),
        description="[left, top, right, bottom] on the 178x218 image (head to tie); null keeps it whole",
    )
    size: tuple[int, int] = Field((80, 64), description="[height, width]")
    format: Literal["jpeg", "raw"] = "jpeg"
    jpeg_quality: int = Field(90, ge=50, le=100)
    decode: Literal["reduced", "full"] = Field(
        "reduced", description="reduced lets the JPEG decoder scale by 1/2, 1/4 or 1/8 when the crop allows"
    )
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


class LabelsParams(Section):
    """The search for wrong labels in the training split (the labels stage), and what training sees of them."""

    method: Literal["none", "kfold"] = Field(
        "none",
        description="kfold: out-of-fold models score every training label (minutes); none: only evaluate flags, "
        "on val and test",
    )
    folds: int = Field(3, ge=2, description="folds of identities for kfold")
    epochs: int = Field(3, ge=1, description="epochs of each fold's model")
    policy: Literal["report", "drop", "flip"] = Field(
        "report", description="what training sees of a flagged label: the given one, none, or the other one"
    )


class ModelParams(Section):
    """The network: a timm backbone and an attribute head."""

    backbone: str = Field(
        "resnet10t_075",
        description="any timm model name; resnet10t_075, faceattrs's own, is resnet10t at three quarters of its width",
    )
    backbone_args: dict[str, Any] | None = Field(
        None,
        description="more keyword arguments for timm.create_model, e.g. {drop_path_rate: 0.1}; "
        "a resnet's widths: {stem_width: 16, channels: [32, 64, 128, 256]}",
    )
    pretrained: bool = Field(False, description="ImageNet weights through timm (needs the hub, or model.weights)")
    weights: str | None = Field(None, description="a local weights file for the backbone, for offline machines")
    head: Literal["linear", "mlp", "per_attribute"] = "linear"
    head_hidden: int = Field(512, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    freeze_blocks: int = Field(0, ge=0, description="freeze the backbone's first N top-level blocks")
    input_size: tuple[int, int] | None = Field(
        None, description="[height, width] the model sees; null keeps the shard size"
    )
    normalization: Literal["timm", "imagenet", "half"] = Field(
        "timm", description="the input's mean and std: the backbone's own (timm), ImageNet's, or 0.5 and 0.5"
    )

    @property
    def fixed_image_size(self) -> bool:
        """Whether the backbone is built for one image size: timm's transformers (position embeddings,
        windows) unless made with ``dynamic_img_size``. timm has no flag for this, hence the families."""
        families = ("vit_", "deit", "beit", "eva", "swin", "cait", "levit")
        return self.backbone.startswith(families) and not (self.backbone_args or {}).get("dynamic_img_size")


class TargetParams(Section):
    """What the model predicts."""

    attributes: list[str] | None = Field(None, description="a subset of attribute names; null: all 40")
    expression: str | None = Field(None, description='one derived binary target, e.g. "Blond_Hair ^ Eyeglasses"')

    @field_validator("attributes")
    @classmethod
    def _known(cls, value):
        if value is not None:
            if not value:
                raise ValueError("target.attributes is empty; null means all 40")
            _attributes(value, "target.attributes")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> TargetParams:
        if self.attributes is not None and self.expression is not None:
            raise ValueError("set target.attributes or target.expression, not both")
        return self


class LossParams(Section):
    """The training loss."""

    name: Literal["bce", "focal", "mse"] = Field("focal", description="focal with gamma 0 is exactly BCE")
    gamma: float = Field(0.0, ge=0)
    alpha: float | Literal["frequency"] | None = Field(None, description='a value, "frequency", or null')
    alpha_rare: float = Field(0.75, ge=0, le=1, description="focal alpha of attributes rarer than rare_below")
    alpha_common: float = Field(0.25, ge=0, le=1)
    rare_below: float = Field(0.25, gt=0, lt=1)
    weighting: Literal["none", "frequency"] = Field(
        "none", description="frequency weighs each attribute's positives and negatives by the inverse of their share"
    )
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    group: str | None = Field(None, description="an attribute whose positive images' loss weighs group_weight")
    group_weight: float = Field(
        1.0, gt=0, description="the loss weight of images in `group` (others weigh 1): a penalty on one group's errors"
    )

    @field_validator("group")
    @classmethod
    def _group_is_an_attribute(cls, value: str | None) -> str | None:
        return None if value is None else _attributes([value], "loss.group")[0]


class AffineParams(Section):
    degrees: float = Field(0.0, ge=0, le=180)
    translate: float = Field(0.0, ge=0, le=0.5)
    scale: tuple[float, float] = (1.0, 1.0)
    p: float = Field(1.0, ge=0, le=1, description="the share of images it applies to")


class ResizedCropParams(Section):
    scale: tuple[float, float] = (0.8, 1.0)
    ratio: tuple[float, float] = (0.75, 1.333)


class ColorJitterParams(Section):
    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, le=1)
    saturation: float = Field(0.0, ge=0, le=1)
    hue: float = Field(0.0, ge=0, le=0.5)


class AugmentParams(Section):
    """Augmentations, applied per image on the device to uint8 batches."""

    hflip: float = Field(0.5, ge=0, le=1)
    flip_order: Literal["random", "alternate"] = Field(
        "random",
        description="alternate flips a fixed random half of the images in even epochs and the other half in odd ones "
        "(airbench's alternating flip; needs hflip 0.5); random draws each image's flip anew with chance hflip",
    )
    affine: AffineParams | None = Field(None, description="{degrees, translate, scale: [low, high], p}")
    random_resized_crop: ResizedCropParams | None = Field(None, description="{scale: [low, high], ratio: [low, high]}")
    center_crop: tuple[int, int] | None = Field(None, description="[height, width], in training and evaluation alike")
    random_crop: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="[height, width] at a random place in training, the centre crop of that size in evaluation"
    )
    eval_crop: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="[height, width] centre crop in evaluation only, where training crops at random"
    )
    color_jitter: ColorJitterParams | None = Field(None, description="{brightness, contrast, saturation, hue}")
    pca_lighting: float = Field(
        0.0, ge=0, le=1, description="std of AlexNet's PCA lighting noise (FancyPCA) along ImageNet's RGB eigenvectors"
    )
    noise_std: float = Field(0.0, ge=0, le=1)
    erasing: float = Field(0.0, ge=0, le=1)
    mixup_alpha: float = Field(0.0, ge=0)
    mixup_on: Literal["labels", "loss"] = Field(
        "labels", description="what MixUp mixes besides the images: the two label sets, or their two losses"
    )

    @model_validator(mode="after")
    def _one_fixed_crop(self) -> AugmentParams:
        if self.center_crop and self.random_crop:
            raise ValueError("augment.center_crop and augment.random_crop: set one (random_crop centres in evaluation)")
        if self.random_crop and self.random_resized_crop:
            raise ValueError("augment.random_crop and augment.random_resized_crop: set one; both place the crop")
        if self.eval_crop and (self.center_crop or self.random_crop):
            raise ValueError("augment.eval_crop: center_crop and random_crop already crop in evaluation; set one")
        if self.flip_order == "alternate" and self.hflip != 0.5:
            raise ValueError("augment.flip_order alternate flips every image in half of the epochs: set hflip to 0.5")
        return self


class OptimizerParams(Section):
    """The optimizer and its settings."""

    name: Literal["sgd", "adam", "adamw", "adamax"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    fused: bool = Field(
        True,
        description="torch's fused kernel for sgd, adam and adamw on the CPU and GPUs, in place of its Python loop "
        "over the weights; the same update up to rounding (adamax has none)",
    )


class ScheduleParams(Section):
    """The learning-rate schedule: warmup, floor, and the step and plateau settings."""

    name: Literal["none", "onecycle", "cosine", "plateau", "step"] = "cosine"
    warmup_epochs: float = Field(0.5, ge=0)
    min_lr: float = Field(0.0, ge=0)
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(2, ge=0)
    step_epochs: int = Field(5, ge=1)
    monitor: Literal["val_accuracy", "val_loss", "train_val_gap"] | None = Field(
        None, description="what the plateau schedule reads; null: train.monitor"
    )


class TrainParams(Section):
    """The training run: length, batches, seed, device and processes."""

    epochs: int = Field(11, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    workers: int = Field(
        0, ge=0, description="loader processes; 0 decodes in the training process, best on a few CPU cores"
    )
    early_stopping: int = Field(0, ge=0, description="stop after this many epochs without a better monitor; 0 never")
    subset: str | None = Field(
        None, description='train on the images where this expression holds, e.g. "~Male"; val and test stay whole'
    )
    balance: str | None = Field(
        None,
        description="an attribute: each epoch draws every combination of it and the target (one target) as often "
        "as the commonest, oversampling the others",
    )
    monitor: Literal["val_accuracy", "val_loss", "train_val_gap"] = Field(
        "val_accuracy",
        description="what picks the epoch whose weights are kept, early stopping and the plateau schedule read; "
        "train_val_gap keeps the epoch whose train and val accuracy are closest",
    )
    ema: float = Field(
        0.0, ge=0, lt=1, description="decay per step of a weight average that is validated and saved; 0: none"
    )
    low_res_epochs: int = Field(
        0,
        ge=0,
        description="progressive resizing: the first N epochs train on images shrunk by low_res_scale; they are "
        "validated but neither kept as the best nor counted by early stopping",
    )
    low_res_scale: float = Field(
        0.7,
        gt=0,
        le=1,
        description="the side of the low_res_epochs' images against the model's input (0.7: half the pixels)",
    )
    compile: bool = False
    channels_last: bool = Field(
        True,
        description="NHWC memory layout for images and weights: faster convolutions on GPUs and on many CPUs; on the "
        "CPU, convolutions on maps under 32 pixels at the training input size stay NCHW, which was faster there",
    )
    limit_batches: int = Field(0, ge=0, description="batches per epoch at most (0: all); for smoke runs")
    processes: int = Field(1, ge=1, description=">1: data-parallel under torchrun, one process per GPU")
    nodes: int = Field(1, ge=1, description="machines, each running the train stage's command; >1 needs rendezvous")
    rendezvous: str | None = Field(
        None, description="HOST:PORT every node reaches, for torchrun's c10d rendezvous (nodes > 1)"
    )
    rendezvous_id: str = Field("faceattrs", description="one id per training job sharing a rendezvous endpoint")
    decode_on: Literal["loader", "device"] = Field(
        "loader", description="device decodes the shards' JPEGs on the GPU (nvJPEG) instead of in the loader"
    )
    precision: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16",
        description="autocast on a GPU (fp16 with a gradient scaler, for GPUs without bf16); the CPU computes in "
        "fp32 (its bf16 autocast ran 30x slower without AMX, and with AMX gave a different model each run)",
    )

    @field_validator("balance")
    @classmethod
    def _balance_by_an_attribute(cls, value: str | None) -> str | None:
        return None if value is None else _attributes([value], "train.balance")[0]

    @field_validator("subset")
    @classmethod
    def _subset_parses(cls, value: str | None) -> str | None:
        if value is not None:
            from faceattrs.data import expressions

            try:
                expressions.check(value, "train.subset")
            except Exception as err:  # InputError: pydantic wants a ValueError to report it in place
                raise ValueError(str(err)) from None
        return value

    @model_validator(mode="after")
    def _last_epoch_at_full_size(self) -> TrainParams:
        # BatchNorm's statistics follow the image size; evaluation sees the full one.
        if self.low_res_epochs >= self.epochs:
            raise ValueError(
                f"train.low_res_epochs ({self.low_res_epochs}) must be fewer than train.epochs ({self.epochs}): "
                "the last epochs train at the size evaluation sees"
            )
        return self

    @model_validator(mode="after")
    def _rendezvous_for_nodes(self) -> TrainParams:
        if self.nodes > 1:
            host, sep, port = (self.rendezvous or "").rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"train.nodes is {self.nodes}: set train.rendezvous to HOST:PORT of the first node")
        return self


class EvaluateParams(Section):
    """Evaluation on val and test."""

    thresholds: Literal["fixed", "tuned"] = Field(
        "fixed",
        description="fixed is probability 0.5; tuned is tuned on val and applied to test (for real CelebA's val)",
    )
    tta: Literal["none", "flip"] = Field(
        "flip", description="test-time augmentation: flip averages each image's logits with its mirror image's"
    )
    fair_group: str = Field("Male", description="the attribute that splits people for the group-fair score")
    curves_for: list[str] = Field(
        default_factory=lambda: ["Smiling", "Eyeglasses", "Male", "Bald", "Young"],
        description="attributes with ROC, precision-recall and confusion plots",
    )

    @field_validator("fair_group")
    @classmethod
    def _group_is_an_attribute(cls, value: str) -> str:
        return _attributes([value], "evaluate.fair_group")[0]

    @field_validator("curves_for")
    @classmethod
    def _curves_of_attributes(cls, value: list[str]) -> list[str]:
        return _attributes(value, "evaluate.curves_for")


class PredictParams(Section):
    """What the predict stage scores."""

    source: str = Field("test", description="test (the test shards) or a folder of images")


class Params(Section):
    """Every experiment parameter."""

    data: DataParams = DataParams()
    dedupe: DedupeParams = DedupeParams()
    split: SplitParams = SplitParams()
    preprocess: PreprocessParams = PreprocessParams()
    labels: LabelsParams = LabelsParams()
    model: ModelParams = ModelParams()
    target: TargetParams = TargetParams()
    loss: LossParams = LossParams()
    augment: AugmentParams = AugmentParams()
    optimizer: OptimizerParams = OptimizerParams()
    schedule: ScheduleParams = ScheduleParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    predict: PredictParams = PredictParams()

    @model_validator(mode="after")
    def _sections_agree(self) -> Params:
        """Choices that only mean something beside another section's; each refusal names both keys."""
        height, width = self.preprocess.size
        crop = self.augment.random_crop
        if crop and (crop[0] > height or crop[1] > width):
            raise ValueError(f"augment.random_crop {list(crop)} is larger than preprocess.size {[height, width]}")
        if self.loss.group_weight != 1 and self.loss.group is None:
            raise ValueError("loss.group_weight is set but loss.group is null: name the group it weighs")
        one_target = self.target.expression or (self.target.attributes and len(self.target.attributes) == 1)
        if self.train.balance and not one_target:
            raise ValueError("train.balance balances one target: set target.expression or a single target.attributes")
        if self.train.balance and self.augment.flip_order == "alternate":
            raise ValueError(
                "augment.flip_order alternate with train.balance: every copy of an oversampled image would be flipped "
                "alike in an epoch; use flip_order random"
            )
        gap = "train_val_gap" in (self.train.monitor, self.schedule.monitor)
        if gap and self.augment.mixup_alpha > 0:
            raise ValueError(
                "train.monitor train_val_gap with augment.mixup_alpha: accuracy on mixed images is no train accuracy"
            )
        if self.train.low_res_epochs and self.model.fixed_image_size:
            raise ValueError(
                f"train.low_res_epochs with model.backbone {self.model.backbone}: its position embeddings or windows "
                "are built for one image size; set model.backbone_args {dynamic_img_size: true}"
            )
        return self


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
