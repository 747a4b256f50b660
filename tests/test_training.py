"""Training, evaluation and prediction on tiny shards: resume, failures, derived targets, file formats."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from faceattrs.core import code_deps
from faceattrs.core.errors import Diverged, InputError
from faceattrs.core.params import EvaluateParams, Params
from faceattrs.data import celeba
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.evaluation import evaluate
from faceattrs.prediction import outputs, photos
from faceattrs.prediction.predictor import Predictor, split_logits
from faceattrs.synthetic.truth import read_truth
from faceattrs.training import epoch as epoch_module
from faceattrs.training import fit as fit_module
from faceattrs.training import layout, models, run
from faceattrs.training.build import TrainingParams, build, make_step
from faceattrs.training.callbacks import Checkpointer
from faceattrs.training.checkpoints import CheckpointError, ModelFile, ResumePoint
from faceattrs.training.epoch import Pass, PassResult, run_epoch
from faceattrs.training.fit import Callback, EpochRecord, FitState
from faceattrs.training.losses import AttributeLoss
from faceattrs.training.step import EpochPlan, amp, model_step
from tests.conftest import REPO, tiny_params


@pytest.fixture(scope="module")
def trained(tiny_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    result = run.train(tiny_params(train={"epochs": 3}), tiny_shards, out / "models", out / "live", progress=False)
    return out, result


def test_training_writes_model_checkpoints_and_logs(trained):
    out, result = trained
    assert result["epochs"] == 3 and 1 <= result["best_epoch"] <= 3
    for name in ("model.pt", "best.pt", "last.pt"):
        assert (out / "models" / name).exists()
    logged = json.loads((out / "live" / "metrics.json").read_text())
    assert {"train", "val", "lr", "epoch_time_s", "step"} <= set(logged)
    history = pd.read_csv(out / "live" / "plots" / "metrics" / "val" / "mean_accuracy.tsv", sep="\t")
    assert len(history) == 3
    model = torch.load(out / "models" / "model.pt", weights_only=True)
    assert model["targets"] == list(ATTRIBUTES) and model["image"]["size"] == [40, 32]
    assert "git_commit" in json.loads(model["provenance"])


class KilledIn(Callback):
    """A kill in the middle of an epoch's training pass, as a SIGKILL would land."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_batch(self, epoch, rows):
        if epoch == self.epoch:
            raise KeyboardInterrupt("simulated kill")


@pytest.mark.integration
def test_resume_after_a_kill_gives_the_same_result(tiny_shards, tmp_path, trained, capsys):
    params = tiny_params(train={"epochs": 3})
    with pytest.raises(KeyboardInterrupt):
        run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False, callbacks=[KilledIn(2)])
    assert ResumePoint.load(tmp_path / "models" / "last.pt").state["epoch"] == 2
    resumed = run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False)
    assert f"train: resuming after epoch 2 from {tmp_path / 'models' / 'last.pt'}" in capsys.readouterr().out
    out, uninterrupted = trained
    assert resumed == uninterrupted
    a = torch.load(tmp_path / "models" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "models" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = pd.read_csv(tmp_path / "live" / "plots" / "metrics" / "val" / "mean_accuracy.tsv", sep="\t")
    assert history["step"].tolist() == [0, 1, 2]


def test_changed_params_start_over_instead_of_resuming(tiny_shards, trained, tmp_path, capsys):
    out, _ = trained
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "last.pt").write_bytes((out / "models" / "last.pt").read_bytes())
    result = run.train(
        tiny_params(train={"epochs": 1}, optimizer={"lr": 0.001}),
        tiny_shards,
        models_dir,
        tmp_path / "live",
        progress=False,
    )
    assert result["epochs"] == 1
    assert "train: from epoch 1: params optimizer, params train changed since" in capsys.readouterr().out


def test_non_finite_loss_stops_with_a_clear_message(tiny_shards, tmp_path, monkeypatch):
    monkeypatch.setattr(AttributeLoss, "forward", lambda self, logits, y, known=None: (logits * float("nan")).mean())
    with pytest.raises(Diverged, match=r"non-finite loss \(nan\) in epoch 1/2, batch 0: lower optimizer.lr"):
        run.train(tiny_params(), tiny_shards, tmp_path / "m", tmp_path / "l", progress=False)


@pytest.mark.integration
def test_evaluation_measures_and_thresholds(trained, tiny_shards, synthetic_raw):

    out, _ = trained
    results = evaluate.evaluate(
        out / "models" / "model.pt", tiny_shards, EvaluateParams(thresholds="tuned"), read_truth(synthetic_raw)
    )
    summary = evaluate.metrics_json(results)
    assert 0 < summary["test"]["mean_accuracy"] <= 1 and 0 < summary["test"]["majority_baseline"] <= 1
    assert summary["test"]["noise_ceiling_drawn"] > 0.9
    assert (
        summary["val"]["mean_accuracy"]
        >= evaluate.metrics_json(
            evaluate.evaluate(out / "models" / "model.pt", tiny_shards, EvaluateParams(thresholds="fixed"))
        )["val"]["mean_accuracy"]
    )
    table = evaluate.per_attribute_table(results)
    assert list(table["attribute"]) == list(ATTRIBUTES) and not table["drawn"][ATTRIBUTES.index("Attractive")]
    # Per group (men and women by default): each target's accuracy among each, from the predictions themselves.
    predictor = Predictor(out / "models" / "model.pt", tta="flip")  # as evaluate scored
    logits, labels, frame = split_logits(predictor, tiny_shards, "test")
    right = (logits > results["thresholds"]) == labels.astype(bool)
    men = frame["Male"].to_numpy().astype(bool)
    assert np.allclose(table["accuracy_in_group"], right[men].mean(0).round(5), atol=1e-5)
    assert np.allclose(table["accuracy_out_of_group"], right[~men].mean(0).round(5), atol=1e-5)
    from faceattrs.reports.evaluation import markdown_report

    report = markdown_report(summary, table, EvaluateParams(thresholds="tuned"), None)
    assert "## By group: Male and not Male" in report


@pytest.mark.integration
def test_derived_target_trains_and_evaluates_with_the_fair_score(tiny_shards, tmp_path):
    params = tiny_params(
        target={"expression": "Blond_Hair ^ Eyeglasses"}, train={"epochs": 1}, model={"head": "mlp", "head_hidden": 16}
    )
    run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False)
    results = evaluate.evaluate(tmp_path / "models" / "model.pt", tiny_shards, EvaluateParams())
    assert results["targets"] == ["Blond_Hair^Eyeglasses"]
    summary = evaluate.metrics_json(results)
    assert -1 <= summary["test"]["gender_fair_score"] <= 1
    frame = pd.read_parquet(next(tiny_shards.glob("test-*.parquet")), columns=["Blond_Hair", "Eyeglasses"])
    assert results["test"]["positive_rate"][0] == pytest.approx((frame["Blond_Hair"] ^ frame["Eyeglasses"]).mean())


def test_predictions_read_back_with_the_celeba_reader(trained, tiny_shards, tmp_path):
    out, _ = trained
    predictor = Predictor(out / "models" / "model.pt")
    index, logits, faces = outputs.predict_paths(predictor, [tiny_shards])
    assert faces is None  # shards hold aligned faces: nothing detected
    frame = outputs.predictions_frame(index, logits, predictor.targets, np.zeros(40))
    paths = outputs.write_predictions(frame, predictor.targets, tmp_path)
    back = celeba.read_attributes(paths["celeba"])
    assert list(back.index) == list(index) and (back.to_numpy() == (logits > 0)).all()
    one_file = sorted(tiny_shards.glob("train-*.parquet"))[-1]
    index_one, _, _ = outputs.predict_paths(predictor, [one_file])
    assert list(index_one) == list(pd.read_parquet(one_file, columns=["image_id"])["image_id"])
    csv = pd.read_csv(paths["csv"], index_col="image_id")
    assert (csv[list(ATTRIBUTES)].to_numpy() == back.to_numpy()).all()
    assert ((csv["p_Smiling"] > 0.5) == (csv["Smiling"] == 1)).all()


def test_photo_scores_equal_shard_scores(trained, tiny_shards, synthetic_photos):
    """A raw photo goes through the same crop, resize and encoding as the shards it was trained on."""
    out, _ = trained
    predictor = Predictor(out / "models" / "model.pt")
    logits, _, frame = split_logits(predictor, tiny_shards, "test")
    names = list(frame.index[:5])
    from_shards = logits[:5]
    found = photos.find([synthetic_photos / n for n in names], predictor.mean_eyes)
    assert [f.eyes_from for f in found.faces] == ["aligned"] * 5 and len(found.aligned) == 5
    from_photos = predictor.logits_for(f.aligned for f in found.faces)
    assert np.allclose(from_shards, from_photos, atol=1e-4)


@pytest.mark.integration
def test_cli_prints_a_table_for_one_photo_and_files_for_many(trained, synthetic_photos, tmp_path, capsys):
    out, _ = trained
    image = synthetic_photos / "000001.jpg"
    one = subprocess.run(
        [
            sys.executable,
            "-m",
            "faceattrs.cli",
            "predict",
            str(image),
            "--model",
            str(out / "models/model.pt"),
            "--thresholds",
            str(tmp_path / "none.json"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert one.returncode == 0, one.stderr
    assert "1 of 1 images are 178x218 CelebA-aligned" in one.stdout.splitlines()[0]
    assert one.stdout.splitlines()[1].startswith("000001.jpg  (178x218") and "Eyeglasses" in one.stdout
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg"):
        (folder / name).write_bytes((synthetic_photos / name).read_bytes())
    # The same command in this process, as main() runs it (a process start costs seconds of torch's import).
    code, _, err = _cli(
        capsys, "predict", str(folder), "--model", str(out / "models/model.pt"), "--out", str(tmp_path / "pred")
    )
    assert code == 0, err
    assert len(celeba.read_attributes(tmp_path / "pred" / "predictions_attr.txt")) == 3
    code, _, err = _cli(capsys, "predict", str(folder), "--model", str(tmp_path / "no.pt"))
    assert code == 1 and "no.pt: no such file; run the train stage first" in err


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`faceattrs ARGV` run by its main(): the exit status and what it printed."""
    from faceattrs import cli

    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def test_predictor_refuses_a_checkpoint_of_another_model(trained, tmp_path):
    out, _ = trained
    ckpt = torch.load(out / "models" / "model.pt", weights_only=True)
    ckpt["signature"]["backbone"] = "resnet50"
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(InputError, match="backbone: checkpoint has 'resnet50', params ask for 'resnet10t'"):
        Predictor(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"a faceattrs best-epoch checkpoint \(best\.pt\), not a faceattrs model"):
        Predictor(out / "models" / "best.pt")
    torch.save({"state_dict": ckpt["state_dict"]}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match=r"bare\.pt: a faceattrs model file \(model\.pt\) of format 1, and this"):
        Predictor(tmp_path / "bare.pt")
    record = ModelFile.load(out / "models" / "model.pt")
    assert record.targets == list(ATTRIBUTES) and ModelFile.from_dict(record.to_dict()).epoch == record.epoch


def test_a_model_with_backbone_args_predicts_from_its_checkpoint_alone(tiny_shards, tmp_path):
    narrow = {"backbone": "resnet10t", "backbone_args": {"stem_width": 16, "channels": [16, 32, 64, 128]}}
    params = tiny_params(train={"epochs": 1, "limit_batches": 2}, model=narrow)
    run.train(params, tiny_shards, tmp_path / "m", tmp_path / "l", progress=False)
    predictor = Predictor(tmp_path / "m" / "model.pt")
    assert predictor.model.backbone.layer4[0].conv1.out_channels == 128
    assert predictor.logits(torch.zeros(2, 3, 40, 32, dtype=torch.uint8)).shape == (2, 40)
    ckpt = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    ckpt["model_params"]["backbone_args"] = None  # the same weights claimed for the full-width model
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(InputError, match="backbone_args: checkpoint has"):
        Predictor(tmp_path / "other.pt")


@pytest.mark.integration
def test_the_default_backbone_trains_and_its_checkpoint_loads_in_a_fresh_process(tiny_shards, tmp_path):
    """resnet10t_075 is faceattrs's name, not timm's: a new process knows it only through faceattrs."""
    default = Params().model.backbone
    params = tiny_params(train={"epochs": 1, "limit_batches": 2}, model={"backbone": default})
    run.train(params, tiny_shards, tmp_path / "m", tmp_path / "l", progress=False)
    code = (
        "import sys, torch\n"
        "from faceattrs.prediction.predictor import Predictor\n"
        "p = Predictor(sys.argv[1])\n"
        "print(type(p.model.backbone).__name__, p.model.backbone.num_features,\n"
        "      *p.logits(torch.zeros(2, 3, 40, 32, dtype=torch.uint8)).shape)\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "m" / "model.pt")], cwd=REPO, capture_output=True, text=True
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["ResNet", "384", "2", "40"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_the_gpu_with_bf16_and_channels_last(tiny_shards, tmp_path):
    result = run.train(
        tiny_params(train={"epochs": 1, "device": "cuda"}), tiny_shards, tmp_path / "m", tmp_path / "l", progress=False
    )
    assert 0 < result["best_val_mean_accuracy"] <= 1
    assert Predictor(tmp_path / "m" / "model.pt", "cuda").logits(
        torch.zeros(2, 3, 40, 32, dtype=torch.uint8)
    ).shape == (2, 40)


@pytest.mark.parametrize("channels_last", [True, False])
def test_the_cpu_step_runs_in_fp32_in_the_memory_layout_asked(channels_last):
    # bf16 is a GPU setting: on the CPU its autocast was slow without AMX and not deterministic with it.
    params = tiny_params(train={"precision": "bf16", "channels_last": channels_last})
    ctx = make_step(TrainingParams.of(params), np.full(40, 0.5), torch.device("cpu"), 40)
    seen = []
    first_conv = next(m for m in ctx.model.modules() if isinstance(m, torch.nn.Conv2d))
    first_conv.register_forward_hook(lambda module, args, out: seen.append((args[0], out)))
    images = torch.randint(0, 256, (4, 3, 40, 32), dtype=torch.uint8)
    loss, logits = model_step(ctx, images, torch.zeros(4, 40, dtype=torch.int8), EpochPlan())
    (x, out), *_ = seen
    assert out.dtype == torch.float32 and logits.dtype == torch.float32 and torch.isfinite(loss)
    assert x.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert x.is_contiguous() != channels_last
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_on_the_cpu_convolutions_on_small_maps_stay_nchw_and_compute_the_same():
    params = tiny_params(train={"channels_last": True})
    torch.manual_seed(0)
    ctx = make_step(TrainingParams.of(params), np.full(40, 0.5), torch.device("cpu"), 40, size=(80, 64))
    torch.manual_seed(0)
    everywhere = make_step(TrainingParams.of(params), np.full(40, 0.5), torch.device("cpu"), 40)  # all channels_last
    small = layout.small_map_convolutions(ctx.model, (80, 64), layout.NCHW_BELOW_PIXELS)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    assert layout.small_map_convolutions(torch.nn.Sequential(conv, conv), (3, 2), 32) == [conv]  # called twice
    # resnet10t at 80x64: layer3 works on 5x4 maps after its first convolution, layer4 on 3x2.
    assert {name for name, m in ctx.model.named_modules() if m in small} == {
        "backbone.layer3.0.conv2",
        "backbone.layer3.0.downsample.1",
        "backbone.layer4.0.conv1",
        "backbone.layer4.0.conv2",
        "backbone.layer4.0.downsample.1",
    }
    for model, kept in ((ctx.model, small), (everywhere.model, [])):
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1):  # a 1x1 kernel has both layouts
                assert m.weight.is_contiguous(memory_format=torch.channels_last) == (m not in kept)
    seen = []
    small[0].register_forward_hook(lambda module, args, out: seen.append(out))
    images = torch.randint(0, 256, (4, 3, 80, 64), dtype=torch.uint8)
    labels = torch.zeros(4, 40, dtype=torch.int8)
    (_, mixed), (_, plain) = (model_step(c, images, labels) for c in (ctx, everywhere))
    assert seen[0].is_contiguous() and not seen[0].is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(mixed, plain, atol=1e-4)


@pytest.mark.integration
def test_early_stopping_stops_when_val_accuracy_stalls(tiny_shards, tmp_path, monkeypatch):
    # Validation that never improves after epoch 1 (BatchNorm's running statistics would
    # move it a little even with a frozen learning rate, so it is pinned here).
    real = fit_module.run_epoch

    def stalled(step, run):
        result = real(step, run)
        return result if run.training else PassResult(result.loss, np.full_like(result.accuracy, 0.5))

    monkeypatch.setattr(fit_module, "run_epoch", stalled)
    params = tiny_params(train={"epochs": 5, "early_stopping": 1})
    result = run.train(params, tiny_shards, tmp_path / "m", tmp_path / "l", progress=False)
    assert result["epochs"] == 2 and result["best_epoch"] == 1


@pytest.mark.integration
def test_the_monitor_picks_the_kept_epoch_and_stops_on_val_loss(tiny_shards, tmp_path, monkeypatch):
    # Val accuracy rises every epoch while val loss is best at epoch 2: the monitor decides which counts.
    real, calls = fit_module.run_epoch, {"val": 0}

    def scripted(step, run):
        result = real(step, run)
        if run.training:
            return result
        calls["val"] += 1
        n = calls["val"]
        return PassResult({1: 0.6, 2: 0.4}.get(n, 0.5), np.full_like(result.accuracy, 0.5 + 0.01 * n))

    monkeypatch.setattr(fit_module, "run_epoch", scripted)
    params = tiny_params(train={"epochs": 5, "early_stopping": 2, "monitor": "val_loss"})
    result = run.train(params, tiny_shards, tmp_path / "loss", tmp_path / "l1", progress=False)
    assert result["epochs"] == 4 and result["best_epoch"] == 2
    assert result["best_val_mean_accuracy"] == pytest.approx(0.52)
    assert ModelFile.load(tmp_path / "loss" / "model.pt").epoch == 2
    calls["val"] = 0
    params = tiny_params(train={"epochs": 4, "early_stopping": 2, "monitor": "val_accuracy"})
    result = run.train(params, tiny_shards, tmp_path / "acc", tmp_path / "l2", progress=False)
    assert result["epochs"] == 4 and result["best_epoch"] == 4


class Epochs(Callback):
    def __init__(self):
        self.seen = []

    def on_epoch_end(self, parts, record):
        self.seen.append(record.epoch)


@pytest.mark.integration
def test_a_change_to_any_module_the_train_stage_imports_starts_over(
    tiny_shards, trained, tmp_path, monkeypatch, capsys
):
    """Not only the training package: the shard decoder, the schema, the stage itself are the run's code too."""
    out, _ = trained
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / "last.pt").write_bytes((out / "models" / "last.pt").read_bytes())
    params = TrainingParams.of(tiny_params(train={"epochs": 3}))
    key = run.run_key(params, tiny_shards)
    assert ResumePoint.load(models_dir / "last.pt").run_key == key
    assert {"faceattrs/data/shards.py", "faceattrs/core/params/train.py", "stages/train.py"} <= set(key.code)
    assert set(key.code) == set(code_deps.code_deps("stages.train"))
    real = code_deps.digests
    monkeypatch.setattr(code_deps, "digests", lambda module: {**real(module), "faceattrs/data/shards.py": "edited"})
    epochs = Epochs()
    run.train(params, tiny_shards, models_dir, tmp_path / "live", progress=False, callbacks=[epochs])
    assert epochs.seen == [0, 1, 2]  # three epochs trained, not a resumed no-op
    said = capsys.readouterr().out
    assert f"train: from epoch 1: faceattrs/data/shards.py changed since {models_dir / 'last.pt'} was written" in said


def test_a_checkpoint_of_another_format_starts_over_saying_so(tiny_shards, trained, tmp_path, capsys):
    out, _ = trained
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    old = torch.load(out / "models" / "last.pt", weights_only=True)
    old["format"] = 1
    torch.save(old, models_dir / "last.pt")
    run.train(tiny_params(train={"epochs": 1}), tiny_shards, models_dir, tmp_path / "live", progress=False)
    assert "last.pt: a faceattrs training checkpoint (last.pt) of format 1" in capsys.readouterr().out


def test_decoding_on_the_device_matches_the_loader(tiny_shards, tmp_path):
    from faceattrs.training.loader import ShardDataset, decode_batch
    from faceattrs.training.loader import loader as make_loader
    from faceattrs.training.targets import from_params

    plain = ShardDataset(tiny_shards, "val", from_params(None, None))
    encoded = ShardDataset(tiny_shards, "val", from_params(None, None), encoded=True)
    images, _, rows = next(iter(make_loader(encoded, batch_size=8, shuffle=False, seed=0, epoch=0, workers=0)))
    assert isinstance(images, list) and len(images) == 8
    decoded = decode_batch(images, torch.device("cpu"))
    expected = torch.stack([plain[int(r)][0] for r in rows])
    assert decoded.shape == expected.shape and decoded.dtype == torch.uint8
    assert (decoded.int() - expected.int()).abs().float().mean() < 1.0  # two libjpeg-turbo builds

    result = run.train(
        tiny_params(train={"epochs": 1, "decode_on": "device"}),
        tiny_shards,
        tmp_path / "models",
        tmp_path / "live",
        progress=False,
    )
    assert 0 < result["best_val_mean_accuracy"] <= 1


def test_dvclive_logs_in_a_git_repository_with_no_commit_yet(tmp_path, monkeypatch):
    import os
    import subprocess

    from faceattrs.training.callbacks import open_live

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    monkeypatch.chdir(tmp_path)
    live = open_live(tmp_path / "reports/train", resumed_after=None)
    live.log_metric("loss", 0.5)
    live.next_step()
    live.end()
    assert (tmp_path / "reports/train/metrics.json").exists()
    assert "0.5" in (tmp_path / "reports/train/plots/metrics/loss.tsv").read_text()


@pytest.mark.parametrize("summary", ['{"step": 1, "train": {"lo', "", None])
def test_dvclive_resumes_where_the_checkpoint_is_after_a_kill_mid_write(tmp_path, monkeypatch, summary):
    # dvclive writes its files in place: a run killed as it logs leaves a cut summary, a half row, or rows and a
    # step the checkpoint does not hold. Resumed after epoch 2, the logs go on at step 2, rows 0 and 1 kept.
    from faceattrs.training.callbacks import open_live

    monkeypatch.chdir(tmp_path)
    live_dir = tmp_path / "reports/train"
    (live_dir / "plots/metrics/train").mkdir(parents=True)
    if summary is not None:
        (live_dir / "metrics.json").write_text(summary)
    (live_dir / "plots/metrics/train/loss.tsv").write_text("step\tloss\n0\t0.9\n1\t0.7\n2\t0.")
    live = open_live(live_dir, resumed_after=2)
    assert live.step == 2
    live.log_metric("train/loss", 0.5)
    live.next_step()
    live.end()
    assert (live_dir / "plots/metrics/train/loss.tsv").read_text() == "step\tloss\n0\t0.9\n1\t0.7\n2\t0.5\n"
    assert json.loads((live_dir / "metrics.json").read_text())["step"] == 2


@pytest.mark.parametrize(
    ("device", "precision", "expected"),
    [
        ("cpu", "fp16", (None, False)),
        ("cpu", "bf16", (None, False)),
        ("cuda", "fp16", (torch.float16, True)),
        ("cuda", "bf16", (torch.bfloat16, False)),
        ("cuda", "fp32", (None, False)),
    ],
)
def test_fp16_on_a_gpu_scales_gradients_and_the_cpu_stays_fp32(device, precision, expected):
    assert amp(torch.device(device), precision) == expected


@pytest.mark.gpu
def test_fp16_training_steps_with_a_gradient_scaler_on_the_gpu(tiny_shards, tmp_path):
    params = tiny_params(train={"epochs": 1, "precision": "fp16", "device": "cuda"})
    result = run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False)
    assert result["epochs"] == 1 and np.isfinite(result["best_val_mean_accuracy"])


@pytest.mark.integration
def test_the_checkpoint_kept_is_the_monitor_s_choice_train_val_gap_too(tiny_shards, tmp_path):
    params = tiny_params(train={"epochs": 3, "monitor": "train_val_gap"})
    result = run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False)
    history = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert history  # the last epoch's; the per-epoch series are in the plots folder
    plots = tmp_path / "live" / "plots" / "metrics"
    train_acc = pd.read_csv(plots / "train" / "mean_accuracy.tsv", sep="\t")["mean_accuracy"]
    val_acc = pd.read_csv(plots / "val" / "mean_accuracy.tsv", sep="\t")["mean_accuracy"]
    gaps = (train_acc - val_acc).abs().to_numpy()
    assert result["best_epoch"] == int(np.argmin(gaps)) + 1


def test_normalization_choices_give_their_mean_and_std():
    from faceattrs.core.params import ModelParams

    model = models.build_model(ModelParams(backbone="resnet10t"), 2)
    assert models.normalization(model, "half") == ([0.5] * 3, [0.5] * 3)
    assert models.normalization(model, "imagenet")[0] == [0.485, 0.456, 0.406]
    params = tiny_params(model={"normalization": "half"})
    ctx = make_step(TrainingParams.of(params), np.full(40, 0.5), torch.device("cpu"), 40)
    assert ctx.mean.tolist() == [0.5] * 3 and ctx.std.tolist() == [0.5] * 3


def test_prediction_crops_as_evaluation_did(tiny_shards, tmp_path):
    params = tiny_params(train={"epochs": 1}, augment={"random_crop": [32, 24], "hflip": 0.5})
    run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False)
    predictor = Predictor(tmp_path / "models" / "model.pt")
    assert predictor.augment.random_crop == (32, 24)
    batch = torch.randint(0, 256, (2, 3, 40, 32), dtype=torch.uint8)
    seen = predictor.inputs(batch)
    assert seen.shape[-2:] == (32, 24)
    centre = ((batch[:, :, 4:36, 4:28].float() / 255) - predictor.mean.view(1, -1, 1, 1)) / predictor.std.view(
        1, -1, 1, 1
    )
    assert torch.allclose(seen, centre, atol=1e-4)


def test_a_gradient_scaler_steps_scales_and_is_kept_for_resuming(tiny_shards, tmp_path):
    """The fp16 path's scaler, run on the CPU (its autocast stays off there): steps happen, and last.pt keeps it."""
    params = tiny_params(train={"epochs": 1, "limit_batches": 3})
    ctx = make_step(TrainingParams.of(params), np.full(40, 0.5), torch.device("cpu"), 40)
    ctx = dataclasses.replace(ctx, scaler=torch.amp.GradScaler("cpu", init_scale=1024.0))
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    from faceattrs.training import optim
    from faceattrs.training.loader import ShardDataset, loader
    from faceattrs.training.targets import Targets

    dataset = ShardDataset(tiny_shards, "train", Targets(ATTRIBUTES, None))
    data = itertools.islice(loader(dataset, batch_size=16, shuffle=True, seed=0, epoch=0, workers=0), 3)
    optimizer = optim.build_optimizer(ctx.model, params.optimizer)
    schedule = optim.build_schedule(optimizer, params.schedule, 3, 1, params.optimizer.lr)
    result = run_epoch(ctx, Pass(data, optimizer=optimizer, schedule=schedule, plan=EpochPlan()))
    assert np.isfinite(result.loss) and ctx.scaler.get_scale() == 1024.0
    assert any(not torch.equal(before[k], v) for k, v in ctx.model.state_dict().items())
    assert "scale" in ctx.scaler.state_dict()
    # last.pt keeps the scale it had got to, and a resumed run goes on from it.
    training = TrainingParams.of(params)
    built = build(training, tiny_shards, torch.device("cpu"))
    key = run.run_key(training, tiny_shards)
    record = EpochRecord(0, result, result, 0.1, 1.0, 1.0, True, FitState(1, 0.5, 0.5, 1, 0))
    Checkpointer(tmp_path, key, {}).on_epoch_end(dataclasses.replace(built.parts, step=ctx), record)
    fresh = dataclasses.replace(built.parts.step, scaler=torch.amp.GradScaler("cpu"))
    state, _ = run.resume(dataclasses.replace(built.parts, step=fresh), tmp_path / "last.pt", key)
    assert state == record.state and fresh.scaler.get_scale() == 1024.0


def test_progressive_resizing_trains_small_and_evaluates_at_full_size():
    params = tiny_params(train={"epochs": 3, "low_res_epochs": 2, "low_res_scale": 0.5})
    ctx = make_step(TrainingParams.of(params), np.full(40, 0.5), torch.device("cpu"), 40)
    seen = []
    ctx.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    images, labels = torch.randint(0, 256, (4, 3, 40, 32), dtype=torch.uint8), torch.zeros(4, 40, dtype=torch.int8)
    model_step(ctx, images, labels, EpochPlan(input_scale=0.5))
    model_step(ctx, images, labels)
    model_step(ctx, images, labels, EpochPlan(input_scale=1.0))
    assert seen == [(20, 16), (40, 32), (40, 32)]


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"train": {"epochs": 3, "low_res_epochs": 3}},
            r"train\.low_res_epochs \(3\) must be fewer than train\.epochs",
        ),
        ({"train": {"low_res_epochs": 1}, "model": {"backbone": "vit_tiny_patch16_224"}}, r"dynamic_img_size"),
    ],
)
def test_progressive_resizing_is_refused_where_it_cannot_work(raw, message):
    from faceattrs.core.params import ParamsError, parse_params

    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_the_low_res_epochs_come_first(tiny_shards, tmp_path, monkeypatch):
    scales, real = [], epoch_module.model_step

    def spy(step, images, labels, plan=None, rows=None):
        if plan is not None:
            scales.append(plan.input_scale)
        return real(step, images, labels, plan, rows)

    monkeypatch.setattr(epoch_module, "model_step", spy)
    params = tiny_params(train={"epochs": 3, "low_res_epochs": 2, "limit_batches": 1})
    run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False)
    assert scales == [0.7, 0.7, 1.0]


def test_a_last_training_batch_of_one_image_is_left_out_and_batchnorm_heads_train(tiny_shards, tmp_path):
    from faceattrs.training.loader import ShardDataset, batches_per_epoch, loader
    from faceattrs.training.targets import Targets

    n = len(ShardDataset(tiny_shards, "train", Targets(("Smiling",))))
    items = [(i, i, i) for i in range(n)]
    batches = functools.partial(loader, items, batch_size=n - 1, seed=0, epoch=0, workers=0)
    assert [len(batch[1]) for batch in batches(shuffle=True)] == [n - 1]
    assert batches_per_epoch(n, n - 1) == 1
    assert [len(batch[1]) for batch in batches(shuffle=False)] == [n - 1, 1]  # evaluation keeps it
    assert batches_per_epoch(n + 1, n - 1) == 2  # a last batch of two stays
    # The MLP head's BatchNorm1d raised on a last batch of one ("Expected more than 1 value per channel").
    params = tiny_params(train={"epochs": 1, "batch_size": n - 1}, model={"head": "mlp", "head_hidden": 8})
    summary = run.train(params, tiny_shards, tmp_path / "models", tmp_path / "live", progress=False)
    assert summary["epochs"] == 1
