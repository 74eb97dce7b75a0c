"""Tests of the topology-following AC power flow against pandapower's runpp on modified copies."""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import simbench as sb

from cosim.models.grid.powerflow import ACPowerFlow, PowerFlowResult, set_injections
from cosim.models.grid.switching import SwitchingPowerFlow

logging.getLogger("pandapower").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")

TOL = 1e-6  # vm_pu, va_degree, loading_percent, MW
TOL_MVA = 1e-10  # solver tolerance on both sides, so that loading_percent agrees to TOL
RUNPP = {"tolerance_mva": TOL_MVA, "numba": False}  # numba's JIT compile alone takes seconds


@pytest.fixture(scope="module")
def mv_rural() -> pp.pandapowerNet:
    """SimBench MV rural grid (radial: its 6 ring open points are open line switches)."""
    return sb.get_simbench_net("1-MV-rural--0-sw")


def _agents(net: pp.pandapowerNet) -> tuple[list[tuple[str, int]], np.ndarray, np.ndarray]:
    """All loads and sgens as agents with their table set-points (load convention)."""
    elements = [("load", int(i)) for i in net.load.index] + [("sgen", int(i)) for i in net.sgen.index]
    p = np.r_[net.load.p_mw.to_numpy(), -net.sgen.p_mw.to_numpy()]
    q = np.r_[net.load.q_mvar.to_numpy(), -net.sgen.q_mvar.to_numpy()]
    return elements, p, q


def _runpp_out(net, elements, p, q, out_branches) -> pp.pandapowerNet:
    """runpp on a deep copy with the agents' set-points and the branches out of service."""
    ref = copy.deepcopy(net)
    for table, index in out_branches:
        ref[table].at[index, "in_service"] = False
    set_injections(ref, elements, p, q)
    pp.runpp(ref, **RUNPP)
    return ref


def _assert_matches(res: PowerFlowResult, ref: pp.pandapowerNet) -> None:
    """Bus voltages (NaN where isolated), branch loadings and losses equal runpp's.

    runpp gives NaN loading for an in-service branch touching an isolated bus, ACPowerFlow 0.0 (as for
    a branch out of service): compared as 0.0.
    """
    assert res.converged
    np.testing.assert_allclose(res.vm_pu, ref.res_bus.vm_pu.to_numpy(), rtol=0, atol=TOL)  # NaN == NaN
    np.testing.assert_allclose(res.va_degree, ref.res_bus.va_degree.to_numpy(), rtol=0, atol=TOL)
    for got, want in [
        (res.line_loading_percent, ref.res_line.loading_percent),
        (res.trafo_loading_percent, ref.res_trafo.loading_percent),
    ]:
        np.testing.assert_allclose(got, np.nan_to_num(want.to_numpy(), nan=0.0), rtol=0, atol=TOL)
    assert res.losses_mw == pytest.approx(ref.res_line.pl_mw.sum() + ref.res_trafo.pl_mw.sum(), abs=TOL)


def test_line_outage_meshed_case14_matches_runpp() -> None:
    """Each line outage of the meshed IEEE 14-bus net equals runpp with that line out of service."""
    net = pn.case14()
    elements = [("load", int(i)) for i in net.load.index]
    p, q = net.load.p_mw.to_numpy() * 1.1, net.load.q_mvar.to_numpy() * 0.9
    spf = SwitchingPowerFlow(net, elements, tolerance_mva=TOL_MVA)
    for k in (0, 6, 13):
        out = frozenset({("line", k)})
        res = spf.solve(p, q, out_branches=out)
        ref = _runpp_out(net, elements, p, q, out)
        _assert_matches(res, ref)
        assert res.line_loading_percent[k] == 0.0  # out of service: 0 loading, as pandapower
        assert res.import_mw == pytest.approx(ref.res_ext_grid.p_mw.sum(), abs=TOL)
    assert spf.n_topologies == 4


def test_line_outage_mv_rural_closed_rings_matches_runpp(mv_rural: pp.pandapowerNet) -> None:
    """MV rural with its ring open points closed (meshed): a ring line out matches runpp, no bus lost."""
    net = copy.deepcopy(mv_rural)
    net.switch.loc[(net.switch.et == "l") & ~net.switch.closed, "closed"] = True
    elements, p, q = _agents(net)
    spf = SwitchingPowerFlow(net, elements, tolerance_mva=TOL_MVA)
    out = frozenset({("line", 0), ("trafo", 1)})
    res = spf.solve(p, q, out_branches=out)
    ref = _runpp_out(net, elements, p, q, out)
    assert not np.isnan(res.vm_pu).any()
    _assert_matches(res, ref)
    assert res.import_mw == pytest.approx(ref.res_ext_grid.p_mw.sum(), abs=TOL)


def _microgrid() -> tuple[pp.pandapowerNet, list[tuple[str, int]], np.ndarray, np.ndarray]:
    """ext_grid - 20/0.4 kV trafo - LV feeder with loads, a PV sgen and a storage (all agents)."""
    net = pp.create_empty_network()
    mv = pp.create_bus(net, vn_kv=20.0)
    lv = [pp.create_bus(net, vn_kv=0.4) for _ in range(5)]
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    pp.create_transformer(net, mv, lv[0], std_type="0.4 MVA 20/0.4 kV")
    std = "NAYY 4x150 SE"
    for a, b, km in [(0, 1, 0.10), (1, 2, 0.08), (2, 3, 0.12), (1, 4, 0.05)]:
        pp.create_line(net, lv[a], lv[b], km, std)
    for b in (1, 2, 3, 4):
        pp.create_load(net, lv[b], p_mw=0.0)
    pp.create_sgen(net, lv[3], p_mw=0.0)
    pp.create_storage(net, lv[2], p_mw=0.0, max_e_mwh=0.2)
    elements = [("load", i) for i in range(4)] + [("sgen", 0), ("storage", 0)]
    p = np.array([0.030, 0.020, 0.045, 0.010, -0.025, -0.040])
    q = np.array([0.010, 0.005, 0.015, 0.003, 0.0, 0.0])
    return net, elements, p, q


def test_islanding_grid_forming_storage_matches_runpp() -> None:
    """Islanded with the storage as slack equals runpp with the substation trafo open and the ext_grid moved
    to the storage bus."""
    net, elements, p, q = _microgrid()
    gf = 5  # the storage column
    spf = SwitchingPowerFlow(net, elements, tolerance_mva=TOL_MVA)
    res = spf.solve(p, q, grid_forming=gf)

    ref = copy.deepcopy(net)
    set_injections(ref, elements, p, q)
    ref.ext_grid["in_service"] = False
    ref.trafo["in_service"] = False  # the point of common coupling opens
    ref.storage.at[0, "in_service"] = False
    pp.create_ext_grid(ref, int(ref.storage.at[0, "bus"]), vm_pu=1.0, va_degree=0.0)
    pp.runpp(ref, **RUNPP)
    _assert_matches(res, ref)

    assert res.import_mw == 0.0
    assert res.grid_forming_mw == pytest.approx(ref.res_ext_grid.p_mw.sum(), abs=TOL)
    served = np.delete(p, gf).sum()  # the storage's own set-point is ignored
    assert res.grid_forming_mw == pytest.approx(served + res.losses_mw, abs=TOL)
    assert res.vm_pu[int(net.storage.at[0, "bus"])] == pytest.approx(1.0, abs=1e-12)
    # set-point of the grid-forming column has no effect
    p2 = p.copy()
    p2[gf] = 5.0
    np.testing.assert_allclose(spf.solve(p2, q, grid_forming=gf).vm_pu, res.vm_pu, rtol=0, atol=1e-9)
    assert np.isnan(spf.solve(p, q).grid_forming_mw)  # connected: not set


def test_island_with_outage_drops_cut_off_agents() -> None:
    """Islanded and a line out: buses cut off from the grid-forming unit are NaN, their load unserved."""
    net, elements, p, q = _microgrid()
    spf = SwitchingPowerFlow(net, elements)
    res = spf.solve(p, q, out_branches={("line", 3)}, grid_forming=5)  # cuts off bus of load 3
    cut, mv = int(net.line.at[3, "to_bus"]), 0  # the MV bus is cut off too: the substation trafo opens
    assert np.isnan(res.vm_pu[[cut, mv]]).all() and np.isfinite(np.delete(res.vm_pu, [cut, mv])).all()
    served = p[[0, 1, 2, 4]].sum()
    assert res.grid_forming_mw == pytest.approx(served + res.losses_mw, abs=TOL)


def test_return_to_intact_reuses_instances(mv_rural: pp.pandapowerNet) -> None:
    """Back in the intact state: same as a fresh ACPowerFlow, no new instance; repeated states reused."""
    elements, p, q = _agents(mv_rural)
    spf = SwitchingPowerFlow(mv_rural, elements)
    assert spf.n_topologies == 1 and spf.net is mv_rural
    spf.solve(p, q)
    spf.solve(p * 1.2, q, out_branches={("line", 5)})
    assert spf.n_topologies == 2
    res = spf.solve(p, q)
    assert spf.n_topologies == 2
    fresh = ACPowerFlow(mv_rural, elements).solve(p, q)
    for name in ("vm_pu", "va_degree", "line_loading_percent", "trafo_loading_percent"):
        np.testing.assert_allclose(getattr(res, name), getattr(fresh, name), rtol=0, atol=TOL)
    assert res.import_mw == pytest.approx(fresh.import_mw, abs=TOL)
    # the same state given as a list, a set or a frozenset is one instance
    spf.solve(p, q, out_branches=[("line", 5)])
    spf.solve(p, q, out_branches={("line", 5)})
    assert spf.n_topologies == 2


def test_branch_already_out_of_service_is_the_intact_state() -> None:
    """Naming a branch that is already out of service in the intact net builds no new instance."""
    net = pn.case14()
    net.line.at[2, "in_service"] = False
    spf = SwitchingPowerFlow(net, [("load", int(i)) for i in net.load.index])
    spf.solve(net.load.p_mw.to_numpy(), net.load.q_mvar.to_numpy(), out_branches={("line", 2)})
    assert spf.n_topologies == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out_branches": {("line", 999)}}, r"\('line', 999\)"),
        ({"out_branches": {("bus", 1)}}, r"\('bus', 1\)"),
        ({"out_branches": {("trafo", 7)}}, r"\('trafo', 7\)"),
        ({"grid_forming": 0}, r"\('load', 0\)"),
        ({"grid_forming": 6}, "column 6"),
    ],
)
def test_bad_names_raise_value_error(kwargs: dict, match: str) -> None:
    """A branch that does not exist or a grid-forming column that is not a storage/sgen/gen is rejected."""
    net, elements, p, q = _microgrid()
    spf = SwitchingPowerFlow(net, elements)
    with pytest.raises(ValueError, match=match):
        spf.solve(p, q, **kwargs)
    assert spf.n_topologies == 1


def test_outage_isolating_buses_mv_rural(mv_rural: pp.pandapowerNet) -> None:
    """A feeder-head line out in the radial MV grid: the cut-off buses are NaN, the rest matches runpp."""
    elements, p, q = _agents(mv_rural)
    spf = SwitchingPowerFlow(mv_rural, elements, tolerance_mva=TOL_MVA)
    out = frozenset({("line", 0)})
    res = spf.solve(p, q, out_branches=out)
    ref = _runpp_out(mv_rural, elements, p, q, out)
    isolated = np.isnan(res.vm_pu)
    assert isolated.sum() > 0 and np.isfinite(res.vm_pu[~isolated]).all()
    _assert_matches(res, ref)  # the same buses are NaN in runpp
    cut_lines = np.isin(mv_rural.line.from_bus, mv_rural.bus.index[isolated])
    assert cut_lines.any() and (res.line_loading_percent[cut_lines] == 0.0).all()  # runpp: NaN
    assert np.isnan(ref.res_line.loading_percent.to_numpy()[cut_lines]).all()
    assert res.line_loading_percent[0] == 0.0  # out of service (runpp: NaN too, as it touches a cut-off bus)
    # agents at isolated buses are not served: import = served agents + losses (no shunts here)
    bus_lookup = mv_rural.bus.index.get_indexer
    agent_bus = np.r_[mv_rural.load.bus.to_numpy(), mv_rural.sgen.bus.to_numpy()]
    served = ~isolated[bus_lookup(agent_bus)]
    assert (~served).any()
    assert res.import_mw == pytest.approx(p[served].sum() + res.losses_mw, abs=TOL)
    assert res.import_mw == pytest.approx(ref.res_ext_grid.p_mw.sum(), abs=TOL)
