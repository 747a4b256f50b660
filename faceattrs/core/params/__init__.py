"""The one typed schema of params.yaml, loaded and validated here and nowhere else.

Each section of params.yaml has its own module here (``data``, ``train``, ...), named as
the section is. A stage's code deps in dvc.yaml list only the modules of the sections it
reads (tools/stage_deps.py), so a change to one section's schema reruns only the stages
that read that section; the cross-section checks below belong to every stage.

The schema is the single home of the defaults: each field's default and description
become a params.yaml (``faceattrs params --defaults``). An unknown key, a wrong type or
an unknown choice is a ``ParamsError`` that names the dotted key and, for choices, the
valid values.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError, model_validator

from faceattrs.core.params.augment import AffineParams, AugmentParams, ColorJitterParams, ResizedCropParams
from faceattrs.core.params.base import MACHINE, Monitor, ParamsError, Section
from faceattrs.core.params.data import DataParams, LocalSourceParams, SyntheticParams, UrlSourceParams
from faceattrs.core.params.dedupe import DedupeParams
from faceattrs.core.params.evaluate import EvaluateParams
from faceattrs.core.params.labels import LabelsParams
from faceattrs.core.params.loss import LossParams
from faceattrs.core.params.model import ModelParams
from faceattrs.core.params.optimizer import OptimizerParams
from faceattrs.core.params.predict import PredictParams
from faceattrs.core.params.preprocess import PreprocessParams
from faceattrs.core.params.schedule import ScheduleParams
from faceattrs.core.params.split import SplitParams
from faceattrs.core.params.target import TargetParams
from faceattrs.core.params.train import TrainParams

__all__ = [
    "MACHINE",
    "AffineParams",
    "AugmentParams",
    "ColorJitterParams",
    "DataParams",
    "DedupeParams",
    "EvaluateParams",
    "LabelsParams",
    "LocalSourceParams",
    "LossParams",
    "ModelParams",
    "Monitor",
    "OptimizerParams",
    "Params",
    "ParamsError",
    "PredictParams",
    "PreprocessParams",
    "ResizedCropParams",
    "ScheduleParams",
    "Section",
    "SplitParams",
    "SyntheticParams",
    "TargetParams",
    "TrainParams",
    "UrlSourceParams",
    "load_params",
    "parse_params",
]


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
