"""Pictures and tables of the split data: attribute frequencies per split, their shift, and co-occurrence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from faceattrs.data import splits
from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.reports.pictures import save_figure

COLORS = {"train": "#4C72B0", "val": "#DD8452", "test": "#55A868"}


def positive_rates(manifest: pd.DataFrame) -> pd.DataFrame:
    """Share of positive labels: one row per attribute, one column per split present."""
    return splits.positive_rates(manifest, manifest["split"]).dropna(axis=1, how="all")


def shift_table(rates: pd.DataFrame) -> pd.DataFrame:
    """How far each attribute's positive rate moves between splits, largest shift first."""
    table = rates.copy()
    table["max_shift"] = splits.rate_shift(rates)
    if {"train", "test"} <= set(rates.columns):
        table["test_minus_train"] = rates["test"] - rates["train"]
        # Relative to the rarer side: a 1-point move matters more for a 2% attribute.
        table["relative_shift"] = table["max_shift"] / rates.min(axis=1).clip(lower=1e-6)
    return table.sort_values("max_shift", ascending=False).round(4)


def cooccurrence(manifest: pd.DataFrame) -> pd.DataFrame:
    """Phi coefficient (Pearson on 0/1) between every pair of attributes; NaN for constant ones."""
    labels = manifest[list(ATTRIBUTES)].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.corrcoef(labels, rowvar=False)
    return pd.DataFrame(phi, index=list(ATTRIBUTES), columns=list(ATTRIBUTES))


def frequency_chart(rates: pd.DataFrame, path: Path) -> None:
    """Horizontal bars: each attribute's positive rate, the splits side by side."""
    fig = Figure(figsize=(7, 11), dpi=100)
    ax = fig.subplots()
    y = np.arange(len(rates))
    height = 0.8 / len(rates.columns)
    for k, split in enumerate(rates.columns):
        ax.barh(
            y + (k - (len(rates.columns) - 1) / 2) * height,
            rates[split],
            height,
            color=COLORS.get(split),
            label=f"{split}",
        )
    ax.set_yticks(y, rates.index, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of images labelled positive")
    ax.set_title("Attribute frequency per split")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def cooccurrence_heatmap(phi: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(11, 9.5), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(phi.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
    ticks = np.arange(len(phi))
    ax.set_xticks(ticks, phi.columns, rotation=90, fontsize=7)
    ax.set_yticks(ticks, phi.index, fontsize=7)
    ax.set_title("Attribute co-occurrence (phi coefficient, all clean images)")
    fig.colorbar(image, ax=ax, shrink=0.8, label="phi")
    fig.tight_layout()
    save_figure(fig, path)
