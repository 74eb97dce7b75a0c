"""Emissions accounting core: factors, totals, nodal marginal factors, loss factors, trades, carbon price."""

from __future__ import annotations

import copy
import dataclasses
import logging
import warnings

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from cosim.models.accounting import emissions
from cosim.models.accounting.emissions import (
    EmissionFactors,
    MarginalEmissions,
    NodalFactors,
    StepFactors,
    UpstreamGrid,
    carbon_priced,
    interval_emissions,
    loss_adjusted,
    trade_impacts,
)
from cosim.models.grid.powerflow import ACPowerFlow
from cosim.models.market.bidding import UPSTREAM
from cosim.models.market.clearing import Bids
from cosim.models.market.dcopf import DCOPF
from cosim.models.market.network_dc import DCNetwork, dc_network

logging.getLogger("pandapower").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")
VOLL = 3000.0


def _network(n_bus: int, branches: list[tuple[int, int, float, float]]) -> DCNetwork:
    """A one-island DC network on buses 0..n-1 (slack 0); branches (from, to, x_pu, rate_mw)."""
    br = np.array(branches, dtype=float).reshape(-1, 4)
    return DCNetwork(
        bus=np.arange(n_bus),
        branch_from=br[:, 0].astype(np.int64),
        branch_to=br[:, 1].astype(np.int64),
        b_pu=1.0 / br[:, 2],
        shift_rad=np.zeros(len(br)),
        rate_mw=br[:, 3],
        slack=0,
        base_mva=100.0,
        branch_name=[f"line {k}" for k in range(len(br))],
        bus_lookup={b: b for b in range(n_bus)},
        island_ref=np.array([0]),
        island=np.zeros(n_bus, dtype=np.int64),
    )


def _bids(d_bus, d_mw, s_bus, s_max, s_price, s_c2=None) -> Bids:
    return Bids(
        demand_bus=np.asarray(d_bus, dtype=np.int64),
        demand_mw=np.asarray(d_mw, dtype=float),
        demand_price=np.full(len(d_mw), VOLL),
        supply_bus=np.asarray(s_bus, dtype=np.int64),
        supply_max_mw=np.asarray(s_max, dtype=float),
        supply_price=np.asarray(s_price, dtype=float),
        supply_c2=None if s_c2 is None else np.asarray(s_c2, dtype=float),
    )


def _nodal(network: DCNetwork, bids: Bids, f: np.ndarray, **kw) -> tuple[NodalFactors, MarginalEmissions]:
    res = DCOPF(network, bids.demand_bus, bids.supply_bus).clear(bids)
    assert res.status == "optimal"
    me = MarginalEmissions(network, bids.demand_bus, bids.supply_bus)
    return me.nodal(bids, res, f, **kw), me


# ---- factors --------------------------------------------------------------------------------------------


def test_factors_per_kind() -> None:
    """Defaults per kind (IPCC AR5 medians, UBA 2016 mix); demand kinds emit nothing; unknown kinds fail."""
    f = EmissionFactors()
    kinds = np.array(["pv", "sgen", "gen", "battery", "load", "ev"], dtype=object)
    np.testing.assert_array_equal(f.of_kind(kinds), [41.0, 48.0, 490.0, 0.0, 0.0, 0.0])
    assert float(f.upstream.marginal_kg_per_mwh(0)) == 527.0
    with pytest.raises(ValueError, match="wind"):
        f.of_kind(np.array(["wind"]))


def test_step_factors_imports_and_exports() -> None:
    """Agents' steps take their kind's factor; imports the upstream's; the export step minus the marginal."""
    kind = np.array(["pv", "battery", "load"], dtype=object)
    up = UpstreamGrid.stack([100.0, 100.0], [10.0, 50.0], [0.0, 900.0], base_mw=[50.0, 100.0])
    steps = StepFactors(
        supply_owner=np.array([0, 1, UPSTREAM]),
        demand_owner=np.array([2, 1, UPSTREAM]),
        agent_kind=kind,
        factors=EmissionFactors(upstream=up),
    )
    assert steps.import_mw(np.array([1.0, 0.0, 80.0]), np.array([3.0, 0.0, 20.0])) == 60.0
    fac = steps.at(0, 60.0)  # level 50 -> 110: 50 MWh at 0, 10 MWh at 900; the next MWh at 900
    np.testing.assert_allclose(fac.supply_kg_per_mwh, [41.0, 0.0, 9000.0 / 60.0])
    np.testing.assert_allclose(fac.supply_marginal_kg_per_mwh, [41.0, 0.0, 900.0])
    np.testing.assert_allclose(fac.demand_marginal_kg_per_mwh, [0.0, 0.0, -900.0])
    assert steps.at(1, -10.0).upstream_marginal_kg_per_mwh == 0.0  # base 100 - 10: the clean unit
    np.testing.assert_allclose(steps.seller_kg_per_mwh(np.array([0, UPSTREAM, 1]), fac), [41.0, 900.0, 0.0])


def test_upstream_constant_series_and_stack() -> None:
    """Marginal factor of the unit serving the next MWh; attributed = stack emissions per MWh imported."""
    assert UpstreamGrid.constant(400.0).kind == "constant"
    series = UpstreamGrid.series(np.array([300.0, 500.0, 700.0]))
    assert series.kind == "series" and float(series.marginal_kg_per_mwh(2, 5.0)) == 700.0
    assert float(series.attributed_kg_per_mwh(1, 5.0)) == 500.0
    # units given out of merit order: nuclear 100 MW @10, gas 200 MW @30, coal 100 MW @50; base 250 MW
    stack = UpstreamGrid.stack([200.0, 100.0, 100.0], [30.0, 50.0, 10.0], [400.0, 950.0, 0.0], base_mw=250.0)
    assert stack.kind == "stack"
    np.testing.assert_allclose(
        stack.marginal_kg_per_mwh(0, np.array([0.0, 49.0, 50.0, 60.0])), [400, 400, 950, 950]
    )
    assert float(stack.marginal_kg_per_mwh(0, -200.0)) == 0.0  # level 50: the nuclear unit
    assert float(stack.marginal_kg_per_mwh(0, 1000.0)) == 950.0  # beyond the stack: the last unit
    # import 100: 50 MWh of gas and 50 of coal -> 675; export 200: 150 MWh of gas and 50 of nuclear backed off
    assert float(stack.attributed_kg_per_mwh(0, 100.0)) == pytest.approx(675.0)
    assert float(stack.attributed_kg_per_mwh(0, -200.0)) == pytest.approx(300.0)
    assert float(stack.attributed_kg_per_mwh(0, 0.0)) == 400.0
    assert float(stack.attributed_kg_per_mwh(0, 200.0)) == pytest.approx(
        (50 * 400 + 100 * 950 + 50 * 950) / 200
    )


def test_interval_emissions() -> None:
    """Total = dispatch x factors x dt; average per MWh of demand served."""
    em = interval_emissions(np.array([2.0, 1.0]), np.array([2.5, 0.5]), np.array([100.0, 500.0]), 0.25)
    assert em.total_kg == pytest.approx((200.0 + 500.0) * 0.25)
    assert em.served_mwh == pytest.approx(0.75)
    assert em.average_kg_per_mwh == pytest.approx(175.0 / 0.75)
    np.testing.assert_allclose(em.supply_kg, [50.0, 125.0])
    only = interval_emissions(
        np.array([2.0]), np.array([2.5, 0.5]), np.array([100.0]), 1.0, np.array([True, False])
    )
    assert only.served_mwh == 2.5
    assert np.isnan(interval_emissions(np.zeros(1), np.zeros(1), np.ones(1), 1.0).average_kg_per_mwh)


def test_carbon_priced_is_a_cost_adder() -> None:
    """supply_price + f * cp / 1000; demand_price - g * cp / 1000; the given bids are left alone."""
    bids = _bids([0, 0], [1.0, 1.0], [0, 0], [1.0, 1.0], [10.0, 30.0])
    priced = carbon_priced(bids, np.array([950.0, 400.0]), 100.0, np.array([0.0, -500.0]))
    np.testing.assert_allclose(priced.supply_price, [105.0, 70.0])
    np.testing.assert_allclose(priced.demand_price, [VOLL, VOLL + 50.0])
    np.testing.assert_allclose(bids.supply_price, [10.0, 30.0])
    assert priced.supply_max_mw is bids.supply_max_mw


# ---- nodal marginal factors ------------------------------------------------------------------------------


def test_nodal_congested_qp_matches_resolve() -> None:
    """Triangle with a binding line and quadratic costs: sensitivities equal the re-solve (1e-6 relative)."""
    network = _network(3, [(0, 1, 0.1, 120.0), (1, 2, 0.1, np.inf), (0, 2, 0.1, np.inf)])
    bids = _bids([1, 2], [300.0, 50.0], [0, 2, 1], [400.0, 400.0, 10.0], [10.0, 20.0, 5.0], [0.05, 0.02, 0.0])
    f = np.array([950.0, 400.0, 41.0])
    nodal, me = _nodal(network, bids, f)
    assert nodal.status == "sensitivity"
    assert list(nodal.binding_branch) == [0]
    assert set(nodal.step.tolist()) == {2, 3}  # both thermal units (positions after the 2 demand steps)
    check = me.resolved(bids, f, eps_mw=1.0)
    assert check.status == "resolved"
    np.testing.assert_allclose(nodal.kg_per_mwh, check.kg_per_mwh, rtol=1e-6)
    assert np.ptp(nodal.kg_per_mwh) > 50.0  # congestion makes the factors differ by bus
    # the response balances one MW at every bus
    balance = nodal.step_sign @ nodal.response
    np.testing.assert_allclose(balance, 1.0, atol=1e-12)


def test_nodal_unit_at_bound_falls_back_to_resolve() -> None:
    """No marginal unit (the cheap one exactly at its maximum): re-solved; the next MWh is the dear unit's."""
    network = _network(2, [(0, 1, 0.1, np.inf)])
    bids = _bids([1], [100.0], [0, 1], [100.0, 100.0], [10.0, 20.0])
    f = np.array([950.0, 400.0])
    nodal, _ = _nodal(network, bids, f)
    assert nodal.status == "resolved"
    np.testing.assert_allclose(nodal.kg_per_mwh, [400.0, 400.0], atol=1e-6)
    failed, _ = _nodal(network, bids, f, resolve=False)
    assert failed.status == "failed" and np.isnan(failed.kg_per_mwh).all()


def test_nodal_singular_on_a_big_grid_is_left_unresolved(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above RESOLVE_MAX_BUSES a singular system is not re-solved (one DC-OPF per bus): NaN, "unresolved"."""
    network = _network(2, [(0, 1, 0.1, np.inf)])
    bids = _bids([1], [100.0], [0, 1], [100.0, 100.0], [10.0, 20.0])
    monkeypatch.setattr(emissions, "RESOLVE_MAX_BUSES", 1)
    nodal, me = _nodal(network, bids, np.array([950.0, 400.0]))
    assert nodal.status == "unresolved" and np.isnan(nodal.kg_per_mwh).all()
    assert me._probe is None  # no DC-OPF was built


def test_nodal_ties() -> None:
    """Two units at the same price: unique when their factors agree, flagged "tie" when they do not."""
    network = _network(2, [(0, 1, 0.1, np.inf)])
    bids = _bids([1], [150.0], [0, 1], [100.0, 100.0], [10.0, 10.0])
    same, _ = _nodal(network, bids, np.array([400.0, 400.0]))
    assert same.status == "sensitivity"
    np.testing.assert_allclose(same.kg_per_mwh, [400.0, 400.0])
    differ, _ = _nodal(network, bids, np.array([950.0, 400.0]))
    assert differ.status == "tie"
    assert differ.kg_per_mwh[0] in (pytest.approx(950.0), pytest.approx(400.0))


def test_nodal_export_and_demand_response() -> None:
    """An export step at the margin: one more MWh of demand is one MWh less exported, generated upstream."""
    network = _network(2, [(0, 1, 0.1, np.inf)])
    bids = Bids(
        demand_bus=np.array([1, 0]),
        demand_mw=np.array([1.0, 5.0]),
        demand_price=np.array([VOLL, 30.0]),  # a load; the upstream grid's export step at bus 0
        supply_bus=np.array([1]),
        supply_max_mw=np.array([3.0]),
        supply_price=np.array([0.0]),  # PV
    )
    nodal, _ = _nodal(network, bids, np.array([41.0]), demand_kg_per_mwh=np.array([0.0, -527.0]))
    assert nodal.status == "sensitivity"
    np.testing.assert_allclose(nodal.kg_per_mwh, [527.0, 527.0])


# ---- losses -----------------------------------------------------------------------------------------------


def _losses_mw(net) -> float:
    return float(net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum())


def _dloss_ddemand(net) -> np.ndarray:
    """Loss factors per MW withdrawn at the net's runpp state, from the AC power flow (net.bus rows)."""
    res = net.res_bus
    return -ACPowerFlow(net, ()).loss_sensitivities(res.vm_pu.to_numpy(), res.va_degree.to_numpy()).dloss_dp


def _fd_dloss_ddemand(net, buses, delta_mw: float) -> np.ndarray:
    out = []
    for b in buses:
        values = []
        for sign in (1.0, -1.0):
            n2 = copy.deepcopy(net)
            pp.create_load(n2, b, p_mw=sign * delta_mw)
            pp.runpp(n2, tolerance_mva=1e-12, numba=False)
            values.append(_losses_mw(n2))
        out.append((values[0] - values[1]) / (2 * delta_mw))
    return np.array(out)


def test_loss_factors_match_finite_differences_case9() -> None:
    """dP_loss/dD_b from the Jacobian equals pandapower.runpp finite differences on case9 (1e-4)."""
    net = pn.case9()
    pp.runpp(net, tolerance_mva=1e-12, numba=False)
    ell = _dloss_ddemand(net)
    fd = _fd_dloss_ddemand(net, net.bus.index, 1e-3)
    np.testing.assert_allclose(ell, fd, atol=1e-4)
    assert ell[0] == 0.0  # the slack balances
    assert np.ptp(ell) > 0.01


def test_loss_factors_match_finite_differences_simbench_lv() -> None:
    """The same on the default study's SimBench LV grid (the reference bus is the MV side of the trafo)."""
    import simbench as sb

    net = sb.get_simbench_net("1-LV-semiurb4--0-sw")
    pp.runpp(net, tolerance_mva=1e-12, numba=False)
    ell = _dloss_ddemand(net)
    is_slack = net.bus.index.isin(net.ext_grid.bus)
    rows = np.r_[0 : len(net.bus) : 5]
    fd = _fd_dloss_ddemand(net, net.bus.index[rows], 1e-5)
    np.testing.assert_allclose(ell[rows], fd, atol=1e-4)
    assert np.all(ell[is_slack] == 0.0) and np.all(ell[~is_slack] > 0.0)  # loads only: more loss


def _feeder():
    """Radial LV feeder: slack 0 - short line - bus 1 (load 60 kW) - long thin line - bus 2 (PV 20 kW,
    genset 5 kW): reverse flow on the last line, so injecting at bus 2 raises the losses."""
    net = pp.create_empty_network()
    b = [pp.create_bus(net, 0.4) for _ in range(3)]
    pp.create_ext_grid(net, b[0])
    pp.create_line_from_parameters(net, b[0], b[1], 0.1, 0.2, 0.08, 0.0, 0.3)
    pp.create_line_from_parameters(net, b[1], b[2], 1.0, 0.6, 0.08, 0.0, 0.3)
    pp.create_load(net, b[1], p_mw=0.06)
    pv = pp.create_sgen(net, b[2], p_mw=0.02)
    genset = pp.create_sgen(net, b[2], p_mw=0.005)
    pp.runpp(net, tolerance_mva=1e-12, numba=False)
    return net, pv, genset


def test_loss_adjusted_factor_equals_ac_response_of_the_marginal_unit() -> None:
    """Marginal supply at the slack: MEF_loss_b = MEF (1 + dL/dD_b) = emissions of the slack's response."""
    net, _, _ = _feeder()
    m = 950.0  # coal upstream at the margin
    network = dc_network(net)
    ell = _dloss_ddemand(net)
    nodal = NodalFactors(
        np.full(3, m),
        "sensitivity",
        np.array([1]),
        np.array([0]),
        np.array([1.0]),
        np.ones((1, 3)),
        np.zeros(0),
    )
    mu = loss_adjusted(nodal, ell, network.slack)
    np.testing.assert_allclose(mu, m * (1.0 + ell))
    assert mu[1] > m > mu[2]  # more demand at bus 1 adds losses, at bus 2 it relieves the reverse flow
    p0 = float(net.res_ext_grid.p_mw.sum())
    for b in (1, 2):
        n2 = copy.deepcopy(net)
        pp.create_load(n2, b, p_mw=1e-6)
        pp.runpp(n2, tolerance_mva=1e-12, numba=False)
        assert m * (float(n2.res_ext_grid.p_mw.sum()) - p0) / 1e-6 == pytest.approx(mu[b], rel=1e-5)


# ---- trades ------------------------------------------------------------------------------------------------


def test_trade_impacts_credit_for_pv_and_cost_for_loss_raising_trade() -> None:
    """PV sold to a consumer earns a credit; a genset cleaner than the marginal coal unit, whose delivery
    raises losses that the coal unit serves, carries a carbon cost. Both equal the AC re-solve."""
    net, pv, genset = _feeder()
    m, f_pv, f_genset = 950.0, 41.0, 890.0
    network = dc_network(net)
    pos = network.position_of(net.bus.index)
    # the DC-OPF market: load at bus 1, PV and genset at bus 2, upstream import (marginal) at the slack
    bids = Bids(
        demand_bus=np.array([1]),
        demand_mw=np.array([0.06]),
        demand_price=np.array([VOLL]),
        supply_bus=np.array([2, 2, 0]),
        supply_max_mw=np.array([0.02, 0.005, 1.0]),
        supply_price=np.array([0.0, 60.0, 80.0]),
    )
    f = np.array([f_pv, f_genset, m])
    nodal, _ = _nodal(network, bids, f)
    assert nodal.status == "sensitivity"
    np.testing.assert_allclose(nodal.kg_per_mwh, m)
    ell = _dloss_ddemand(net)
    ell_pos = np.empty(network.n_bus)
    ell_pos[pos] = ell  # net.bus rows -> DC positions
    mu = loss_adjusted(nodal, ell_pos, network.slack)
    seller, buyer, mwh = pos[[2, 2]], pos[[1, 1]], np.array([0.02, 0.005])
    imp = trade_impacts(seller, buyer, mwh, np.array([f_pv, f_genset]), nodal.kg_per_mwh, mu)
    total = imp.seller_kg + imp.displaced_kg + imp.congestion_kg + imp.loss_kg
    np.testing.assert_allclose(imp.total_kg, total)
    np.testing.assert_allclose(imp.total_kg, mwh * (np.array([f_pv, f_genset]) - mu[seller]))
    np.testing.assert_allclose(imp.congestion_kg, 0.0)
    assert imp.loss_kg[1] > 0  # delivering from bus 2 to bus 1 raises the losses
    assert imp.total_kg[0] < 0 < imp.total_kg[1]  # PV: credit; genset: carbon cost
    # the AC counterfactual: without the trade the seller does not produce (buyer's load unchanged)
    p0 = float(net.res_ext_grid.p_mw.sum())
    for k, (el, fs) in enumerate([(pv, f_pv), (genset, f_genset)]):
        n2 = copy.deepcopy(net)
        n2.sgen.at[el, "p_mw"] -= 1e-6
        pp.runpp(n2, tolerance_mva=1e-12, numba=False)
        per_mwh = fs - m * (float(n2.res_ext_grid.p_mw.sum()) - p0) / 1e-6
        assert imp.total_kg[k] / mwh[k] == pytest.approx(per_mwh, rel=1e-4)
    # a buyer whose consumption exists only because of the trade: seller + delivery, nothing displaced
    extra = trade_impacts(
        seller, buyer, mwh, np.array([f_pv, f_genset]), nodal.kg_per_mwh, mu, displaces=False
    )
    np.testing.assert_allclose(extra.displaced_kg, 0.0)
    np.testing.assert_allclose(extra.total_kg, mwh * (np.array([f_pv, f_genset]) + mu[buyer] - mu[seller]))


def test_trade_across_congestion() -> None:
    """The congestion term is E (MEF_b - MEF_s); the total stays E (f_s - MEF_s) without losses."""
    mef = np.array([950.0, 400.0, 600.0])
    imp = trade_impacts(np.array([0, 2]), np.array([1, 0]), np.array([2.0, 1.0]), np.array([41.0, 0.0]), mef)
    np.testing.assert_allclose(imp.congestion_kg, [2.0 * (400 - 950), 950 - 600])
    np.testing.assert_allclose(imp.loss_kg, 0.0)
    np.testing.assert_allclose(imp.total_kg, [2.0 * (41 - 950), -600.0])


# ---- the whole account ----------------------------------------------------------------------------------


def test_emission_accounting_update_on_a_bidder() -> None:
    """One interval through the build-once account: totals, per-agent, nodal and loss-adjusted, trades."""
    from cosim.models.accounting.emissions import EmissionAccounting
    from cosim.models.market.bidding import Bidder, BidRules, merit_order_trades

    net, pv, genset = _feeder()
    kind = np.array(["load", "pv", "sgen"], dtype=object)
    bus = np.array([1, 2, 2])
    elements = [("load", 0), ("sgen", int(pv)), ("sgen", int(genset))]
    rules = BidRules(VOLL, 1.0, (), 0.0, 40.0, 70.0, 80.0, 30.0, 1.0, 1.0)
    bidder = Bidder(net, kind, bus, elements, rules)
    bids = bidder.bids(np.array([0.06, -0.02, -0.005]), np.zeros(0), np.zeros(0))
    network = dc_network(net)
    clearing = DCOPF(network, bidder.demand_bus, bidder.supply_bus).clear(bids)
    d_step, s_step, mw = merit_order_trades(
        clearing.demand_mw, bids.demand_price, clearing.supply_mw, bids.supply_price
    )
    trades = {"buyer": bidder.demand_owner[d_step], "seller": bidder.supply_owner[s_step], "mwh": mw * 0.5}
    acc = EmissionAccounting(net, network, bidder, kind, bus)
    res = net.res_bus
    a = acc.update(0, bids, clearing, 0.5, res.vm_pu.to_numpy(), res.va_degree.to_numpy(), trades)
    np.testing.assert_allclose(clearing.supply_mw, [0.02, 0.005, 0.035], atol=1e-9)  # pv, sgen, import
    assert a.total_kg == pytest.approx(0.5 * (0.02 * 41 + 0.005 * 48 + 0.035 * 527))
    assert a.average_kg_per_mwh == pytest.approx(a.total_kg / 0.03)
    np.testing.assert_allclose(a.agent_kg, [0.0, 0.5 * 0.02 * 41, 0.5 * 0.005 * 48])
    assert a.upstream_kg == pytest.approx(0.5 * 0.035 * 527)
    assert a.mef_status == "sensitivity" and acc.n_without_factors == 0
    np.testing.assert_allclose(a.mef_kg_per_mwh, 527.0)
    np.testing.assert_allclose(a.mef_loss_kg_per_mwh, 527.0 * (1.0 + a.dloss_ddemand))
    f_seller = np.select([trades["seller"] == 1, trades["seller"] == 2], [41.0, 48.0], 527.0)
    seller_row = np.where(trades["seller"] >= 0, bus[np.maximum(trades["seller"], 0)], 0)
    np.testing.assert_allclose(
        a.trades.total_kg, trades["mwh"] * (f_seller - a.mef_loss_kg_per_mwh[seller_row]), atol=1e-12
    )
    assert np.all(a.trades.total_kg[trades["seller"] >= 0] < 0)  # local PV displaces the upstream grid
    np.testing.assert_allclose(a.trades.total_kg[trades["seller"] == UPSTREAM], 0.0, atol=1e-12)
    unsolved = dataclasses.replace(clearing, status="failed")
    assert np.isnan(acc.update(1, bids, unsolved, 0.5).mef_kg_per_mwh).all()
    assert acc.n_without_factors == 1  # counted for the run's warning


def test_copper_plate_factor_is_the_marginal_offers_kind() -> None:
    """On the copper plate of a 3-bus net (every bus one node) the uniform auction's marginal offer sets
    the factor at every bus: 1 MW of demand with 0.5 MW of PV (41) and imports (527) -> 527; 0.3 MW -> 41
    (the PV is then marginal); with inelastic demand at two buses, both get the same factor."""
    import pandapower as pp

    from cosim.models.market.auction import UniformAuction
    from cosim.models.market.network_dc import copper_plate

    net = pp.create_empty_network()
    buses = [pp.create_bus(net, 0.4) for _ in range(3)]
    pp.create_ext_grid(net, buses[0])
    for a, b in ((0, 1), (1, 2)):
        pp.create_line(net, buses[a], buses[b], 0.1, "NAYY 4x50 SE")
    plate = copper_plate(net)
    assert plate.n_bus == 1 and plate.n_branch == 0
    np.testing.assert_array_equal(plate.position_of(buses), [0, 0, 0])
    marginal = MarginalEmissions(plate, np.array([1, 2]), np.array([2, 0]))
    factors = np.array([41.0, 527.0])  # PV at bus 2, import at the slack
    for demand, expected in ((1.0, 527.0), (0.3, 41.0)):
        bids = _bids([1, 2], [demand / 2, demand / 2], [2, 0], [0.5, 10.0], [0.0, 80.0])
        clearing = UniformAuction(2, 2).clear(bids)
        assert clearing.status == "optimal"
        nodal = marginal.nodal(bids, clearing, factors)
        np.testing.assert_allclose(nodal.kg_per_mwh, [expected], atol=1e-9)
