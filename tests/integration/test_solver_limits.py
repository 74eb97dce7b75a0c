"""Every HiGHS solve is time-limited and silent: a clearing that hits the limit fails, the study goes on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest

import cosim
from cosim.models.market import solver

DCOPF = """
name: limited
time: {start: 2016-01-01T00:00:00, duration: 1d, step: 1h}
grid: {source: pandapower, case: case9}
market: {design: dcopf}
"""


def test_clearing_at_the_time_limit_fails_and_the_study_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a (near) zero time limit every DC-OPF clearing fails; the run completes, recording each."""
    monkeypatch.setattr(solver, "DEFAULT_TIME_LIMIT_S", 1e-12)
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(DCOPF))
    summary = cosim.run(path, steps=3, out=tmp_path / "r.h5")
    assert summary.n_market_failed == 3
    with h5py.File(summary.path, "r") as f:
        assert f.attrs["complete"] and not f["market/ok"][:].any()


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
