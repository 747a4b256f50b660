"""Saliency maps: Grad-CAM lights the drawn part a model learned, rollout matches timm, explain draws them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceattrs.core.errors import InputError
from faceattrs.core.params import ModelParams
from faceattrs.prediction import saliency
from faceattrs.prediction.predictor import Predictor, split_logits
from faceattrs.training import models
from faceattrs.training.loader import ShardDataset
from faceattrs.training.targets import Targets


def _mass_by_row(predictor, k: int):
    """Each surely-right test positive's map summed over columns and normalised: (images, rows)."""
    shard_dir = predictor.path.parents[1] / "shards"
    logits, labels, _ = split_logits(predictor, shard_dir, "test")
    data = ShardDataset(shard_dir, "test", Targets(predictor.targets, None))
    chosen = np.flatnonzero((labels[:, k] == 1) & (logits[:, k] > 0))
    assert len(chosen) >= 10, "the fixture model learned too little to test its maps"
    images = torch.stack([data[int(i)][0] for i in chosen])
    maps = saliency.saliency(predictor.model, predictor.inputs(images), k)
    assert maps.shape == (len(chosen), *predictor.spec.size) and maps.min() >= 0 and maps.max() <= 1
    rows = maps.sum(axis=2)
    return rows / rows.sum(axis=1, keepdims=True)


def test_grad_cam_lights_up_the_part_that_was_drawn(learned_model):
    """Glasses are drawn on the eye line, hats above the forehead: each map's mass falls there."""
    predictor = Predictor(learned_model)
    height = predictor.spec.size[0]
    top, bottom = predictor.spec.crop[1], predictor.spec.crop[3]
    eye_row = (predictor.mean_eyes[:, 1].mean() - top) / (bottom - top) * height
    rows = np.arange(height)
    band = 0.15 * height
    glasses = _mass_by_row(predictor, predictor.targets.index("Eyeglasses"))
    hats = _mass_by_row(predictor, predictor.targets.index("Wearing_Hat"))
    eye_band, above = np.abs(rows - eye_row) <= band, rows < eye_row - band
    # Each band is under a third of the rows; the maps put at least half their mass in it.
    assert eye_band.mean() < 0.35 and above.mean() < 0.35
    assert glasses[:, eye_band].sum(axis=1).mean() > 0.5
    assert hats[:, above].sum(axis=1).mean() > 0.5
    assert (hats @ rows).mean() < (glasses @ rows).mean() - 0.1 * height


@pytest.mark.parametrize(
    ("size", "layer"), [((80, 64), "layer3"), ((224, 224), "layer4"), ((40, 32), "layer2"), ((24, 24), "layer1")]
)
def test_grad_cam_reads_the_deepest_stage_with_room_to_say_where(size, layer):
    backbone = models.create_backbone(ModelParams(backbone="resnet10t"))
    assert saliency._grad_cam_layer(backbone, size) is backbone.get_submodule(layer)


def test_a_frozen_backbone_still_gets_a_map():
    torch.manual_seed(0)
    model = models.build_model(ModelParams(backbone="resnet10t", freeze_blocks=9), 2).eval()
    maps = saliency.saliency(model, torch.randn(2, 3, 80, 64), 1)
    assert maps.shape == (2, 80, 64) and np.isfinite(maps).all() and maps.max() == pytest.approx(1.0)


def test_attention_rollout_is_chosen_for_a_vit_and_reads_timm_attention_right():
    torch.manual_seed(0)
    params = ModelParams(backbone="vit_tiny_patch16_224", backbone_args={"img_size": [64, 48], "depth": 2})
    model = models.build_model(params, 3).eval()
    assert saliency.method(model.backbone) == "attention rollout"
    assert saliency.method(models.build_model(ModelParams(backbone="resnet10t"), 3).backbone) == "Grad-CAM"
    x = torch.randn(2, 3, 64, 48)
    # timm's own attention weights, from its unfused path: what the rollout must rebuild from qkv.
    seen = []
    for block in model.backbone.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    maps = saliency.saliency(model, x, 0)
    assert maps.shape == (2, 64, 48) and maps.max() == pytest.approx(1.0)
    count = seen[0].shape[-1]
    expected = None
    for attn in seen[-2:]:  # the rollout's own forward pass
        mixed = 0.5 * attn.mean(1) + 0.5 * torch.eye(count)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        expected = mixed if expected is None else mixed @ expected
    patches = expected[:, 0, 1:].reshape(2, 4, 3)
    direct = saliency._rollout(model.backbone, x)
    assert torch.allclose(direct, patches, atol=1e-5)


def test_explain_writes_the_picture_and_names_a_wrong_attribute(learned_model, tmp_path, capsys, monkeypatch):
    from PIL import Image

    from faceattrs import cli
    from faceattrs.data.archive import ImageArchive

    archive = ImageArchive.of(learned_model.parents[1] / "raw")
    photo = tmp_path / "face.jpg"
    photo.write_bytes(archive.read(archive.names()[0]))
    monkeypatch.chdir(tmp_path)  # in process: a subprocess would spend seconds importing torch again
    command = ["explain", str(photo), "--model", str(learned_model)]
    cli.main([*command, "--attribute", "Eyeglasses"])
    out = capsys.readouterr().out
    assert "(178x218, taken as aligned): Eyeglasses: p = " in out and "(Grad-CAM)" in out
    picture = Image.open(tmp_path / "predictions" / "explain" / "face.Eyeglasses.png")
    assert picture.height >= 218 and picture.width > 178 + 64
    with pytest.raises(SystemExit) as wrong:
        cli.main([*command, "--attribute", "Eyeglases"])
    assert wrong.value.code == 1 and "did you mean Eyeglasses?" in capsys.readouterr().err


def test_explain_refuses_an_attribute_the_model_does_not_predict(learned_model):
    predictor = Predictor(learned_model)
    with pytest.raises(InputError, match="predicts no 'Bald'"):
        saliency.explain(predictor, np.zeros((218, 178, 3), np.uint8), "Bald")
