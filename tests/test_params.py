"""The params schema: defaults, the repository's params.yaml, and errors that name key and choices."""

from __future__ import annotations

import pytest
import yaml

from faceattrs.core.params import Params, ParamsError, load_params, parse_params
from tests.conftest import REPO


def test_repository_params_file_is_valid():
    """Whatever the user's experiment: params.yaml is theirs, so only its validity is checked here."""
    load_params(REPO / "params.yaml")
    defaults = Params()
    assert defaults.data.source == "synthetic"
    assert defaults.data.synthetic.noise_rate("Oval_Face") > defaults.data.synthetic.noise_rate("Smiling")


@pytest.mark.parametrize(
    "raw, expected",
    [
        (
            {"data": {"source": "s3"}},
            r"data\.source: Input should be 'synthetic', 'local', 'url' or 'gdrive' \(got 's3'\)",
        ),
        ({"dedupe": {"max_distnce": 3}}, r"dedupe\.max_distnce: unknown key; valid keys here: hash_size, max_distance"),
        ({"trian": {}}, r"trian: unknown key; valid keys here: data, dedupe, split, preprocess, labels, model"),
        ({"loss": {"name": "hinge"}}, r"loss\.name: Input should be 'bce', 'focal' or 'mse'"),
        ({"target": {"attributes": ["Smile"]}}, r"unknown attributes \['Smile'\]"),
        ({"split": {"ratios": [0.9, 0.2, 0.1]}}, r"split\.ratios: .*sum to 1"),
        ({"dedupe": {"conflict_policy": "vote"}}, r"'drop', 'majority' or 'first'"),
        ({"preprocess": {"size": [80, "wide"]}}, r"preprocess\.size\.1"),
        ({"preprocess": {"crop": [0, 0, 300, 218]}}, r"inside 178x218"),
        ({"data": {"synthetic": {"label_noise": {"Smile": 0.1}}}}, r"unknown attribute 'Smile'"),
        ({"data": {"source": "url"}}, r"data\.url\.base is not set"),
    ],
)
def test_bad_params_name_the_key(raw, expected):
    with pytest.raises(ParamsError, match=expected):
        parse_params(raw)


def test_stage_params_in_dvc_yaml_are_schema_sections():
    """Each stage lists sections (or keys of sections) the schema knows, so `-S` reruns the right stages."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    listed = {name: stage.get("params", []) for name, stage in stages.items()}
    assert listed["download"] == ["data"] and listed["dedupe"] == ["dedupe"]
    assert listed["split"] == ["split"] and listed["preprocess"] == ["preprocess"]
    assert listed["train"] == ["model", "target", "loss", "augment", "optimizer", "schedule", "train"]
    assert listed["labels"][0] == "labels" and set(listed["labels"]) < set(listed["train"]) | {"labels"}
    # predict applies the thresholds evaluate tuned with its test-time augmentation, so it reads that too.
    assert listed["evaluate"] == ["evaluate"] and listed["predict"] == ["predict", "evaluate.tta"]
    for keys in listed.values():
        for key in keys or []:
            section, *rest = key.split(".")
            assert section in Params.model_fields
            assert not rest or rest[0] in Params.model_fields[section].annotation.model_fields


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "nope.yaml")
    (tmp_path / "p.yaml").write_text("data: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "p.yaml")


def test_a_bare_off_means_off_though_yaml_reads_it_as_false(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("dedupe:\n  no_face_policy: off\n")
    assert yaml.safe_load(path.read_text())["dedupe"]["no_face_policy"] is False
    assert load_params(path).dedupe.no_face_policy == "off"
    with pytest.raises(ParamsError, match=r"dedupe\.no_face_policy: Input should be 'drop', 'report' or 'off'"):
        parse_params({"dedupe": {"no_face_policy": True}})


def test_init_points_params_yaml_at_a_celeba_folder_keeping_its_comments(tmp_path, synthetic_raw, capsys):
    from faceattrs import cli
    from faceattrs.core.params_file import render

    params = tmp_path / "params.yaml"
    params.write_text(render())
    cli.main(["init", "--celeba", str(synthetic_raw), "--params", str(params)])
    loaded = load_params(params)
    assert loaded.data.source == "local" and loaded.data.local.path == str(synthetic_raw.resolve())
    assert loaded.model_copy(update={"data": Params().data}) == Params()  # nothing else changed
    text = params.read_text()
    assert "# Every experiment parameter." in text and "focal with gamma 0 is exactly BCE" in text  # comments kept
    assert "git add" in capsys.readouterr().out
    before = params.read_bytes()
    with pytest.raises(SystemExit) as done:
        cli.main(["init", "--celeba", str(tmp_path), "--params", str(params)])
    assert done.value.code == 1 and "no list_attr_celeba.txt" in capsys.readouterr().err
    assert params.read_bytes() == before
