"""The dedupe stage's work as one pure function: raw CelebA folder in, clean manifest and findings out."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from faceattrs.cleaning import duplicates, rules
from faceattrs.cleaning.confirm import confirm_pairs
from faceattrs.cleaning.no_face import face_scores
from faceattrs.cleaning.reasons import Dropped, categorical
from faceattrs.core.params import DedupeParams
from faceattrs.data import celeba
from faceattrs.data.archive import ImageArchive
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.synthetic.truth import BACKGROUND_HUE, TRUTH_FILE, read_truth


@dataclass
class Cleaning:
    manifest: pd.DataFrame  # kept images: identity, partition, sha256, group, the 40 labels
    groups: pd.DataFrame  # every member of every duplicate group, with kept and conflicts
    dropped: pd.DataFrame  # every image not kept, with why
    candidates: pd.DataFrame  # every pair the hashes proposed as near duplicates, with the verdict
    contradictions: pd.DataFrame  # kept images whose labels break a rule of faceattrs.cleaning.rules
    faces: pd.Series  # best face score of every readable image (empty when the check is off)
    summary: dict


def load_raw(raw: Path) -> pd.DataFrame:
    """Labels, partition and identity (-1 where the source has none) of every listed image."""
    labels = celeba.read_attributes(raw / celeba.ATTR_FILE)
    frame = labels.copy()
    frame.insert(0, "partition", celeba.read_partition(raw / celeba.PARTITION_FILE).loc[labels.index])
    identity_file = raw / celeba.IDENTITY_FILE
    identity = celeba.read_identity(identity_file).loc[labels.index] if identity_file.exists() else -1
    frame.insert(0, "identity", identity)
    frame["identity"] = frame["identity"].astype(np.int32)
    return frame


def clean(raw: Path, params: DedupeParams, workers: int = 0, progress: bool = True) -> Cleaning:
    data = load_raw(raw)
    images = ImageArchive.of(raw)
    hashes = duplicates.hash_images(images, list(data.index), params.hash_size, workers, progress)

    def confirm(first, second):
        return confirm_pairs(
            images,
            first,
            second,
            params.max_difference,
            params.max_difference_ratio,
            params.max_thumbnail_difference,
            workers,
            progress,
        )

    groups, candidates = duplicates.group_duplicates(hashes, params.max_distance, confirm)
    table, relabel = duplicates.resolve_groups(
        groups,
        data[list(ATTRIBUTES)],
        data["identity"] if (data["identity"] >= 0).all() else None,
        params.conflict_policy,
    )
    table.insert(2, "partition", data.loc[table["image_id"], "partition"].to_numpy())
    unreadable = hashes[hashes["problem"].notna()]
    readable = list(hashes.index[hashes["problem"].isna()])
    faces = (
        face_scores(images, readable, workers, progress)
        if params.no_face_policy != "off"
        else pd.Series(dtype=float, name="face_score")
    )
    no_face = faces[faces < params.min_face_score]
    dropped_no_face = no_face if params.no_face_policy == "drop" else no_face.iloc[:0]
    dropped = dropped_table(unreadable, table[~table["kept"]], dropped_no_face, params.conflict_policy)
    manifest = data.drop(index=dropped["image_id"])
    manifest.update(relabel.astype(np.int8))
    manifest[list(ATTRIBUTES)] = manifest[list(ATTRIBUTES)].astype(np.int8)
    manifest.insert(2, "sha256", hashes.loc[manifest.index, "sha256"])
    manifest.insert(
        3, "group", table.set_index("image_id")["group"].reindex(manifest.index).fillna(-1).astype(np.int32)
    )
    manifest.insert(4, "relabelled", manifest.index.isin(relabel.index))

    contradicting = rules.contradictions(manifest[list(ATTRIBUTES)])
    first_rows = table.drop_duplicates("group")
    summary = {
        "images_listed": len(data),
        "images_kept": len(manifest),
        "unreadable": len(unreadable),
        "unreadable_by_problem": {str(k): int(v) for k, v in unreadable["problem"].value_counts().items()},
        "duplicate_groups": {
            "exact": int((first_rows["kind"] == "exact").sum()),
            "near": int((first_rows["kind"] == "near").sum()),
            "redundant_images": int(len(table) - len(first_rows)),
            "with_label_conflicts": int(first_rows["labels_conflict"].sum()),
            "with_identity_conflicts": int(first_rows["identity_conflict"].sum()),
            "crossing_official_partitions": int(table.groupby("group")["partition"].nunique().gt(1).sum()),
        },
        "near_candidates": {
            "proposed": len(candidates),
            "same_photo": int(candidates["same_photo"].sum()),
            "different_photos": int((~candidates["same_photo"].astype(bool)).sum()),
        },
        "no_face": {
            "policy": params.no_face_policy,
            "min_face_score": params.min_face_score,
            "checked": len(faces),
            "found": len(no_face),
            "dropped": int((dropped["reason"] == Dropped.NO_FACE).sum()),
        },
        "images_with_contradicting_labels": int(contradicting["image_id"].nunique()),
        "label_contradictions": {name: int((contradicting["rule"] == name).sum()) for name in rules.RULES},
        "dropped_for_conflicts": int((dropped["reason"] == Dropped.CONFLICT).sum()),
        "relabelled_by_majority": len(relabel),
        "conflicts_by_attribute": duplicates.conflict_counts(table),
    }
    return Cleaning(manifest, table, dropped, candidates, contradicting, faces, summary)


def dropped_table(
    unreadable: pd.DataFrame, not_kept: pd.DataFrame, no_face: pd.Series, conflict_policy: str
) -> pd.DataFrame:
    """Every image left out, once, with why (``reason``, a ``Dropped``) and the particulars (``detail``)."""
    copies = np.where(not_kept["kind"] == "exact", Dropped.EXACT_DUPLICATE, Dropped.NEAR_DUPLICATE)
    conflicting = not_kept["labels_conflict"].to_numpy() & (conflict_policy == "drop")
    problems = zip(unreadable["problem"], unreadable["detail"], strict=True)
    frames = [
        pd.DataFrame(
            {
                "image_id": unreadable.index,
                "reason": Dropped.UNREADABLE,
                "detail": [f"{p}: {d}" if d else str(p) for p, d in problems],
                "group": -1,
            }
        ),
        pd.DataFrame(
            {
                "image_id": not_kept["image_id"],
                "reason": np.where(conflicting, Dropped.CONFLICT, copies),
                "detail": "",
                "group": not_kept["group"],
            }
        ),
        pd.DataFrame(
            {
                "image_id": no_face.index,
                "reason": Dropped.NO_FACE,
                "detail": [f"score {s:.2f}" for s in no_face],
                "group": -1,
            }
        ),
    ]
    table = (
        pd.concat(frames)
        .drop_duplicates("image_id")  # a redundant copy with no face is dropped once, as a copy
        .sort_values("image_id")
        .reset_index(drop=True)
    )
    table["reason"] = categorical(table["reason"], Dropped)
    return table


def duplicate_pairs(groups: pd.DataFrame) -> set[tuple[str, str]]:
    """Every pair of images that share a duplicate group, each pair sorted."""
    return {
        pair
        for _, members in groups.groupby("group")
        for pair in itertools.combinations(sorted(members["image_id"]), 2)
    }


def score_against_truth(result: Cleaning, truth: dict) -> dict:
    """Precision and recall of the cleaning against the flaws a synthetic dataset planted."""
    exact = {tuple(sorted(p[:2])) for p in truth["exact_duplicates"]}
    near = {tuple(sorted(p[:2])) for p in truth["near_duplicates"]}
    found = duplicate_pairs(result.groups)
    lookalikes = {tuple(sorted(p[:2])) for p in truth.get("lookalikes", [])}
    hue = {tuple(sorted(p[:2])) for p in truth.get("lookalikes", []) if p[2] == BACKGROUND_HUE}
    unreadable = set(result.dropped.loc[result.dropped["reason"].str.startswith("unreadable"), "image_id"])
    checked = len(result.faces) > 0
    no_face = set(result.faces.index[result.faces < result.summary["no_face"]["min_face_score"]])
    ratio = lambda a, b: round(len(a) / len(b), 4) if b else 1.0  # noqa: E731
    return {
        "duplicate_pair_precision": ratio(found & (exact | near), found),
        "exact_pair_recall": ratio(found & exact, exact),
        "near_pair_recall": ratio(found & near, near),
        # Different photos that look alike, which must stay apart.
        "lookalike_pairs_kept_apart": ratio(lookalikes - found, lookalikes),
        # The same face before backgrounds of other hues: other photos, however alike.
        "background_hue_lookalikes": len(hue),
        "background_hue_pairs_kept_apart": ratio(hue - found, hue),
        "no_face_recall": ratio(no_face & set(truth["no_face"]), truth["no_face"]) if checked else None,
        "faces_flagged_as_no_face": len(no_face - set(truth["no_face"])) if checked else None,
        "unreadable_recall": ratio(unreadable & set(truth["unreadable"]), truth["unreadable"]),
        "unreadable_precision": ratio(unreadable & set(truth["unreadable"]), unreadable),
    }


def clean_and_score(raw: Path, params: DedupeParams, workers: int = 0, progress: bool = True) -> Cleaning:
    """``clean``, plus the score against the planted truth when ``raw`` is synthetic."""
    result = clean(raw, params, workers, progress)
    if (raw / TRUTH_FILE).exists():
        result.summary["against_planted_truth"] = score_against_truth(result, read_truth(raw))
    return result
