"""Facts kept in one place: the params defaults, the registries' choices, dvc.yaml's code deps, the README's figures."""

from __future__ import annotations

import argparse
import typing

import pytest

from faceattrs.cleaning import duplicates, label_errors
from faceattrs.core import code_deps
from faceattrs.core import params as schema
from faceattrs.core.params_file import render
from faceattrs.data import sources, splits
from faceattrs.synthetic import source as _synthetic  # noqa: F401  registers data.source synthetic
from faceattrs.training import augment, fit, losses, models, optim
from faceattrs.training.build import TrainingParams
from tests.conftest import REPO
from tools import stage_deps


def test_the_schema_s_defaults_written_out_read_back_as_the_defaults(tmp_path):
    """params.yaml is the user's record of their experiment; the defaults' home is the schema, whose
    rendering (`faceattrs params --defaults`) must read back as exactly the defaults."""
    written = tmp_path / "params.yaml"
    written.write_text(render())
    assert schema.load_params(written) == schema.Params()
    assert render(schema.load_params(written)) == render()


def _choices(section: type, field: str) -> set[str]:
    return set(typing.get_args(section.model_fields[field].annotation))


# Every params choice that selects code, beside the registry that holds the code.
REGISTRIES = [
    (schema.DataParams, "source", sources.SOURCES),
    (schema.DedupeParams, "conflict_policy", duplicates.POLICIES),
    (schema.SplitParams, "method", splits.METHODS),
    (schema.ModelParams, "head", models.HEADS),
    (schema.LossParams, "name", losses.LOSSES),
    (schema.LossParams, "weighting", losses.WEIGHTINGS),
    (schema.OptimizerParams, "name", optim.OPTIMIZERS),
    (schema.ScheduleParams, "name", optim.SCHEDULES),
    (schema.LabelsParams, "policy", label_errors.POLICIES),
    (schema.TrainParams, "monitor", fit.MONITORS),
]


@pytest.mark.parametrize("section, field, registry", REGISTRIES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_schema_choices_equal_the_registry(section, field, registry):
    assert _choices(section, field) == set(registry)


def test_every_augmentation_field_has_a_registry_entry():
    switched = {key for settings in augment.AUGMENTATIONS.values() for key in settings}
    assert switched == set(schema.AugmentParams.model_fields)


def test_dvc_yaml_code_deps_and_params_are_what_each_stage_imports_and_declares():
    assert stage_deps.differences() == {}, "run `python -m tools.stage_deps --write`"


def test_code_deps_follow_lazy_imports_and_package_data():
    deps = code_deps.code_deps("stages.download")
    assert "faceattrs/synthetic/drawing.py" in deps  # through sources -> generator -> drawing
    assert "faceattrs/resources/attribute_counts.tsv" in deps  # read by the attribute names at import
    assert "faceattrs/core/params/__init__.py" in deps and "faceattrs/__init__.py" in deps
    assert not any(d.startswith("flows/") for d in deps)


def test_a_section_s_schema_is_a_dep_of_the_stages_that_read_that_section_alone():
    sections = {p.stem for p in (REPO / "faceattrs/core/params").glob("*.py")} - {"__init__", *code_deps.SCHEMA_SHARED}
    assert sections == set(schema.Params.model_fields), "one schema module per params section, named as it"
    for stage in ("download", "dedupe", "split", "preprocess"):
        deps = code_deps.code_deps(f"stages.{stage}")
        assert "faceattrs/core/params/train.py" not in deps and "faceattrs/core/params/model.py" not in deps
        read = {key.split(".")[0] for key in code_deps.declared_params(f"stages.{stage}")}
        assert {d for d in deps if d.startswith("faceattrs/core/params/") and d.count("/") == 3} == {
            "faceattrs/core/params/__init__.py",
            "faceattrs/core/params/base.py",
            *(f"faceattrs/core/params/{s}.py" for s in read),
        }


def test_the_train_stage_reads_the_sections_training_is_built_from():
    from stages import train

    assert TrainingParams.sections() == train.PARAMS


def test_a_stage_that_reads_a_section_it_does_not_declare_fails(tmp_path):
    from faceattrs.core import stage

    (tmp_path / "params.yaml").write_text(render())
    params = stage.params_of(argparse.Namespace(params=tmp_path / "params.yaml"), ("predict", "evaluate.tta"))
    assert params.evaluate.tta == "flip" and params.predict.source == "test"
    with pytest.raises(RuntimeError, match=r"params section 'train' read by a stage that declares only predict"):
        _ = params.train.epochs


def test_readme_figures_are_the_committed_reports():
    from tools import readme_figures

    assert readme_figures.stale_blocks() == [], "run `python -m tools.readme_figures --write`"
    assert set(readme_figures.RENDERERS) <= {
        m.group(2) for m in readme_figures.BLOCK.finditer((REPO / "README.md").read_text())
    }, "a renderer whose block is missing from README.md"
