"""The library's layers: each subpackage imports only the ones below it, so none can be read without its own base."""

from __future__ import annotations

import pytest

from faceattrs.core import code_deps
from tests.conftest import REPO

# Lowest first. A subpackage may import its own modules and those of any layer below its own.
LAYERS = (
    ("core",),
    ("data",),
    ("synthetic", "faces"),
    ("cleaning",),
    ("training",),
    ("prediction",),
    ("evaluation",),
    ("reports",),
    ("recipes",),
)
LEVEL = {package: level for level, packages in enumerate(LAYERS) for package in packages}


def _modules() -> list[str]:
    root = REPO / "faceattrs"
    return sorted(
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for path in root.rglob("*.py")
        if path.parent != root
    )


def test_every_subpackage_has_a_layer():
    packages = {name.split(".")[1] for name in _modules()}
    assert packages == set(LEVEL), "place the new subpackage in LAYERS"


@pytest.mark.parametrize("module", _modules())
def test_imports_only_go_down(module):
    package = module.split(".")[1]
    path = code_deps.module_file(module)
    climbs = []
    for imported in code_deps.imports(path, module, code_deps.ROOT):
        parts = imported.split(".")
        if parts[0] != "faceattrs" or len(parts) < 2 or parts[1] not in LEVEL:
            continue
        other = parts[1]
        if other != package and LEVEL[other] >= LEVEL[package]:
            climbs.append(imported)
    assert not climbs, f"{module} imports {climbs}, which are not below {package}"
