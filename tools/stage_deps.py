"""dvc.yaml's code deps, derived from imports: each stage depends on exactly the project files its command imports.

DVC reruns a stage when one of its deps changes, so a module a stage imports but does
not list would leave its outputs stale. The deps are therefore derived here, by
following the imports (at any depth, lazy ones too) from the stage's module through
the project's own packages, plus the package data those modules name.

    python -m tools.stage_deps            # check: exit 1, listing each missing or extra dep
    python -m tools.stage_deps --write    # rewrite the code deps in dvc.yaml, comments kept
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The packages whose files are code deps; flows never run inside a stage.
PACKAGES = ("faceattrs", "stages")
RESOURCES = ROOT / "faceattrs" / "resources"
COMMAND = re.compile(r"python -m (stages\.\w+)")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a project module, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path, module: str, root: Path) -> set[str]:
    """Dotted names of the project modules one file imports."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            found.add(base)
            # ``from package import module`` imports a module, not only a name.
            found.update(f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}", root))
    return {name for name in found if module_file(name, root)}


def _resources(path: Path) -> set[Path]:
    """Package data files a module names in a string (``attribute_counts.tsv``)."""
    names = {p.name: p for p in RESOURCES.glob("*") if p.is_file()} if RESOURCES.is_dir() else {}
    strings = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}
    return {names[s] for s in strings if isinstance(s, str) and s in names}


def code_deps(module: str, root: Path = ROOT) -> list[str]:
    """Every project file that running ``module`` executes or reads as package data, sorted, relative to ``root``."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            if prefix not in seen and module_file(prefix, root):
                seen.add(prefix)
                todo.extend(_imports(module_file(prefix, root), prefix, root) - seen)
    files = {module_file(name, root) for name in seen}
    files |= {res for f in list(files) for res in _resources(f)}
    return sorted(str(f.relative_to(root)) for f in files)


def _is_code(dep: str) -> bool:
    return dep.endswith(".py") or dep.startswith("faceattrs/resources/")


def stage_modules(dvc_yaml: dict) -> dict[str, str]:
    """Stage name -> the module its command runs."""
    out = {}
    for name, stage in dvc_yaml["stages"].items():
        match = COMMAND.search(stage["cmd"])
        if match:
            out[name] = match.group(1)
    return out


def differences(root: Path = ROOT) -> dict[str, dict[str, list[str]]]:
    """Per stage, the code deps dvc.yaml is missing and the ones it lists but the command never imports."""
    import yaml

    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    out = {}
    for name, module in stage_modules(dvc_yaml).items():
        listed = {d for d in dvc_yaml["stages"][name].get("deps", []) if isinstance(d, str) and _is_code(d)}
        derived = set(code_deps(module, root))
        if listed != derived:
            out[name] = {"missing": sorted(derived - listed), "extra": sorted(listed - derived)}
    return out


def write(root: Path = ROOT) -> None:
    """Replace each stage's code deps in dvc.yaml by the derived ones, after its data deps."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    doc = yaml.load(path.read_text())
    for name, module in stage_modules(doc).items():
        deps = doc["stages"][name]["deps"]
        data = [d for d in deps if not (isinstance(d, str) and _is_code(d))]
        deps.clear()
        deps.extend(data + code_deps(module, root))
    with path.open("w") as handle:
        yaml.dump(doc, handle)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    args = p.parse_args(argv)
    if args.write:
        write()
    diff = differences()
    for stage, what in diff.items():
        for kind in ("missing", "extra"):
            for dep in what[kind]:
                print(f"dvc.yaml: stage {stage}: {kind} code dep {dep}")
    if diff:
        print("run `python -m tools.stage_deps --write` to derive them from the imports", file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
