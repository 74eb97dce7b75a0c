"""Tests of the fast AC power flow core against pandapower's runpp (published values in tests/reference)."""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import simbench as sb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosim.models.grid.powerflow import ACPowerFlow, set_injections

logging.getLogger("pandapower").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")

VM_TOL = 1e-6
VA_TOL = 1e-4
LOADING_TOL = 1e-4
MW_TOL = 1e-6
PROFILE_STEPS = (0, 4_000, 12_345, 20_000, 31_000)


class _Case:
    """A SimBench net with all loads and sgens as agents and their profile set-points."""

    def __init__(self, code: str) -> None:
        self.net = sb.get_simbench_net(code)
        net = self.net
        self.elements = [("load", int(i)) for i in net.load.index] + [
            ("sgen", int(i)) for i in net.sgen.index
        ]
        prof = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
        self.load_p = prof[("load", "p_mw")][net.load.index].to_numpy()
        self.load_q = prof[("load", "q_mvar")][net.load.index].to_numpy()
        self.sgen_p = prof[("sgen", "p_mw")][net.sgen.index].to_numpy()
        self.sgen_q = net.sgen.q_mvar.to_numpy()
        self.pf = ACPowerFlow(net, self.elements)

    def setpoints(self, step: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Load-convention agent set-points of one profile step."""
        p = np.r_[self.load_p[step], -self.sgen_p[step]] * scale
        q = np.r_[self.load_q[step], -self.sgen_q] * scale
        return p, q


@pytest.fixture(scope="module")
def mv_rural() -> _Case:
    return _Case("1-MV-rural--0-sw")


@pytest.fixture(scope="module")
def lv_semiurb() -> _Case:
    return _Case("1-LV-semiurb4--0-sw")


def _assert_matches_runpp(net, res) -> None:
    """Compare a PowerFlowResult with net.res_* after pp.runpp."""
    assert res.converged
    np.testing.assert_allclose(res.vm_pu, net.res_bus.vm_pu.to_numpy(), rtol=0, atol=VM_TOL)
    np.testing.assert_allclose(res.va_degree, net.res_bus.va_degree.to_numpy(), rtol=0, atol=VA_TOL)
    np.testing.assert_allclose(
        res.line_loading_percent, net.res_line.loading_percent.to_numpy(), rtol=0, atol=LOADING_TOL
    )
    np.testing.assert_allclose(
        res.trafo_loading_percent,
        net.res_trafo.loading_percent.to_numpy(),
        rtol=0,
        atol=LOADING_TOL,
    )
    losses = net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum()
    assert res.losses_mw == pytest.approx(losses, abs=MW_TOL)
    assert res.import_mw == pytest.approx(net.res_ext_grid.p_mw.sum(), abs=MW_TOL)


@pytest.mark.parametrize("case_name", ["mv_rural", "lv_semiurb"])
def test_simbench_profiles_match_runpp(case_name: str, request: pytest.FixtureRequest) -> None:
    """solve() equals set_injections + pp.runpp on SimBench profile set-points."""
    case: _Case = request.getfixturevalue(case_name)
    for step in PROFILE_STEPS:
        p, q = case.setpoints(step)
        res = case.pf.solve(p, q)
        set_injections(case.pf.net, case.elements, p, q)
        pp.runpp(case.pf.net)
        _assert_matches_runpp(case.pf.net, res)


def test_case14_pv_buses_match_runpp() -> None:
    """IEEE 14-bus with PV gens matches runpp (published values: tests/reference/test_ieee14.py)."""
    net = pn.case14()
    elements = [("load", int(i)) for i in net.load.index]
    pf = ACPowerFlow(net, elements)
    p, q = net.load.p_mw.to_numpy(), net.load.q_mvar.to_numpy()
    res = pf.solve(p, q)
    pp.runpp(net)
    _assert_matches_runpp(net, res)


def _small_net() -> pp.pandapowerNet:
    """MV feeder with a PV gen, a closed and an open bus-bus switch, and an out-of-service line."""
    net = pp.create_empty_network()
    b = [pp.create_bus(net, vn_kv=110.0)] + [pp.create_bus(net, vn_kv=20.0) for _ in range(7)]
    pp.create_ext_grid(net, b[0], vm_pu=1.02, va_degree=0.0)
    pp.create_transformer(net, b[0], b[1], std_type="40 MVA 110/20 kV")
    std = "NA2XS2Y 1x95 RM/25 12/20 kV"
    pp.create_line(net, b[1], b[2], 2.0, std)
    pp.create_line(net, b[2], b[3], 1.5, std)
    pp.create_line(net, b[3], b[4], 1.0, std)
    pp.create_line(net, b[2], b[5], 3.0, std, in_service=False)  # b5 stays fed via b6 (closed)
    pp.create_switch(net, b[4], b[6], et="b", closed=True)  # merged buses
    pp.create_line(net, b[6], b[5], 1.0, std)
    pp.create_switch(net, b[3], b[7], et="b", closed=False)  # isolates b7
    pp.create_load(net, b[2], p_mw=1.0, q_mvar=0.2)
    pp.create_load(net, b[4], p_mw=2.0, q_mvar=0.5)
    pp.create_load(net, b[7], p_mw=0.5, q_mvar=0.1)
    pp.create_sgen(net, b[5], p_mw=1.5)
    pp.create_gen(net, b[3], p_mw=1.0, vm_pu=1.01)
    return net


def test_isolated_bus_and_out_of_service_line_match_runpp() -> None:
    """Open switch isolating a bus, an OOS line and merged buses match runpp incl. NaN voltage."""
    net = _small_net()
    elements = [("load", 0), ("load", 1), ("load", 2), ("sgen", 0)]
    pf = ACPowerFlow(net, elements)
    p = np.array([1.2, 1.8, 0.4, -2.0])
    q = np.array([0.3, 0.4, 0.1, 0.0])
    res = pf.solve(p, q)
    set_injections(net, elements, p, q)
    pp.runpp(net)
    assert np.isnan(res.vm_pu[7]) and np.isnan(net.res_bus.vm_pu.at[7])
    assert res.line_loading_percent[3] == 0.0
    _assert_matches_runpp(net, res)


def test_unknown_element_raises_value_error() -> None:
    """A (table, index) that does not exist is rejected with a ValueError naming it."""
    with pytest.raises(ValueError, match=r"\('load', 99\)"):
        ACPowerFlow(_small_net(), [("load", 99)])


def test_non_convergence_returns_nan_then_recovers(mv_rural: _Case) -> None:
    """50x loads gives converged=False with NaN outputs (no exception); next step converges."""
    p, q = mv_rural.setpoints(PROFILE_STEPS[1])
    n_load = len(mv_rural.net.load)
    p_bad, q_bad = p.copy(), q.copy()
    p_bad[:n_load] *= 50.0
    q_bad[:n_load] *= 50.0
    bad = mv_rural.pf.solve(p_bad, q_bad)
    assert bad.converged is False
    assert np.all(np.isnan(bad.vm_pu)) and np.all(np.isnan(bad.line_loading_percent))
    assert np.isnan(bad.losses_mw) and np.isnan(bad.import_mw)
    good = mv_rural.pf.solve(p, q)
    assert good.converged is True


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    step=st.integers(min_value=0, max_value=35_000),
    scale=st.floats(min_value=0.0, max_value=1.5),
)
def test_power_balance_property(lv_semiurb: _Case, step: int, scale: float) -> None:
    """Converged results have losses >= 0 and import == sum(agent p) + losses (no shunts)."""
    net = lv_semiurb.net
    for table in ("shunt", "ward", "xward", "storage", "gen"):
        assert len(net[table]) == 0  # all power flows through agents, lines and trafos
    p, q = lv_semiurb.setpoints(step, scale)
    res = lv_semiurb.pf.solve(p, q)
    if res.converged:
        assert res.losses_mw >= -1e-12
        assert res.import_mw == pytest.approx(p.sum() + res.losses_mw, abs=MW_TOL)


def test_gens_as_agents_match_runpp() -> None:
    """Generators (PV buses) as agents: their p is a set-point, their q is solved, as in runpp."""
    net = pn.case14()
    elements = [("load", int(i)) for i in net.load.index] + [("gen", int(i)) for i in net.gen.index]
    pf = ACPowerFlow(net, elements)
    p = np.r_[net.load.p_mw.to_numpy() * 1.1, -net.gen.p_mw.to_numpy() * 0.8]
    q = np.r_[net.load.q_mvar.to_numpy() * 1.1, np.zeros(len(net.gen))]
    res = pf.solve(p, q)
    set_injections(net, elements, p, q)
    pp.runpp(net)
    _assert_matches_runpp(net, res)


def test_voltage_and_reactive_setpoints_match_runpp() -> None:
    """Per-bus voltage set-points move the slack and gen buses (NaN keeps the case's), a reactive injection
    acts at a load bus: equal to runpp with those gen/ext_grid vm_pu and a sgen of that q; later steps
    without set-points (or all NaN) return to the case's own."""
    net = pn.case14()
    elements = [("load", int(i)) for i in net.load.index] + [("gen", int(i)) for i in net.gen.index]
    pf = ACPowerFlow(net, elements)
    p = np.r_[net.load.p_mw.to_numpy(), -net.gen.p_mw.to_numpy()]
    q = np.r_[net.load.q_mvar.to_numpy(), np.zeros(len(net.gen))]
    vm_set = np.full(len(net.bus), np.nan)
    vm_set[net.ext_grid.bus.to_numpy()] = 1.03
    vm_set[net.gen.bus.to_numpy()[:-1]] = 1.02 + 0.01 * np.arange(len(net.gen) - 1)  # the last keeps its own
    vm_set[8] = 0.5  # a load bus: ignored
    q_set = np.zeros(len(net.bus))
    q_set[8] = 12.0  # Mvar injected at load bus 8
    res = pf.solve(p, q, vm_set, q_set)
    reference = copy.deepcopy(net)
    set_injections(reference, elements, p, q)
    reference.ext_grid["vm_pu"] = 1.03
    reference.gen.loc[reference.gen.index[:-1], "vm_pu"] = vm_set[net.gen.bus.to_numpy()[:-1]]
    pp.create_sgen(reference, 8, p_mw=0.0, q_mvar=12.0)
    pp.runpp(reference)
    _assert_matches_runpp(reference, res)
    set_injections(net, elements, p, q)
    pp.runpp(net)
    _assert_matches_runpp(net, pf.solve(p, q))
    nan = np.full(len(net.bus), np.nan)  # a failed clearing's set-points: the case's own stand
    _assert_matches_runpp(net, pf.solve(p, q, nan, nan))


def test_limits_count_violations() -> None:
    """Buses outside their voltage band and branches above their loading limit are counted per step."""
    from cosim.models.grid.powerflow import Limits, PowerFlowResult

    net = pn.case9()
    net.bus["max_vm_pu"] = 1.05
    net.line["max_loading_percent"] = 80.0
    limits = Limits.of(net)
    vm = np.full(9, 1.0)
    vm[[2, 5]] = [1.06, 0.90]  # above 1.05; below case9's own min_vm_pu (0.9) only by rounding: not counted
    loading = np.full(len(net.line), 50.0)
    loading[0] = 85.0
    result = PowerFlowResult(True, 3, vm, np.zeros(9), loading, np.zeros(0), 0.0, 0.0)
    assert limits.violations(result) == (1, 1)
