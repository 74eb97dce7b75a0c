"""Storage arbitrage: the round-trip breakeven of DESIGN.md, limits, and profit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.agents.arbitrage import schedule

BREAKEVEN = 1.0 / (0.9 * 0.9)  # 1.2346: DESIGN.md


@pytest.mark.parametrize(("ratio", "cycles"), [(1.20, False), (1.23, False), (1.24, True), (1.5, True)])
def test_cycles_only_above_the_round_trip_breakeven(ratio: float, cycles: bool) -> None:
    """Buy at 50 then sell at 50 * ratio, eta 0.9/0.9: a cycle pays only when ratio > 1.2346."""
    assert 1.2345 < BREAKEVEN < 1.2347
    plan = schedule(np.array([50.0, 1e3]), np.array([0.0, 50.0 * ratio]), power_mw=1.0, capacity_mwh=2.0,
                    energy_mwh=0.0, eta_charge=0.9, eta_discharge=0.9, end_at_start=False)  # fmt: skip
    assert bool(plan.charge_mw.sum() > 1e-6) == cycles
    if cycles:  # full power in, all of it out: profit = 0.81 * 50 * ratio - 50 per MWh bought
        assert plan.profit == pytest.approx(0.81 * 50.0 * ratio - 50.0, rel=1e-6)
    else:
        assert plan.profit == pytest.approx(0.0, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    prices=st.lists(st.floats(5.0, 300.0), min_size=2, max_size=24),
    energy=st.floats(0.0, 1.0),
    eta=st.floats(0.7, 1.0),
)
def test_limits_hold_and_profit_is_never_negative(prices: list[float], energy: float, eta: float) -> None:
    """Power and energy limits hold, the end energy is back at the start, idling is always possible."""
    p = np.array(prices)
    plan = schedule(
        p, p, power_mw=0.5, capacity_mwh=1.0, energy_mwh=energy, eta_charge=eta, eta_discharge=eta
    )
    assert plan.profit >= -1e-9
    assert (plan.charge_mw <= 0.5 + 1e-9).all() and (plan.discharge_mw <= 0.5 + 1e-9).all()
    assert (plan.energy_mwh >= -1e-9).all() and (plan.energy_mwh <= 1.0 + 1e-9).all()
    assert plan.energy_mwh[-1] >= energy - 1e-9
    revenue = float(np.sum(p * (plan.discharge_mw - plan.charge_mw)))
    assert revenue == pytest.approx(plan.profit, abs=1e-6)
