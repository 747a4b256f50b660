"""A trained model ready to score images: loaded from model.pt with the preprocessing it was trained with.

The crop, size and encoding of the shards, the normalization, centre crop and
input size all come from the model file, never from re-typed params, so a photo
scored here goes through exactly what the training images went through.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pydantic
import timm
import torch

from faceattrs.core.params import AugmentParams, ModelParams
from faceattrs.data import shards
from faceattrs.training import augment, models
from faceattrs.training.checkpoints import CheckpointError, ModelFile
from faceattrs.training.loader import ShardDataset, loader
from faceattrs.training.targets import Targets


class Predictor:
    def __init__(self, model_file: Path | str, device: str = "cpu", tta: str = "none"):
        self.path = Path(model_file)
        self.tta = tta
        record = ModelFile.load(self.path)
        params = model_params(record, self.path)
        self.targets = tuple(record.targets)
        self.expression = record.expression
        models.check_signature(record.signature, models.signature(params, self.targets), self.path)
        self.device = torch.device(device)
        self.model = models.build_model(params, len(self.targets)).to(self.device).eval()
        self.model.load_state_dict(record.state_dict)
        self.spec = shards.ImageSpec.from_dict(record.image)
        self.mean = torch.tensor(record.mean, device=self.device)
        self.std = torch.tensor(record.std, device=self.device)
        self.augment = AugmentParams(hflip=0.0, **{k: tuple(v) for k, v in record.eval_geometry.items() if v})
        self.input_size = tuple(record.input_size) if record.input_size else None
        self.positive_rates = np.array(record.positive_rates)
        # Where the training images' eyes sit on the aligned image; photos are aligned to it.
        self.mean_eyes = np.array(record.mean_eyes, float) if record.mean_eyes else None
        self.provenance = json.loads(record.provenance)

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        """What the network sees for a uint8 NCHW batch at the shard size: centre crop, size, normalisation."""
        return augment.prepare(images.to(self.device), self.augment, self.mean, self.std, None, False, self.input_size)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> np.ndarray:
        """Logits for a uint8 NCHW batch at the shard size; with ``tta="flip"`` averaged with the mirror image's."""
        x = self.inputs(images)
        out = self.model(x).float()
        if self.tta == "flip":  # faces are near-symmetric, and the model trained on mirrored ones
            out = (out + self.model(torch.flip(x, dims=[3])).float()) / 2
        return out.cpu().numpy()

    def tensor(self, image: bytes | np.ndarray) -> torch.Tensor:
        """An aligned face as the shards hold it: cropped, resized and encoded as in preprocess, then decoded.

        Given a file's bytes, it is decoded as preprocess decoded the training images;
        given (218, 178, 3) pixels (a face aligned from a photo), they are used as they are.
        """
        if isinstance(image, bytes):
            stored = shards.encode_image(image, self.spec)
        else:
            stored = shards.encode_pixels(image, self.spec)
        pixels = shards.decode_image(stored, self.spec)
        return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))

    def logits_for(self, images: Iterable[bytes | np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Logits for aligned faces (file bytes or pixels, as ``tensor`` takes them), in batches."""
        faces = list(images)
        out = [np.zeros((0, len(self.targets)))]
        for start in range(0, len(faces), batch_size):
            out.append(self.logits(torch.stack([self.tensor(f) for f in faces[start : start + batch_size]])))
        return np.concatenate(out)


# A model file names the timm model to build, with keywords for it. Only a name in timm's registry is built
# (models.in_registry). Only keywords the model's own constructor names are passed: timm.create_model and
# build_model_with_cfg take others (checkpoint_path, pretrained_cfg, cache_dir, ...) that load files; device
# and dtype are the predictor's.
_NOT_THE_MODEL_S = {"device", "dtype"} | {
    name
    for factory in (timm.create_model, timm.models.build_model_with_cfg)
    for name in inspect.signature(factory).parameters
}


def model_params(record: ModelFile, path: Path) -> ModelParams:
    """The model section a model file was trained with, if it builds a plain timm model; else an error naming it."""
    try:
        params = ModelParams(**{**record.model_params, "pretrained": False, "weights": None})
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise CheckpointError(f"{path}: its model params are not valid ({problems})") from None
    name = params.backbone
    if not models.in_registry(name):
        raise CheckpointError(
            f"{path}: backbone {name!r} is not a model in timm's registry (a plain name such as resnet18, "
            "with no hf-hub:, local-dir: or path); this faceattrs builds no other"
        )
    unknown = sorted(set(params.backbone_args or {}) - _keywords(name))
    if unknown:
        raise CheckpointError(
            f"{path}: backbone_args {', '.join(unknown)} are not keywords that {name}'s constructor takes"
        )
    return params


@functools.cache
def _keywords(name: str) -> frozenset[str]:
    """The keywords a registered timm model takes as its own: named by its entry point or its class's constructor."""
    try:
        with torch.device("meta"):  # the class, without the cost of its weights
            model = timm.create_model(name, pretrained=False)
    except Exception:  # a model that cannot be made on the meta device
        model = timm.create_model(name, pretrained=False)
    named = [inspect.signature(type(model).__init__), inspect.signature(timm.models.model_entrypoint(name))]
    plain = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    taken = {p.name for signature in named for p in signature.parameters.values() if p.kind in plain}
    return frozenset(taken - _NOT_THE_MODEL_S - {"self"})


def split_logits(
    predictor: Predictor,
    shard_dir: Path,
    split: str,
    batch_size: int = 128,
    workers: int = 0,
    paths: list[Path] | None = None,
):
    """Logits, target labels and the full label frame (all 40 attributes) of one split (or shard files), in order."""
    target = Targets(predictor.targets, predictor.expression)
    data = ShardDataset(shard_dir, split, target, paths)
    out = [np.zeros((0, len(predictor.targets)))]
    for images, _, _ in loader(data, batch_size=batch_size, shuffle=False, seed=0, epoch=0, workers=workers):
        out.append(predictor.logits(images))
    return np.concatenate(out), data.targets.numpy(), data.frame
