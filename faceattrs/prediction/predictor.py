"""A trained model ready to score images: loaded from model.pt with the preprocessing it was trained with.

The crop, size and encoding of the shards, the normalization, centre crop and
input size all come from the model file, never from re-typed params, so a photo
scored here goes through exactly what the training images went through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from faceattrs.core.errors import InputError
from faceattrs.core.params import AugmentParams, ModelParams
from faceattrs.data import shards
from faceattrs.training import augment, models


class Predictor:
    def __init__(self, model_file: Path | str, device: str = "cpu", tta: str = "none"):
        self.path = Path(model_file)
        self.tta = tta
        ckpt = models.load_checkpoint(self.path)
        if "targets" not in ckpt or "model_params" not in ckpt:
            raise InputError(
                f"{self.path}: a training checkpoint, not a final model.pt; use the train stage's model.pt"
            )
        params = ModelParams(**{**ckpt["model_params"], "pretrained": False, "weights": None})
        self.targets = tuple(ckpt["targets"])
        self.expression = ckpt["expression"]
        models.check_signature(ckpt["signature"], models.signature(params, self.targets), self.path)
        self.device = torch.device(device)
        self.model = models.build_model(params, len(self.targets)).to(self.device).eval()
        self.model.load_state_dict(ckpt["state_dict"])
        img = ckpt["image"]
        self.spec = shards.ImageSpec(
            tuple(img["crop"]) if img["crop"] else None,
            tuple(img["size"]),
            img["format"],
            img["jpeg_quality"],
            img.get("decode", "full"),
        )
        self.mean = torch.tensor(ckpt["mean"], device=self.device)
        self.std = torch.tensor(ckpt["std"], device=self.device)
        # Files written before the crops were kept together hold the centre crop on its own.
        geometry = {"center_crop": ckpt.get("center_crop"), **(ckpt.get("eval_geometry") or {})}
        self.augment = AugmentParams(hflip=0.0, **{k: tuple(v) for k, v in geometry.items() if v})
        self.input_size = tuple(ckpt["input_size"]) if ckpt["input_size"] else None
        self.positive_rates = np.array(ckpt["positive_rates"])
        # Where the training images' eyes sit on the aligned image; photos are aligned to it.
        self.mean_eyes = np.array(ckpt["mean_eyes"], float) if ckpt.get("mean_eyes") else None
        self.provenance = json.loads(ckpt["provenance"])

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
