"""Bidding layout, awards, payments and the merit-order trade allocation."""

from __future__ import annotations

import numpy as np
import pandapower.networks as pn
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.market.bidding import UPSTREAM, Bidder, BidRules, merit_order_trades
from cosim.models.market.clearing import Clearing, fixed_cost

RULES = BidRules(
    voll_per_mwh=3000.0,
    inelastic_share=0.7,
    utility_per_mwh=(250.0, 150.0, 90.0),
    sgen_price_per_mwh=0.0,
    battery_charge_price_per_mwh=40.0,
    battery_discharge_price_per_mwh=70.0,
    import_price_per_mwh=80.0,
    export_price_per_mwh=30.0,
    max_import_mw=100.0,
    max_export_mw=100.0,
)


def small_bidder() -> Bidder:
    net = pn.case9()  # 3 loads, 2 gens (poly_cost), an ext_grid with cost data
    kind = np.array(["load", "load", "load", "gen", "gen", "pv", "battery"])
    bus = np.r_[net.load.bus, net.gen.bus, 4, 4]
    elements = [("load", 0), ("load", 1), ("load", 2), ("gen", 0), ("gen", 1), ("sgen", 0), ("storage", 0)]
    return Bidder(net, kind, bus, elements, RULES)


def test_layout_splits_demand_into_inelastic_and_utility_steps() -> None:
    """Each load bids 70 % at the value of lost load, the rest in equal utility steps; batteries both ways."""
    b = small_bidder()
    forecast = np.array([90.0, 100.0, 125.0, -163.0, -85.0, -0.5, 0.0])
    bids = b.bids(forecast, np.array([0.004]), np.array([0.003]))
    for agent, mw in enumerate(forecast[:3]):
        steps = b.demand_owner == agent
        np.testing.assert_allclose(bids.demand_mw[steps], [0.7 * mw, 0.1 * mw, 0.1 * mw, 0.1 * mw])
        np.testing.assert_allclose(bids.demand_price[steps], [3000, 250, 150, 90])
    assert bids.demand_mw[b.demand_owner == 6] == [0.004] and bids.supply_max_mw[b.supply_owner == 6] == [
        0.003
    ]
    gen_c1 = bids.supply_price[b.supply_owner == 3]
    assert gen_c1[0] == pn.case9().poly_cost.query("et == 'gen' and element == 0").cp1_eur_per_mw.iloc[0]
    assert (b.supply_owner == UPSTREAM).sum() == 1  # case9's ext_grid has cost data: supply only
    assert bids.supply_max_mw[b.supply_owner == 5] == [0.5]  # PV offers its forecast


def test_awards_and_payments_follow_owners() -> None:
    """Awards sum each agent's cleared steps (load convention); payments price them at the agent's bus."""
    b = small_bidder()
    forecast = np.array([90.0, 100.0, 125.0, -163.0, -85.0, -0.5, 0.0])
    bids = b.bids(forecast, np.array([0.0]), np.array([0.0]))
    d, s = bids.demand_mw.copy(), np.zeros(len(bids.supply_bus))
    s[b.supply_owner == 3] = 200.0
    s[b.supply_owner == UPSTREAM] = d.sum() - 200.0
    clearing = Clearing(np.full(9, 20.0), d, s, 0.0, 0.0, 0.0, np.zeros(0), "optimal")
    award = b.awards(clearing)
    np.testing.assert_allclose(award[:3], forecast[:3])
    assert award[3] == -200.0 and award[4] == 0.0
    price_at = np.full(len(d) + len(s), 20.0)
    pay = b.payments(clearing, price_at, 0.5)
    np.testing.assert_allclose(pay[:3], forecast[:3] * 20 * 0.5)
    assert pay[3] == -200 * 20 * 0.5


@settings(max_examples=200, deadline=None)
@given(
    demand=st.lists(st.tuples(st.floats(0, 50), st.floats(0, 500)), min_size=1, max_size=12),
    supply=st.lists(st.tuples(st.floats(0, 50), st.floats(0, 500)), min_size=1, max_size=12),
)
def test_merit_order_trades_conserve_energy(
    demand: list[tuple[float, float]], supply: list[tuple[float, float]]
) -> None:
    """Every cleared MW of each step appears in trades exactly once (merit order on both sides)."""
    d_mw, d_price = np.array(demand).T
    s_mw, s_price = np.array(supply).T
    total = min(d_mw.sum(), s_mw.sum())
    d_step, s_step, mw = merit_order_trades(d_mw, d_price, s_mw, s_price)
    assert np.all(mw > 0)
    assert abs(mw.sum() - total) < 1e-6
    assert len(mw) <= len(d_mw) + len(s_mw) - 1
    assert np.all(np.bincount(d_step, mw, len(d_mw)) <= d_mw + 1e-6)
    assert np.all(np.bincount(s_step, mw, len(s_mw)) <= s_mw + 1e-6)
    if d_mw.sum() <= s_mw.sum():  # all demand is matched
        np.testing.assert_allclose(np.bincount(d_step, mw, len(d_mw)), d_mw, atol=1e-6)


def test_constant_cost_terms_count_while_a_unit_is_committed() -> None:
    """Offers carry the constant terms of case9's cost curves (ext_grid 150, gens 600 and 335 $/h); the fixed
    cost sums those of the units offered in the interval, so an unconnected generator's drops out."""
    b = small_bidder()
    forecast = np.array([90.0, 100.0, 125.0, -163.0, -85.0, -0.5, 0.0])
    bids = b.bids(forecast, np.array([0.004]), np.array([0.003]))
    c0 = pn.case9().poly_cost.set_index(["et", "element"]).cp0_eur
    assert bids.supply_c0 is not None
    np.testing.assert_array_equal(bids.supply_c0, [c0["gen", 0], c0["gen", 1], 0.0, 0.0, c0["ext_grid", 0]])
    assert fixed_cost(bids) == 1085.0
    connected = np.array([True, True, True, False, True, True, True])
    assert fixed_cost(b.restricted(bids, connected, islanded=False)) == 1085.0 - c0["gen", 0]


def test_demand_steps_carry_the_power_factor_of_the_interval() -> None:
    """Given the agents' reactive forecast, every step of a consumer carries its q/p; other steps 0."""
    b = small_bidder()
    forecast = np.array([90.0, 100.0, 0.0, -163.0, -85.0, -0.5, 0.0])
    q = np.array([30.0, 35.0, 5.0, 0.0, 0.0, 0.0, 0.0])
    bids = b.bids(forecast, np.array([0.004]), np.array([0.003]), forecast_q_mvar=q)
    assert b.bids(forecast, np.zeros(1), np.zeros(1)).demand_q_ratio is None  # without q: the OPF's own
    assert bids.demand_q_ratio is not None
    expected = np.r_[np.repeat([30.0 / 90.0, 0.35, 0.0], 4), 0.0]  # 3 loads x 4 steps, the battery
    np.testing.assert_allclose(bids.demand_q_ratio, expected)
