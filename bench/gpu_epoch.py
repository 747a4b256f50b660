"""The train stage's data paths at CelebA's size on a GPU: loader processes, resident data, and the step alone.

For each configuration (the default resnet10t_075 at 80x64, and mobilenetv2_100 at
224x224), writes shards of 162,770 training and 19,867 validation images, CelebA's
official split, at the configuration's size: ``--distinct`` synthetic faces encoded
once, their rows repeated under new ids (a JPEG of one face costs what another costs to
decode). Then, each in a process of its own:

- the step alone: ``model_step`` and ``optimizer_step`` (the epoch's augmentation, the
  loss, the optimizer, the schedule) on one training batch already on the device,
  repeated, in each ``--step-modes``: eager, torch.compile, and torch.compile's CUDA
  graphs (mode reduce-overhead);
- the train stage itself (``python -m stages.train``) for two epochs, once per ``--runs``
  entry PATH/MODE: ``train.data_on`` PATH (loader or resident), the model in MODE. Its
  own dvclive log times the passes; the second epoch's training pass is the one
  reported, the first paying for compiling, CUDA graph capture and cuDNN's autotuning.

Prints, per run: images/s, the projected time of a 162,770-image epoch, the ratio to
the step's own rate in the same mode, the stage's wall time (the resident decoding
included), and the peak memory of the host (PSS of the process tree, loader workers
included) and of the device (torch's peak allocated and reserved). Goals on one
H100 or H200: an epoch of resnet10t_075 at 80x64 in 5 s or less, of mobilenetv2_100 at
224 in 25 s or less, and the stage at 0.95 of the step's rate or more. One run of the
script makes every measurement; ``--limit-batches`` shortens each pass for a short lease
(the rates are per image, the epoch's time projected from them).

Needs a CUDA device and refuses without one; ``--cpu-smoke`` runs the same script on
the CPU at the sizes given, to check that it works (its figures mean nothing).

    python bench/gpu_epoch.py
    python bench/gpu_epoch.py --config resnet10t_075-80x64 --limit-batches 100 --runs resident/eager
    python bench/gpu_epoch.py --variant nvjpeg:train.decode_on=device --variant fp32:train.precision=fp32
    python bench/gpu_epoch.py --cpu-smoke --train-images 600 --val-images 100 --distinct 64 \\
        --config resnet10t_075-80x64 --step-modes eager --runs loader/eager resident/eager --limit-batches 3 \\
        -S train.batch_size=64
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import runpy
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from bench.common import machine, readable_images
from bench.full_scale import REPO, override, run

TRAIN, VAL = 162_770, 19_867  # CelebA's official training and validation splits
GOAL_RATIO = 0.95
# torch.compile's mode for each step mode; None: eager.
MODES = {"eager": None, "compile": "default", "cudagraphs": "reduce-overhead"}


@dataclass(frozen=True)
class Config:
    sets: tuple[str, ...]
    goal_s: float  # a 162,770-image epoch on one H100 or H200, at most


CONFIGS = {
    "resnet10t_075-80x64": Config(
        ("model.backbone=resnet10t_075", "preprocess.size=[80,64]", "train.batch_size=512"), 5.0
    ),
    "mobilenetv2_100-224": Config(
        (
            "model.backbone=mobilenetv2_100",
            "preprocess.size=[224,224]",
            "preprocess.crop=[0,20,178,198]",
            "train.batch_size=256",
        ),
        25.0,
    ),
}


def device_peaks() -> dict:
    if not torch.cuda.is_available():
        return {"device_peak_allocated_mb": 0, "device_peak_reserved_mb": 0}
    return {
        "device_peak_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20),
        "device_peak_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20),
    }


def draw_faces(raw: Path, count: int, workers: int) -> Path:
    """``count`` synthetic faces with no planted flaws, drawn once into ``raw``."""
    from faceattrs.core.params import SyntheticParams
    from faceattrs.synthetic import generator

    if not (raw / "list_attr_celeba.txt").exists():
        flawless = {
            f"{kind}_rate": 0.0 for kind in ("exact_duplicate", "near_duplicate", "no_face", "lookalike", "unreadable")
        }
        generator.generate(raw, SyntheticParams(num_images=count, seed=0, **flawless), workers=workers, progress=False)
    return raw


def repeat_rows(table: pa.Table, n: int, split: str, out: Path, first_id: int, rows_per_shard: int = 4096) -> None:
    """Shards of ``n`` rows of ``table``'s images over and over, each row with an id of its own."""
    for number, start in enumerate(range(0, n, rows_per_shard)):
        index = np.arange(start, min(n, start + rows_per_shard))
        part = table.take(pa.array(index % table.num_rows))
        ids = pa.array([f"{first_id + i:06d}.jpg" for i in index], pa.string())
        part = part.set_column(part.schema.get_field_index("image_id"), part.schema.field("image_id"), ids)
        path = out / f"{split}-{number:05d}.parquet"
        pq.write_table(part.replace_schema_metadata(table.schema.metadata), path, row_group_size=512)


def make_shards(raw: Path, params: dict, out: Path, sizes: tuple[int, int], workers: int) -> Path:
    """Training and validation shards of ``sizes`` rows from the faces of ``raw``, as ``params`` preprocesses them."""
    from faceattrs.core.params import parse_params
    from faceattrs.data import shards
    from faceattrs.data.archive import ImageArchive

    if (out / "done").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    spec = shards.spec_of(parse_params(params).preprocess)
    rows = readable_images(raw, 10**9)
    with tempfile.TemporaryDirectory() as tmp:
        shards.write_split(rows, ImageArchive.of(raw), Path(tmp), "faces", spec, len(rows), workers, progress=False)
        table = pq.read_table(shards.shard_paths(Path(tmp), "faces")[0])
    repeat_rows(table, sizes[0], "train", out, 1)
    repeat_rows(table, sizes[1], "val", out, 1 + sizes[0])
    (out / "done").write_text("")
    return out


def params_tree(sets: list[str]) -> dict:
    """The schema's defaults with ``sets`` (KEY=VALUE, values in YAML) applied, validated."""
    from faceattrs.core.params import Params, parse_params

    tree = Params().model_dump(mode="json")
    for assignment in sets:
        override(tree, assignment)
    parse_params(tree, "gpu_epoch.py's params")
    return tree


# The children: each measurement in a process of its own, so that its peak memory is its own.


def step_child(params_file: Path, shard_dir: Path, mode: str, steps: int, warmup: int) -> dict:
    """Images/s of the training step alone on one batch already on the device, in ``mode``."""
    from faceattrs.core.params import parse_params
    from faceattrs.training.build import TrainingParams, build
    from faceattrs.training.step import model_step, optimizer_step, resolve_device

    params = TrainingParams.of(parse_params(yaml.safe_load(params_file.read_text())))
    device = resolve_device(params.train.device)
    parts = build(params, shard_dir, device).parts  # data_on: loader, so nothing is decoded but one batch
    plan = parts.plan(1)
    images, labels, rows = next(iter(parts.train_batches(1)))
    images, labels = images.to(device), labels.to(device)
    step = parts.step
    if MODES[mode] is not None:
        step = step.with_model(torch.compile(step.model, mode=MODES[mode]))

    def one() -> None:
        loss, _ = model_step(step, images, labels, plan, rows)
        optimizer_step(step, loss, parts.optimizer)
        parts.schedule.after_batch()

    for _ in range(warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {"images_per_s": steps * len(labels) / (time.perf_counter() - started), **device_peaks()}


def stage_child(argv: list[str]) -> None:
    """The train stage's own command, in this process, then its device peaks on one line (``BENCH {...}``)."""
    mode = os.environ.get("BENCH_COMPILE_MODE")
    if mode and mode != "default":
        torch.compile = functools.partial(torch.compile, mode=mode)  # what train.compile then calls
    sys.argv = ["stages.train", *argv]
    try:
        runpy.run_module("stages.train", run_name="__main__", alter_sys=True)
    finally:
        print("BENCH " + json.dumps(device_peaks()), flush=True)


def child_command(kind: str, *args: str) -> str:
    return " ".join([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--", *args])


def bench_line(text: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith("BENCH ")]
    return json.loads(lines[-1][len("BENCH ") :]) if lines else {}


def measured(cmd: str, cwd: Path, env: dict, extra_env: dict | None = None) -> tuple[float, float, dict, str]:
    """Wall time, host peak PSS (MB), the BENCH figures and the error (empty where it ran) of one child command."""
    try:
        wall, peak, text = run(cmd, cwd, {**env, **(extra_env or {})})
    except SystemExit as failed:
        return 0.0, 0.0, {}, str(failed).strip().splitlines()[-1][:300]
    return wall, peak, bench_line(text), ""


def epoch_images(n: int, batch: int, limit: int) -> int:
    """Training images a pass takes: ``limit`` batches at most, a last batch of one left out."""
    from faceattrs.training.loader import drops_last

    sizes = [batch] * (n // batch) + ([n % batch] if n % batch and not drops_last(n, batch, True) else [])
    return sum(sizes[: limit or None])


def pass_times(live: Path) -> list[float]:
    """Each epoch's training-pass seconds, from the stage's dvclive log."""
    lines = (live / "plots" / "metrics" / "train_time_s.tsv").read_text().strip().splitlines()[1:]
    return [float(line.split("\t")[-1]) for line in lines]


def stage_run(name: str, work: Path, shard_dir: Path, tree: dict, mode: str, env: dict, n_train: int) -> dict:
    """One two-epoch run of the train stage with ``tree``'s params on ``n_train`` images; its times, rates, peaks."""
    folder = work / "runs" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    args = ["--shards", str(shard_dir), "--out", str(folder / "models"), "--live", str(folder / "live")]
    args += ["--params", str(folder / "params.yaml")]
    compile_mode = {"BENCH_COMPILE_MODE": MODES[mode]} if MODES[mode] else {}
    wall, peak, figures, error = measured(child_command("stage", *args), folder, env, compile_mode)
    row = {"run": name, "stage_wall_s": round(wall, 1), "host_peak_mb": round(peak), **figures}
    if error:
        return {**row, "error": error}
    times = pass_times(folder / "live")
    train = tree["train"]
    images = epoch_images(n_train, train["batch_size"], train["limit_batches"])
    rate = images / times[-1]
    return {
        **row,
        "first_pass_s": round(times[0], 2),
        "pass_s": round(times[-1], 2),
        "pass_images": images,
        "images_per_s": round(rate),
        "epoch_162770_s": round(TRAIN / rate, 2),
    }


def measure_config(name: str, config: Config, args, raw: Path, env: dict) -> list[dict]:
    """Every measurement of one configuration: the step in each mode, then each stage run."""
    work = args.workdir / name
    device = "cpu" if args.cpu_smoke else "cuda"
    base = [*config.sets, *args.overrides, "train.epochs=2", f"train.limit_batches={args.limit_batches}"]
    base += [f"train.device={device}", f"train.workers={args.workers}"]
    tree = params_tree(base)
    # Shards of their own for each preprocess section and size, kept for the next run of the script.
    key = json.dumps([tree["preprocess"], args.train_images, args.val_images, args.distinct], sort_keys=True)
    folder = work / f"shards-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    shard_dir = make_shards(raw, tree, folder, (args.train_images, args.val_images), args.workers)
    print(f"\n{name}: {' '.join(base)}; shards in {shard_dir}", flush=True)
    steps = {}
    for mode in args.step_modes:
        (work / "step.yaml").write_text(yaml.safe_dump(params_tree([*base, "train.data_on=loader"]), sort_keys=False))
        cmd = child_command("step", str(work / "step.yaml"), str(shard_dir), mode, str(args.steps), str(args.warmup))
        _, _, figures, error = measured(cmd, work, env)
        steps[mode] = figures.get("images_per_s")
        said = error or f"{figures['images_per_s']:,.0f} img/s, device peak {figures['device_peak_allocated_mb']:,} MB"
        print(f"  step alone, {mode:10s}: {said}", flush=True)
    rows = []
    runs = [(run_name, *run_name.split("/"), []) for run_name in args.runs]
    for variant in args.variant:
        label, _, sets = variant.partition(":")
        runs.append((label, "loader", "eager", [s for s in sets.split(",") if s]))
    for run_name, path, mode, sets in runs:
        compiled = f"train.compile={str(MODES[mode] is not None).lower()}"
        tree = params_tree([*base, f"train.data_on={path}", compiled, *sets])
        row = stage_run(run_name.replace("/", "-"), work, shard_dir, tree, mode, env, args.train_images)
        row = {"config": name, "path": path, "mode": mode, **row}
        if steps.get(mode) and "images_per_s" in row:
            row["step_images_per_s"] = round(steps[mode])
            row["ratio_to_step"] = round(row["images_per_s"] / steps[mode], 3)
        rows.append(row)
        print("  " + json.dumps(row), flush=True)
    return rows


def summary(rows: list[dict]) -> None:
    """The table of every run, and the goals."""
    print()
    head = "config               run                   img/s   epoch s  x step  wall s  host MB  device MB"
    print(head)
    for r in rows:
        if "error" in r:
            print(f"{r['config']:20s} {r['run']:20s} failed: {r['error']}")
            continue
        ratio = f"{r['ratio_to_step']:6.2f}" if "ratio_to_step" in r else f"{'':6s}"
        print(
            f"{r['config']:20s} {r['run']:20s} {r['images_per_s']:7,} {r['epoch_162770_s']:8.1f} {ratio}  "
            f"{r['stage_wall_s']:6.0f} {r['host_peak_mb']:8,} {r.get('device_peak_allocated_mb', 0):10,}"
        )
    for name, config in CONFIGS.items():
        done = [r for r in rows if r["config"] == name and "epoch_162770_s" in r]
        if not done:
            continue
        best = min(done, key=lambda r: r["epoch_162770_s"])
        verdict = "met" if best["epoch_162770_s"] <= config.goal_s else "NOT met"
        print(
            f"{name}: fastest epoch {best['epoch_162770_s']:.1f} s ({best['run']}), goal {config.goal_s} s: {verdict}"
        )
        for r in done:
            if "ratio_to_step" in r:
                met = "met" if r["ratio_to_step"] >= GOAL_RATIO else "NOT met"
                print(f"  {r['run']}: {r['ratio_to_step']:.2f} of the step's rate, goal {GOAL_RATIO}: {met}")


def child_main(argv: list[str]) -> None:
    kind, rest = argv[0], argv[argv.index("--") + 1 :]
    if kind == "stage":
        stage_child(rest)
    else:
        params_file, shard_dir, mode, steps, warmup = rest
        figures = step_child(Path(params_file), Path(shard_dir), mode, int(steps), int(warmup))
        print("BENCH " + json.dumps(figures), flush=True)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", choices=list(CONFIGS), help="default: every configuration")
    p.add_argument(
        "--runs",
        nargs="+",
        default=["loader/eager", "resident/eager", "resident/compile", "resident/cudagraphs"],
        help="train stage runs, each PATH/MODE: train.data_on loader or resident, the model eager, compile or "
        "cudagraphs",
    )
    p.add_argument("--step-modes", nargs="+", choices=list(MODES), default=list(MODES))
    p.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE[,KEY=VALUE], a further run")
    p.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params for every run")
    p.add_argument("--limit-batches", type=int, default=0, help="batches per pass at most (0: whole epochs)")
    p.add_argument("--steps", type=int, default=100, help="timed steps of the step alone")
    p.add_argument("--warmup", type=int, default=20, help="steps of the step alone before timing")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2), help="train.workers")
    p.add_argument("--train-images", type=int, default=TRAIN)
    p.add_argument("--val-images", type=int, default=VAL)
    p.add_argument("--distinct", type=int, default=4096, help="distinct faces drawn, repeated to fill the splits")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/faceattrs-gpu-epoch"))
    p.add_argument("--cpu-smoke", action="store_true", help="run on the CPU to check the script (no measurement)")
    args = p.parse_args()
    for spec in args.runs:
        path, _, mode = spec.partition("/")
        if path not in ("loader", "resident") or mode not in MODES:
            p.error(f"--runs {spec}: PATH/MODE with PATH loader or resident and MODE one of {', '.join(MODES)}")
    if not torch.cuda.is_available() and not args.cpu_smoke:
        sys.exit(
            "gpu_epoch.py: no CUDA device (torch.cuda.is_available() is False); it measures the train stage on a "
            "GPU. --cpu-smoke runs it on the CPU at the sizes given, to check that it works"
        )
    if args.cpu_smoke and "cudagraphs" in args.step_modes + [r.split("/")[1] for r in args.runs]:
        p.error("--cpu-smoke: CUDA graphs need a GPU; leave cudagraphs out of --step-modes and --runs")
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu_smoke else "no GPU (--cpu-smoke)"
    print(f"{machine()}, {gpu}", flush=True)
    env = {**os.environ, "FACEATTRS_PROGRESS": "0", "PYTHONPATH": str(REPO)}
    args.workdir.mkdir(parents=True, exist_ok=True)
    raw = draw_faces(args.workdir / f"faces-{args.distinct}", args.distinct, args.workers)
    rows = []
    for name in args.config or list(CONFIGS):
        rows += measure_config(name, CONFIGS[name], args, raw, env)
    summary(rows)
    (args.workdir / "gpu_epoch.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
