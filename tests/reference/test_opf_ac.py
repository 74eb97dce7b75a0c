"""The AC-OPF market against MATPOWER's published AC-OPF objectives and pandapower's own OPF."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from cosim.models.market.acopf import ACOPF
from cosim.models.market.clearing import Bids, Clearing

logging.getLogger("pandapower").setLevel(logging.ERROR)

MUST_SERVE_PER_MWH = 1e4  # demand bids at this price are fixed loads, as in MATPOWER

# MATPOWER `runopf` (AC, default MIPS solver, apparent-power branch limits) objective values, $/h, on its
# case files, as quoted by:
# case5 17551.89 - PJM 5-bus (MATPOWER data/case5.m, Li & Bo 2010): the AC objective of PGLib-OPF's
#   pglib_opf_case5_pjm (MATPOWER's case5 with ratings on the four unrated branches, which do not bind),
#   asserted by the gurobi-optimods OPF tests and rosetta-opf (17551.891);
# case9 5296.686204 - gurobi-optimods OPF test suite (objvals_ac, MATPOWER case9.m);
# case14 8081.52 - PowerModels.jl tests (ACP OPF on test/data/matpower/case14.m);
# case30 576.89, case118 129660.694 - reference table of MATPOWER's runopf objectives (case30.m is MATPOWER's
#   case30, i.e. pandapower `case30`, not `case_ieee30`);
# case39 41864.18 - PYPOWER/MATPOWER runopf(case39) output, also the local and global optimum reported by
#   Ghaddar, Marecek & Mevissen (2016, Table 4).
# Independently, pandapower's runopp with a controllable ext_grid gives 5296.686, 8081.527, 576.891,
# 41864.178 and 129668.854: case118 differs from MATPOWER by 6e-5 relative because pandapower limits
# branch current (OPF_FLOW_LIM=2) where MATPOWER limits apparent power, and its case118 predates
# MATPOWER's 2019 change of two lines to transformers.
MATPOWER_COST = {
    "case5": 17551.89,
    "case9": 5296.686204,
    "case14": 8081.52,
    "case30": 576.89,
    "case39": 41864.18,
    "case118": 129660.694,
}


def _case(name: str) -> tuple[object, Bids, np.ndarray, float]:
    """A pandapower MATPOWER case as bids: fixed loads, one supply step per gen/ext_grid cost row."""
    net = getattr(pn, name)()
    load = net.load[net.load.in_service]
    rows = []
    for _, cost in net.poly_cost.iterrows():
        element = net[cost.et].loc[cost.element]
        rows.append(
            (
                element.bus,
                element.min_p_mw,
                element.max_p_mw,
                cost.cp1_eur_per_mw,
                cost.cp2_eur_per_mw2,
                cost.cp0_eur,
            )
        )
    supply = np.array(rows, dtype=float)
    bids = Bids(
        demand_bus=load.bus.to_numpy(),
        demand_mw=load.p_mw.to_numpy(),
        demand_price=np.full(len(load), MUST_SERVE_PER_MWH),
        supply_bus=supply[:, 0].astype(int),
        supply_min_mw=supply[:, 1],
        supply_max_mw=supply[:, 2],
        supply_price=supply[:, 3],
        supply_c2=supply[:, 4],
    )
    q_ratio = (load.q_mvar / load.p_mw).to_numpy()
    return net, bids, q_ratio, float(supply[:, 5].sum())


def _market(net: object, bids: Bids, q_ratio: np.ndarray) -> ACOPF:
    """An ACOPF serving the must-serve demand in full."""
    return ACOPF(
        net,
        bids.demand_bus,
        bids.supply_bus,
        demand_q_ratio=q_ratio,
        fixed_demand_price_per_mwh=MUST_SERVE_PER_MWH,
    )


@pytest.mark.parametrize("name", list(MATPOWER_COST))
def test_generation_cost_matches_matpower(name: str) -> None:
    """With fixed loads and the cases' own costs, the generation cost is MATPOWER's AC-OPF objective."""
    net, bids, q_ratio, constant_cost = _case(name)
    clearing = _market(net, bids, q_ratio).clear(bids)
    assert clearing.status == "optimal"
    np.testing.assert_allclose(clearing.demand_mw, bids.demand_mw, rtol=1e-9)
    # Bids carry no constant cost term; MATPOWER's objective includes the cases' c0
    np.testing.assert_allclose(clearing.cost + constant_cost, MATPOWER_COST[name], rtol=1e-3)


def test_case5_current_limit_equals_pandapower_runopp() -> None:
    """branch_limit "current" on case5 is pandapower's own runopp (current limits), ~8 % below the MVA.

    Reference: pandapower's runopp on the unmodified case5 with a controllable ext_grid (its own
    formulation: gens, no bid steps), from a power-flow start (the only start it converges from).
    """
    net, bids, q_ratio, constant_cost = _case("case5")
    kwargs = {"demand_q_ratio": q_ratio, "fixed_demand_price_per_mwh": MUST_SERVE_PER_MWH}
    current = ACOPF(net, bids.demand_bus, bids.supply_bus, branch_limit="current", **kwargs).clear(bids)
    mva = ACOPF(net, bids.demand_bus, bids.supply_bus, branch_limit="mva", **kwargs).clear(bids)
    net.ext_grid["controllable"] = True
    pp.runopp(net, init="pf")
    assert net.OPF_converged
    np.testing.assert_allclose(current.cost + constant_cost, net.res_cost, rtol=1e-6)
    np.testing.assert_allclose(current.vm_pu, net.res_bus.vm_pu.to_numpy(), atol=1e-4)
    assert (mva.cost - current.cost) / mva.cost == pytest.approx(0.079, abs=0.002)


def test_mva_limit_binds_on_case5_line_d_e() -> None:
    """Under the MVA limit the 240 MVA branch D-E (line 5) of case5 is loaded to its rating at one end."""
    net, bids, q_ratio, _ = _case("case5")
    market = _market(net, bids, q_ratio)
    market.clear(bids)
    res = market.net.res_line.loc[5]
    s_mva = max(np.hypot(res.p_from_mw, res.q_from_mvar), np.hypot(res.p_to_mw, res.q_to_mvar))
    assert s_mva == pytest.approx(240.0, rel=1e-5)


def test_case5_mva_limit_equals_pandapower_runopp_with_s_limits() -> None:
    """The MVA-limited clearing of case5 is pandapower's runopp with OPF_FLOW_LIM=0 (apparent power) on the
    unmodified case whose unrated branches carry no limit (MATPOWER's rateA = 0): cost and voltages."""
    net, bids, q_ratio, constant_cost = _case("case5")
    clearing = _market(net, bids, q_ratio).clear(bids)
    net.ext_grid["controllable"] = True
    net.line.loc[net.line.max_i_ka >= 99999.0, "max_loading_percent"] = 0.0  # pandapower's rateA = 0 marker
    pp.runopp(net, init="flat", OPF_FLOW_LIM=0)
    np.testing.assert_allclose(clearing.cost + constant_cost, net.res_cost, rtol=1e-6)
    assert clearing.vm_pu is not None and clearing.q_mvar is not None
    np.testing.assert_allclose(clearing.vm_pu, net.res_bus.vm_pu.to_numpy(), atol=1e-4)
    # the reactive dispatch per bus is the net's generators' (gen, sgen, ext_grid) summed per bus
    q_bus = np.zeros(len(net.bus))
    for table in ("gen", "sgen", "ext_grid"):
        np.add.at(q_bus, net[table].bus.to_numpy(), net[f"res_{table}"].q_mvar.to_numpy())
    np.testing.assert_allclose(clearing.q_mvar, q_bus, atol=0.05)


def test_unknown_branch_limit_is_refused() -> None:
    """A branch_limit other than mva or current raises ValueError naming the choices."""
    net, bids, q_ratio, _ = _case("case9")
    with pytest.raises(ValueError, match="current"):
        ACOPF(net, bids.demand_bus, bids.supply_bus, branch_limit="p")


def test_prices_equal_pandapower_runopp_on_case9() -> None:
    """On case9 the active and reactive prices equal pandapower's runopp with a controllable ext_grid, under
    either branch limit (pandapower's OPF_FLOW_LIM 0 = MVA, 2 = current)."""
    for branch_limit, flow_lim in (("mva", 0), ("current", 2)):
        net, bids, q_ratio, constant_cost = _case("case9")
        market = ACOPF(
            net, bids.demand_bus, bids.supply_bus, demand_q_ratio=q_ratio,
            fixed_demand_price_per_mwh=MUST_SERVE_PER_MWH, branch_limit=branch_limit,
        )  # fmt: skip
        clearing = market.clear(bids)
        net.ext_grid["controllable"] = True
        pp.runopp(net, init="flat", OPF_FLOW_LIM=flow_lim)
        _assert_same_prices(clearing, net, constant_cost)


def _assert_same_prices(clearing: Clearing, net: Any, constant_cost: float) -> None:
    """Prices, reactive prices and cost of a clearing equal those of a solved pandapower OPF."""
    np.testing.assert_allclose(clearing.price_per_mwh, net.res_bus.lam_p.to_numpy(), rtol=1e-6)
    assert clearing.price_q_per_mvarh is not None
    assert clearing.price_q_per_mvarh.shape == (len(net.bus),)
    assert np.all(np.isfinite(clearing.price_q_per_mvarh))
    np.testing.assert_allclose(clearing.price_q_per_mvarh, net.res_bus.lam_q.to_numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(clearing.cost + constant_cost, net.res_cost, rtol=1e-9)


def test_repeated_clears_give_the_same_result() -> None:
    """Clearing the same bids twice (only limits and costs rewritten in place) gives the same dispatch."""
    net, bids, q_ratio, _ = _case("case9")
    market = _market(net, bids, q_ratio)
    first, second = market.clear(bids), market.clear(bids)
    np.testing.assert_allclose(second.supply_mw, first.supply_mw, rtol=1e-9)
    np.testing.assert_allclose(second.price_per_mwh, first.price_per_mwh, rtol=1e-9)


def test_too_little_supply_for_fixed_demand_is_not_converged() -> None:
    """Supply far below the fixed demand returns status "not converged" and NaNs, without raising."""
    net, bids, q_ratio, _ = _case("case9")
    market = _market(net, bids, q_ratio)
    scarce = replace(bids, supply_min_mw=0 * bids.supply_max_mw, supply_max_mw=0.1 * bids.supply_max_mw)
    clearing = market.clear(scarce)
    assert clearing.status == "not converged"
    assert np.all(np.isnan(clearing.price_per_mwh)) and np.all(np.isnan(clearing.demand_mw))
    assert np.isnan(clearing.welfare)
    assert market.clear(bids).status == "optimal"  # the market recovers on the next interval


def test_too_little_supply_sheds_elastic_demand() -> None:
    """With elastic demand, scarce supply is all dispatched and demand curtailed, priced above every offer."""
    net, bids, q_ratio, _ = _case("case9")
    elastic = replace(bids, demand_price=np.full(len(bids.demand_bus), 100.0))
    scarce = replace(elastic, supply_max_mw=0.3 * bids.supply_max_mw)
    clearing = ACOPF(net, bids.demand_bus, bids.supply_bus, demand_q_ratio=q_ratio).clear(scarce)
    assert clearing.status == "optimal"
    assert clearing.demand_mw.sum() < scarce.supply_max_mw.sum() < bids.demand_mw.sum()  # losses come off too
    np.testing.assert_allclose(clearing.supply_mw, scarce.supply_max_mw, rtol=1e-4)
    assert np.all(clearing.price_per_mwh > scarce.supply_price.max())
    assert clearing.welfare > 0
