"""Storage arbitrage: the round-trip breakeven of docs/references.md, limits, and profit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.agents.arbitrage import ArbitragePlanner, schedule
from cosim.models.agents.fleet import Batteries

BREAKEVEN = 1.0 / (0.9 * 0.9)  # 1.2346: docs/references.md


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


def _planner(soc_mwh: float = 0.005) -> tuple[ArbitragePlanner, Batteries]:
    one = np.ones(1)
    batteries = Batteries(
        capacity_mwh=0.01 * one, power_mw=0.005 * one, eta_charge=0.9, eta_discharge=0.9,
        soc_min_mwh=0.0 * one, soc_max_mwh=0.01 * one, soc_mwh=soc_mwh * one,
        household=np.zeros(1, np.int64), pv=-one.astype(np.int64), ev=-one.astype(np.int64),
    )  # fmt: skip
    return ArbitragePlanner(batteries, np.array([1]), steps_per_day=4, dt_h=6.0, horizon_steps=4), batteries


@pytest.mark.parametrize(
    ("low", "high", "cycles"), [(50.0, 60.0, False), (50.0, 61.0, False), (50.0, 62.0, True)]
)
def test_planner_bids_its_plan_only_above_breakeven(low: float, high: float, cycles: bool) -> None:
    """Idle until a day of prices is seen; then it bids yesterday's plan, and only when high/low > 1.2346."""
    planner, batteries = _planner()
    assert all(np.all(x == 0) for x in planner.bids(0))
    for k, price in enumerate([low, high, high, low]):
        planner.observe(k, np.array([999.0, price]))  # bus 1 is the battery's
    charge, buy_limit, discharge, sell_limit = planner.bids(4)  # a day later: step of day 0, price low
    assert (charge[0] > 0) == cycles and discharge[0] == 0.0
    if cycles:
        assert buy_limit[0] == pytest.approx(0.81 * high) and sell_limit[0] == pytest.approx(low / 0.81)
        batteries.soc_mwh = batteries.soc_mwh + 6.0 * 0.9 * charge  # the market cleared the bid
        assert planner.bids(5)[2][0] > 0  # then sells at the high price, without re-planning
        assert planner.n_plans == 1
