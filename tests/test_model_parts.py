"""Registries of the model half on tiny batches: losses (against hand-computed values), augmentations,
optimizers, schedules, heads, frozen blocks, local weights, targets and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import timm
import torch

from faceattrs.core.errors import InputError
from faceattrs.core.params import AugmentParams, LossParams, ModelParams, OptimizerParams, ScheduleParams
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.evaluation import metrics
from faceattrs.training import augment, models, optim, targets
from faceattrs.training.losses import LOSSES, AttributeLoss

TINY = ModelParams(backbone="resnet10t")


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("extra", [{}, {"weighting": "frequency"}, {"label_smoothing": 0.1}])
def test_every_loss_gives_finite_gradients(name, extra):
    torch.manual_seed(0)
    logits = torch.randn(6, 40, requires_grad=True)
    y = torch.randint(0, 2, (6, 40))
    loss = AttributeLoss(
        LossParams(name=name, alpha=0.25 if name == "focal" else None, **extra), torch.rand(40) * 0.8 + 0.1
    )
    value = loss(logits, y)
    value.backward()
    assert value.ndim == 0 and math.isfinite(value.item()) and value.item() > 0
    assert logits.grad.shape == (6, 40) and torch.isfinite(logits.grad).all()


def test_losses_match_hand_computed_values():
    z = torch.tensor([[2.0, -1.0]])
    y = torch.tensor([[1, 1]])
    rates = torch.tensor([0.5, 0.1])
    p = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    bce = (-math.log(p[0]) - math.log(p[1])) / 2
    assert AttributeLoss(LossParams(name="bce"), rates)(z, y).item() == pytest.approx(bce, rel=1e-5)
    focal = (-((1 - p[0]) ** 2) * math.log(p[0]) - (1 - p[1]) ** 2 * math.log(p[1])) / 2
    assert AttributeLoss(LossParams(name="focal", gamma=2), rates)(z, y).item() == pytest.approx(focal, rel=1e-5)
    # alpha by frequency: 0.25 for the common attribute, 0.75 for the rare one (rate 0.1 < 0.25)
    focal_alpha = (-0.25 * (1 - p[0]) ** 2 * math.log(p[0]) - 0.75 * (1 - p[1]) ** 2 * math.log(p[1])) / 2
    got = AttributeLoss(LossParams(name="focal", gamma=2, alpha="frequency"), rates)(z, y).item()
    assert got == pytest.approx(focal_alpha, rel=1e-5)
    mse = ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2  # targets mapped to +-1
    assert AttributeLoss(LossParams(name="mse"), rates)(z, y).item() == pytest.approx(mse)
    # label smoothing 0.2 turns target 1 into 0.9
    smooth = (
        -(0.9 * math.log(p[0]) + 0.1 * math.log(1 - p[0])) - (0.9 * math.log(p[1]) + 0.1 * math.log(1 - p[1]))
    ) / 2
    assert AttributeLoss(LossParams(name="bce", label_smoothing=0.2), rates)(z, y).item() == pytest.approx(
        smooth, rel=1e-5
    )
    # frequency weighting: positives of an attribute at rate r weigh 0.5 / r
    weighted = (-math.log(p[0]) * 0.5 / 0.5 - math.log(p[1]) * 0.5 / 0.1) / 2
    assert AttributeLoss(LossParams(name="bce", weighting="frequency"), rates)(z, y).item() == pytest.approx(
        weighted, rel=1e-5
    )


@pytest.mark.parametrize("name", sorted(augment.AUGMENTATIONS))
def test_every_augmentation_on_a_tiny_batch(name):
    params = augment.only(name)
    x = torch.randint(0, 256, (4, 3, 40, 32), dtype=torch.uint8)
    mean, std = torch.tensor([0.5] * 3), torch.tensor([0.25] * 3)
    a = augment.prepare(x, params, mean, std, torch.Generator().manual_seed(1), True)
    b = augment.prepare(x, params, mean, std, torch.Generator().manual_seed(1), True)
    plain = augment.prepare(x, params, mean, std, None, False)  # the evaluation transform
    assert a.shape == (4, 3, *augment.output_size(params, 40, 32)) and torch.isfinite(a).all()
    assert torch.equal(a, b), "same generator seed, same augmentation"
    if name.startswith("mixup"):  # mixes in the step (model_step), not in prepare
        y = torch.randint(0, 2, (4, 40)).float()
        mx, lam, perm = augment.mixup(a, 0.2, torch.Generator().manual_seed(2))
        my = augment.mix_labels(y, lam, perm)
        assert mx.shape == a.shape and 0 <= lam <= 1 and ((my >= 0) & (my <= 1)).all()
        assert torch.allclose(mx, lam * a + (1 - lam) * a[perm])
    elif name == "eval_crop":  # training keeps the whole picture
        assert torch.equal(a, augment.prepare(x, AugmentParams(hflip=0.0), mean, std, None, True))
    elif name != "center_crop":
        assert not torch.equal(a, plain), f"{name} changed nothing"


def test_the_models_input_size_is_its_own_then_the_crops_then_the_shards():
    from faceattrs.core.params import Params

    stored = (80, 64)
    assert augment.model_input_size(None, Params().augment, stored) == stored
    cropped = Params(augment={"random_crop": [64, 48]})
    assert augment.model_input_size(None, cropped.augment, stored) == (64, 48)
    # Evaluation's own crop is not what training feeds the model.
    assert augment.model_input_size(None, Params(augment={"eval_crop": [64, 48]}).augment, stored) == stored
    assert augment.model_input_size((96, 80), cropped.augment, stored) == (96, 80)
    assert augment.scaled_size((80, 64), 0.7) == (56, 45)
    assert augment.scaled_size((20, 16), 0.25) == (8, 8)


def test_random_crop_places_at_random_in_training_and_centres_in_evaluation():
    x = torch.randint(0, 256, (16, 3, 40, 32), dtype=torch.uint8)
    zero, one = torch.zeros(3), torch.ones(3)
    centre = x[:, :, 4:36, 4:28].float() / 255
    for params in (AugmentParams(hflip=0.0, random_crop=(32, 24)), AugmentParams(hflip=0.0, eval_crop=(32, 24))):
        evaluated = augment.prepare(x, params, zero, one, None, False)
        assert torch.allclose(evaluated, centre, atol=1e-5)
    trained = augment.prepare(x, AugmentParams(hflip=0.0, random_crop=(32, 24)), zero, one, torch.Generator(), True)
    assert trained.shape == (16, 3, 32, 24)
    # Each crop is a window of the input: some other place than the centre for most images.
    windows = {
        (top, left): x[:, :, top : top + 32, left : left + 24].float() / 255 for top in range(9) for left in range(9)
    }
    placed = [
        next((place for place, w in windows.items() if torch.allclose(trained[i], w[i], atol=1e-5)), None)
        for i in range(16)
    ]
    assert sum(p not in (None, (4, 4)) for p in placed) >= 8, placed


def test_affine_applies_to_the_share_of_images_it_is_given():
    x = torch.randint(0, 256, (64, 3, 40, 32), dtype=torch.uint8)
    zero, one = torch.zeros(3), torch.ones(3)
    plain = augment.prepare(x, AugmentParams(hflip=0.0), zero, one, None, False)
    changed = {}
    for p in (0.0, 0.5, 1.0):
        params = AugmentParams(hflip=0.0, affine={"degrees": 20, "translate": 0.1, "p": p})
        out = augment.prepare(x, params, zero, one, torch.Generator().manual_seed(0), True)
        changed[p] = int(((out - plain).abs().amax(dim=(1, 2, 3)) > 1e-4).sum())
    assert changed[0.0] == 0 and changed[1.0] == 64 and 20 <= changed[0.5] <= 44


def test_contrast_blends_each_image_with_its_mean_grey():
    x = torch.randint(90, 171, (16, 3, 40, 32), dtype=torch.uint8)
    x[:, 0] -= 40  # channels of different means: blending each with its own mean would differ; nothing clips
    zero, one = torch.zeros(3), torch.ones(3)
    params = AugmentParams(hflip=0.0, color_jitter={"contrast": 0.4})
    out = augment.prepare(x, params, zero, one, torch.Generator().manual_seed(0), True)
    before = x.float() / 255

    def grey(t):
        return 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]

    assert torch.allclose(grey(out).mean(dim=(1, 2)), grey(before).mean(dim=(1, 2)), atol=1e-5)
    ratio = grey(out).std(dim=(1, 2)) / grey(before).std(dim=(1, 2))
    assert ((ratio > 0.6 - 1e-4) & (ratio < 1.4 + 1e-4)).all() and ratio.std() > 0.05
    # torchvision's adjust_contrast: every channel blended with the image's mean grey by one factor
    mean = grey(before).mean(dim=(1, 2)).view(-1, 1, 1, 1)
    assert torch.allclose(out, mean + (before - mean) * ratio.view(-1, 1, 1, 1), atol=1e-4)


def test_pca_lighting_shifts_each_image_by_one_colour_along_imagenets_eigenvectors():
    x = torch.full((32, 3, 8, 8), 128, dtype=torch.uint8)
    zero, one = torch.zeros(3), torch.ones(3)
    out = augment.prepare(x, AugmentParams(hflip=0.0, pca_lighting=0.1), zero, one, torch.Generator(), True)
    shift = out - 128 / 255
    assert torch.allclose(shift, shift[:, :, :1, :1].expand_as(shift), atol=1e-6)  # one colour per image
    colour = shift[:, :, 0, 0]
    vectors = torch.tensor(augment.PCA_EIGENVECTORS)
    alpha = colour @ vectors / torch.tensor(augment.PCA_EIGENVALUES)  # back to the drawn coefficients
    assert 0.05 < alpha.std().item() < 0.15 and colour.abs().max() > 0


def test_centre_crop_and_flip_are_exact():
    x = torch.randint(0, 256, (2, 3, 40, 32), dtype=torch.uint8)
    zero, one = torch.zeros(3), torch.ones(3)
    crop = augment.prepare(x, AugmentParams(hflip=0.0, center_crop=(20, 16)), zero, one, None, False)
    assert torch.allclose(crop, x[:, :, 10:30, 8:24].float() / 255, atol=1e-5)
    flip = augment.prepare(x, AugmentParams(hflip=1.0), zero, one, torch.Generator(), True)
    assert torch.allclose(flip, x.flip(-1).float() / 255, atol=1e-5)


def test_alternating_flip_shows_every_image_both_ways_in_each_pair_of_epochs():
    params = AugmentParams(flip_order="alternate")
    epochs = [augment.epoch_flips(params, 1000, seed=3, epoch=e) for e in range(4)]
    assert torch.equal(epochs[0], epochs[2]) and torch.equal(epochs[1], epochs[3])
    assert torch.equal(epochs[0], ~epochs[1])
    assert 400 < int(epochs[0].sum()) < 600  # a random half, fixed by the seed
    assert not torch.equal(epochs[0], augment.epoch_flips(params, 1000, seed=4, epoch=0))
    assert augment.epoch_flips(AugmentParams(), 1000, seed=3, epoch=0) is None  # random: drawn per batch
    with pytest.raises(ValueError, match=r"hflip to 0\.5"):
        AugmentParams(flip_order="alternate", hflip=0.3)
    # The batch's flags decide, not the generator: rows 0 and 2 mirrored, 1 and 3 not.
    x = torch.randint(0, 256, (4, 3, 40, 32), dtype=torch.uint8)
    zero, one = torch.zeros(3), torch.ones(3)
    flags = torch.tensor([True, False, True, False])
    out = augment.prepare(x, params, zero, one, torch.Generator(), True, flips=flags)
    expected = torch.where(flags.view(-1, 1, 1, 1), x.flip(-1), x).float() / 255
    assert torch.allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("head", sorted(models.HEADS))
def test_every_head(head):
    model = models.build_model(TINY.model_copy(update={"head": head}), 7)
    out = model(torch.randn(3, 3, 40, 32))
    out.sum().backward()
    assert out.shape == (3, 7)
    assert all(torch.isfinite(p.grad).all() for p in model.head.parameters() if p.grad is not None)


@pytest.mark.parametrize("backbone", ["lcnet_050", "mobilenetv3_small_050", "ghostnet_050", "mobilenetv2_050"])
def test_backbones_that_widen_their_features_after_pooling_get_a_head_that_fits(backbone):
    # mobilenetv3-style backbones return head_hidden_size features, not num_features.
    model = models.build_model(ModelParams(backbone=backbone, head="mlp", head_hidden=16), 5)
    assert model(torch.randn(2, 3, 48, 40)).shape == (2, 5)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_every_optimizer_takes_a_step(name):
    model = models.build_model(TINY, 3)
    opt = optim.build_optimizer(model, OptimizerParams(name=name, lr=0.01))
    before = model.head[1].weight.detach().clone()
    model(torch.randn(4, 3, 40, 32)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(before, model.head[1].weight)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_fused_optimizers_step_as_torchs_loop_does(name):
    # The fused kernel is a speed-up only: from the same weights and gradients, the same step as torch's
    # per-tensor loop, to rounding (one step: Adam's later steps magnify roundings in gradients near zero).
    models_and_opts = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = models.build_model(TINY, 3)
        settings = OptimizerParams(name=name, lr=0.01, nesterov=True)
        opt = optim.build_optimizer(model, settings) if fused else optim.OPTIMIZERS[name](model.parameters(), settings)
        models_and_opts.append((model, opt))
    assert models_and_opts[0][1].defaults["fused"] is True and not models_and_opts[1][1].defaults["fused"]
    x = torch.randn(4, 3, 40, 32, generator=torch.Generator().manual_seed(1))
    for model, opt in models_and_opts:
        model(x).pow(2).mean().backward()
        opt.step()
    for a, b in zip(models_and_opts[0][0].parameters(), models_and_opts[1][0].parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", sorted(optim.SCHEDULES))
def test_every_schedule_steps(name):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.1)
    schedule = optim.build_schedule(
        opt, ScheduleParams(name=name, warmup_epochs=1, patience=0, step_epochs=1), 10, 3, 0.1
    )
    lrs = []
    for _epoch in range(3):
        for _ in range(10):
            opt.step()
            schedule.after_batch()
        schedule.after_epoch(0.5, "max")  # a flat metric: plateau reduces
        lrs.append(opt.param_groups[0]["lr"])
    assert all(math.isfinite(v) and v >= 0 for v in lrs)
    if name == "none":
        assert lrs == [0.1] * 3
    else:
        assert lrs[-1] < 0.1


def test_cosine_warmup_is_a_pure_function():
    assert optim.cosine_with_warmup(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert optim.cosine_with_warmup(9, 100, 10, 0.0) == pytest.approx(1.0)
    assert optim.cosine_with_warmup(55, 100, 10, 0.0) == pytest.approx(0.5)
    assert optim.cosine_with_warmup(100, 100, 10, 0.1) == pytest.approx(0.1)


def test_frozen_blocks_do_not_change():
    model = models.build_model(TINY.model_copy(update={"freeze_blocks": 3}), 4)
    frozen = list(model.backbone.children())[:3]
    before = [p.detach().clone() for m in frozen for p in m.parameters()]
    opt = optim.build_optimizer(model, OptimizerParams(name="sgd", lr=0.5))
    model.train()
    model(torch.randn(4, 3, 40, 32)).pow(2).mean().backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, (p for m in frozen for p in m.parameters()), strict=True))
    assert all(not m.training for m in frozen)
    with pytest.raises(InputError, match="freeze_blocks is 99"):
        models.build_model(TINY.model_copy(update={"freeze_blocks": 99}), 4)


def test_local_weights_file_is_loaded(tmp_path):
    """Offline pretrained weights: a file the test writes stands in for ImageNet weights."""
    source = timm.create_model("resnet10t", pretrained=False, num_classes=1000)
    torch.nn.init.constant_(source.conv1[0].weight, 0.123)
    path = tmp_path / "resnet10t.pth"
    torch.save(source.state_dict(), path)
    model = models.build_model(TINY.model_copy(update={"weights": str(path)}), 40)
    assert torch.allclose(model.backbone.conv1[0].weight, torch.full_like(model.backbone.conv1[0].weight, 0.123))
    with pytest.raises(InputError, match=r"model\.weights"):
        models.build_model(TINY.model_copy(update={"weights": str(tmp_path / "missing.pth")}), 40)


def test_backbone_args_reach_timm_and_a_wrong_one_is_named():
    narrow = models.build_model(
        TINY.model_copy(update={"backbone_args": {"stem_width": 16, "channels": [32, 64, 128, 256]}}), 4
    )
    full = models.build_model(TINY, 4)
    assert narrow.backbone.conv1[0].out_channels == 12 and narrow.backbone.layer4[0].conv1.out_channels == 256
    assert narrow(torch.randn(2, 3, 40, 32)).shape == (2, 4)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in full.parameters()) / 3
    with pytest.raises(InputError, match=r"model\.backbone_args: resnet10t does not take \{'widht': 2\}"):
        models.build_model(TINY.model_copy(update={"backbone_args": {"widht": 2}}), 4)


def test_resnet10t_075_is_resnet10t_at_three_quarters_width_and_has_no_imagenet_weights(tmp_path):
    slim = ModelParams(backbone="resnet10t_075")
    model = models.build_model(slim, 4)
    widths = {"stem_width": 24, "channels": [48, 96, 192, 384]}
    same = timm.create_model("resnet10t", num_classes=1000, **widths)
    shapes = {k: v.shape for k, v in model.backbone.state_dict().items()}
    assert shapes == {k: v.shape for k, v in same.state_dict().items() if not k.startswith("fc.")}
    assert model.backbone.num_features == 384 and model(torch.randn(2, 3, 40, 32)).shape == (2, 4)
    assert models.normalization(model) == models.normalization(models.build_model(TINY, 4))
    with pytest.raises(InputError, match=r"model\.pretrained: timm has no ImageNet weights for resnet10t_075"):
        models.build_model(slim.model_copy(update={"pretrained": True}), 4)
    # Weights of one's own still load, from a file.
    torch.nn.init.constant_(same.conv1[0].weight, 0.25)
    torch.save(same.state_dict(), tmp_path / "slim.pth")
    loaded = models.build_model(slim.model_copy(update={"weights": str(tmp_path / "slim.pth")}), 4)
    assert torch.equal(loaded.backbone.conv1[0].weight, same.conv1[0].weight)


def test_unknown_backbone_names_similar_ones():
    with pytest.raises(InputError, match=r"timm has no model 'resnet10q'; similar: .*resnet10t"):
        models.build_model(TINY.model_copy(update={"backbone": "resnet10q"}), 40)
    with pytest.raises(InputError, match=r"'hf-hub:timm/resnet18\.a1_in1k' names a source, not a model in timm's"):
        models.build_model(TINY.model_copy(update={"backbone": "hf-hub:timm/resnet18.a1_in1k"}), 40)
    with pytest.raises(InputError, match=r"no weights tagged 'resnet18\.in1k_nope'; tagged: .*resnet18\.a1_in1k"):
        models.build_model(TINY.model_copy(update={"backbone": "resnet18.in1k_nope"}), 40)
    # A tag timm has is a backbone like any other (built here without its weights, which need the hub).
    assert models.build_model(TINY.model_copy(update={"backbone": "resnet18.a1_in1k"}), 4)(
        torch.randn(1, 3, 40, 32)
    ).shape == (1, 4)


def test_signature_mismatch_is_refused(tmp_path):
    expected = models.signature(TINY, ATTRIBUTES)
    found = models.signature(TINY.model_copy(update={"head": "mlp"}), ATTRIBUTES)
    with pytest.raises(InputError, match="head: checkpoint has 'mlp', params ask for 'linear'"):
        models.check_signature(found, expected, tmp_path / "model.pt")
    other = models.signature(TINY.model_copy(update={"backbone": "resnet18"}), ("Smiling",))
    with pytest.raises(InputError, match=r"backbone.*targets"):
        models.check_signature(other, expected, tmp_path / "model.pt")


def test_targets_subset_and_expression():
    frame = pd.DataFrame({a: [0, 1, 1, 0] for a in ATTRIBUTES})
    frame["Blond_Hair"], frame["Eyeglasses"] = [0, 1, 1, 0], [0, 0, 1, 1]
    derived = targets.from_params(None, "Blond_Hair ^ Eyeglasses")
    assert derived.labels(frame)[:, 0].tolist() == [0, 1, 0, 1]
    assert targets.from_params(None, "Blond_Hair and not Eyeglasses").labels(frame)[:, 0].tolist() == [0, 1, 0, 0]
    assert targets.from_params(["Smiling", "Male"], None).labels(frame).shape == (4, 2)
    with pytest.raises(InputError, match="unknown attribute 'Blonde'"):
        targets.from_params(None, "Blonde ^ Eyeglasses")
    with pytest.raises(InputError, match="unsupported syntax"):
        targets.from_params(None, "__import__('os')")


def test_tuned_thresholds_maximise_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(300, 3))
    logits = labels * 1.5 + rng.normal(0, 1, size=(300, 3)) - 1.0
    tuned = metrics.tune_thresholds(logits, labels)
    for k in range(3):
        grid = np.linspace(-4, 4, 801)
        best = max(((logits[:, k] > t) == labels[:, k]).mean() for t in grid)
        assert ((logits[:, k] > tuned[k]) == labels[:, k]).mean() >= best - 1e-9


def test_per_target_measures_and_fair_score_by_hand():
    labels = np.array([[1], [1], [0], [0]])
    logits = np.array([[2.0], [-1.0], [-2.0], [1.0]])
    m = metrics.per_target(logits, labels, np.zeros(1), np.array([0.9]))
    assert m["accuracy"][0] == 0.5 and m["precision"][0] == 0.5 and m["recall"][0] == 0.5
    assert m["majority_baseline"][0] == 0.5  # the train majority (positive) is right on half the test
    group = np.array([1, 1, 0, 0])
    fair = metrics.group_fair(np.array([[2.0], [1.0], [-2.0], [1.0]]), labels, np.zeros(1), group)
    assert fair["accuracy_group"][0] == 1.0 and fair["accuracy_other"][0] == 0.5
    assert fair["fair_score"][0] == pytest.approx(0.75 - 0.5)


def test_asking_for_cuda_without_one_is_a_clear_error():
    from faceattrs.training.step import resolve_device

    assert resolve_device("cpu").type == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(InputError, match=r"train\.device is 'cuda' but no CUDA device is available"):
            resolve_device("cuda")


def test_targets_name_the_attributes_they_are_made_of():
    assert targets.from_params(None, "Blond_Hair ^ (Eyeglasses & ~Male)").attributes == (
        "Blond_Hair",
        "Eyeglasses",
        "Male",
    )
    assert targets.from_params(["Smiling", "Bald"], None).attributes == ("Smiling", "Bald")


def test_mixup_on_the_loss_differs_from_mixed_labels_under_focal_loss():
    """Mixing the two losses is MixUp as one recipe states it; with focal loss (gamma > 0) it is not mixing labels."""
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    a, b = torch.tensor([[1.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0]])
    lam = 0.3
    rates = torch.full((3,), 0.5)
    focal = AttributeLoss(LossParams(name="focal", gamma=2.0), rates)
    of_losses = lam * focal(logits, a) + (1 - lam) * focal(logits, b)
    of_labels = focal(logits, lam * a + (1 - lam) * b)
    assert not torch.isclose(of_losses, of_labels)
    bce = AttributeLoss(LossParams(name="bce"), rates)  # BCE is linear in the target: the two agree
    assert torch.isclose(lam * bce(logits, a) + (1 - lam) * bce(logits, b), bce(logits, lam * a + (1 - lam) * b))


def test_unknown_labels_are_left_out_of_the_loss():
    loss = AttributeLoss(LossParams(name="bce"), torch.full((2,), 0.5))
    logits = torch.tensor([[3.0, -3.0]])
    known = torch.tensor([[True, False]])
    wrong_second = torch.tensor([[1.0, 1.0]])  # the second label is wrong, but unknown
    assert torch.isclose(loss(logits, wrong_second, known), loss(logits[:, :1], wrong_second[:, :1]))


def test_plateau_reads_a_loss_the_right_way_round():
    # train.monitor: val_loss hands the schedule the loss, lower is better; a slightly worse loss must not count
    # as better.
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = optim.build_schedule(opt, ScheduleParams(name="plateau", patience=0, factor=0.1), 10, 5, 1.0)
    schedule.after_epoch(0.5, "min")
    schedule.after_epoch(0.50004, "min")
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
