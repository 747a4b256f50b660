"""Full scale: the synthetic source at CelebA's size (202,599 images), download through preprocess, stage by stage.

Runs each stage command as DVC would, in a scratch folder, and records its wall time
and peak memory: the largest sum, sampled every 0.2 s, of the proportional set
sizes (PSS) of the whole process tree (the stage and its workers), which counts
the pages forked workers share with their parent once, not once per process.

    python bench/full_scale.py [--images 202599] [--workdir /tmp/faceattrs-full] [-S preprocess.size=[224,224]]
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
STAGES = ("download", "dedupe", "split", "preprocess")


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=202_599)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/faceattrs-full"))
    p.add_argument("-S", "--set", dest="overrides", action="append", default=[], help="params override KEY=VALUE")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args()
    work = args.workdir
    env = scratch_project(work, args.images, args.overrides)
    print(f"{machine()}\nsynthetic source, {args.images:,} images, in {work}")
    results = run_stages(STAGES, work, env)
    sizes = {
        d: sum(f.stat().st_size for f in (work / "data" / d).rglob("*") if f.is_file()) / 2**20
        for d in ("raw", "clean", "split", "shards")
    }
    print("  on disk: " + ", ".join(f"data/{d} {mb:,.0f} MB" for d, mb in sizes.items()))
    total = sum(r["wall_s"] for r in results.values())
    print(
        f"  total {total:.0f} s; preprocess peak under 1 GB: "
        f"{'yes' if results['preprocess']['peak_pss_mb'] < 1024 else 'NO'}"
    )
    (work / "bench.json").write_text(json.dumps(results, indent=2))
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
