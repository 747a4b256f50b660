"""Model files are data, not code: a crafted one is refused by name before timm reads anything but the registry."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from faceattrs.core.errors import InputError
from faceattrs.prediction.predictor import Predictor
from tests.conftest import REPO


def _crafted(learned_model: Path, tmp_path: Path, backbone: str | None = None, args: dict | None = None) -> Path:
    """The learned model file with another backbone name or backbone keywords, in its params and its signature alike."""
    raw = torch.load(learned_model, map_location="cpu", weights_only=True)
    for section in (raw["model_params"], raw["signature"]):
        if backbone is not None:
            section["backbone"] = backbone
        if args is not None:
            section["backbone_args"] = args
    path = tmp_path / "crafted.pt"
    torch.save(raw, path)
    return path


@pytest.fixture
def no_outside_config(monkeypatch):
    """Fails a test loudly wherever timm would read a model config from the Hub or from a folder."""
    from timm.models import _factory

    asked = []

    def refuse(source):
        def load(*args, **kwargs):
            asked.append((source, args))
            raise AssertionError(f"timm was asked for a config from {source}: {args}")

        return load

    monkeypatch.setattr(_factory, "load_model_config_from_hf", refuse("the Hub"))
    monkeypatch.setattr(_factory, "load_model_config_from_path", refuse("a folder"))
    return asked


@pytest.mark.parametrize(
    "backbone",
    [
        "hf-hub:timm/resnet10t.c3_in1k",
        "hf_hub:timm/resnet10t.c3_in1k",
        "local-dir:/tmp/model",
        "timm/resnet10t",
        "../resnet10t",
        "resnet10t/../../x",
        "no_such_model_anywhere",
        "",
    ],
)
def test_a_backbone_that_is_not_a_plain_timm_name_is_refused_naming_the_file(
    learned_model, tmp_path, no_outside_config, backbone
):
    path = _crafted(learned_model, tmp_path, backbone=backbone)
    with pytest.raises(InputError) as refused:
        Predictor(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert repr(backbone) in message
    assert no_outside_config == []


@pytest.mark.parametrize(
    "args",
    [
        {"checkpoint_path": "OTHER"},
        {"pretrained_cfg_overlay": {"file": "OTHER"}},
        {"pretrained_cfg": {"file": "OTHER"}},
        {"cache_dir": "OTHER"},
        {"features_only": True},
        {"device": "meta"},
        {"no_such_keyword": 1},
    ],
)
def test_backbone_keywords_its_constructor_does_not_take_are_refused_naming_the_file(learned_model, tmp_path, args):
    # A file timm would load, were it asked to: the model file itself.
    args = {k: str(learned_model) if v == "OTHER" else v for k, v in args.items()}
    if "pretrained_cfg_overlay" in args or "pretrained_cfg" in args:
        args = {k: {"file": str(learned_model)} for k in args}
    path = _crafted(learned_model, tmp_path, args=args)
    with pytest.raises(InputError) as refused:
        Predictor(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert next(iter(args)) in message and "resnet10t" in message


def test_a_tagged_name_and_keywords_the_model_takes_still_load(learned_model, tmp_path):
    path = _crafted(learned_model, tmp_path, backbone="resnet10t.c3_in1k", args={"drop_path_rate": 0.05})
    original = Predictor(learned_model)
    images = torch.randint(
        0, 256, (2, 3, *original.spec.size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    # Stochastic depth is off in evaluation: the same weights score as the original file does.
    assert (Predictor(path).logits(images) == original.logits(images)).all()


def test_torch_is_required_at_a_version_whose_weights_only_load_is_safe():
    """Before 2.6, ``torch.load(..., weights_only=True)`` could still run code from a crafted file (CVE-2025-32434)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (torch_pin,) = [Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch"]
    assert not torch_pin.specifier.contains("2.5.1") and not torch_pin.specifier.contains("2.4.0")
    assert torch_pin.specifier.contains("2.6.0") and torch_pin.specifier.contains(torch.__version__.split("+")[0])
