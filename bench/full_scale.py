"""Full scale: the synthetic source at 6,000, 24,000 and 202,599 images (CelebA's size), the data stages one by one.

At each size, runs each data stage's command as DVC would (download, dedupe, split,
preprocess, labels), in a scratch folder with every default on (the look-alike
confirmation and the no-face check of dedupe, the labels stage), and records its wall
time, its peak memory and its cost per image. Peak memory is the largest sum, sampled
every 0.2 s, of the proportional set sizes (PSS) of the whole process tree (the stage
and its workers), which counts the pages forked workers share with their parent once,
not once per process. The cost per image is the wall time less the stage's start
(its imports, timed once on their own) over the dataset's images. Dedupe's cost per image
at the second size may be at most 1.3 times its cost at the first (the pairs the
hashes propose grow faster than the images; see RESULTS.md, 6).

    python bench/full_scale.py [--sizes 6000 24000 202599] [--workdir /tmp/faceattrs-full] [-S KEY=VALUE]
    python bench/full_scale.py --sizes 300 600      # a check that the script works
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil
import yaml
from dvc.repo import Repo

from bench.common import machine

REPO = Path(__file__).resolve().parents[1]
STAGES = ("download", "dedupe", "split", "preprocess", "labels")
SIZES = (6_000, 24_000, 202_599)
# Dedupe's cost per image at the second size against the first, at most.
DEDUPE_GROWTH = 1.3


def commands(stages: dict) -> dict[str, str]:
    """The stage commands of dvc.yaml, as DVC resolves its variables."""
    with Repo(str(REPO)) as dvc:
        return {name: dvc.stage.collect(name)[0].cmd for name in stages}


def run(cmd: str, cwd: Path, env: dict) -> tuple[float, float, str]:
    """Wall seconds, peak memory of the process tree in MB, and the output of one stage command."""
    start = time.perf_counter()
    with open(cwd / "stage.log", "w") as log:  # the child keeps its own copy of the handle
        process = subprocess.Popen(cmd, shell=True, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.perf_counter() - start
    log.close()
    text = (cwd / "stage.log").read_text()
    if process.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{text[-3000:]}")
    return wall, peak / 2**20, text


def override(params: dict, assignment: str) -> None:
    """Apply one ``section.key=value`` (value in YAML, as ``dvc exp run -S`` takes it) to a params tree."""
    key, sep, value = assignment.partition("=")
    if not sep:
        raise SystemExit(f"-S {assignment}: expected KEY=VALUE")
    *parents, leaf = key.split(".")
    node = params
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)


def scratch_project(work: Path, images: int, overrides: list[str]) -> dict:
    """A fresh copy of the code in ``work`` with params.yaml at ``images`` synthetic images; returns the run env."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(REPO / "stages", work / "stages")
    shutil.copytree(REPO / "faceattrs", work / "faceattrs")
    write_params(work, [f"data.synthetic.num_images={images}", *overrides])
    return stage_env(work)


def stage_env(work: Path) -> dict:
    """The environment a stage command runs in, with ``work``'s copy of the code first on the path."""
    path = os.pathsep.join(filter(None, [str(work), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "FACEATTRS_PROGRESS": "0", "PYTHONPATH": path}


def write_params(work: Path, overrides: list[str]) -> None:
    """The repository's params.yaml with ``overrides`` applied, written into ``work``."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for assignment in overrides:
        override(params, assignment)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_stages(names, work: Path, env: dict) -> dict:
    """Run each named stage's command in ``work``, printing and returning its wall time, peak memory and last line."""
    results = {}
    for name, cmd in commands(names).items():
        wall, peak, text = run(cmd, work, env)
        results[name] = {"wall_s": round(wall, 1), "peak_pss_mb": round(peak), "said": text.strip().splitlines()[-1]}
        print(f"  {name:10s} {wall:8.1f} s  peak {peak:7.0f} MB (PSS)  | {results[name]['said']}", flush=True)
    return results


def start_seconds(names, env: dict) -> dict[str, float]:
    """Seconds each stage's process takes to start: Python and the stage's imports, timed once."""
    starts = {}
    for name in names:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import stages.{name}"], cwd=REPO, env=env, check=True)
        starts[name] = time.perf_counter() - began
    return starts


def at_size(size: int, work: Path, overrides: list[str], starts: dict[str, float], keep: bool) -> dict:
    """Every stage at ``size`` images, each with its cost per image; the scratch folder removed unless ``keep``."""
    env = scratch_project(work, size, overrides)
    print(f"synthetic source, {size:,} images, in {work}", flush=True)
    results = run_stages(STAGES, work, env)
    for name, result in results.items():
        result["ms_per_image"] = 1000 * max(result["wall_s"] - starts[name], 0.0) / size
    sizes = {
        d: sum(f.stat().st_size for f in (work / "data" / d).rglob("*") if f.is_file()) / 2**20
        for d in ("raw", "clean", "split", "shards", "labels")
    }
    print("  on disk: " + ", ".join(f"data/{d} {mb:,.0f} MB" for d, mb in sizes.items()), flush=True)
    if not keep:
        shutil.rmtree(work)
    return results


def table(results: dict[int, dict]) -> str:
    """Stage by size: wall time, peak PSS and cost per image (less the process start)."""
    lines = [
        f"{'':10s}" + "".join(f" | {f'{size:,} images':^28s}" for size in results),
        f"{'stage':10s}" + " | wall s   PSS MB  ms/image" * len(results),
    ]
    for name in STAGES:
        cells = [(r[name]["wall_s"], r[name]["peak_pss_mb"], r[name]["ms_per_image"]) for r in results.values()]
        lines.append(f"{name:10s}" + "".join(f" | {w:6.1f} {m:8,} {c:9.3f}" for w, m, c in cells))
    totals = [sum(r[name]["wall_s"] for name in STAGES) for r in results.values()]
    lines.append(f"{'total':10s}" + "".join(f" | {t:6.1f} {'':18s}" for t in totals))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="synthetic images, one run at each")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/faceattrs-full"), help="a folder per size inside")
    p.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params override KEY=VALUE")
    p.add_argument("--keep", action="store_true", help="keep the scratch folders")
    args = p.parse_args()
    print(machine(), flush=True)
    starts = start_seconds(STAGES, stage_env(REPO))
    print("process start: " + ", ".join(f"{name} {s:.1f} s" for name, s in starts.items()), flush=True)
    results = {size: at_size(size, args.workdir / str(size), args.overrides, starts, args.keep) for size in args.sizes}
    print(table(results))
    largest = max(results)
    under = results[largest]["preprocess"]["peak_pss_mb"] < 1024
    print(f"preprocess peak under 1 GB at {largest:,} images: {'yes' if under else 'NO'}")
    if len(args.sizes) > 1:
        first, second = args.sizes[:2]
        ratio = results[second]["dedupe"]["ms_per_image"] / max(results[first]["dedupe"]["ms_per_image"], 1e-9)
        verdict = "met" if ratio <= DEDUPE_GROWTH else "NOT met"
        print(
            f"dedupe per image: {results[first]['dedupe']['ms_per_image']:.3f} ms at {first:,} images, "
            f"{results[second]['dedupe']['ms_per_image']:.3f} ms at {second:,}: ratio {ratio:.2f}x "
            f"(target {DEDUPE_GROWTH}x or less: {verdict})"
        )
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "bench.json").write_text(json.dumps({"starts_s": starts, "sizes": results}, indent=2))


if __name__ == "__main__":
    main()
