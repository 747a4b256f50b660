"""How far the default run's figures move between machines: one row per (commit, machine) that ran `make repro`.

Each run of this script adds (or replaces) one row of bench/results/machine_spread.json: the
headline of a finished pipeline run (reports/evaluate/metrics.json) beside the machine that trained
its model (reports/evaluate/run.json). Rows of one commit are the same params, code and data, so
what differs between them is the machine. A commit's committed reports can be recorded too, from
git, naming the machine that made them where their run.json does not.

    make repro && python bench/machine_spread.py           # this workspace's run, on this machine
    python bench/machine_spread.py --repo ../old-clone --machine "AMD EPYC (avx2)"   # a run of an older commit
    python bench/machine_spread.py --commit 2242886 --machine "Intel Xeon (avx512f)"
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, save_result

ROOT = Path(__file__).resolve().parents[1]
# summary.json holds every figure; before it existed, metrics.json did.
SUMMARY, METRICS, RUN = "reports/evaluate/summary.json", "reports/evaluate/metrics.json", "reports/evaluate/run.json"
# The figures compared, by their path in the summary; an older commit's may lack the newer ones.
FIGURES = {
    "official_test.mean_accuracy": ("official_test", "mean_accuracy"),
    "test.mean_accuracy": ("test", "mean_accuracy"),
    "test.gender_fair_score": ("test", "gender_fair_score"),
    "test.flagged_labels": ("test", "flagged_labels"),
}


def _read(repo: Path, commit: str | None, path: str) -> dict | None:
    """A report of the workspace ``repo``, or as ``commit`` has it."""
    if commit is None:
        return json.loads((repo / path).read_text()) if (repo / path).exists() else None
    shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=repo, capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def _describe(machine: dict) -> str:
    return f"{machine.get('cpu', '?')} ({machine.get('instruction_set') or '?'})"


def row(repo: Path, commit: str | None, machine: str | None) -> dict:
    """The figures and the machine of the run in workspace ``repo``, or of ``commit``'s committed reports."""
    figures = _read(repo, commit, SUMMARY) or _read(repo, commit, METRICS)
    if figures is None:
        sys.exit(f"{commit or 'this workspace'}: no {SUMMARY} or {METRICS}; run `make repro` first")
    run = _read(repo, commit, RUN) or {}
    trained = run.get("trained_with") or {}
    if machine is None:
        if not trained.get("machine"):
            sys.exit(f"{RUN} does not say which machine trained the model: name it with --machine")
        machine = _describe(trained["machine"])
    made_by = commit or trained.get("git_commit") or run.get("git_commit") or "?"
    values = {name: figures.get(section, {}).get(key) for name, (section, key) in FIGURES.items()}
    return {"commit": made_by.removesuffix("+dirty")[:7], "machine": machine, **values}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--commit", help="record this commit's committed reports instead of this workspace's")
    p.add_argument("--machine", help="the machine that made them, where run.json does not say")
    p.add_argument("--repo", type=Path, default=ROOT, help="the workspace whose run to record (default: this one)")
    args = p.parse_args()
    new = row(args.repo, args.commit, args.machine)
    path = RESULTS / "machine_spread.json"
    rows = json.loads(path.read_text())["rows"] if path.exists() else []
    rows = [r for r in rows if (r["commit"], r["machine"]) != (new["commit"], new["machine"])] + [new]
    for r in rows:
        print(" ".join(f"{k}={v}" for k, v in r.items()))
    save_result("machine_spread", {"rows": rows})


if __name__ == "__main__":
    main()
