"""Facts kept in one place: the params defaults, the registries' choices, dvc.yaml's code deps, the README's figures."""

from __future__ import annotations

import argparse
import json
import subprocess
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


@pytest.mark.parametrize("section, field, registry", REGISTRIES, ids=[f"{s.__name__}-{f}" for s, f, _ in REGISTRIES])
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


def test_readme_figures_are_the_committed_reports(tmp_path):
    from tools import readme_figures

    found = readme_figures.problems()
    if found:  # reports/ rewritten by a `dvc repro` of one's own: the pages still give the committed run's figures
        found = readme_figures.problems(readme_figures.committed(REPO, tmp_path))
    assert found == [], "\n".join(["run `python -m tools.readme_figures --write` after what these name:", *found])
    assert set(readme_figures.RENDERERS) <= readme_figures.blocks(), "a renderer whose block is on no page"


def test_readme_and_docs_have_no_accuracy_typed_by_hand():
    from tools import readme_figures

    typed = [
        f"{page}:{line}: {figure}"
        for page in readme_figures.pages()
        for line, figure in readme_figures.typed_figures((REPO / page).read_text())
    ]
    assert typed == [], "put each measured figure in a figures block (tools/readme_figures.py)"
    assert "README.md" in readme_figures.pages() and "docs/recipes.md" not in readme_figures.pages()


_SPLIT_SUMMARY = {
    "sizes": {"train": 80, "val": 10, "test": 10},
    "identities": {"train": 8, "val": 1, "test": 1},
    "duplicate_groups_across_splits": 2,
    "duplicate_groups_leaking": 0,
}


def test_readme_check_catches_an_accuracy_typed_outside_a_block():
    from tools.readme_figures import typed_figures

    block = "<!-- figures: splits -->\n| near pair recall | 0.9833 |\nup to 91.71% there\n<!-- /figures -->\n"
    assert typed_figures("# faceattrs\n" + block) == []
    typed = "# faceattrs\n" + block + "The default reaches 94.26% on test, 0.9426 in all, recall 1.0000.\n"
    assert typed_figures(typed) == [(6, "94.26%"), (6, "0.9426"), (6, "1.0000")]
    # Values given to keys, sizes, counts and versions are not accuracies.
    assert typed_figures("`-S optimizer.lr=0.002`, alpha 0.25, 80x64, 202,599 images, v1.0.0, 10.0.0.5") == []


def test_readme_check_fails_on_a_stale_block_a_missing_input_and_a_typed_figure(tmp_path):
    from tools import readme_figures

    (tmp_path / "reports/split").mkdir(parents=True)
    (tmp_path / "reports/split/summary.json").write_text(json.dumps(_SPLIT_SUMMARY))
    (tmp_path / "docs").mkdir()
    readme = "# faceattrs\n\n<!-- figures: splits -->\n| train | 79 |\n<!-- /figures -->\n"
    (tmp_path / "README.md").write_text(readme + "Test mean accuracy 0.9426.\n")
    (tmp_path / "docs/data.md").write_text("# Data\n\n<!-- figures: cleaning -->\n<!-- /figures -->\n")
    (tmp_path / "docs/recipes.md").write_text("Published: “92.28% and 91.71% on CelebA's validation and test”\n")
    found = readme_figures.problems(tmp_path)
    assert found == [
        "README.md: figures block 'splits' differs from its inputs",
        "README.md:6: '0.9426' typed by hand outside a figures block",
        "docs/data.md: figures block 'cleaning' cannot be written: reports/dedupe/summary.json is missing; "
        "`dvc repro` (the stages write reports/) writes it",
    ]
    with pytest.raises(readme_figures.FigureError, match=r"reports/dedupe/summary.json is missing"):
        readme_figures.render((tmp_path / "docs/data.md").read_text(), tmp_path, "docs/data.md")

    (tmp_path / "README.md").write_text(readme_figures.render(readme, tmp_path))
    assert "| train | 80 | 8 |" in (tmp_path / "README.md").read_text()
    assert not [line for line in readme_figures.problems(tmp_path) if line.startswith("README.md")]


def test_pages_are_checked_against_the_committed_reports_when_a_run_of_one_s_own_rewrote_them(tmp_path):
    from tools import readme_figures

    project, checked = tmp_path / "project", tmp_path / "checked"
    (project / "reports/split").mkdir(parents=True)
    (project / "reports/split/summary.json").write_text(json.dumps(_SPLIT_SUMMARY))
    (project / "docs").mkdir()
    (project / "README.md").write_text(readme_figures.render("<!-- figures: splits -->\n<!-- /figures -->\n", project))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "a run"], cwd=project, check=True)
    # The user's own run: other figures in the workspace's reports, the committed pages unchanged.
    other_run = {**_SPLIT_SUMMARY, "sizes": {"train": 81, "val": 10, "test": 10}}
    (project / "reports/split/summary.json").write_text(json.dumps(other_run))
    assert readme_figures.problems(project) == ["README.md: figures block 'splits' differs from its inputs"]
    assert readme_figures.problems(readme_figures.committed(project, checked)) == []
    # A page that no longer gives the committed run's figures fails against the committed reports too.
    (project / "README.md").write_text((project / "README.md").read_text().replace("| train | 80 |", "| train | 79 |"))
    assert readme_figures.problems(readme_figures.committed(project, tmp_path / "again")) == [
        "README.md: figures block 'splits' differs from its inputs"
    ]


def test_readme_check_names_the_benchmark_that_writes_a_missing_result(tmp_path):
    from tools import readme_figures

    (tmp_path / "README.md").write_text("<!-- figures: recipes -->\n<!-- /figures -->\n")
    assert readme_figures.problems(tmp_path) == [
        "README.md: figures block 'recipes' cannot be written: bench/results/recipe_accuracy.json is missing; "
        "`python bench/recipe_accuracy.py` writes it"
    ]


def test_readme_recipes_block_quotes_each_seed_and_names_the_recipes_under_their_baseline(tmp_path):
    from tools import readme_figures

    (tmp_path / "bench/results").mkdir(parents=True)
    (tmp_path / "faceattrs/recipes/seeds").mkdir(parents=True)
    rows = []
    for name, accuracy in (("alpha", 0.87), ("beta", 0.53)):
        (tmp_path / f"faceattrs/recipes/seeds/{name}.yaml").write_text(f'published: "{name} reached 90.1% | there"\n')
        rows.append(
            {"name": name, "size": "54x44 -> 54x44", "epochs": 3, "train_s": 120.4, "official_test_accuracy": None}
            | {"mean_accuracy": accuracy, "majority_baseline": 0.788, "precision": 0.5, "recall": 0.25}
        )
    record = {"machine": "a CPU", "command": "python bench/recipe_accuracy.py", "factor": 0.25, "rows": rows}
    (tmp_path / "bench/results/recipe_accuracy.json").write_text(json.dumps(record))
    block = readme_figures.recipes(tmp_path)
    alpha = "| `alpha` | 54x44 -> 54x44 | 3 | 120 | - | 0.8700 | 0.7880 | 0.5000 | 0.2500 |"
    assert f"{alpha} “alpha reached 90.1% \\| there” |" in block
    assert "Under their majority-class baseline on test: `beta`." in block
    (tmp_path / "faceattrs/recipes/seeds/beta.yaml").unlink()
    with pytest.raises(readme_figures.MissingInput, match=r"faceattrs/recipes/seeds/beta.yaml is missing"):
        readme_figures.recipes(tmp_path)
