"""The AC-OPF market against MATPOWER's published AC-OPF objectives and pandapower's own OPF."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from cosim.models.market.acopf import ACOPF
from cosim.models.market.clearing import Bids

logging.getLogger("pandapower").setLevel(logging.ERROR)

MUST_SERVE_PER_MWH = 1e4  # demand bids at this price are fixed loads, as in MATPOWER

# MATPOWER `runopf` (AC, default MIPS solver) objective values, $/h, on its case files, as quoted by:
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


def test_prices_equal_pandapower_runopp_on_case9() -> None:
    """On case9 the active and reactive prices equal pandapower's runopp with a controllable ext_grid."""
    net, bids, q_ratio, constant_cost = _case("case9")
    clearing = _market(net, bids, q_ratio).clear(bids)
    net.ext_grid["controllable"] = True
    pp.runopp(net, init="flat")
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
