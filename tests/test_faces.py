"""The face detector shared by the cleaning and prediction: drawn faces found where they are, mirrors merged."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from faceattrs.core.params import DedupeParams
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.faces.detect import face_score, find_faces, iou
from faceattrs.synthetic import drawing


def _drawn(seed: int, **on: int):
    rng = np.random.default_rng(seed)
    attrs = dict.fromkeys(ATTRIBUTES, 0) | {"No_Beard": 1} | on
    img, landmarks = drawing.draw_face(attrs, drawing.random_look(rng, bool(attrs.get("Male"))), rng)
    return np.asarray(img), landmarks.reshape(5, 2)


@pytest.mark.parametrize("seed", range(6))
def test_a_drawn_face_is_found_around_its_landmarks(seed):
    rgb, landmarks = _drawn(seed, Smiling=seed % 2, Eyeglasses=seed % 3 == 0)
    faces = find_faces(rgb)
    assert faces, "dlib's own threshold (0) finds a clear drawn face"
    best = faces[0]
    # Both eyes and the mouth corners lie inside the best box.
    inside = (
        (landmarks[:, 0] >= best.left)
        & (landmarks[:, 0] <= best.left + best.width)
        & (landmarks[:, 1] >= best.top)
        & (landmarks[:, 1] <= best.top + best.height)
    )
    assert inside.all(), (best, landmarks)


def test_a_face_and_its_mirror_are_one_face():
    rgb, _ = _drawn(3)
    faces = find_faces(rgb, min_score=-0.5)
    assert len(faces) == 1
    mirrored = find_faces(rgb[:, ::-1].copy(), min_score=-0.5)
    assert len(mirrored) == 1
    assert faces[0].score == pytest.approx(mirrored[0].score)
    back = dataclasses.replace(mirrored[0], left=rgb.shape[1] - mirrored[0].left - mirrored[0].width)
    assert iou(faces[0], back) > 0.5


def test_scores_separate_faces_from_pictures_with_no_face():
    faces = [face_score(_drawn(s)[0]) for s in range(8)]
    empty = [face_score(np.asarray(drawing.draw_no_face(np.random.default_rng(s)))) for s in range(8)]
    assert min(faces) > max(empty)
    assert face_score(np.full((218, 178, 3), 128, np.uint8)) == float("-inf")


def _sample(name: str):
    """A picture matplotlib ships (not one our generator drew)."""
    from pathlib import Path

    import matplotlib
    from PIL import Image

    return Image.open(Path(matplotlib.get_data_path()) / "sample_data" / name).convert("RGB")


def test_a_real_photo_has_its_face_found_and_pictures_of_things_have_none():
    photo = _sample("grace_hopper.jpg")  # a portrait, 512x600
    faces = find_faces(np.asarray(photo))
    assert len(faces) == 1 and faces[0].score > 1.0
    box = faces[0]
    assert 100 < box.left + box.width / 2 < 400 and 100 < box.top + box.height / 2 < 400
    aligned_size = np.asarray(photo.resize((178, 209)))
    assert face_score(aligned_size) > DedupeParams().min_face_score + 1.0
    for thing in ("Minduka_Present_Blue_Pack.png", "logo2.png"):
        assert face_score(np.asarray(_sample(thing).resize((178, 218)))) < DedupeParams().min_face_score
