"""Nodal marginal emission factors and a carbon price on the PJM 5-bus system (Li & Bo 2010, case5).

Emission factors of case5's generators are illustrative (the case has none), typical direct values
of the technologies their costs suggest: Alta (gen 0, bus A, 40 MW, 14 $/MWh) nuclear 0; Park City
(sgen 0, bus A, 170 MW, 15 $/MWh) oil steam 750; Solitude (gen 1, bus C, 520 MW, 30 $/MWh) gas
combined cycle 400; Sundance (ext_grid 0, bus D, 200 MW, 40 $/MWh) gas combustion turbine 600;
Brighton (gen 2, bus E, 600 MW, 10 $/MWh) coal 950 kg CO2/MWh.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import h5py
import numpy as np
import pandapower.networks as pn
import pytest
import yaml

import cosim
from cosim.models.accounting.emissions import MarginalEmissions, carbon_priced, interval_emissions
from cosim.models.market.clearing import Bids
from cosim.models.market.dcopf import DCOPF
from cosim.models.market.network_dc import DCNetwork, dc_network
from tests.reference.test_opf_dc import INELASTIC_PRICE, case_bids

logging.getLogger("pandapower").setLevel(logging.ERROR)

# supply steps in case_bids order (net.poly_cost rows): Alta, Park City, Solitude, Sundance, Brighton
PJM5_KG_PER_MWH = np.array([0.0, 750.0, 400.0, 600.0, 950.0])
PJM5_LMP = [16.98, 26.38, 30.00, 39.94, 10.00]  # Li & Bo (2010), buses A..E
PJM5_MEF = [758.12263237, 499.42736323, 400.0, 126.57475112, 950.0]  # kg/MWh, buses A..E (checked below)


def _perturbed(network: DCNetwork, bids: Bids, f: np.ndarray, eps_mw: float) -> np.ndarray:
    """MEF of every bus by an independent re-solve: a fresh DC-OPF with eps_mw more demand at the bus."""
    out = np.zeros(network.n_bus)
    for b in range(network.n_bus):
        demand_bus = np.r_[bids.demand_bus, network.bus[b]]
        fresh = DCOPF(network, demand_bus, bids.supply_bus)
        supply = []
        for eps in (0.0, eps_mw):
            res = fresh.clear(
                dataclasses.replace(
                    bids,
                    demand_bus=demand_bus,
                    demand_mw=np.r_[bids.demand_mw, eps],
                    demand_price=np.r_[bids.demand_price, INELASTIC_PRICE],
                )
            )
            assert res.status == "optimal"
            supply.append(res.supply_mw)
        out[b] = f @ (supply[1] - supply[0]) / eps_mw
    return out


def _pjm5():
    net = pn.case5()
    network = dc_network(net)
    bids, _ = case_bids(net)
    res = DCOPF(network, bids.demand_bus, bids.supply_bus).clear(bids)
    assert res.status == "optimal"
    me = MarginalEmissions(network, bids.demand_bus, bids.supply_bus)
    return net, network, bids, res, me


def test_pjm5_nodal_factors_match_resolve() -> None:
    """Sensitivity MEFs (Solitude and Brighton marginal, E-D binding) equal a fresh re-solve to 1e-6."""
    net, network, bids, res, me = _pjm5()
    nodal = me.nodal(bids, res, PJM5_KG_PER_MWH)
    assert nodal.status == "sensitivity"
    assert [network.branch_name[k] for k in nodal.binding_branch] == ["line 5"]
    assert sorted(nodal.step.tolist()) == [len(bids.demand_bus) + 2, len(bids.demand_bus) + 4]
    pos = network.position_of(net.bus.index)
    mef = nodal.kg_per_mwh[pos]
    for eps_mw in (1.0, 1e-2):
        np.testing.assert_allclose(mef, _perturbed(network, bids, PJM5_KG_PER_MWH, eps_mw)[pos], atol=1e-6)
    # C and E have their own marginal unit; D, behind the binding line, trades Brighton for Solitude
    np.testing.assert_allclose(mef, PJM5_MEF, atol=1e-6)
    # the same sensitivities with costs in place of factors give the published LMPs
    lmp = me.nodal(bids, res, bids.supply_price).kg_per_mwh[pos]
    np.testing.assert_allclose(lmp, PJM5_LMP, atol=0.005)
    np.testing.assert_allclose(lmp, res.price_per_mwh[pos], atol=1e-6)
    # the built-in re-solve (one warm-started model with a demand step per bus) agrees too
    np.testing.assert_allclose(me.resolved(bids, PJM5_KG_PER_MWH).kg_per_mwh[pos], mef, atol=1e-6)


def test_pjm5_factors_from_the_scenario_key(tmp_path: Path) -> None:
    """The same check through ``emissions.elements`` in a scenario (no hand-edited net): a one-hour cosim
    run records the nodal marginal factors and the total of the hand-edited check above."""
    # Alta, Park City, Solitude, Brighton by their agent names; Sundance is case5's ext_grid (the upstream)
    elements = dict(
        zip(["gen 0", "sgen 0", "gen 1", "gen 2"], PJM5_KG_PER_MWH[[0, 1, 2, 4]].tolist(), strict=True)
    )
    scenario = {
        "name": "pjm5-emissions",
        "time": {"start": "2024-01-01T00:00:00", "duration": "1h", "step": "1h"},
        "grid": {"source": "pandapower", "case": "case5"},
        "market": {"design": "dcopf"},
        "emissions": {"upstream": {"kg_per_mwh": float(PJM5_KG_PER_MWH[3])}, "elements": elements},
    }
    path = tmp_path / "pjm5.yaml"
    path.write_text(yaml.safe_dump(scenario))
    summary = cosim.run(path, out=tmp_path / "pjm5.h5")
    *_, res, _ = _pjm5()
    with h5py.File(summary.path) as f:
        np.testing.assert_allclose(f["emissions/marginal_lossless_kg_per_mwh"][0], PJM5_MEF, atol=1e-6)
        names, p_mw = f["agents/name"].asstr()[:], f["agents/p_mw"][0]
        dispatch = {n: -p for n, p in zip(names, p_mw, strict=True) if n in elements}
        total = sum(dispatch[n] * kg for n, kg in elements.items()) + f["emissions/upstream_kg"][0]
        assert f["emissions/total_kg"][0] == pytest.approx(total, rel=1e-9)
        hand_edited = interval_emissions(res.supply_mw, res.demand_mw, PJM5_KG_PER_MWH, 1.0).total_kg
        assert f["emissions/total_kg"][0] == pytest.approx(hand_edited, rel=1e-6)
        assert f["emissions/total_kg"][0] == pytest.approx(170 * 750 + 323.49 * 400 + 466.51 * 950, abs=5.0)


@pytest.mark.parametrize("case", ["case9", "case30"])
def test_matpower_qp_nodal_factors_match_resolve(case: str) -> None:
    """Quadratic costs (every unit marginal): sensitivities equal the fresh re-solve to 1e-6 relative."""
    net = getattr(pn, case)()
    network = dc_network(net)
    bids, _ = case_bids(net)
    res = DCOPF(network, bids.demand_bus, bids.supply_bus).clear(bids)
    f = np.random.default_rng(7).uniform(0.0, 1000.0, len(bids.supply_bus))
    nodal = MarginalEmissions(network, bids.demand_bus, bids.supply_bus).nodal(bids, res, f)
    assert nodal.status == "sensitivity"
    np.testing.assert_allclose(nodal.kg_per_mwh, _perturbed(network, bids, f, 1.0), rtol=1e-6)


def test_pjm5_emissions_and_average() -> None:
    """Total emissions of the published dispatch and the average per MWh of the 1,000 MW served."""
    _, _, bids, res, _ = _pjm5()
    em = interval_emissions(res.supply_mw, res.demand_mw, PJM5_KG_PER_MWH, 1.0)
    # Li & Bo dispatch: Alta 40, Park City 170, Solitude 323.49, Sundance 0, Brighton 466.51 MW
    np.testing.assert_allclose(res.supply_mw, [40.0, 170.0, 323.49, 0.0, 466.51], atol=0.005)
    assert em.total_kg == pytest.approx(float(res.supply_mw @ PJM5_KG_PER_MWH))
    assert em.total_kg == pytest.approx(170 * 750 + 323.49 * 400 + 466.51 * 950, abs=5.0)
    assert em.served_mwh == pytest.approx(1000.0)
    assert em.average_kg_per_mwh == pytest.approx(em.total_kg / 1000.0)


def test_pjm5_carbon_price_shifts_dispatch_to_cleaner_units() -> None:
    """A carbon price in the offers: emissions fall as it rises; at 100 $/t coal gives way to gas."""
    net, network, bids, _, _ = _pjm5()
    opf = DCOPF(network, bids.demand_bus, bids.supply_bus)
    totals, dispatch = [], []
    for cp in (0.0, 25.0, 50.0, 100.0):
        res = opf.clear(carbon_priced(bids, PJM5_KG_PER_MWH, cp))
        assert res.status == "optimal"
        np.testing.assert_allclose(res.demand_mw, bids.demand_mw, atol=1e-6)  # every load still served
        totals.append(interval_emissions(res.supply_mw, res.demand_mw, PJM5_KG_PER_MWH, 1.0).total_kg)
        dispatch.append(res.supply_mw)
    assert np.all(np.diff(totals) <= 1e-6)
    assert totals[-1] < 0.8 * totals[0]
    brighton, solitude = 4, 2
    assert dispatch[-1][brighton] < dispatch[0][brighton] - 100.0
    assert dispatch[-1][solitude] > dispatch[0][solitude] + 100.0
