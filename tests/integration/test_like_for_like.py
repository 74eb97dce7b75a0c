"""Like for like: every market design records emissions, equity (per household) and privacy."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import cosim

STUDY = """
name: like-{design}
seed: 5
time: {{start: 2016-06-01T00:00:00, duration: 1d, step: 1h}}
grid: {{source: simbench, code: 1-LV-rural1--0-sw}}
agents: {{household_profiles: [H], pv: {{share: 0.7}}, battery: {{share: 0.4}}, ev: {{share: 0.3}}}}
market: {{design: {design}{extra}}}
emissions: {{}}
equity: {{}}
privacy: {{epsilon: 1.0, budget: 10, declared_max_kw: 3, group_by: grid, release_every: day, evaluate: true}}
"""
TARIFF = ", tariff: [{from_hour: 0, price_per_mwh: 60}, {from_hour: 17, price_per_mwh: 120}]"
EXTRA = {
    "tou": TARIFF,
    "dr": TARIFF + ", dr_events: [{start: 2016-06-01T18:00:00, end: 2016-06-01T20:00:00, "
    "price_adder_per_mwh: 300}]",
}
DESIGNS = ["uniform", "dcopf", "acopf", "central", "tou", "dr", "scopf", "admm", "stochastic"]


@pytest.mark.parametrize("design", DESIGNS)
def test_every_design_records_emissions_equity_and_privacy(tmp_path: Path, design: str) -> None:
    """Each design's day has finite totals = dispatch x factors (import at 527), a marginal factor at every
    bus in the hours it cleared, household accounts summing their devices' flows, and one daily release."""
    path = tmp_path / f"{design}.yaml"
    path.write_text(STUDY.format(design=design, extra=EXTRA.get(design, "")))
    out = cosim.run(path, out=tmp_path / f"{design}.h5").path
    with h5py.File(out) as f:
        ok = f["market/ok"][:].astype(bool)
        assert ok.mean() > 0.9
        total = f["emissions/total_kg"][:]
        assert np.all(np.isfinite(total[ok])) and total[ok].sum() > 0
        mef = f["emissions/marginal_kg_per_mwh"][:]
        assert mef.shape == (24, len(f["grid/bus/name"]))
        assert np.isfinite(mef[ok]).mean() > 0.9
        if design in ("uniform", "admm", "tou", "dr", "stochastic"):  # copper plate: one system factor
            np.testing.assert_allclose(np.nanmax(mef, axis=1), np.nanmin(mef, axis=1))
            # the marginal offer's kind: battery or load 0, rooftop PV 41, sgen 48, import (or export) 527
            kinds = np.array([0.0, 41.0, 48.0, 527.0])
            assert np.all(np.min(np.abs(mef[ok, :1] - kinds), axis=1) < 1e-6)
        # equity per household: one row per household, its bill the sum of its devices' payments
        household = f["agents/household"][:]
        names = f["equity/unit_name"].asstr()[:]
        np.testing.assert_array_equal(names, f["agents/household_name"].asstr()[:])
        pay = f["market/payment"][:]
        paid = np.nansum(np.clip(pay, 0.0, None), axis=0)
        expected = np.bincount(household[household >= 0], paid[household >= 0], minlength=len(names))
        if design != "stochastic":  # stochastic bills are netted per agent over day-ahead and balancing
            np.testing.assert_allclose(f["equity/bill"][:], expected, rtol=1e-9, atol=1e-9)
        assert np.isfinite(f["equity"].attrs["gini_surplus"])
        # privacy: one grid-level release of the day, at its last hour
        released = f["privacy/released"][:]
        assert np.isfinite(released).all(axis=1).sum() == 1 and np.isfinite(released[-1]).all()
        # its truth: each agent's energy consumed over the day, clamped to 3 kW x 24 h, summed
        day_mwh = np.clip(f["agents/p_mw"][:], 0.0, None).sum(axis=0)  # hourly steps: MW x 1 h
        np.testing.assert_allclose(f["privacy/true"][-1, 0], np.minimum(day_mwh, 0.072).sum(), rtol=1e-6)
