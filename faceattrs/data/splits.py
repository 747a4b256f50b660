"""Train/val/test assignment (official, stratified random, or by identity) and its leakage report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from faceattrs.core.errors import InputError, choose
from faceattrs.data.celeba import ATTRIBUTES, PARTITION_NAMES

SPLITS = ("train", "val", "test")
# Attributes whose combinations define the strata of a random split: sex and age
# shape most others, and the rarest ones are where a careless split drifts most.
STRATA = ("Male", "Young", "Bald", "Eyeglasses", "Wearing_Hat")


def _cut(n: int, ratios: tuple[float, float, float]) -> np.ndarray:
    """Split labels for ``n`` items in order, sized by largest remainder."""
    exact = np.array(ratios) * n
    sizes = np.floor(exact).astype(int)
    sizes[np.argsort(-(exact - sizes))[: n - sizes.sum()]] += 1
    return np.repeat(np.arange(3), sizes)


def official(manifest: pd.DataFrame) -> pd.Series:
    return manifest["partition"].map(PARTITION_NAMES)


def random_stratified(manifest: pd.DataFrame, ratios, seed: int) -> pd.Series:
    rng = np.random.default_rng(seed)
    stratum = sum(manifest[a].to_numpy().astype(np.int64) << k for k, a in enumerate(STRATA))
    out = np.empty(len(manifest), dtype=np.int64)
    for value in np.unique(stratum):
        members = rng.permutation(np.flatnonzero(stratum == value))
        out[members] = _cut(len(members), ratios)
    return pd.Series(np.array(SPLITS)[out], index=manifest.index)


def by_identity(manifest: pd.DataFrame, ratios, seed: int) -> pd.Series:
    if (manifest["identity"] < 0).any():
        raise InputError(
            "split.method is 'identity' but this dataset has no identity file "
            "(the Kaggle layout has none); use 'official' or 'random'"
        )
    rng = np.random.default_rng(seed)
    sizes = manifest.groupby("identity").size()
    ids = sizes.index.to_numpy()[rng.permutation(len(sizes))]
    cumulative = np.cumsum(sizes.loc[ids].to_numpy()) / len(manifest)
    bounds = np.cumsum(ratios)[:2]
    # An identity goes where the middle of its images falls, so no identity is split.
    middle = cumulative - sizes.loc[ids].to_numpy() / (2 * len(manifest))
    which = np.searchsorted(bounds, middle, side="right")
    split_of = pd.Series(np.array(SPLITS)[which], index=ids)
    return manifest["identity"].map(split_of)


METHODS = {"official": lambda m, ratios, seed: official(m), "random": random_stratified, "identity": by_identity}


def assign(manifest: pd.DataFrame, method: str, ratios, seed: int) -> pd.Series:
    """The split of each image in the clean manifest."""
    return choose(METHODS, method, "split method")(manifest, ratios, seed).rename("split")


def positive_rates(manifest: pd.DataFrame, split: pd.Series) -> pd.DataFrame:
    """Share of positive labels: one row per attribute, one column per split (NaN for an empty split)."""
    return pd.DataFrame(
        {name: manifest.loc[split == name, list(ATTRIBUTES)].mean() for name in SPLITS}, index=list(ATTRIBUTES)
    ).rename_axis("attribute")


def rate_shift(rates: pd.DataFrame) -> pd.Series:
    """How far each attribute's positive rate moves between the splits."""
    return rates.max(axis=1) - rates.min(axis=1)


def summary(manifest: pd.DataFrame, split: pd.Series) -> dict:
    """Sizes, identities and attribute positive rates per split, and the largest shift between splits."""
    out = {"sizes": {}, "identities": {}}
    for name in SPLITS:
        members = manifest[split == name]
        out["sizes"][name] = len(members)
        out["identities"][name] = int(members["identity"].nunique())
    rates = positive_rates(manifest, split)
    out["positive_rate"] = {
        name: {a: None if pd.isna(v) else round(float(v), 4) for a, v in rates[name].items()} for name in SPLITS
    }
    ids = {name: set(manifest.loc[split == name, "identity"]) - {-1} for name in SPLITS}
    out["identities_shared"] = {
        f"{a}-{b}": len(ids[a] & ids[b]) for a, b in (("train", "val"), ("train", "test"), ("val", "test"))
    }
    # The shift of the rates as reported (rounded), so the two tables agree to the digit.
    shift = rate_shift(pd.DataFrame(out["positive_rate"]).astype(float)).sort_values(ascending=False)
    out["max_rate_shift"] = {a: round(float(v), 4) for a, v in shift.head(5).items()}
    return out


def crossing_groups(groups: pd.DataFrame, split: pd.Series, published: pd.Series) -> pd.DataFrame:
    """Duplicate groups whose members fall in more than one split.

    A kept member has its assigned split; a member dedupe removed has the split the
    published partition gave it, so the report shows the leakage the cleaning closed
    (``leaks_now`` False) beside any that remains (``leaks_now`` True).
    """
    if groups.empty:
        return pd.DataFrame(columns=["group", "kind", "splits", "leaks_now", "members"])
    frame = groups.copy()
    frame["split"] = frame["image_id"].map(split).fillna(frame["image_id"].map(published).map(PARTITION_NAMES))
    frame["assigned"] = frame["image_id"].isin(split.index)
    rows = []
    for gid, members in frame.groupby("group"):
        if members["split"].nunique() > 1:
            rows.append(
                {
                    "group": int(gid),
                    "kind": members["kind"].iloc[0],
                    "splits": "/".join(sorted(set(members["split"]), key=SPLITS.index)),
                    "leaks_now": bool(members.loc[members["assigned"], "split"].nunique() > 1),
                    "members": " ".join(f"{i}:{s}" for i, s in zip(members["image_id"], members["split"], strict=True)),
                }
            )
    return pd.DataFrame(rows, columns=["group", "kind", "splits", "leaks_now", "members"])


def metrics(summary: dict, crossing: pd.DataFrame) -> dict:
    """The split's metrics file: sizes, identities, the largest rate shifts and the leakage counts."""
    return {
        "sizes": summary["sizes"],
        "identities": summary["identities"],
        "identities_shared": summary["identities_shared"],
        "max_rate_shift": summary["max_rate_shift"],
        "duplicate_groups_across_splits": len(crossing),
        "duplicate_groups_leaking": int(crossing["leaks_now"].sum()) if len(crossing) else 0,
    }


# The published test partition, whole: the set every CelebA paper reports its accuracy on.
OFFICIAL_TEST = "official_test"
# What official_test says of the partition beside its rows (and the evaluation reports).
OFFICIAL_TEST_FIGURES = ("images", "unreadable", "left_out_by_cleaning", "in_training", "copies_in_training")


def official_test(
    published: pd.DataFrame, unreadable: set[str], groups: pd.DataFrame, assigned: pd.DataFrame
) -> tuple[pd.DataFrame, dict]:
    """Every readable image the official partition puts in test, labels and identity as published; and how
    the cleaned splits differ from it.

    ``published``: the raw folder's frame (identity, partition and the 40 labels, as the
    files give them); ``unreadable``: the images dedupe could not decode; ``groups``: dedupe's
    duplicate groups (image_id, group); ``assigned``: the split manifest (its kept images,
    with ``split``). The figures count the official test images cleaning left out, those a
    cleaned training or validation split holds (only where the split is not the official
    one), and those with a duplicate such a split holds: leakage the official figure
    contains and the cleaned one does not.
    """
    rows = published[(published["partition"] == 2) & ~published.index.isin(list(unreadable))]
    trained = assigned.index[assigned["split"].isin(["train", "val"])]
    group_of = groups.set_index("image_id")["group"] if len(groups) else pd.Series(dtype=np.int64)
    seen_groups = set(group_of.reindex(trained).dropna().astype(int))
    itself = rows.index.isin(trained)  # only where the split is not the official one
    copied = group_of.reindex(rows.index).isin(seen_groups).to_numpy() & ~itself
    figures = (
        len(rows),
        int((published["partition"] == 2).sum() - len(rows)),
        int((~rows.index.isin(assigned.index)).sum()),
        int(itself.sum()),
        int(copied.sum()),
    )
    return rows, dict(zip(OFFICIAL_TEST_FIGURES, figures, strict=True))
