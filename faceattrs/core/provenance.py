"""What every output records about how it was made: the resolved params, the git commit and the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from faceattrs import __version__


def git_commit(cwd: Path | str = ".") -> str | None:
    """The checked-out commit, with ``+dirty`` when tracked files differ; None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        # The pipeline rewrites its own tracked reports and lock file: those are not code changes.
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports", ":!dvc.lock"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


# The x86 instruction sets that change which kernels oneDNN, MKL and ATen run, highest first.
INSTRUCTION_SETS = ("avx512f", "avx2", "avx", "sse4_2")


def machine() -> dict:
    """The CPU (model, cores, highest instruction set), torch and the GPU if any: the same params, code and data
    train the same model on one machine, and other bytes where the instruction set differs."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    cpu = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the platform's word for the CPU
        pass
    found = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "instruction_set": next((f for f in INSTRUCTION_SETS if f in flags), None),
    }
    torch = sys.modules.get("torch")  # only where the stage has loaded it: importing torch takes seconds
    if torch is not None:
        found["torch"] = torch.__version__
        found["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return found


def provenance(params: dict) -> dict:
    return {"faceattrs_version": __version__, "git_commit": git_commit(), "machine": machine(), "params": params}
