"""The figures of README.md and docs/*.md, written from the committed reports and benchmark results, never by hand.

Each figure block sits between ``<!-- figures: NAME -->`` and ``<!-- /figures -->``;
its text is made by the renderer of that NAME from files under reports/ or
bench/results/ (and the recipes' seed tables). A block whose input is missing fails,
naming the file and the command that writes it; a number that looks like a measured
accuracy typed outside a block fails too.

    python -m tools.readme_figures            # check: exit 1 naming each stale block, missing input or typed figure
    python -m tools.readme_figures --write    # rewrite every block whose inputs exist; exit 1 if any is missing
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- figures: ([\w-]+) -->\n)(.*?)(<!-- /figures -->)", re.S)
# Written by tools/recipe_tables.py, with the seeds' own words (their published accuracies among them).
GENERATED = ("docs/recipes.md",)
# What looks like a measured accuracy: 0.9426, 1.0000, 94.26% or 91.71 %. Not a value given to a key
# (`optimizer.lr=0.002`), nor part of a longer name or number (a sentence's full stop may follow).
TYPED = re.compile(r"(?<![\w.=:/-])(?:0\.\d{3,}|1\.0{3,}|\d{1,3}\.\d+ ?%)(?!\w|\.\d)")

# The command that writes each input the renderers read.
WRITERS = {
    "reports/": "`dvc repro` (the stages write reports/)",
    "bench/results/recipe_accuracy.json": "`python bench/recipe_accuracy.py`",
    "bench/results/training_time_data_on.json": "`python bench/training_time.py --compare data_on`",
    "bench/results/cpu_isa.json": "`python bench/cpu_isa.py`",
    "bench/results/machine_spread.json": "`python bench/machine_spread.py` after `make repro`",
    "faceattrs/recipes/seeds/": "the recipes' seed tables (faceattrs/recipes/seeds/)",
}

# The folders that hold them.
INPUT_FOLDERS = sorted({key if key.endswith("/") else key.rsplit("/", 1)[0] + "/" for key in WRITERS})


class FigureError(Exception):
    """A figure block that cannot be written: no renderer of its name, or an input missing."""


class MissingInput(FigureError):
    """A figure block's input file is absent, or written in a form without the figure the block shows."""


def _writer(path: str) -> str:
    return next((how for prefix, how in WRITERS.items() if path.startswith(prefix)), "its producer")


def _file(root: Path, path: str) -> Path:
    if not (root / path).is_file():
        raise MissingInput(f"{path} is missing; {_writer(path)} writes it")
    return root / path


def _json(root: Path, path: str) -> dict:
    return json.loads(_file(root, path).read_text())


def _field(data: dict, key: str, path: str):
    if key not in data:
        raise MissingInput(f"{path} has no {key!r} (written by an older version?); {_writer(path)} writes it anew")
    return data[key]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _bench_source(record: dict) -> str:
    return f"Measured by `{record.get('command', '?')}` on {record.get('machine', 'an unrecorded machine')}."


# ---------------------------------------------------------------- reports/


def headline(root: Path) -> str:
    """The evaluate stage's headline (metrics.json): the official test partition, the cleaned test split, val."""
    path = "reports/evaluate/metrics.json"
    metrics = _json(root, path)
    official, test, val = (_field(metrics, split, path) for split in ("official_test", "test", "val"))
    lines = [
        "| the default run | official test | test (cleaned) | val |",
        "|---|---|---|---|",
        f"| mean accuracy | {_pct(official.get('mean_accuracy'))} | {_pct(test.get('mean_accuracy'))} | "
        f"{_pct(val.get('mean_accuracy'))} |",
        f"| majority-class baseline | {_pct(official.get('majority_baseline'))} | "
        f"{_pct(test.get('majority_baseline'))} | - |",
        "",
        f"Official test: the {official.get('images', 0):,} readable images of the published test partition, "
        "labels as published (the figure to set beside published results); test: the test split after cleaning "
        f"(`dvc metrics show {path}`). {_trained_on(root)}",
    ]
    return "\n".join(lines) + "\n"


def _trained_on(root: Path) -> str:
    """Which machine trained the model these figures score (reports/evaluate/run.json): another CPU's differ."""
    path = "reports/evaluate/run.json"
    trained = _field(_json(root, path), "trained_with", path)
    m = trained.get("machine") or {}
    isa = m.get("instruction_set") or "unknown instruction set"
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return f"Trained on {m.get('cpu', 'an unrecorded machine')} ({m.get('cores', '?')} cores, {isa}{gpu})."


def official_test(root: Path) -> str:
    """How cleaning changed the official test partition (summary.json's official_test)."""
    path = "reports/evaluate/summary.json"
    official = _field(_json(root, path), "official_test", path)
    lines = [
        "| the official test partition | images |",
        "|---|---|",
        f"| readable, scored as `official_test` | {official['images']:,} |",
        f"| unreadable, left out of both figures | {official['unreadable']:,} |",
        f"| left out of the cleaned splits by dedupe | {official['left_out_by_cleaning']:,} |",
        f"| held by a cleaned train or val split (a split other than official) | {official['in_training']:,} |",
        f"| with a duplicate in a cleaned train or val split | {official['copies_in_training']:,} |",
        "",
        f"Mean accuracy {_pct(official['mean_accuracy'])} on it against a majority-class baseline of "
        f"{_pct(official['majority_baseline'])}.",
    ]
    return "\n".join(lines) + "\n"


def cleaning(root: Path) -> str:
    summary = _json(root, "reports/dedupe/summary.json")
    truth = summary["against_planted_truth"]
    near, no_face = summary["near_candidates"], summary["no_face"]
    lines = [
        "| against the planted flaws | value |",
        "|---|---|",
        *(
            f"| {name.replace('_', ' ')} | {value if isinstance(value, int) else _pct(value)} |"
            for name, value in truth.items()
            if value is not None
        ),
        "",
        f"{summary['images_kept']:,} of {summary['images_listed']:,} images kept; the hashes proposed "
        f"{near['proposed']:,} near pairs, of which {near['same_photo']} were confirmed as the same photo; "
        f"{no_face['found']} images had no face "
        f"(`dvc metrics show reports/dedupe/summary.json`).",
    ]
    return "\n".join(lines) + "\n"


def splits(root: Path) -> str:
    """The split stage's sizes, identities and leakage (reports/split/summary.json)."""
    summary = _json(root, "reports/split/summary.json")
    sizes, identities = summary["sizes"], summary["identities"]
    lines = [
        "| split | images | identities |",
        "|---|---|---|",
        *(f"| {name} | {sizes[name]:,} | {identities[name]:,} |" for name in sizes),
        "",
        f"{summary['duplicate_groups_across_splits']} duplicate groups have members in more than one split; after "
        f"cleaning, which keeps one image of each, {summary['duplicate_groups_leaking']} still leak.",
    ]
    return "\n".join(lines) + "\n"


def default_run(root: Path) -> str:
    test = _field(_json(root, "reports/evaluate/summary.json"), "test", "reports/evaluate/summary.json")
    rows = [
        ("mean accuracy, all attributes", test["mean_accuracy"]),
        ("majority-class baseline", test["majority_baseline"]),
        ("mean accuracy, the drawn attributes", test.get("mean_accuracy_drawn")),
        ("best the planted label noise allows on them", test.get("noise_ceiling_drawn")),
        ("gender-fair score (mean over attributes)", test["gender_fair_score"]),
    ]
    lines = ["| measure (test split) | value |", "|---|---|"]
    lines += [f"| {name} | {_pct(value)} |" for name, value in rows if value is not None]
    table = pd.read_csv(_file(root, "reports/evaluate/per_attribute.csv"))
    test_rows = _json(root, "reports/split/summary.json")["sizes"]["test"]
    below = table[table["accuracy"] < table["majority_baseline"]]
    lines.append("")
    if below.empty:
        lines.append("No attribute is below its majority-class baseline.")
    else:
        worst = ", ".join(
            f"{r.attribute} ({_pct(r.accuracy)} against {_pct(r.majority_baseline)}, "
            f"{round((r.majority_baseline - r.accuracy) * test_rows)} of {test_rows:,} test images)"
            for r in below.itertuples()
        )
        lines.append(f"Below the majority-class baseline: {worst}.")
    if "drawn" in table:
        undrawn = ", ".join(f"{r.attribute} {_pct(r.accuracy)}" for r in table[~table["drawn"]].itertuples())
        lines.append(f"Not drawn by the generator, so learnable only through correlations: {undrawn}.")
    return "\n".join(lines) + "\n"


def training_time(root: Path) -> str:
    """The committed run's epochs and their times (dvclive's reports/train/plots/metrics/*.tsv)."""
    folder = "reports/train/plots/metrics"
    epochs = pd.read_csv(_file(root, f"{folder}/epoch_time_s.tsv"), sep="\t")["epoch_time_s"]
    training = pd.read_csv(_file(root, f"{folder}/train_time_s.tsv"), sep="\t")["train_time_s"]
    return (
        f"The committed run trained {len(epochs)} epochs, each {epochs.min():.1f} to {epochs.max():.1f} s "
        f"({training.sum():.0f} s of training in all; `{folder}/epoch_time_s.tsv`).\n"
    )


def label_errors(root: Path) -> str:
    test = _field(_json(root, "reports/evaluate/summary.json"), "test", "reports/evaluate/summary.json")
    methods = {
        "confident_learning": "confident learning (cleanlab)",
        "confident_disagreement": "baseline: a confident model disagrees (p > 0.9)",
    }
    lines = [
        "| test labels flagged by | flagged | planted wrong labels | precision | recall |",
        "|---|---|---|---|---|",
    ]
    for key, name in methods.items():
        found = test.get(f"label_issues_{key}")
        if found:
            lines.append(
                f"| {name} | {found['flagged']} | {found['wrong']} | {_pct(found['precision'])} | "
                f"{_pct(found['recall'])} |"
            )
    lines += [
        "",
        f"Test mean accuracy {_pct(test['mean_accuracy'])} against the published labels, "
        f"{_pct(test['mean_accuracy_unflagged'])} with the {test['flagged_labels']} flagged ones left out; "
        f"over the drawn attributes {_pct(test['mean_accuracy_drawn'])} against the published labels and "
        f"{_pct(test['clean_labels_accuracy_drawn'])} against the clean ones.",
    ]
    return "\n".join(lines) + "\n"


def labels_stage(root: Path) -> str:
    """What the labels stage did to the training labels (reports/labels/summary.json)."""
    s = _json(root, "reports/labels/summary.json")
    return (
        f"The committed run: `labels.method: {s['method']}`, `labels.policy: {s['policy']}`; "
        f"{s['flagged_labels']:,} of the training labels of {s['images']:,} images flagged, "
        f"{s['labels_changed']:,} changed.\n"
    )


# ---------------------------------------------------------------- bench/results/


def _rows(root: Path, path: str) -> tuple[dict, list[dict]]:
    record = _json(root, path)
    rows = _field(record, "rows", path)
    return record, list(rows.values()) if isinstance(rows, dict) else rows


def recipes(root: Path) -> str:
    """Each recipe trained here (bench/results/recipe_accuracy.json) beside its seed's published figure."""
    record, rows = _rows(root, "bench/results/recipe_accuracy.json")
    lines = [
        "| recipe | size here | epochs | training (s) | official test | test (cleaned) | majority baseline | "
        "precision | recall | its seed's published figure (real CelebA, its own set-up) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    below = []
    for r in rows:
        seed = yaml.safe_load(_file(root, f"faceattrs/recipes/seeds/{r['name']}.yaml").read_text())
        lines.append(
            f"| `{r['name']}` | {_cell(r.get('size', '-'))} | {r.get('epochs', '-')} | {r['train_s']:.0f} | "
            f"{_pct(r.get('official_test_accuracy'))} | {_pct(r['mean_accuracy'])} | {_pct(r['majority_baseline'])} "
            f"| {_pct(r.get('precision'))} | {_pct(r.get('recall'))} | “{_cell(seed['published'])}” |"
        )
        if r["mean_accuracy"] < r["majority_baseline"]:
            below.append(f"`{r['name']}`")
    lines += [
        "",
        f"Under their majority-class baseline on test: {', '.join(below)}."
        if below
        else "No recipe is under its majority-class baseline on test.",
        f"Images at {record.get('factor', '?')} of each recipe's size, from scratch, at most "
        f"{record.get('heavy_epochs', '?')} epochs for the largest backbones. {_bench_source(record)}",
    ]
    return "\n".join(lines) + "\n"


def data_on(root: Path) -> str:
    """The loader against resident data (bench/results/training_time_data_on.json)."""
    path = "bench/results/training_time_data_on.json"
    record, rows = _rows(root, path)
    lines = [
        "| train.data_on | training (s) | last epoch (s) | test mean accuracy |",
        "|---|---|---|---|",
        *(
            f"| {r['name']} | {r['train_s']:.0f} | "
            f"{'-' if r.get('last_epoch_s') is None else format(r['last_epoch_s'], '.1f')} | "
            f"{_pct(r.get('mean_accuracy'))} |"
            for r in rows
        ),
        "",
        f"Loader time over resident time: {_field(record, 'ratio', path):.2f}x; the same model, byte for byte: "
        f"{'yes' if record.get('same_model') else 'no'}. {_bench_source(record)}",
    ]
    return "\n".join(lines) + "\n"


def cpu_isa(root: Path) -> str:
    """The default training at the CPU's own instruction set and pinned lower (bench/results/cpu_isa.json)."""
    path = "bench/results/cpu_isa.json"
    record = _json(root, path)
    rows = _field(record, "rows", path)
    lines = [
        "| configuration | ATen's instruction set | training (s) | time against default | same model bytes |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        ratio = "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        same = "-" if r.get("same_model") is None else ("yes" if r["same_model"] else "no")
        lines.append(f"| {name} | {r.get('isa', '-')} | {r['seconds']:.1f} | {ratio} | {same} |")
    sets = " ".join(record.get("instruction_sets", []))
    epochs = record.get("epochs", "?")
    lines += ["", f"{epochs} epochs; the CPU's instruction sets: {sets or '-'}. {_bench_source(record)}"]
    return "\n".join(lines) + "\n"


def machine_spread(root: Path) -> str:
    """The default run's figures on each machine that ran it, by commit (bench/results/machine_spread.json)."""
    record, rows = _rows(root, "bench/results/machine_spread.json")
    lines = [
        "| commit | machine that trained | official test | test (cleaned) | gender-fair | flagged labels |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        flagged = "-" if r.get("test.flagged_labels") is None else f"{r['test.flagged_labels']:,}"
        lines.append(
            f"| {r['commit']} | {r['machine']} | {_pct(r.get('official_test.mean_accuracy'))} | "
            f"{_pct(r.get('test.mean_accuracy'))} | {_pct(r.get('test.gender_fair_score'))} | {flagged} |"
        )
    spreads = []
    for commit in dict.fromkeys(r["commit"] for r in rows):
        accuracies = [r["test.mean_accuracy"] for r in rows if r["commit"] == commit]
        if len(accuracies) > 1:
            spreads.append(f"{commit}: {max(accuracies) - min(accuracies):.5f} across {len(accuracies)} machines")
    spread = "; ".join(spreads) or "no commit has run on two machines yet"
    lines += ["", f"Spread of test mean accuracy at one commit: {spread}. {_bench_source(record)}"]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[Path], str]] = {
    "headline": headline,
    "official-test": official_test,
    "cleaning": cleaning,
    "splits": splits,
    "default-run": default_run,
    "training-time": training_time,
    "label-errors": label_errors,
    "labels-stage": labels_stage,
    "recipes": recipes,
    "data-on": data_on,
    "cpu-isa": cpu_isa,
    "machine-spread": machine_spread,
}


# ---------------------------------------------------------------- pages


def pages(root: Path = ROOT) -> list[str]:
    """The pages whose figure blocks are written here: README.md and docs/*.md, less the generated ones."""
    docs = sorted(str(p.relative_to(root)) for p in (root / "docs").glob("*.md"))
    return ["README.md", *(p for p in docs if p not in GENERATED)]


def _fill(text: str, page: str, root: Path, failed: dict[str, str]) -> str:
    """``text`` with each block rewritten from its inputs; a block that cannot be (no renderer of its name, an
    input missing) is left as it is, and ``failed`` maps its name to why."""

    def fill(match: re.Match) -> str:
        name = match.group(2)
        try:
            if name not in RENDERERS:
                raise FigureError(f"no renderer of that name; known: {', '.join(RENDERERS)}")
            return match.group(1) + RENDERERS[name](root) + match.group(4)
        except FigureError as err:
            failed[name] = f"{page}: figures block {name!r} cannot be written: {err}"
            return match.group(0)

    return BLOCK.sub(fill, text)


def render(text: str, root: Path = ROOT, page: str = "README.md") -> str:
    """``text`` with every figure block rewritten from the inputs under ``root``; FigureError naming every block
    that cannot be."""
    failed: dict[str, str] = {}
    out = _fill(text, page, root, failed)
    if failed:
        raise FigureError("\n".join(failed.values()))
    return out


def typed_figures(text: str) -> list[tuple[int, str]]:
    """(line number, text) of each number outside the figure blocks that looks like a measured accuracy."""
    # Blocks blanked line for line, so the numbers found keep their line numbers.
    outside = BLOCK.sub(lambda m: m.group(1) + "\n" * m.group(3).count("\n") + m.group(4), text)
    return [
        (number, found.group(0))
        for number, line in enumerate(outside.splitlines(), 1)
        for found in TYPED.finditer(line)
    ]


def problems(root: Path = ROOT) -> list[str]:
    """Every figure block whose input is missing or whose text differs from its inputs, and every figure typed by
    hand outside a block, one line each; empty when the pages are the inputs' figures."""
    found: list[str] = []
    for page in pages(root):
        text = (root / page).read_text()
        failed: dict[str, str] = {}
        fresh = {m.group(2): m.group(3) for m in BLOCK.finditer(_fill(text, page, root, failed))}
        found += failed.values()
        found += [
            f"{page}: figures block {m.group(2)!r} differs from its inputs"
            for m in BLOCK.finditer(text)
            if m.group(2) not in failed and fresh[m.group(2)] != m.group(3)
        ]
        found += [f"{page}:{n}: {figure!r} typed by hand outside a figures block" for n, figure in typed_figures(text)]
    return found


def committed(root: Path, dest: Path) -> Path:
    """``dest`` holding ``root``'s pages beside the figures' inputs as git's HEAD has them.

    A `dvc repro` of one's own rewrites reports/ with that run's figures: its timings, and on another CPU its
    accuracies. The pages describe the committed run, so they are checked against the committed inputs.
    """

    def git(*args: str) -> bytes:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, check=True).stdout

    # git archive refuses a path HEAD lacks; a missing input is then named by the check, as in the workspace.
    folders = git("ls-tree", "-d", "--name-only", "HEAD", "--", *(f.rstrip("/") for f in INPUT_FOLDERS)).split()
    dest.mkdir(parents=True, exist_ok=True)
    if folders:
        with tarfile.open(fileobj=io.BytesIO(git("archive", "HEAD", "--", *map(bytes.decode, folders)))) as archive:
            # Extraction filters came with Python 3.11.4; older 3.11s extract git's own archive of HEAD as it is.
            archive.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    for page in pages(root):
        (dest / page).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / page, dest / page)
    return dest


def stale_blocks(root: Path = ROOT) -> list[str]:
    """``page: name`` of each figure block whose text differs from what its inputs give; FigureError if one cannot
    be written."""
    stale = []
    for page in pages(root):
        text = (root / page).read_text()
        fresh = {m.group(2): m.group(3) for m in BLOCK.finditer(render(text, root, page))}
        stale += [f"{page}: {m.group(2)}" for m in BLOCK.finditer(text) if fresh[m.group(2)] != m.group(3)]
    return stale


def blocks(root: Path = ROOT) -> set[str]:
    """The names of the figure blocks on every page."""
    return {m.group(2) for page in pages(root) for m in BLOCK.finditer((root / page).read_text())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite the figure blocks whose inputs exist")
    args = p.parse_args(argv)
    if args.write:
        for page in pages():
            path = ROOT / page
            text = path.read_text()
            written = _fill(text, page, ROOT, {})
            if written != text:
                path.write_text(written)
    found = problems()
    for line in found:
        print(line)
    if any("differs from its inputs" in line for line in found):
        print("run `python -m tools.readme_figures --write`", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
