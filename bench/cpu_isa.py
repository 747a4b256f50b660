"""Does the instruction set change the model? The train stage run at the CPU's own ISA and with it pinned lower.

Each configuration trains the default model from scratch on the pipeline's shards
(data/shards) in a fresh process with the given environment, for ``--epochs`` epochs,
and prints the digest of the trained weights, the training time and the ratio
against the machine's default: equal digests mean the same model bytes. The
pins are the three libraries' own switches: oneDNN's ``ONEDNN_MAX_CPU_ISA`` (the
convolutions), ATen's ``ATEN_CPU_CAPABILITY`` (its vectorised element-wise
kernels) and MKL's ``MKL_ENABLE_INSTRUCTIONS`` (matrix products).

    python bench/cpu_isa.py                       # default, then each pin, 2 epochs
    python bench/cpu_isa.py --epochs 11 --only default --only avx2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, save_result

ROOT = Path(__file__).resolve().parents[1]
# Each configuration's environment on top of the caller's.
CONFIGS = {
    "default": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "sse41": {"ONEDNN_MAX_CPU_ISA": "SSE41", "ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
}

TRAIN = """
import hashlib, json, sys, time
from pathlib import Path
import torch
from faceattrs.core.params import load_params
from faceattrs.training.checkpoints import ModelFile
from faceattrs.training.run import train
params = load_params(sys.argv[1])
out = Path(sys.argv[3])
start = time.perf_counter()
train(params, Path(sys.argv[2]), out / "models", out / "live", progress=False)
seconds = time.perf_counter() - start
weights = ModelFile.load(out / "models" / "model.pt").state_dict
digest = hashlib.sha256(b"".join(t.contiguous().numpy().tobytes() for _, t in sorted(weights.items()))).hexdigest()
print(json.dumps({"seconds": seconds, "digest": digest, "isa": torch.backends.cpu.get_cpu_capability()}))
"""


def run(name: str, params_file: Path, shards: Path, work: Path) -> dict:
    env = {**os.environ, **CONFIGS[name], "FACEATTRS_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    out = work / name
    result = subprocess.run(
        [sys.executable, "-c", TRAIN, str(params_file), str(shards), str(out)],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        sys.exit(f"{name}: training failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=Path, default=ROOT / "data" / "shards", help="the pipeline's shards")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--only", action="append", choices=list(CONFIGS), help="run these configurations only")
    args = p.parse_args()
    if not (args.shards / "manifest.json").exists():
        sys.exit(f"{args.shards}: no shards; run `dvc repro preprocess` first")
    import yaml

    print(machine())
    with open("/proc/cpuinfo") as info:
        flags = next((line for line in info if line.startswith("flags")), "").split()
    isas = sorted(f for f in flags if f.startswith(("avx", "amx", "sse4")))
    print("CPU instruction sets:", " ".join(isas))
    with tempfile.TemporaryDirectory(prefix="faceattrs-isa-") as tmp:
        work = Path(tmp)
        raw = yaml.safe_load(args.params.read_text())
        raw.setdefault("train", {})["epochs"] = args.epochs
        params_file = work / "params.yaml"
        params_file.write_text(yaml.safe_dump(raw))
        rows = {}
        for name in args.only or list(CONFIGS):
            rows[name] = run(name, params_file, args.shards, work)
            r = rows[name]
            print(f"{name:<8} ATen {r['isa']:<8} {r['seconds']:7.1f} s  weights {r['digest'][:16]}", flush=True)
    base = rows.get("default")
    if base:
        for name, r in rows.items():
            r["ratio"], r["same_model"] = r["seconds"] / base["seconds"], r["digest"] == base["digest"]
            same = "same model bytes" if r["same_model"] else "OTHER model bytes"
            print(f"{name} against default: time ratio {r['ratio']:.2f}x, {same}")
    save_result("cpu_isa", {"epochs": args.epochs, "instruction_sets": isas, "rows": rows})


if __name__ == "__main__":
    main()
