"""Every HiGHS solve is time-limited and silent: a clearing that hits the limit fails, the study goes on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import cosim
from cosim.errors import ModelNotConverged, ScenarioError
from cosim.models.market import solver
from cosim.models.market.acopf import ACOPF
from cosim.models.market.admm import ADMMClearing
from cosim.scenario import validate_scenario
from tests.conftest import step_bids

DCOPF = """
name: limited
time: {start: 2016-01-01T00:00:00, duration: 1d, step: 1h}
grid: {source: pandapower, case: case9}
market: {design: dcopf}
"""


@pytest.mark.parametrize("design", ["dcopf", "uniform", "scopf", "stochastic", "acopf", "admm"])
def test_clearing_at_the_time_limit_fails_and_the_study_goes_on(tmp_path: Path, design: str) -> None:
    """market.time_limit_s reaches every design's solves (HiGHS, PIPS, ADMM): at 1 us each clearing
    fails; the run completes, recording each failure."""
    path = tmp_path / "s.yaml"
    text = textwrap.dedent(DCOPF).replace("{design: dcopf}", f"{{design: {design}, time_limit_s: 1.0e-6}}")
    if design == "stochastic":  # a linear clearing: case5's costs are linear
        text = text.replace("case9", "case5")
    path.write_text(text)
    summary = cosim.run(path, steps=3, out=tmp_path / "r.h5")
    assert summary.n_market_failed == 3
    with h5py.File(summary.path, "r") as f:
        assert f.attrs["complete"] and not f["market/ok"][:].any()


def test_market_time_limit_is_positive_and_finite() -> None:
    """market.time_limit_s of 0, below 0 or infinite is refused, naming the key."""
    for bad in (0.0, -1.0, float("inf")):
        data = {
            "name": "x",
            "time": {"start": "2016-01-01T00:00:00", "duration": "1d"},
            "grid": {"source": "pandapower", "case": "case9"},
            "market": {"design": "uniform", "time_limit_s": bad},
        }
        with pytest.raises(ScenarioError, match="market.time_limit_s"):
            validate_scenario(data)


def test_acopf_time_limit_is_a_failed_clearing_then_clears_again() -> None:
    """PIPS stopped at the deadline: status 'time limit', NaN; the same model then clears as a fresh one."""
    import pandapower.networks as pn

    net = pn.case9()
    buses = net.bus.index.to_numpy()
    bids = step_bids(
        [60.0, 40.0, 90.0], [80.0, 60.0, 50.0], [250.0, 250.0], [20.0, 30.0], buses[[4, 6, 8]], buses[[0, 1]]
    )
    limited = ACOPF(net, bids.demand_bus, bids.supply_bus, time_limit_s=1e-6)
    failed = limited.clear(bids)
    assert failed.status == "time limit" and np.isnan(failed.price_per_mwh).all()
    limited.time_limit_s = 60.0
    again, fresh = limited.clear(bids), ACOPF(net, bids.demand_bus, bids.supply_bus).clear(bids)
    assert again.status == fresh.status == "optimal"
    assert again.welfare == pytest.approx(fresh.welfare, rel=1e-9)
    assert np.allclose(again.price_per_mwh, fresh.price_per_mwh, rtol=1e-7)


def test_admm_time_limit_is_a_failed_clearing_or_raises() -> None:
    """ADMM past its time limit: status 'time limit', not converged, NaN; or ModelNotConverged."""
    bids = step_bids([60, 30], [40, 20], [50, 50], [10, 30])
    res = ADMMClearing(time_limit_s=1e-6).solve(bids)
    assert res.clearing.status == "time limit" and not res.converged and np.isnan(res.clearing.welfare)
    with pytest.raises(ModelNotConverged, match="time limit"):
        ADMMClearing(time_limit_s=1e-6, raise_on_max_iter=True).solve(bids)
    assert ADMMClearing(time_limit_s=60.0).solve(bids).clearing.welfare == pytest.approx(1600.0, abs=1e-6)
    with pytest.raises(ValueError, match="time_limit_s"):
        ADMMClearing(time_limit_s=0.0)


def test_every_instance_has_the_limit() -> None:
    """A persistent model gets the default time limit unless given one."""
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var(bounds=(0, 1))
    m.obj = pyo.Objective(expr=m.x)
    assert solver.PersistentModel(m).solver.config.time_limit == solver.DEFAULT_TIME_LIMIT_S
    assert solver.PersistentModel(m, time_limit_s=5.0).solver.config.time_limit == 5.0


def test_highs_banner_is_silent() -> None:
    """Building HiGHS instances (ours and Pyomo's) prints nothing on stdout."""
    code = (
        "from cosim.models.market.solver import silence_banner\n"
        "silence_banner()\n"
        "import highspy; highspy.Highs()\n"
        "from pyomo.contrib.solver.solvers.highs import Highs; Highs()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""
