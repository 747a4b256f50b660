"""Facts kept in one place: the params defaults, the registries' choices, dvc.yaml's code deps, the README's figures."""

from __future__ import annotations

import typing

import pytest

from faceattrs.cleaning import duplicates, label_errors
from faceattrs.core import params as schema
from faceattrs.core.params_file import render
from faceattrs.data import sources, splits
from faceattrs.training import augment, loop, losses, models, optim
from tests.conftest import REPO
from tools import stage_deps


def test_params_yaml_is_the_schema_defaults_written_out():
    assert (REPO / "params.yaml").read_text() == render(), (
        "params.yaml differs from the schema's defaults: change the default in faceattrs/core/params.py, "
        "then `faceattrs params --defaults > params.yaml`"
    )
    assert schema.load_params(REPO / "params.yaml") == schema.Params()


def _choices(section: type, field: str) -> set[str]:
    return set(typing.get_args(section.model_fields[field].annotation))


# Every params choice that selects code, beside the registry that holds the code.
REGISTRIES = [
    (schema.DataParams, "source", sources.SOURCES),
    (schema.DedupeParams, "conflict_policy", duplicates.POLICIES),
    (schema.SplitParams, "method", splits.METHODS),
    (schema.ModelParams, "head", models.HEADS),
    (schema.LossParams, "name", losses.LOSSES),
    (schema.OptimizerParams, "name", optim.OPTIMIZERS),
    (schema.ScheduleParams, "name", optim.SCHEDULES),
    (schema.LabelsParams, "policy", label_errors.POLICIES),
    (schema.TrainParams, "monitor", loop.MONITORS),
]


@pytest.mark.parametrize("section, field, registry", REGISTRIES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_schema_choices_equal_the_registry(section, field, registry):
    assert _choices(section, field) == set(registry)


def test_every_augmentation_field_has_a_registry_entry():
    switched = {key for settings in augment.AUGMENTATIONS.values() for key in settings}
    assert switched == set(schema.AugmentParams.model_fields)


def test_dvc_yaml_code_deps_are_what_each_stage_imports():
    assert stage_deps.differences() == {}, "run `python -m tools.stage_deps --write`"


def test_code_deps_follow_lazy_imports_and_package_data():
    deps = stage_deps.code_deps("stages.download")
    assert "faceattrs/synthetic/drawing.py" in deps  # through sources -> generator -> drawing
    assert "faceattrs/resources/attribute_counts.tsv" in deps  # read by celeba at import
    assert "faceattrs/core/params.py" in deps and "faceattrs/__init__.py" in deps
    assert not any(d.startswith("flows/") for d in deps)


def test_readme_figures_are_the_committed_reports():
    from tools import readme_figures

    assert readme_figures.stale_blocks() == [], "run `python -m tools.readme_figures --write`"
    assert set(readme_figures.RENDERERS) <= {
        m.group(2) for m in readme_figures.BLOCK.finditer((REPO / "README.md").read_text())
    }, "a renderer whose block is missing from README.md"
