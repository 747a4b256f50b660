"""A stage's code: the project files its command imports, found by reading imports, and their digest.

DVC reruns a stage when one of its deps changes, so dvc.yaml lists as code deps
exactly the project files a stage's command imports (at any depth, lazy imports too),
plus the package data those modules name. The same derivation gives the train stage
the code its checkpoints were made with, so that it resumes only where DVC would call
the run the same one.

One exception keeps a change to one params section from rerunning every stage: a
stage loads the whole schema to validate params.yaml, but its outputs depend only on
the sections it reads. The schema's section modules (``faceattrs/core/params/<section>.py``)
are therefore deps only of the stages that declare that section in ``PARAMS``; a stage
that reads any other section fails at run time (``faceattrs.core.stage.params_of``).
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The packages whose files are code deps; flows never run inside a stage.
PACKAGES = ("faceattrs", "stages")
SCHEMA = "faceattrs.core.params"
# The schema's modules that are not one section's: every stage that loads params runs them.
SCHEMA_SHARED = ("base",)


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a project module, or None for anything outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports(path: Path, module: str, root: Path) -> set[str]:
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


def _resources(path: Path, root: Path) -> set[Path]:
    """Package data files a module names in a string (``attribute_counts.tsv``)."""
    folder = root / "faceattrs" / "resources"
    names = {p.name: p for p in folder.glob("*") if p.is_file()} if folder.is_dir() else {}
    strings = {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)}
    return {names[s] for s in strings if isinstance(s, str) and s in names}


def declared_params(module: str, root: Path = ROOT) -> tuple[str, ...]:
    """The params keys a stage module declares it reads: its ``PARAMS`` tuple, read without importing it."""
    path = module_file(module, root)
    if path is None:
        return ()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PARAMS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


def section_of(module: str) -> str | None:
    """The params section a schema module holds (``faceattrs.core.params.train`` -> train); None for others."""
    package, _, name = module.rpartition(".")
    return name if package == SCHEMA and name not in SCHEMA_SHARED else None


def code_deps(module: str, root: Path = ROOT) -> list[str]:
    """Every project file that running ``module`` executes or reads as package data, sorted, relative to ``root``.

    Of the schema's section modules, only those of the sections ``module`` declares in ``PARAMS``.
    """
    sections = {key.split(".")[0] for key in declared_params(module, root)}
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parts = name.split(".")
        for k in range(1, len(parts) + 1):
            prefix = ".".join(parts[:k])
            section = section_of(prefix)
            if prefix in seen or not module_file(prefix, root) or (section and section not in sections):
                continue
            seen.add(prefix)
            todo.extend(imports(module_file(prefix, root), prefix, root) - seen)
    files = {module_file(name, root) for name in seen}
    files |= {res for f in list(files) for res in _resources(f, root)}
    return sorted(str(f.relative_to(root)) for f in files)


def digests(module: str, root: Path = ROOT) -> dict[str, str]:
    """The sha256 of each code dep of ``module``, by path: what a checkpoint records of the code that made it."""
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in code_deps(module, root)}
