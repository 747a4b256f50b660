"""The data report: per-split frequencies, their shift, co-occurrence, and the pictures drawn from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceattrs.data.celeba import ATTRIBUTES
from faceattrs.reports import attributes


@pytest.fixture
def manifest() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 2, size=(300, 40)), columns=list(ATTRIBUTES)).astype(np.int8)
    frame["split"] = ["train"] * 200 + ["val"] * 50 + ["test"] * 50
    frame.loc[frame["split"] == "test", "Bald"] = 1  # every test image bald: a large shift
    frame.loc[frame["split"] != "test", "Bald"] = 0
    frame["Wearing_Lipstick"] = 1 - frame["Male"]  # perfectly anti-correlated
    return frame


def test_positive_rates_per_split(manifest):
    rates = attributes.positive_rates(manifest)
    assert list(rates.columns) == ["train", "val", "test"] and list(rates.index) == list(ATTRIBUTES)
    assert rates.loc["Bald", "test"] == 1 and rates.loc["Bald", "train"] == 0
    expected = manifest.loc[manifest["split"] == "val", "Smiling"].mean()
    assert rates.loc["Smiling", "val"] == pytest.approx(expected)


def test_shift_table_puts_the_largest_shift_first(manifest):
    shift = attributes.shift_table(attributes.positive_rates(manifest))
    assert shift.index[0] == "Bald" and shift.loc["Bald", "max_shift"] == 1
    assert shift.loc["Bald", "test_minus_train"] == 1
    assert (shift["max_shift"].diff().dropna() <= 0).all()


def test_cooccurrence_is_phi(manifest):
    phi = attributes.cooccurrence(manifest)
    assert phi.shape == (40, 40) and np.allclose(phi.to_numpy(), phi.to_numpy().T, equal_nan=True)
    assert phi.loc["Male", "Wearing_Lipstick"] == pytest.approx(-1)
    assert phi.loc["Smiling", "Smiling"] == pytest.approx(1)
    a, b = manifest["Smiling"], manifest["Young"]
    assert phi.loc["Smiling", "Young"] == pytest.approx(np.corrcoef(a, b)[0, 1])


def test_charts_are_pngs_of_a_readable_size(manifest, tmp_path):
    rates = attributes.positive_rates(manifest)
    attributes.frequency_chart(rates, tmp_path / "frequency.png")
    attributes.cooccurrence_heatmap(attributes.cooccurrence(manifest), tmp_path / "cooccurrence.png")
    for name in ("frequency.png", "cooccurrence.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and img.width >= 600 and img.height >= 600
            # Not a blank canvas: a chart has many distinct colours.
            assert len(img.convert("RGB").getcolors(1 << 20)) > 20
    assert not list(tmp_path.glob(".*tmp*"))
