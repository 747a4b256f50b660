"""The ``augment`` section: augmentations applied to uint8 batches on the device."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from faceattrs.core.params.base import Section


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
