"""The strategic player's MPEC against brute force and theory, and the market-power screens."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from cosim.models.market.clearing import Bids
from cosim.models.market.dcopf import DCOPF
from cosim.models.market.network_dc import DCNetwork, dc_network
from cosim.models.market.scopf import SCOPF
from cosim.models.market.strategic import (
    StrategicMPEC,
    StrategicPlayer,
    limit_rows,
    supply_screens,
)
from tests.reference.test_opf_dc import case_bids

logging.getLogger("pandapower").setLevel(logging.ERROR)
CAP = 60.0  # $/MWh, offer cap of the case5 tests
GRID = 0.05  # $/MWh, brute-force spacing (finer than the 0.1 asked)


def _profit(res, network: DCNetwork, bids: Bids, j: int, cost: float) -> float:
    pos = network.position_of(bids.supply_bus[j])[0]
    return float((res.price_per_mwh[pos] - cost) * res.supply_mw[j])


def _feasible(network: DCNetwork, bids: Bids, supply_mw: np.ndarray, demand_mw: np.ndarray) -> None:
    """Balance, step bounds and every rated branch's DC flow within its limit."""
    assert supply_mw.sum() == pytest.approx(demand_mw.sum(), abs=1e-6)
    assert np.all(supply_mw >= bids.supply_min_mw - 1e-6) and np.all(supply_mw <= bids.supply_max_mw + 1e-6)
    assert np.all(demand_mw >= -1e-6) and np.all(demand_mw <= bids.demand_mw + 1e-6)
    inj = np.bincount(network.position_of(bids.supply_bus), supply_mw, network.n_bus) - np.bincount(
        network.position_of(bids.demand_bus), demand_mw, network.n_bus
    )
    flow = network.ptdf() @ inj
    rated = np.isfinite(network.rate_mw)
    assert np.all(np.abs(flow[rated]) <= network.rate_mw[rated] + 1e-6)


@pytest.fixture(scope="module")
def pjm5() -> tuple[DCNetwork, Bids, DCOPF]:
    net = pn.case5()
    network = dc_network(net)
    bids, _ = case_bids(net)
    opf = DCOPF(network, bids.demand_bus, bids.supply_bus)
    # at true costs the clearing is Li & Bo's (2010) published one: LMPs A..E 16.98 .. 10.00 $/MWh
    lmp = opf.clear(bids).price_per_mwh[network.position_of(net.bus.index)]
    np.testing.assert_allclose(lmp, [16.98, 26.38, 30.00, 39.94, 10.00], atol=0.005)
    return network, bids, opf


# case5 supply steps: 0 Alta (A, 14 $/MWh), 1 Park City (A, 15), 2 Solitude (C, 30), 3 Sundance (D, 40),
# 4 Brighton (E, 10). Profits the MPEC and the 0.05 $/MWh search reproduce (dcopf, cap 60 $/MWh):
# Solitude 722.02 $/h offering the cap, Brighton 9330.10 $/h offering 30.00, Alta 119.09 $/h at its cost
# (its competitive profit (16.98 - 14) x 40 MW at the published LMP of bus A).
@pytest.mark.parametrize(("step", "profit"), [(2, 722.02), (4, 9330.10), (0, 119.09)])
def test_mpec_profit_equals_brute_force_on_pjm5(pjm5, step: int, profit: float) -> None:
    """The MPEC's profit equals the best of a 0.05 $/MWh grid of offers, each cleared by the DC-OPF."""
    network, bids, opf = pjm5
    cost = float(bids.supply_price[step])
    mpec = StrategicMPEC(network, bids.demand_bus, bids.supply_bus, np.array([step]), CAP)
    sol = mpec.solve(bids, np.array([cost]))
    assert sol.status == "optimal"
    best = -np.inf
    for offer in np.r_[np.arange(cost, CAP, GRID), CAP]:
        price = bids.supply_price.copy()
        price[step] = offer
        best = max(best, _profit(opf.clear(replace(bids, supply_price=price)), network, bids, step, cost))
    assert sol.profit == pytest.approx(best, abs=1e-4)
    assert sol.profit == pytest.approx(profit, abs=0.005)
    _feasible(network, bids, sol.supply_mw, sol.demand_mw)
    # the clearing at the MPEC's offer realises the anticipated profit, feasibly
    offered, clearing, play = StrategicPlayer(mpec).play(bids, opf.clear)
    assert play.strategic_profit == pytest.approx(sol.profit, abs=0.01 * bids.supply_max_mw[step])
    assert play.strategic_profit >= play.competitive_profit - 1e-6
    _feasible(network, offered, clearing.supply_mw, clearing.demand_mw)


def test_mpec_scopf_equals_brute_force_on_pjm5(pjm5) -> None:
    """With N-1 security rows (scopf) the MPEC of Brighton equals the brute-force search over the SCOPF."""
    network, bids, _ = pjm5
    step, cost = 4, float(bids.supply_price[4])
    scopf = SCOPF(network, bids.demand_bus, bids.supply_bus, contingency_limit_factor=1.5, constraints="full")
    mpec = StrategicMPEC(
        network, bids.demand_bus, bids.supply_bus, np.array([step]), CAP, limit_rows(network, scopf)
    )
    sol = mpec.solve(bids, np.array([cost]))
    assert sol.status == "optimal"
    best = -np.inf
    for offer in np.r_[np.arange(cost, CAP, GRID), CAP]:
        price = bids.supply_price.copy()
        price[step] = offer
        res = scopf.clear(replace(bids, supply_price=price))
        best = max(best, _profit(res, network, bids, step, cost))
    assert sol.profit == pytest.approx(best, abs=1e-4)
    _feasible(network, bids, sol.supply_mw, sol.demand_mw)
    post = scopf.post_contingency_flows(network.ptdf() @ _inj(network, bids, sol))
    assert (
        np.nanmax(
            np.abs(post[np.isfinite(network.rate_mw)]) / 1.5
            - network.rate_mw[:, None][np.isfinite(network.rate_mw)]
        )
        <= 1e-6
    )


def _inj(network: DCNetwork, bids: Bids, sol) -> np.ndarray:
    return np.bincount(network.position_of(bids.supply_bus), sol.supply_mw, network.n_bus) - np.bincount(
        network.position_of(bids.demand_bus), sol.demand_mw, network.n_bus
    )


def _two_bus() -> DCNetwork:
    net = pp.create_empty_network()
    a, b = pp.create_bus(net, 110.0), pp.create_bus(net, 110.0)
    pp.create_ext_grid(net, a)
    pp.create_line_from_parameters(net, a, b, 1.0, 0.1, 0.4, 10.0, 1.0)
    return dc_network(net)


def _market(player_mw: float, fringe_mw: float, fringe_price: float, player_cost: float = 10.0) -> Bids:
    """150 MW of inelastic demand at bus 1; the player (step 0) and a fringe (step 1) at bus 0."""
    return Bids(
        demand_bus=np.array([1]),
        demand_mw=np.array([150.0]),
        demand_price=np.array([1e4]),
        supply_bus=np.array([0, 0]),
        supply_max_mw=np.array([player_mw, fringe_mw]),
        supply_price=np.array([player_cost, fringe_price]),
    )


@pytest.mark.parametrize(
    ("fringe_mw", "offer", "profit"),
    [(1000.0, 30.0, 150 * 20.0), (100.0, 200.0, 50 * 190.0)],
)
def test_dominant_supplier_bids_to_the_fringe_or_the_cap(
    fringe_mw: float, offer: float, profit: float
) -> None:
    """Inelastic demand 150 MW, a 200 MW player at 10 $/MWh, a fringe at 30 $/MWh: an ample fringe
    caps the offer at 30 (all 150 MW sold); a 100 MW fringe leaves 50 MW only the player can serve, so
    it offers the 200 $/MWh cap (50 x 190 > 150 x 20)."""
    network = _two_bus()
    bids = _market(200.0, fringe_mw, 30.0)
    mpec = StrategicMPEC(network, bids.demand_bus, bids.supply_bus, np.array([0]), 200.0)
    sol = mpec.solve(bids, np.array([10.0]))
    assert sol.offer_per_mwh[0] == pytest.approx(offer, abs=1e-6)
    assert sol.profit == pytest.approx(profit, abs=1e-4)
    opf = DCOPF(network, bids.demand_bus, bids.supply_bus)
    _, clearing, play = StrategicPlayer(mpec).play(bids, opf.clear)
    assert play.strategic_profit == pytest.approx(profit, abs=150 * 0.01 + 1e-6)  # at most the tie margin
    assert play.lerner_index == pytest.approx((offer - 10.0) / offer, abs=1e-3)


def test_player_without_market_power_offers_its_cost() -> None:
    """An ample competitive fringe at the player's own cost: it offers that cost, Lerner index 0."""
    network = _two_bus()
    bids = _market(100.0, 1000.0, 20.0, player_cost=20.0)
    mpec = StrategicMPEC(network, bids.demand_bus, bids.supply_bus, np.array([0]), 200.0)
    sol = mpec.solve(bids, np.array([20.0]))
    assert sol.offer_per_mwh[0] == pytest.approx(20.0, abs=1e-6)
    assert sol.profit == pytest.approx(0.0, abs=1e-6)
    _, _, play = StrategicPlayer(mpec).play(bids, DCOPF(network, bids.demand_bus, bids.supply_bus).clear)
    assert play.lerner_index == pytest.approx(0.0, abs=1e-9)
    assert play.welfare_loss == pytest.approx(0.0, abs=1e-6)


def test_mpec_refuses_quadratic_offers(pjm5) -> None:
    """A quadratic cost term makes the lower level a QP: refused, not solved wrongly."""
    network, bids, _ = pjm5
    mpec = StrategicMPEC(network, bids.demand_bus, bids.supply_bus, np.array([0]), CAP)
    with pytest.raises(ValueError, match="linear offers"):
        mpec.solve(replace(bids, supply_c2=np.full(5, 0.01)), np.array([14.0]))


def test_screens_hhi_rsi_pivotal() -> None:
    """HHI, RSI, pivotal by hand: owners 0 (two steps), 1, 2; capacities 60+40, 50, 50; demand 120."""
    hhi, rsi, pivotal = supply_screens(
        np.array([0, 0, 1, 2]),
        3,
        np.array([60.0, 40.0, 50.0, 50.0]),
        np.array([60.0, 20.0, 40.0, 0.0]),
        120.0,
    )
    assert hhi == pytest.approx(100**2 * ((80 / 120) ** 2 + (40 / 120) ** 2))
    np.testing.assert_allclose(rsi, [100 / 120, 150 / 120, 150 / 120])
    assert pivotal.tolist() == [True, False, False]


def test_dual_bounds_too_tight_are_widened(pjm5, monkeypatch: pytest.MonkeyPatch) -> None:
    """With big-M dual bounds far too tight (0.05 x the largest price: the MILP is infeasible) the MPEC is
    solved again with wider bounds and ends at the same profit as with the default bounds."""
    import cosim.models.market.strategic as strategic

    network, bids, _ = pjm5
    mpec = StrategicMPEC(network, bids.demand_bus, bids.supply_bus, np.array([4]), CAP)
    wide = mpec.solve(bids, np.array([10.0]))
    monkeypatch.setattr(strategic, "DUAL_BOUND_FACTOR", 0.05)  # |bid - LMP| up to 1e4 > 2 x 0.05 x 1e4
    monkeypatch.setattr(strategic, "MU_BOUND_FACTOR", 0.05)
    narrow = mpec.solve(bids, np.array([10.0]))
    assert wide.bound_scale == 1.0 and narrow.bound_scale > 1.0
    assert narrow.status == "optimal" and narrow.profit == pytest.approx(wide.profit, abs=1e-4)
