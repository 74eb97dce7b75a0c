"""The market-power report section: rows equal independent sums, figures written, absent without screens."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from analysis.market_power_report import (
    FIGS,
    load_market_power,
    market_power_rows,
    market_power_section,
)


def _file(path: Path, strategic: bool) -> Path:
    t = 6
    with h5py.File(path, "w") as f:
        f["time"] = 1_704_067_200 + 3600 * np.arange(t)
        f["market/supplier_name"] = np.array([b"gen 0", b"gen 1", b"upstream"])
        rsi = np.array([[1.5, 0.8, 2.0], [1.2, 1.1, 1.9], [0.9, 1.3, 2.0]] * 2)
        f["market/rsi"] = rsi
        f["market/rsi_min"] = rsi.min(axis=1)
        f["market/pivotal"] = rsi < 1
        f["market/hhi"] = np.array([5000.0, 4000, 3000, 5000, 4000, 3000])
        if strategic:
            f["market/strategic_offer_per_mwh"] = np.array([30.0, 40, 60, 60, 40, 30])
            f["market/strategic_profit"] = np.array([10.0, 20, 30, 30, 20, 10])
            f["market/competitive_profit"] = np.zeros(t)
            f["market/lerner_index"] = np.array([0.0, 0.25, 0.5, 0.5, 0.25, 0.0])
            f["market/welfare_loss"] = np.array([1.0, 2, 3, 3, 2, 1])
    return path


@pytest.mark.parametrize("strategic", [True, False])
def test_rows_and_figures(tmp_path: Path, strategic: bool) -> None:
    """Rows: HHI 4000/5000, lowest RSI 0.8, 4 of 6 hours pivotal, gen 0 most often (2 vs 2: first), and with
    a player offer 43.33/60, Lerner 0.25/0.5, profits 120/0, welfare loss 12; both figures written."""
    with h5py.File(_file(tmp_path / "r.h5", strategic)) as f:
        mp = load_market_power(f)
    assert mp is not None
    rows = dict(market_power_rows(mp))
    assert rows["HHI of supply mean / max"] == "4,000 / 5,000"  # thousands separated
    assert rows["RSI minimum mean / lowest"] == f"{np.mean([0.8, 1.1, 0.9]):.3f} / 0.800"
    assert rows["Hours with a pivotal supplier"] == "4.0 h"
    assert rows["Most often pivotal"] == "gen 0 (2 steps)"
    if strategic:
        assert rows["Strategic offer mean / max"] == "43.33 / 60.00 $/MWh"
        assert rows["Lerner index mean / max"] == "0.250 / 0.500"
        assert rows["Strategic / competitive profit"] == "120.00 / 0.00 $"
        assert rows["Welfare loss from market power"] == "12.00 $"
    else:
        assert "Lerner index mean / max" not in rows
    section = market_power_section(mp, tmp_path)
    assert all((tmp_path / fn).stat().st_size > 0 and fn in section for fn in FIGS)
    assert section.count("<figcaption>") == 2


def test_no_section_without_screens(tmp_path: Path) -> None:
    """A run file without /market/hhi (a copper-plate design) has no market-power section."""
    with h5py.File(tmp_path / "u.h5", "w") as f:
        f["time"] = np.arange(2)
        f["market/price_per_mwh"] = np.zeros((2, 1))
    with h5py.File(tmp_path / "u.h5") as f:
        assert load_market_power(f) is None
