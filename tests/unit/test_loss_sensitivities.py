"""Loss sensitivities of the AC power flow (adjoint of its Jacobian) against pandapower finite differences.

The reference is independent of the power flow's code: one more (and one less) ``delta`` of active or
reactive injection at a bus (a pandapower sgen), ``runpp`` at a tight tolerance, and the central
difference of the line and transformer losses (``res_line.pl_mw + res_trafo.pl_mw``).
"""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
import simbench as sb

from cosim.models.grid.powerflow import ACPowerFlow, set_injections
from cosim.models.grid.switching import SwitchingPowerFlow

logging.getLogger("pandapower").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")

RTOL = 1e-4  # relative agreement with the finite differences
ATOL = 1e-6  # MW/MW, for sensitivities near zero (buses next to the slack)
RUNPP = {"tolerance_mva": 1e-12, "numba": False, "max_iteration": 30}


def _losses_mw(net) -> float:
    return float(net.res_line.pl_mw.sum() + net.res_trafo.pl_mw.sum())


def _fd(net, rows: np.ndarray, delta: float, column: str, tolerance_mva: float = 1e-12) -> np.ndarray:
    """Central differences d(losses)/d(injection) at the net.bus rows, injecting ``column`` of an sgen."""
    net = copy.deepcopy(net)
    probe = pp.create_sgen(net, net.bus.index[0], p_mw=0.0, q_mvar=0.0)
    options = RUNPP | {"tolerance_mva": tolerance_mva}
    pp.runpp(net, **options)
    options["init"] = "results"  # each run starts at the unperturbed solution
    out = []
    for bus in net.bus.index[rows]:
        net.sgen.at[probe, "bus"] = bus
        losses = []
        for sign in (1.0, -1.0):
            net.sgen.at[probe, column] = sign * delta
            pp.runpp(net, **options)
            losses.append(_losses_mw(net))
        net.sgen.at[probe, column] = 0.0
        out.append((losses[0] - losses[1]) / (2.0 * delta))
    return np.array(out)


def _check(net, flow, rows: np.ndarray, delta: float, q_too: bool = True) -> np.ndarray:
    """The flow's sensitivities at its last solved state equal the finite differences; returns dloss_dp."""
    sens = flow.loss_sensitivities()
    np.testing.assert_allclose(sens.dloss_dp[rows], _fd(net, rows, delta, "p_mw"), rtol=RTOL, atol=ATOL)
    if q_too:
        np.testing.assert_allclose(sens.dloss_dq[rows], _fd(net, rows, delta, "q_mvar"), rtol=RTOL, atol=ATOL)
    slack = net.bus.index.isin(net.ext_grid.bus[net.ext_grid.in_service])
    assert np.all(sens.dloss_dp[slack] == 0.0) and np.all(sens.dloss_dq[slack] == 0.0)
    return sens.dloss_dp


@pytest.mark.parametrize("case", ["case9", "case30"])
def test_matpower_cases_match_finite_differences(case: str) -> None:
    """MATPOWER case9 and case30 (PV buses, shunts): active and reactive sensitivities at every bus."""
    net = getattr(pn, case)()
    pp.runpp(net, **RUNPP)
    flow = ACPowerFlow(net, (), tolerance_mva=1e-12)
    dp = _check(net, flow, np.arange(len(net.bus)), 1e-2)
    assert np.ptp(dp) > 0.01  # not trivially flat
    gen_buses = net.bus.index.isin(net.gen.bus)
    assert np.all(flow.loss_sensitivities().dloss_dq[gen_buses] == 0.0)  # their reactive power is solved


def test_default_grid_with_agents_matches_finite_differences() -> None:
    """The default study's grid (SimBench 1-LV-rural1--2-sw) at set-points of its loads and PV as agents:
    the sensitivities at the last solve equal the finite differences on the net with those set-points."""
    net = sb.get_simbench_net("1-LV-rural1--2-sw")
    elements = [("load", int(i)) for i in net.load.index] + [("sgen", int(i)) for i in net.sgen.index]
    p = np.r_[net.load.p_mw.to_numpy() * 1.5, -net.sgen.p_mw.to_numpy() * 0.1]
    q = np.r_[net.load.q_mvar.to_numpy() * 1.5, np.zeros(len(net.sgen))]
    flow = ACPowerFlow(net, elements, tolerance_mva=1e-12)
    assert flow.solve(p, q).converged
    ref = copy.deepcopy(net)
    set_injections(ref, elements, p, q)
    ref.load["scaling"] = ref.sgen["scaling"] = 1.0  # as the power flow takes agents' set-points
    dp = _check(ref, flow, np.arange(len(net.bus)), 1e-5)
    assert dp.min() < 0.0 < dp.max()  # injecting relieves some feeders and loads others


def test_mv_grid_with_internal_buses_matches_finite_differences() -> None:
    """SimBench 1-MV-rural--0-sw has internal buses without a net.bus row (pandapower's own): the
    sensitivities at given voltages (as the accounting passes them) equal the finite differences."""
    net = sb.get_simbench_net("1-MV-rural--0-sw")
    net.pop("profiles", None)  # not needed here; copies faster
    pp.runpp(net, **(RUNPP | {"tolerance_mva": 1e-10}))
    flow = ACPowerFlow(net, ())
    sens = flow.loss_sensitivities(net.res_bus.vm_pu.to_numpy(), net.res_bus.va_degree.to_numpy())
    rows = np.r_[2 : len(net.bus) : 12]
    np.testing.assert_allclose(sens.dloss_dp[rows], _fd(net, rows, 1e-3, "p_mw", 1e-10), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(sens.dloss_dp, flow.loss_sensitivities().dloss_dp, rtol=1e-6, atol=1e-9)


def test_line_outage_sensitivities_follow_the_topology() -> None:
    """SwitchingPowerFlow gives the sensitivities of the topology it last solved (case9: a line of the
    ring out; then the line to a generator out, which cuts its bus off: NaN there)."""
    net = pn.case9()
    flow = SwitchingPowerFlow(net, (), tolerance_mva=1e-12)
    assert flow.solve(np.zeros(0), np.zeros(0), out_branches={("line", 4)}).converged
    ref = copy.deepcopy(net)
    ref.line.at[4, "in_service"] = False
    pp.runpp(ref, **RUNPP)
    dp = _check(ref, flow, np.arange(len(net.bus)), 1e-2, q_too=False)
    assert flow.solve(np.zeros(0), np.zeros(0)).converged
    assert not np.allclose(flow.loss_sensitivities().dloss_dp, dp, atol=1e-3)  # the intact ring differs
    assert flow.solve(np.zeros(0), np.zeros(0), out_branches={("line", 3)}).converged
    np.testing.assert_array_equal(np.isnan(flow.loss_sensitivities().dloss_dp), net.bus.index == 2)


def test_no_state_and_bad_inputs() -> None:
    """NaN after a non-converged solve; one of vm_pu/va_degree alone, or the wrong length, is an error."""
    net = pn.case9()
    elements = [("load", int(i)) for i in net.load.index]
    flow = ACPowerFlow(net, elements, max_iteration=3)
    assert not flow.solve(net.load.p_mw.to_numpy() * 50.0, net.load.q_mvar.to_numpy() * 50.0).converged
    assert np.isnan(flow.loss_sensitivities().dloss_dp).all()
    with pytest.raises(ValueError, match="both"):
        flow.loss_sensitivities(np.ones(9))
    with pytest.raises(ValueError, match="expected 9"):
        flow.loss_sensitivities(np.ones(8), np.zeros(8))
