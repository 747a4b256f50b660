"""The CelebA file formats: byte layout of the writers, and readers that name file and line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceattrs.data import celeba
from faceattrs.data.celeba import ATTRIBUTES, FormatError


def _labels(n=3):
    rng = np.random.default_rng(0)
    index = pd.Index([celeba.image_name(i + 1) for i in range(n)], name="image_id")
    return pd.DataFrame(rng.integers(0, 2, size=(n, 40)).astype(np.int8), index=index, columns=list(ATTRIBUTES))


def test_attribute_file_bytes_follow_the_published_layout():
    labels = _labels()
    labels.iloc[0] = 0
    labels.iloc[0, 1] = 1
    raw = celeba.format_attributes(labels)
    lines = raw.split(b"\r\n")
    assert lines[0] == b"3"
    assert lines[1] == (" ".join(ATTRIBUTES) + " ").encode()
    assert lines[2].startswith(b"000001.jpg -1  1 -1 -1")
    assert len(lines[2]) == len("000001.jpg") + 40 * 3
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")


def test_attribute_round_trip(tmp_path):
    labels = _labels(50)
    path = tmp_path / celeba.ATTR_FILE
    path.write_bytes(celeba.format_attributes(labels))
    pd.testing.assert_frame_equal(celeba.read_attributes(path), labels)


def test_pairs_and_tables_round_trip(tmp_path):
    index = pd.Index([celeba.image_name(i) for i in (1, 2, 3)], name="image_id")
    part = pd.Series([0, 1, 2], index=index, dtype=np.int8)
    (tmp_path / "p.txt").write_bytes(celeba.format_pairs(part))
    assert (tmp_path / "p.txt").read_bytes() == b"000001.jpg 0\r\n000002.jpg 1\r\n000003.jpg 2\r\n"
    pd.testing.assert_series_equal(celeba.read_partition(tmp_path / "p.txt"), part, check_names=False)
    bbox = pd.DataFrame([[95, 71, 226, 313]] * 3, index=index, columns=list(celeba.BBOX_HEADER[1:]))
    (tmp_path / "b.txt").write_bytes(celeba.format_table(bbox, celeba.BBOX_HEADER))
    assert (tmp_path / "b.txt").read_bytes().split(b"\r\n")[1] == b"image_id x_1 y_1 width height "
    pd.testing.assert_frame_equal(celeba.read_bbox(tmp_path / "b.txt"), bbox, check_dtype=False)


@pytest.mark.parametrize(
    "mutate, line, message",
    [
        (lambda rows: rows.__setitem__(4, rows[4].rsplit(" ", 1)[0]), 5, "expected 41 fields"),
        (lambda rows: rows.__setitem__(3, rows[3].replace("-1", " 0", 1)), 4, "-1 or 1"),
        (lambda rows: rows.__setitem__(0, "7"), 1, "declares 7 images"),
        (lambda rows: rows.__setitem__(1, rows[1].replace("Smiling", "Smile")), 2, "header"),
        (lambda rows: rows.__setitem__(4, rows[3]), 5, "listed twice"),
    ],
)
def test_malformed_attribute_file_names_file_and_line(tmp_path, mutate, line, message):
    path = tmp_path / celeba.ATTR_FILE
    rows = celeba.format_attributes(_labels(5)).decode().split("\r\n")
    mutate(rows)
    path.write_text("\r\n".join(rows))
    with pytest.raises(FormatError, match=message) as err:
        celeba.read_attributes(path)
    assert err.value.line == line
    assert str(err.value).startswith(f"{path}:{line}:")


def test_html_page_in_place_of_a_text_file_is_named(tmp_path):
    path = tmp_path / celeba.PARTITION_FILE
    path.write_text("<!DOCTYPE html><html><title>Quota exceeded</title></html>")
    with pytest.raises(FormatError, match="HTML page"):
        celeba.read_partition(path)


def test_partition_values_are_checked(tmp_path):
    path = tmp_path / celeba.PARTITION_FILE
    path.write_bytes(b"000001.jpg 0\r\n000002.jpg 3\r\n")
    with pytest.raises(FormatError, match=r":2: partition must be one of \[0, 1, 2\]"):
        celeba.read_partition(path)


def test_attribute_table_matches_the_published_counts():
    assert len(ATTRIBUTES) == 40 and ATTRIBUTES[0] == "5_o_Clock_Shadow" and ATTRIBUTES[-1] == "Young"
    majority = np.mean([max(r, 1 - r) for r in celeba.POSITIVE_RATES.values()])
    assert majority == pytest.approx(0.8052, abs=5e-4)  # FORMAT.md: majority class scores 80.52%


def test_a_utf8_bom_is_named(tmp_path):
    path = tmp_path / celeba.ATTR_FILE
    path.write_bytes(b"\xef\xbb\xbf" + celeba.format_attributes(_labels(3)))
    with pytest.raises(FormatError, match=r":1: starts with a UTF-8 byte-order mark \(BOM\)"):
        celeba.read_attributes(path)


@pytest.mark.parametrize(
    "reader, text",
    [
        (celeba.read_identity, "000001.jpg 3\r\n000002.jpg 99999999999999999999\r\n"),
        (celeba.read_bbox, "2\r\nimage_id x_1 y_1 width height\r\n000001.jpg 1 2 3 4\r\n000002.jpg 1 2 3 4294967296"),
        (celeba.read_partition, "000001.jpg 0\r\n000002.jpg 0_1\r\n"),
    ],
)
def test_an_integer_out_of_range_or_not_in_digits_is_named_with_its_line(tmp_path, reader, text):
    path = tmp_path / "file.txt"
    path.write_bytes(text.encode())
    with pytest.raises(FormatError) as caught:
        reader(path)
    assert caught.value.line == (2 if reader is not celeba.read_bbox else 4)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"image_id,partition\r\n000001.jpg,0\r\n0000\x0002.jpg,1\r\n", r":3: file name .* has a control character"),
        (b"image_id,partition\r\n000001.jpg,0\r\n00000\xe9.jpg,1\r\n", r":3: not UTF-8"),
        (b"image_id,partition\r\n000001.jpg,0\r\n000002.jpg,70000000000\r\n", r":3: values must be integers"),
        (b'image_id,partition\r\n000001.jpg,0\r\n"0000 02.jpg",1\r\n', r":3: file name '0000 02.jpg' has a space"),
    ],
)
def test_a_broken_kaggle_csv_is_named_with_its_line(tmp_path, raw, message):
    path = tmp_path / "list_eval_partition.csv"
    path.write_bytes(raw)
    with pytest.raises(FormatError, match=message):
        celeba.read_kaggle_csv(path, ("partition",))
