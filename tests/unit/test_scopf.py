"""Security-constrained clearing (preventive N-1 DC-OPF): costs, LMPs and post-contingency flows.

Post-contingency flows are checked against DC power flows computed here from scratch (a reduced B
matrix per outage, numpy only) and, for PJM 5-bus, by pandapower's ``rundcpp`` with the branch out of
service; neither uses the PTDF/LODF of the module under test.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import replace

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph

from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.dcopf import DCOPF
from cosim.models.market.network_dc import DCNetwork, dc_network
from cosim.models.market.scopf import SCOPF, security_cost
from tests.reference.test_opf_dc import case_bids

logging.getLogger("pandapower").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")
VOLL = 3000.0
TOL_MW = 1e-6


def _network(
    n_bus: int,
    branches: list[tuple[int, int, float, float]],
    shift_deg: dict[int, float] | None = None,
    island: list[int] | None = None,
) -> DCNetwork:
    """A DC network on buses 0..n-1; branches (from, to, x_pu, rate_mw); island numbers (default one)."""
    br = np.array(branches, dtype=float).reshape(-1, 4)
    shift = np.zeros(len(br))
    for k, deg in (shift_deg or {}).items():
        shift[k] = np.deg2rad(deg)
    isl = np.zeros(n_bus, dtype=np.int64) if island is None else np.asarray(island, dtype=np.int64)
    refs = np.array([int(np.flatnonzero(isl == i)[0]) for i in range(int(isl.max()) + 1)])
    return DCNetwork(
        bus=np.arange(n_bus),
        branch_from=br[:, 0].astype(np.int64),
        branch_to=br[:, 1].astype(np.int64),
        b_pu=1.0 / br[:, 2],
        shift_rad=shift,
        rate_mw=br[:, 3],
        slack=0,
        base_mva=100.0,
        branch_name=[f"line {k}" for k in range(len(br))],
        bus_lookup={b: b for b in range(n_bus)},
        island_ref=refs,
        island=isl,
    )


def _bids(d_bus, d_mw, s_bus, s_max, s_price, s_c2=None, d_price=None, s_min=None) -> Bids:
    return Bids(
        demand_bus=np.asarray(d_bus, dtype=np.int64),
        demand_mw=np.asarray(d_mw, dtype=float),
        demand_price=np.full(len(d_mw), VOLL) if d_price is None else np.asarray(d_price, dtype=float),
        supply_bus=np.asarray(s_bus, dtype=np.int64),
        supply_max_mw=np.asarray(s_max, dtype=float),
        supply_price=np.asarray(s_price, dtype=float),
        supply_min_mw=None if s_min is None else np.asarray(s_min, dtype=float),
        supply_c2=None if s_c2 is None else np.asarray(s_c2, dtype=float),
    )


def _injection(network: DCNetwork, bids: Bids, res: Clearing) -> np.ndarray:
    """(n_bus,) MW injected at each bus by the clearing."""
    n = network.n_bus
    return np.bincount(network.position_of(bids.supply_bus), res.supply_mw, n) - np.bincount(
        network.position_of(bids.demand_bus), res.demand_mw, n
    )


def _dc_power_flow(network: DCNetwork, p: np.ndarray, out: int | None = None) -> np.ndarray:
    """Branch flows [MW] of a DC power flow with branch ``out`` removed (its flow reported 0).

    ``B theta = p - P_shift`` with one angle per connected component fixed to 0, built from the branch
    list alone; ``flow = base_mva * b * (theta_f - theta_t - shift)``.
    """
    n, nb = network.n_bus, network.n_branch
    keep = np.ones(nb, dtype=bool)
    if out is not None:
        keep[out] = False
    f, t = network.branch_from[keep], network.branch_to[keep]
    b = network.base_mva * network.b_pu[keep]
    shift = network.shift_rad[keep]
    bbus = np.zeros((n, n))
    np.add.at(bbus, (f, f), b)
    np.add.at(bbus, (t, t), b)
    np.add.at(bbus, (f, t), -b)
    np.add.at(bbus, (t, f), -b)
    p_shift = np.zeros(n)
    np.add.at(p_shift, f, -b * shift)
    np.add.at(p_shift, t, b * shift)
    n_comp, comp = csgraph.connected_components(sp.csr_matrix((np.ones(len(f)), (f, t)), shape=(n, n)))
    rhs = p - p_shift
    for c in range(n_comp):
        assert abs(rhs[comp == c].sum()) < 1e-6, "injections of an island do not balance"
    ref = [int(np.flatnonzero(comp == c)[0]) for c in range(n_comp)]
    free = np.setdiff1d(np.arange(n), ref)
    theta = np.zeros(n)
    theta[free] = np.linalg.solve(bbus[np.ix_(free, free)], rhs[free])
    flow = np.zeros(nb)
    flow[keep] = b * (theta[f] - theta[t] - shift)
    return flow


def _is_bridge(network: DCNetwork, k: int) -> bool:
    """Whether removing branch k adds a connected component (independent of PTDFs)."""
    n = network.n_bus

    def n_comp(mask: np.ndarray) -> int:
        f, t = network.branch_from[mask], network.branch_to[mask]
        return csgraph.connected_components(sp.csr_matrix((np.ones(len(f)), (f, t)), shape=(n, n)))[0]

    keep = np.ones(network.n_branch, dtype=bool)
    keep[k] = False
    return n_comp(keep) > n_comp(np.ones(network.n_branch, dtype=bool))


def _worst_post_excess(network: DCNetwork, p: np.ndarray, outages, factor: float) -> float:
    """Largest post-contingency flow beyond factor * rate over the outages, by independent power flows."""
    worst = -np.inf
    for k in outages:
        flow = _dc_power_flow(network, p, int(k))
        others = np.arange(network.n_branch) != k
        worst = max(worst, float(np.max(np.abs(flow[others]) - factor * network.rate_mw[others])))
    return worst


def _check_secure(network: DCNetwork, opf: SCOPF, bids: Bids, res: Clearing, factor: float) -> None:
    """Pre- and post-contingency flows from independent DC power flows are within limits and reported."""
    assert res.status == "optimal"
    p = _injection(network, bids, res)
    pre = _dc_power_flow(network, p)
    np.testing.assert_allclose(res.line_flow_mw, pre, atol=TOL_MW)
    assert np.all(np.abs(pre) <= network.rate_mw + TOL_MW)
    for j, k in enumerate(opf.contingencies):
        post = _dc_power_flow(network, p, int(k))
        np.testing.assert_allclose(opf.last_post_flow_mw[:, j], post, atol=TOL_MW)
        others = np.arange(network.n_branch) != k
        assert np.all(np.abs(post[others]) <= factor * network.rate_mw[others] + TOL_MW), network.branch_name[
            k
        ]


# ---- two buses, two parallel lines: exact numbers -------------------------------------------------------

TWO_BUS = _network(2, [(0, 1, 0.1, 100.0), (0, 1, 0.1, 100.0)])
# 150 MW at bus 1; 10 $/MWh at bus 0, 50 $/MWh at bus 1. Unsecured: 150 MW from bus 0 (75 MW per line).
# Secured: after one line trips the other carries everything, so at most factor * 100 MW from bus 0.
TWO_BUS_BIDS = _bids([1], [150.0], [0, 1], [300.0, 300.0], [10.0, 50.0])


@pytest.mark.parametrize(
    ("factor", "cheap_mw", "cost"),
    [
        (1.0, 100.0, 100 * 10 + 50 * 50),
        (1.2, 120.0, 120 * 10 + 30 * 50),
        (1.5, 150.0, 1500.0),
        (3, 150.0, 1500.0),
    ],
)
def test_two_bus_parallel_lines(factor: float, cheap_mw: float, cost: float) -> None:
    """Cheap import limited to factor * rating; LMPs 10 / 50 while N-1 binds, 10 / 10 when it does not."""
    dc = DCOPF(TWO_BUS, TWO_BUS_BIDS.demand_bus, TWO_BUS_BIDS.supply_bus).clear(TWO_BUS_BIDS)
    assert dc.cost == pytest.approx(1500.0, abs=1e-6)
    opf = SCOPF(TWO_BUS, TWO_BUS_BIDS.demand_bus, TWO_BUS_BIDS.supply_bus, contingency_limit_factor=factor)
    res = opf.clear(TWO_BUS_BIDS)
    assert res.status == "optimal"
    np.testing.assert_allclose(res.supply_mw, [cheap_mw, 150.0 - cheap_mw], atol=1e-6)
    assert res.cost == pytest.approx(cost, abs=1e-6)
    assert security_cost(res, dc) == pytest.approx(cost - 1500.0, abs=1e-6)
    binds = cheap_mw < 150.0
    np.testing.assert_allclose(res.price_per_mwh, [10.0, 50.0 if binds else 10.0], atol=1e-6)
    # The import earns the price difference between the buses.
    assert res.congestion_rent == pytest.approx(cheap_mw * (res.price_per_mwh[1] - 10.0), abs=1e-6)
    np.testing.assert_allclose(opf.last_post_flow_mw, [[0.0, cheap_mw], [cheap_mw, 0.0]], atol=1e-6)
    _check_secure(TWO_BUS, opf, TWO_BUS_BIDS, res, factor)
    assert len(opf.islanding) == 0 and list(opf.contingency_names) == ["line 0", "line 1"]


def test_infeasible_security_gives_nan_clearing() -> None:
    """A must-run output that no single line may carry alone: status says so, numbers are NaN."""
    bids = _bids([0, 1], [50.0, 150.0], [0, 1], [300.0, 300.0], [10.0, 50.0], s_min=[180.0, 0.0])
    res = SCOPF(TWO_BUS, bids.demand_bus, bids.supply_bus).clear(bids)
    assert res.status != "optimal"
    assert np.isnan(res.cost) and np.all(np.isnan(res.price_per_mwh))
    assert DCOPF(TWO_BUS, bids.demand_bus, bids.supply_bus).clear(bids).status == "optimal"


# ---- a meshed net with a radial spur ---------------------------------------------------------------------

MESH = _network(
    5,
    [
        (0, 1, 0.10, 130.0),
        (1, 2, 0.10, 130.0),
        (2, 3, 0.10, 130.0),
        (3, 0, 0.10, 130.0),
        (0, 2, 0.15, 130.0),
        (3, 4, 0.10, 200.0),  # radial: its outage islands bus 4
    ],
)
MESH_BIDS = _bids(
    [1, 3, 4],
    [120.0, 120.0, 60.0],
    [0, 2, 4],
    [500.0, 500.0, 100.0],
    [10.0, 30.0, 80.0],
    s_c2=[0.01, 0.02, 0.0],
)


def test_mesh_n1_binds_and_is_secured() -> None:
    """The DC-OPF dispatch is not N-1 secure; SCOPF's is (independent power flows), at a higher cost."""
    net, bids = MESH, MESH_BIDS
    dc = DCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
    opf = SCOPF(net, bids.demand_bus, bids.supply_bus)
    res = opf.clear(bids)
    assert list(opf.islanding) == [5] and opf.islanding_names == ["line 5"]
    assert list(opf.contingencies) == [0, 1, 2, 3, 4]
    assert [k for k in range(net.n_branch) if _is_bridge(net, k)] == [5]
    # N-1 binds: the unsecured dispatch overloads some branch after some outage by more than 1 MW.
    assert _worst_post_excess(net, _injection(net, bids, dc), opf.contingencies, 1.0) > 1.0
    _check_secure(net, opf, bids, res, 1.0)
    assert res.demand_mw == pytest.approx(bids.demand_mw, abs=1e-6)
    assert res.cost > dc.cost + 1.0
    assert security_cost(res, dc) == pytest.approx(res.cost - dc.cost, abs=1e-6)
    assert np.any(opf.last_binding["outage"] >= 0)  # a post-contingency limit is priced
    assert opf.last_rounds >= 2 and opf.n_security_rows >= 1  # the lazy loop added rows


def _ptdf_lodf(network: DCNetwork) -> tuple[np.ndarray, np.ndarray]:
    """PTDF (withdrawal at bus 0) and LODF (n_br, n_br) from the B matrix, for a one-island network."""
    n, nb = network.n_bus, network.n_branch
    ptdf = np.zeros((nb, n))
    for b in range(1, n):
        p = np.zeros(n)
        p[b], p[0] = 1.0, -1.0
        ptdf[:, b] = _dc_power_flow(replace(network, shift_rad=np.zeros(nb)), p)
    f, t = network.branch_from, network.branch_to
    own = ptdf[np.arange(nb), f] - ptdf[np.arange(nb), t]
    with np.errstate(divide="ignore", invalid="ignore"):
        lodf = (ptdf[:, f] - ptdf[:, t]) / (1.0 - own)
    lodf[np.arange(nb), np.arange(nb)] = -1.0
    return ptdf, lodf


def test_lmps_carry_the_cost_of_security() -> None:
    """LMP_b = lambda - sum over binding (pre and post) limits of price x sensitivity to an injection at b."""
    net, bids = MESH, MESH_BIDS
    opf = SCOPF(net, bids.demand_bus, bids.supply_bus)
    res = opf.clear(bids)
    ptdf, lodf = _ptdf_lodf(net)
    lmp = opf.last_energy_price.copy()
    for br, k, mu in zip(*(opf.last_binding[key] for key in ("branch", "outage", "price")), strict=True):
        h = ptdf[br] if k < 0 else ptdf[br] + lodf[br, k] * ptdf[k]
        lmp -= mu * h
    np.testing.assert_allclose(res.price_per_mwh, lmp, atol=1e-6)
    # The marginal cost of energy at each generator bus: 10 + 2 * 0.01 * s at bus 0, 30 + 2 * 0.02 * s at 2.
    s = res.supply_mw
    assert res.price_per_mwh[0] == pytest.approx(10.0 + 0.02 * s[0], abs=1e-5)
    assert res.price_per_mwh[2] == pytest.approx(30.0 + 0.04 * s[1], abs=1e-5)
    # A generator that loses output to security is priced below an unsecured clearing's price.
    dc = DCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
    assert np.ptp(res.price_per_mwh[:4]) > np.ptp(dc.price_per_mwh[:4]) + 1e-3


def test_lazy_loop_equals_all_rows() -> None:
    """Adding violated rows until none is violated gives the result of the model with every row."""
    net, bids = MESH, MESH_BIDS
    lazy = SCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
    full_opf = SCOPF(net, bids.demand_bus, bids.supply_bus, constraints="full")
    full = full_opf.clear(bids)
    assert full_opf.n_security_rows == 6 * 5 - 5 and full_opf.last_rounds == 1
    np.testing.assert_allclose(lazy.supply_mw, full.supply_mw, atol=1e-6)
    np.testing.assert_allclose(lazy.price_per_mwh, full.price_per_mwh, atol=1e-6)
    assert lazy.welfare == pytest.approx(full.welfare, abs=1e-6)


def test_factor_relaxes_cost() -> None:
    """A larger post-contingency limit costs less until N-1 no longer binds; flows within factor x rating."""
    net, bids = MESH, MESH_BIDS
    dc = DCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
    costs = []
    for factor in (1.0, 1.1, 1.25, 1.55):
        opf = SCOPF(net, bids.demand_bus, bids.supply_bus, contingency_limit_factor=factor)
        res = opf.clear(bids)
        _check_secure(net, opf, bids, res, factor)
        assert res.demand_mw == pytest.approx(bids.demand_mw, abs=1e-6)
        costs.append(res.cost)
    assert costs[0] > costs[1] + 1.0 > costs[2] + 2.0 > dc.cost + 3.0
    assert costs[3] == pytest.approx(dc.cost, abs=1e-6)  # at 1.55 x rating no outage overloads anything


def test_no_binding_equals_dcopf() -> None:
    """With ratings N-1 cannot reach (or a factor that large), the SCOPF result is the DC-OPF's."""
    bids = MESH_BIDS
    loose = replace(MESH, rate_mw=MESH.rate_mw * 10)
    for net, factor in ((loose, 1.0), (MESH, 10.0)):
        dc = DCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
        opf = SCOPF(net, bids.demand_bus, bids.supply_bus, contingency_limit_factor=factor)
        res = opf.clear(bids)
        assert res.cost == pytest.approx(dc.cost, abs=1e-6)
        assert security_cost(res, dc) == pytest.approx(0.0, abs=1e-6)
        np.testing.assert_allclose(res.supply_mw, dc.supply_mw, atol=1e-6)
        np.testing.assert_allclose(res.price_per_mwh, dc.price_per_mwh, atol=1e-6)
        assert opf.n_security_rows == 0 and opf.last_rounds == 1


# ---- an empty contingency list is the DC-OPF --------------------------------------------------------------

SHIFTED = _network(
    7,
    [
        (0, 1, 0.10, 90.0),
        (1, 2, 0.10, 90.0),
        (2, 3, 0.10, 90.0),
        (3, 0, 0.10, 90.0),
        (0, 2, 0.15, 90.0),
        (3, 4, 0.10, np.inf),
        (5, 6, 0.05, 20.0),  # a second island
    ],
    shift_deg={4: 3.0, 2: -2.0},
    island=[0, 0, 0, 0, 0, 1, 1],
)
SHIFTED_BIDS = _bids(
    [1, 3, 4, 1, 6],
    [160.0, 120.0, 60.0, 40.0, 30.0],
    [0, 2, 4, 5, 6],
    [500.0, 500.0, 100.0, 50.0, 50.0],
    [10.0, 30.0, 80.0, 5.0, 60.0],
    d_price=[VOLL, VOLL, VOLL, 45.0, VOLL],
)


@pytest.mark.parametrize("case", ["mesh", "shifted", "case5", "case9", "case30"])
def test_empty_contingency_list_is_dcopf(case: str) -> None:
    """No contingency: dispatch, LMPs and flows equal DCOPF's (angle formulation) to 1e-6."""
    if case == "mesh":
        net, bids = MESH, MESH_BIDS
    elif case == "shifted":
        net, bids = SHIFTED, SHIFTED_BIDS
    else:
        pnet = getattr(pn, case)()
        net, (bids, _) = dc_network(pnet), case_bids(pnet)
    dc = DCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
    opf = SCOPF(net, bids.demand_bus, bids.supply_bus, contingencies=[])
    res = opf.clear(bids)
    assert res.status == dc.status == "optimal"
    assert len(opf.contingencies) == 0 and len(opf.islanding) == 0
    atol = 1e-6 if np.all(bids.supply_c2 == 0) else 2e-6  # the QP cases: HiGHS's QP tolerance
    np.testing.assert_allclose(res.supply_mw, dc.supply_mw, atol=atol)
    np.testing.assert_allclose(res.demand_mw, dc.demand_mw, atol=atol)
    np.testing.assert_allclose(res.price_per_mwh, dc.price_per_mwh, atol=1e-6)
    np.testing.assert_allclose(res.line_flow_mw, dc.line_flow_mw, atol=atol)
    assert res.cost == pytest.approx(dc.cost, rel=1e-9, abs=1e-6)
    assert res.welfare == pytest.approx(dc.welfare, rel=1e-9, abs=1e-6)


def test_shifts_and_islands_secured() -> None:
    """Phase shifts and a second island: post-contingency flows match independent power flows."""
    net, bids = SHIFTED, SHIFTED_BIDS
    opf = SCOPF(net, bids.demand_bus, bids.supply_bus)
    res = opf.clear(bids)
    assert opf.islanding_names == ["line 5", "line 6"]
    assert [k for k in range(net.n_branch) if _is_bridge(net, k)] == [5, 6]
    _check_secure(net, opf, bids, res, 1.0)
    dc = DCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
    assert _worst_post_excess(net, _injection(net, bids, dc), opf.contingencies, 1.0) > 1.0
    assert security_cost(res, dc) > 1.0


# ---- PJM 5-bus -------------------------------------------------------------------------------------------


def test_pjm5_secured_by_pandapower_rundcpp() -> None:
    """PJM 5-bus (A-B 400 MW, E-D 240 MW): N-1 costs more; rundcpp with each line out confirms the flows."""
    pnet = pn.case5()
    network = dc_network(pnet)
    bids, _ = case_bids(pnet)
    dc = DCOPF(network, bids.demand_bus, bids.supply_bus).clear(bids)
    assert dc.cost == pytest.approx(17479.90, abs=0.01)  # Li & Bo (2010), see tests/reference
    opf = SCOPF(network, bids.demand_bus, bids.supply_bus)
    res = opf.clear(bids)
    assert res.demand_mw == pytest.approx(bids.demand_mw, abs=1e-6)
    assert res.cost > dc.cost + 100.0
    assert len(opf.islanding) == 0 and len(opf.contingencies) == 6
    _check_secure(network, opf, bids, res, 1.0)
    # The dispatch into pandapower: gens and sgens at their awards, the ext_grid (slack) takes the rest.
    work = copy.deepcopy(pnet)
    for j, row in enumerate(work.poly_cost.itertuples()):
        if row.et in ("gen", "sgen"):
            work[row.et].loc[int(row.element), "p_mw"] = res.supply_mw[j]
    rate = dict(zip(network.branch_name, network.rate_mw, strict=True))
    for j, k in enumerate(opf.contingencies):
        line = int(network.branch_name[k].split()[1])
        out = copy.deepcopy(work)
        out.line.loc[line, "in_service"] = False
        pp.rundcpp(out)
        for i, flow in out.res_line.p_from_mw.items():
            if i == line:
                continue
            assert abs(flow) <= rate[f"line {i}"] + TOL_MW
            assert flow == pytest.approx(
                opf.last_post_flow_mw[network.branch_name.index(f"line {i}"), j], abs=1e-6
            )


# ---- interface -------------------------------------------------------------------------------------------


def test_contingency_list_by_name_and_position() -> None:
    """Names and positions select outages (duplicates once); unknown ones and bad factors raise."""
    b = MESH_BIDS
    opf = SCOPF(MESH, b.demand_bus, b.supply_bus, contingencies=["line 4", 1, "line 1", "line 5"])
    assert list(opf.contingencies) == [4, 1] and opf.contingency_names == ["line 4", "line 1"]
    assert list(opf.islanding) == [5]
    assert opf.lodf.shape == (MESH.n_branch, 2)
    with pytest.raises(ValueError, match="not a branch"):
        SCOPF(MESH, b.demand_bus, b.supply_bus, contingencies=["trafo 9"])
    with pytest.raises(ValueError, match="not a branch"):
        SCOPF(MESH, b.demand_bus, b.supply_bus, contingencies=[17])
    with pytest.raises(ValueError, match="contingency_limit_factor"):
        SCOPF(MESH, b.demand_bus, b.supply_bus, contingency_limit_factor=0.0)
    with pytest.raises(ValueError, match="differs"):
        SCOPF(MESH, b.demand_bus, b.supply_bus).clear(replace(b, demand_bus=b.demand_bus[::-1]))


def test_persistent_model_over_intervals() -> None:
    """One model cleared interval after interval (rows kept) gives what a fresh model gives each time."""
    net, base = MESH, MESH_BIDS
    rng = np.random.default_rng(3)
    opf = SCOPF(net, base.demand_bus, base.supply_bus)
    rounds = []
    for _ in range(12):
        bids = replace(
            base,
            demand_mw=base.demand_mw * rng.uniform(0.6, 1.2, 3),
            supply_price=base.supply_price * rng.uniform(0.8, 1.2, 3),
            supply_c2=base.supply_c2 * rng.uniform(0.0, 2.0, 3),
        )
        res = opf.clear(bids)
        rounds.append(opf.last_rounds)
        fresh = SCOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
        np.testing.assert_allclose(res.supply_mw, fresh.supply_mw, atol=1e-5)
        np.testing.assert_allclose(res.price_per_mwh, fresh.price_per_mwh, atol=1e-5)
        _check_secure(net, opf, bids, res, 1.0)
    assert opf.n_security_rows <= 6 * 5 - 5
    assert rounds.count(1) >= 6  # the rows found earlier serve the later intervals


def test_simbench_mv_rural_islanding_outages() -> None:
    """1-MV-rural--0-sw is run radially: only its two parallel HV/MV transformers (25 MVA) are secured."""
    from cosim.models.grid.network import load_network

    pnet = load_network("simbench", code="1-MV-rural--0-sw")
    network = dc_network(pnet)
    loads, sgens = pnet.load[pnet.load.in_service], pnet.sgen[pnet.sgen.in_service]
    bus = int(pnet.ext_grid.bus.iloc[0])

    def bids_at(load_scale: float, sgen_scale: float) -> Bids:
        return _bids(
            loads.bus.to_numpy(),
            loads.p_mw.to_numpy() * load_scale,
            np.r_[sgens.bus.to_numpy(), bus],
            np.r_[sgens.p_mw.to_numpy() * sgen_scale, 1e4],
            np.r_[np.linspace(0.0, 40.0, len(sgens)), 50.0],
        )

    light = bids_at(1.0, 1.0)
    opf = SCOPF(network, light.demand_bus, light.supply_bus)
    dcopf = DCOPF(network, light.demand_bus, light.supply_bus)
    assert opf.contingency_names == ["trafo 0", "trafo 1"]
    bridges = [k for k in range(network.n_branch) if _is_bridge(network, k)]
    assert list(opf.islanding) == bridges and len(bridges) == network.n_branch - 2
    # 17 MW of load, 26 MW of sgens: no outage of a transformer overloads the other.
    res, dc = opf.clear(light), dcopf.clear(light)
    _check_secure(network, opf, light, res, 1.0)  # the transformers' 150 degree shift included
    np.testing.assert_allclose(res.price_per_mwh, dc.price_per_mwh, atol=1e-6)
    assert security_cost(res, dc) == pytest.approx(0.0, abs=1e-6)
    # 35 MW of load, 5 MW of sgens: one transformer alone may import 25 MW, so load is shed at VOLL.
    heavy = bids_at(2.0, 0.2)
    res, dc = opf.clear(heavy), dcopf.clear(heavy)
    _check_secure(network, opf, heavy, res, 1.0)
    trafo = [network.branch_name.index("trafo 0"), network.branch_name.index("trafo 1")]
    np.testing.assert_allclose(np.abs(opf.last_post_flow_mw[trafo, [1, 0]]), 25.0, atol=1e-6)
    assert np.abs(dc.line_flow_mw[trafo]).sum() > 25.0 + 1.0
    assert security_cost(res, dc) > 1.0
    assert np.nanmax(res.price_per_mwh) == pytest.approx(VOLL, abs=1e-6)


def test_restored_scopf_keeps_its_lazy_rows() -> None:
    """A SCOPF restored from a checkpoint holds the post-contingency rows the running one added (the same
    rows, in the same order) and clears the next intervals bit for bit as the running one."""
    import pickle

    from cosim.checkpoint import capture, restore

    net, bids = MESH, MESH_BIDS
    running = SCOPF(net, bids.demand_bus, bids.supply_bus)
    running.clear(bids)
    assert running.n_security_rows >= 1
    tree = pickle.loads(pickle.dumps(capture(running)))
    scaled = [replace(bids, demand_mw=bids.demand_mw * f) for f in (0.9, 1.05, 0.8)]
    after = [running.clear(b) for b in scaled]
    resumed = restore(SCOPF(net, bids.demand_bus, bids.supply_bus), tree)
    assert resumed.n_security_rows == len(resumed.model.post_limit) > 0
    for b, want in zip(scaled, after, strict=True):
        got = resumed.clear(b)
        assert got.supply_mw.tobytes() == want.supply_mw.tobytes()
        assert got.price_per_mwh.tobytes() == want.price_per_mwh.tobytes()
    assert resumed.n_security_rows == running.n_security_rows
