"""The ``train`` section: the training run's length, batches, seed, device and processes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from faceattrs.core import expressions
from faceattrs.core.params.base import MACHINE, Monitor, Section, attribute_names


class TrainParams(Section):
    """The training run: length, batches, seed, device and processes."""

    epochs: int = Field(11, ge=1)
    batch_size: int = Field(64, ge=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = Field("auto", json_schema_extra=MACHINE)
    workers: int = Field(
        0,
        ge=0,
        description="loader processes; 0 decodes in the training process, best on a few CPU cores",
        json_schema_extra=MACHINE,
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
    monitor: Monitor = Field(
        "val_accuracy",
        description="what picks the best epoch (kept unless train.keep is last), early stopping and the plateau "
        "schedule read; train_val_gap's best is the epoch whose train and val accuracy are closest",
    )
    keep: Literal["best", "last"] = Field(
        "best",
        description="the epoch whose weights model.pt takes: best by train.monitor, or the last one trained "
        "(the monitor still drives early stopping and names the best epoch)",
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
    processes: int = Field(
        1, ge=1, description=">1: data-parallel under torchrun, one process per GPU", json_schema_extra=MACHINE
    )
    nodes: int = Field(
        1,
        ge=1,
        description="machines, each running the train stage's command; >1 needs rendezvous",
        json_schema_extra=MACHINE,
    )
    rendezvous: str | None = Field(
        None,
        description="HOST:PORT every node reaches, for torchrun's c10d rendezvous (nodes > 1)",
        json_schema_extra=MACHINE,
    )
    rendezvous_id: str = Field(
        "faceattrs", description="one id per training job sharing a rendezvous endpoint", json_schema_extra=MACHINE
    )
    decode_on: Literal["loader", "device"] = Field(
        "loader", description="device decodes the shards' JPEGs on the GPU (nvJPEG) instead of in the loader"
    )
    # resident by default: on the CPU it trained the default run's model byte for byte 1.06x faster than the
    # loader, which decodes every image again each epoch (bench/results/training_time_data_on.json).
    data_on: Literal["loader", "resident"] = Field(
        "resident",
        description="resident decodes each split once into one uint8 tensor in the training device's memory and "
        "draws every epoch's batches from it by index (the same batches as the loader on one process; under "
        "torchrun each rank holds a fixed share, shuffled within the rank each epoch); refused in one line where "
        "the splits do not fit in the device's free memory; loader decodes each batch in the loader every epoch",
        json_schema_extra=MACHINE,
    )
    precision: Literal["bf16", "fp16", "fp32"] = Field(
        "bf16",
        description="autocast on a GPU (fp16 with a gradient scaler, for GPUs without bf16); the CPU computes in "
        "fp32 (its bf16 autocast ran 30x slower without AMX, and with AMX gave a different model each run)",
    )

    @field_validator("balance")
    @classmethod
    def _balance_by_an_attribute(cls, value: str | None) -> str | None:
        return None if value is None else attribute_names([value], "train.balance")[0]

    @field_validator("subset")
    @classmethod
    def _subset_parses(cls, value: str | None) -> str | None:
        if value is not None:
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
