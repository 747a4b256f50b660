"""Prediction on photos that are not CelebA-aligned: reading, detection, alignment, one row per face, no-face errors."""

from __future__ import annotations

import io
import math
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattrs.core.errors import InputError
from faceattrs.data import celeba
from faceattrs.faces import align
from faceattrs.prediction import photos
from faceattrs.prediction.predictor import Predictor
from tests.conftest import draw_faces


def place(face: Image.Image, landmarks: np.ndarray, canvas: Image.Image, angle: float, scale: float, at: tuple):
    """Paste an aligned face into ``canvas`` turned by ``angle`` degrees and scaled; returns its eyes there."""
    size = (round(face.width * scale), round(face.height * scale))
    turned = face.resize(size, Image.BICUBIC).rotate(angle, resample=Image.BICUBIC, expand=True)
    mask = Image.new("L", size, 255).rotate(angle, expand=True)
    canvas.paste(turned, at, mask)
    theta = math.radians(-angle)  # PIL turns counter-clockwise on the screen
    turn = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    centre = np.array(size) / 2
    return (turn @ (landmarks[:2] * scale - centre).T).T + np.array(turned.size) / 2 + at


def _drawn(seed: int, count: int):
    return [(Image.open(io.BytesIO(data)).convert("RGB"), attrs, lm) for _, data, attrs, lm in draw_faces(count, seed)]


@pytest.fixture
def predict_cli(capsys, monkeypatch):
    """`faceattrs predict ARGS` run in this process from ``cwd``: exit code, stdout and stderr.

    In process, not a subprocess: each would spend seconds importing torch again.
    """

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        from faceattrs import cli

        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            cli.main(["predict", *args])
            code = 0
        except SystemExit as done:
            code = done.code or 0
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def test_a_photo_is_read_upright_by_its_exif_orientation(tmp_path):
    stored = Image.new("RGB", (300, 200), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 150, 200))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the stored left becomes the top
    stored.save(tmp_path / "turned.jpg", exif=exif.tobytes(), quality=95)
    img = align.open_photo(tmp_path / "turned.jpg")
    assert img.size == (200, 300)
    top, bottom = np.asarray(img)[10, 100], np.asarray(img)[290, 100]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60


def test_a_large_photo_is_read_at_a_bounded_size(tmp_path):
    Image.new("RGB", (6000, 4000), (90, 120, 90)).save(tmp_path / "big.jpg", quality=80)
    img = align.open_photo(tmp_path / "big.jpg")
    assert max(img.size) == align.MAX_SIDE and img.size[0] / img.size[1] == pytest.approx(1.5, abs=0.01)


@pytest.mark.parametrize("content", [b"these are notes, not a picture\n", b"\xff\xd8\xff\xe0" + b"\x00" * 64])
def test_a_file_that_is_not_an_image_is_named_in_the_error(tmp_path, content):
    path = tmp_path / "notes.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match=str(path)):
        align.open_photo(path)


def test_mean_eyes_leave_out_missing_and_broken_landmarks():
    columns = ["lefteye_x", "lefteye_y", "righteye_x", "righteye_y"]
    rows = [[70, 110, 108, 112], [74, 106, 104, 108], [0, 0, 0, 0], [300, 110, 108, 112], [108, 110, 70, 110]]
    eyes = celeba.mean_eyes(pd.DataFrame(rows, columns=columns))
    assert eyes.tolist() == [[72, 108], [106, 110]]
    with pytest.raises(InputError, match="no usable eye landmarks"):
        celeba.mean_eyes(pd.DataFrame(rows[2:], columns=columns))


def test_a_face_turned_and_scaled_inside_a_photo_lands_on_the_celeba_geometry(learned_model):
    predictor = Predictor(learned_model)
    assert predictor.mean_eyes is not None and predictor.mean_eyes.shape == (2, 2)
    rng = np.random.default_rng(4)
    errors, placed, originals = [], [], []
    for face, _, landmarks in _drawn(99, 8):
        canvas = Image.new("RGB", (640, 480), tuple(int(v) for v in rng.integers(40, 200, 3)))
        angle, scale = rng.uniform(-12, 12), rng.uniform(1.2, 1.7)
        eyes = place(face, landmarks, canvas, angle, scale, (int(rng.integers(0, 200)), int(rng.integers(0, 60))))
        found = align.faces_in(canvas, predictor.mean_eyes)
        assert len(found) == 1
        # Eye error on the aligned face's scale (the canvas holds it enlarged).
        errors.append(np.abs(found[0].eyes - eyes).max() / scale)
        placed.append(np.asarray(found[0].aligned))
        originals.append(np.asarray(face))
    # A few pixels: the cascades' boxes are coarse, and the drawn landmarks are rounded.
    assert np.median(errors) <= 2.5 and max(errors) <= 6, errors
    # The realigned face scores as the original did: it went through one more resampling and a
    # placement within a few pixels, which the model (trained with shifts of +-6%) barely feels.
    again = 1 / (1 + np.exp(-predictor.logits_for(placed)))
    first = 1 / (1 + np.exp(-predictor.logits_for(originals)))
    assert np.abs(again - first).mean() < 0.05 and np.abs(again - first).max() < 0.3
    assert ((again > 0.5) == (first > 0.5)).mean() >= 0.9


REAL_EYES = {
    # Eye centres read off the pictures by eye (within about 3 pixels), left one first.
    "astronaut": [[203, 101], [247, 103]],
    "grace_hopper": [[222, 193], [305, 188]],
}


def _real(name: str) -> Image.Image:
    if name == "astronaut":
        skimage_data = pytest.importorskip("skimage.data", reason="scikit-image ships the astronaut photo")
        return Image.fromarray(skimage_data.astronaut())
    import matplotlib

    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")


@pytest.mark.parametrize("name", sorted(REAL_EYES))
def test_a_real_photo_has_one_face_with_its_eyes_found(name):
    target = np.array([[72.0, 106.0], [106.0, 106.0]])
    faces = align.faces_in(_real(name), target)
    assert len(faces) == 1, [f.box for f in faces]
    assert faces[0].eyes_from == "haar"
    assert np.abs(faces[0].eyes - REAL_EYES[name]).max() <= 6
    # The aligned face is CelebA-sized, the eyes where CelebA's are: its own eyes found again there.
    aligned = faces[0].aligned
    assert aligned.size == align.ALIGNED_SIZE
    again = align.faces_in(Image.fromarray(np.pad(np.asarray(aligned), ((60, 60), (60, 60), (0, 0)))), target)
    assert again and np.abs(again[0].eyes - 60 - target).max() <= 6


def test_two_faces_give_two_rows_with_boxes_and_an_annotated_picture(learned_model, predict_cli, tmp_path):
    (a, _, la), (b, _, lb) = _drawn(7, 2)
    canvas = Image.new("RGB", (700, 400), (70, 90, 110))
    place(a, la, canvas, 5, 1.3, (30, 60))
    place(b, lb, canvas, -5, 1.4, (380, 40))
    canvas.save(tmp_path / "two.jpg", quality=92)
    out = tmp_path / "out"
    run = predict_cli(str(tmp_path / "two.jpg"), "--model", str(learned_model), "--out", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    frame = pd.read_csv(tmp_path / "out" / "predictions.csv", index_col="image_id")
    assert list(frame.index) == ["two.jpg#1", "two.jpg#2"] and sorted(frame["face"]) == [1, 2]
    lefts = sorted(frame["box_left"])
    assert lefts[0] < 250 < 350 < lefts[1]
    annotated = np.asarray(Image.open(tmp_path / "out" / "annotated" / "two.png").convert("RGB"))
    assert annotated.shape == (400, 700, 3)
    row = frame.iloc[0]
    edge = annotated[int(row["box_top"]), int(row["box_left"]) + 5]
    assert tuple(edge) == (255, 210, 0)  # the box is drawn where the table says


def test_one_photo_prints_a_table_per_face(learned_model, predict_cli, tmp_path):
    ((face, _, landmarks),) = _drawn(8, 1)
    canvas = Image.new("RGB", (500, 420), (120, 100, 80))
    place(face, landmarks, canvas, 8, 1.5, (90, 40))
    canvas.save(tmp_path / "photo.png")
    run = predict_cli(str(tmp_path / "photo.png"), "--model", str(learned_model), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    head = run.stdout.splitlines()[0]
    assert head.startswith("photo.png  face 1: box ") and "eyes by haar" in head
    assert (tmp_path / "predictions" / "annotated" / "photo.png").exists()


@pytest.mark.parametrize("picture", ["blank", "scene"])
def test_no_face_is_a_clear_error_and_nothing_is_written(learned_model, predict_cli, tmp_path, picture):
    from faceattrs.synthetic import drawing

    if picture == "blank":
        img = Image.new("RGB", (640, 480), (200, 210, 220))
    else:  # the generator's pictures with no face, at photo size
        img = drawing.draw_no_face(np.random.default_rng(3)).resize((534, 654))
    img.save(tmp_path / f"{picture}.jpg", quality=90)
    out = tmp_path / "out"
    run = predict_cli(str(tmp_path / f"{picture}.jpg"), "--model", str(learned_model), "--out", str(out), cwd=tmp_path)
    assert run.returncode == 1
    assert f"no face found in 1 of 1 photos: {tmp_path / picture}.jpg" in run.stderr and "nothing written" in run.stderr
    assert not out.exists()


def test_an_aligned_image_is_scored_whole_even_where_no_face_is_found():
    blank = Image.new("RGB", align.ALIGNED_SIZE, (128, 128, 128))
    buffer = io.BytesIO()
    blank.save(buffer, format="PNG")
    buffer.name = "aligned.png"
    found = photos.find([buffer], mean_eyes=None)
    assert [f.eyes_from for f in found.faces] == ["aligned"] and found.no_face == []


def test_a_model_without_mean_eyes_refuses_a_photo_it_cannot_align(tmp_path):
    Image.new("RGB", (400, 300)).save(tmp_path / "photo.png")
    with pytest.raises(InputError, match="no mean eye positions"):
        photos.find([tmp_path / "photo.png"], mean_eyes=None)


def test_an_aligned_file_scores_as_its_shard_row_does(learned_model, tmp_path):
    """Decoded as preprocess decoded it (the default decode is reduced: half scale in the DCT)."""
    from faceattrs.data.archive import ImageArchive
    from faceattrs.prediction.predictor import split_logits

    predictor = Predictor(learned_model)
    assert predictor.spec.decode == "reduced"
    shard_logits, _, frame = split_logits(predictor, learned_model.parents[1] / "shards", "test")
    archive = ImageArchive.of(learned_model.parents[1] / "raw")
    names = list(frame.index[:4])
    for name in names:
        (tmp_path / name).write_bytes(archive.read(name))
    found = photos.find([tmp_path / n for n in names], predictor.mean_eyes)
    assert all(isinstance(f.source, bytes) for f in found.faces)
    assert np.allclose(predictor.logits_for(f.source for f in found.faces), shard_logits[:4], atol=1e-4)


def test_photos_sharing_a_file_name_keep_their_own_rows_and_pictures(learned_model, predict_cli, tmp_path):
    (a, _, la), (b, _, lb) = _drawn(12, 2)
    for folder, (face, landmarks) in (("one", (a, la)), ("two", (b, lb))):
        canvas = Image.new("RGB", (480, 400), (80, 100, 120))
        place(face, landmarks, canvas, 0, 1.4, (100, 40))
        (tmp_path / folder).mkdir()
        canvas.save(tmp_path / folder / "IMG_0001.jpg", quality=92)
    out = tmp_path / "out"
    one, two = tmp_path / "one", tmp_path / "two"
    run = predict_cli(
        str(one), str(two), str(one / "IMG_0001.jpg"), "--model", str(learned_model), "--out", str(out), cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    frame = pd.read_csv(out / "predictions.csv", index_col="image_id")
    assert list(frame.index) == [str(one / "IMG_0001.jpg"), str(two / "IMG_0001.jpg")]  # the repeat counted once
    assert len(list((out / "annotated").glob("*.png"))) == 2


def test_a_photo_over_the_size_limit_is_read_smaller_and_its_boxes_are_in_its_own_pixels(
    learned_model, predict_cli, tmp_path
):
    ((face, _, landmarks),) = _drawn(13, 1)
    canvas = Image.new("RGB", (4096, 3072), (100, 90, 80))
    eyes = place(face, landmarks, canvas, 0, 3.0, (1500, 1000))
    canvas.save(tmp_path / "big.jpg", quality=90)
    assert align.open_photo(tmp_path / "big.jpg").info["scale"] == 2.0
    out = tmp_path / "out"
    run = predict_cli(str(tmp_path / "big.jpg"), "--model", str(learned_model), "--out", str(out), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    row = pd.read_csv(out / "predictions.csv", index_col="image_id").iloc[0]
    assert row["box_left"] < eyes[0, 0] < eyes[1, 0] < row["box_left"] + row["box_width"]
    assert row["box_top"] < eyes[0, 1] < row["box_top"] + row["box_height"]
    assert Image.open(out / "annotated" / "big.png").size == (2048, 1536)


def test_a_large_picture_in_a_format_decoded_whole_is_refused_by_name(tmp_path, monkeypatch):
    Image.new("RGB", (400, 300)).save(tmp_path / "wide.png")
    monkeypatch.setattr(align, "MAX_DECODED_PIXELS", 100_000)
    with pytest.raises(InputError, match=f"{tmp_path / 'wide.png'}: 400x300 PNG is too large"):
        align.open_photo(tmp_path / "wide.png")


def _turned_by_exif(face: Image.Image, orientation: int, path: Path) -> Path:
    """``face`` stored turned, with the EXIF orientation that turns it upright again for display."""
    # What each orientation asks of a viewer, undone here: 3 turns by 180, 6 by 90 clockwise, 8 by 90 anticlockwise.
    stored = face.transpose(
        {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    )
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.mark.parametrize("orientation", [6, 3, 8])
def test_an_aligned_face_stored_turned_with_an_exif_orientation_is_scored_upright(
    learned_model, predict_cli, tmp_path, orientation
):
    ((face, _, _),) = _drawn(31, 1)
    photo = _turned_by_exif(face, orientation, tmp_path / "turned.jpg")
    predictor = Predictor(learned_model)
    upright = np.asarray(align.open_photo(photo))
    assert upright.shape == (218, 178, 3)
    # The upright picture is the drawn face, give or take the JPEG.
    assert np.abs(upright.astype(int) - np.asarray(face)).mean() < 6
    expected = predictor.logits_for([upright])
    (found,) = photos.find([photo], predictor.mean_eyes).faces
    assert found.eyes_from == "aligned" and np.array_equal(found.aligned, upright)
    assert np.allclose(predictor.logits_for([found.source]), expected, atol=1e-5)
    out = tmp_path / "out"
    run = predict_cli(str(photo), "--model", str(learned_model), "--out", str(out), "--tta", "none", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    row = pd.read_csv(out / "predictions.csv", index_col="image_id").loc["turned.jpg"]
    probabilities = [row[f"p_{n}"] for n in predictor.targets]
    assert np.allclose(probabilities, 1 / (1 + np.exp(-expected[0])), atol=1e-3)


def test_explain_draws_the_map_of_an_exif_turned_aligned_face_upright(learned_model, tmp_path, monkeypatch, capsys):
    from faceattrs import cli

    ((face, _, _),) = _drawn(32, 1)
    photo = _turned_by_exif(face, 6, tmp_path / "turned.jpg")
    monkeypatch.chdir(tmp_path)
    cli.main(["explain", str(photo), "--attribute", "Eyeglasses", "--model", str(learned_model), "--out", "out"])
    picture = np.asarray(Image.open(tmp_path / "out" / "explain" / "turned.Eyeglasses.png").convert("RGB"))
    # The picture is the one of the upright face: the face, and the map over what the network saw.
    from faceattrs.prediction import saliency

    upright = np.asarray(align.open_photo(photo))
    predictor = Predictor(learned_model, tta="flip")
    probability, heat, seen = saliency.explain(predictor, upright, "Eyeglasses")
    title = f"Eyeglasses: p = {probability:.3f} ({saliency.method(predictor.model.backbone)})"
    assert f"{title} -> " in capsys.readouterr().out
    expected = saliency.explanation_picture(upright, seen, heat, title)
    assert np.array_equal(picture, np.asarray(expected))
