"""dvc.yaml's code deps and params, derived: each stage lists exactly what its command imports and reads.

DVC reruns a stage when one of its deps or params changes, so a module a stage imports
but does not list, or a params section it reads but does not list, would leave its
outputs stale. The code deps come from following the imports
(``faceattrs.core.code_deps``); the params from the ``PARAMS`` tuple each stage module
declares, which the stage also enforces when it reads params.yaml.

    python -m tools.stage_deps            # check: exit 1, listing each missing or extra dep or param
    python -m tools.stage_deps --write    # rewrite the code deps and params in dvc.yaml, comments kept
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from faceattrs.core.code_deps import ROOT, code_deps, declared_params

COMMAND = re.compile(r"python -m (stages\.\w+)")


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
    """Per stage, the code deps and params dvc.yaml is missing and the ones it lists that the command never reads."""
    import yaml

    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())
    out = {}
    for name, module in stage_modules(dvc_yaml).items():
        stage = dvc_yaml["stages"][name]
        listed = {d for d in stage.get("deps", []) if isinstance(d, str) and _is_code(d)}
        derived = set(code_deps(module, root))
        params, declared = set(stage.get("params", [])), set(declared_params(module, root))
        diff = {
            "missing": sorted(derived - listed),
            "extra": sorted(listed - derived),
            "missing param": sorted(declared - params),
            "extra param": sorted(params - declared),
        }
        if any(diff.values()):
            out[name] = diff
    return out


def write(root: Path = ROOT) -> None:
    """Replace each stage's code deps (after its data deps) and params in dvc.yaml by the derived ones."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    doc = yaml.load(path.read_text())
    for name, module in stage_modules(doc).items():
        stage = doc["stages"][name]
        deps = stage["deps"]
        data = [d for d in deps if not (isinstance(d, str) and _is_code(d))]
        deps.clear()
        deps.extend(data + code_deps(module, root))
        declared = list(declared_params(module, root))
        if declared and "params" in stage:
            stage["params"].clear()
            stage["params"].extend(declared)
        elif declared:
            stage.insert(list(stage).index("deps") + 1, "params", declared)
        elif "params" in stage:
            del stage["params"]
    with path.open("w") as handle:
        yaml.dump(doc, handle)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps and params")
    args = p.parse_args(argv)
    if args.write:
        write()
    diff = differences()
    for stage, what in diff.items():
        for kind, items in what.items():
            for item in items:
                print(f"dvc.yaml: stage {stage}: {kind} {'code dep ' if 'param' not in kind else ''}{item}")
    if diff:
        print("run `python -m tools.stage_deps --write` to derive them from the stages", file=sys.stderr)
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
