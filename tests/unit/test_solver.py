"""The market's one solver interface: time limits, failed solves, parameter updates, no private API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest

from cosim import checkpoint
from cosim.models.market.auction import UniformAuction
from cosim.models.market.clearing import Bids
from cosim.models.market.solver import PersistentModel

ROOT = Path(__file__).resolve().parents[2]


def _bids(d_mw: list[float], d_price: list[float], s_mw: list[float], s_price: list[float]) -> Bids:
    zeros = np.zeros(len(s_mw))
    return Bids(
        demand_bus=np.zeros(len(d_mw), dtype=np.int64),
        demand_mw=np.array(d_mw),
        demand_price=np.array(d_price),
        supply_bus=np.zeros(len(s_mw), dtype=np.int64),
        supply_max_mw=np.array(s_mw),
        supply_price=np.array(s_price),
        supply_min_mw=zeros,
        supply_c2=zeros,
    )


def _small_lp() -> tuple[pyo.ConcreteModel, PersistentModel]:
    m = pyo.ConcreteModel()
    m.price = pyo.Param(mutable=True, initialize=2.0)
    m.x = pyo.Var(bounds=(0.0, 4.0))
    m.y = pyo.Var(bounds=(0.0, 10.0))
    m.demand = pyo.Constraint(expr=m.x + m.y == 6.0)
    m.obj = pyo.Objective(expr=m.x + m.price * m.y)
    return m, PersistentModel(m)


def test_bounds_and_parameters_reach_the_loaded_solver() -> None:
    """A changed bound and a changed objective parameter move the optimum and the dual as by hand."""
    m, solver = _small_lp()
    sol = solver.solve()
    assert sol.ok and sol.values([m.x, m.y]) == pytest.approx([4.0, 2.0])
    assert sol.duals([m.demand])[0] == pytest.approx(2.0)  # the marginal unit comes from y at 2
    m.x.setub(1.0)
    solver.update_bounds([m.x])
    m.price.set_value(0.5)
    solver.update_parameters()
    sol = solver.solve()
    assert sol.ok and sol.values([m.x, m.y]) == pytest.approx([0.0, 6.0])
    assert sol.objective == pytest.approx(3.0) and sol.duals([m.demand])[0] == pytest.approx(0.5)


def test_an_infeasible_model_is_a_failed_solve_not_an_exception() -> None:
    """Bounds that cannot meet the row give ok False and the termination condition as status."""
    m, solver = _small_lp()
    m.y.setub(1.0)
    solver.update_bounds([m.y])
    sol = solver.solve()
    assert not sol.ok and "nfeasible" in sol.status


def test_hitting_the_time_limit_is_a_failed_clearing() -> None:
    """A clearing whose solve stops at its time limit reports NaN prices and the limit as status."""
    bids = _bids([60, 30, 20], [40, 20, 35], [50, 50, 10], [10, 30, 5])
    assert UniformAuction(3, 3).clear(bids).status == "optimal"
    res = UniformAuction(3, 3, time_limit_s=1e-12).clear(bids)
    assert res.status == "maxTimeLimit"
    assert np.isnan(res.price_per_mwh).all() and np.isnan(res.welfare)


def test_the_time_limit_applies_to_each_solve_not_to_all_together() -> None:
    """HiGHS's clock runs on across the solves of an instance: 30 re-solves of a 400-variable LP with new
    costs (~10 ms each) under a 50 ms limit all succeed (before, every solve from about the sixth on
    stopped at once with maxTimeLimit), and a reload starts a fresh clock."""
    rng = np.random.default_rng(0)
    n, rows = 400, 200
    m = pyo.ConcreteModel()
    m.i, m.r = pyo.RangeSet(0, n - 1), pyo.RangeSet(0, rows - 1)
    m.c = pyo.Param(m.i, mutable=True, initialize=0.0)
    m.x = pyo.Var(m.i, bounds=(0.0, 10.0))
    cols, w = rng.integers(0, n, (rows, 15)).tolist(), rng.uniform(0, 1, (rows, 15)).tolist()
    m.row = pyo.Constraint(
        m.r, rule=lambda m, j: sum(a * m.x[i] for a, i in zip(w[j], cols[j], strict=True)) <= 5.0
    )
    m.obj = pyo.Objective(expr=sum(m.c[i] * m.x[i] for i in m.i))
    solver = PersistentModel(m, time_limit_s=0.05)
    for k in range(30):
        for i, c in enumerate(rng.uniform(-1, 0, n).tolist()):
            m.c[i].set_value(c)
        solver.update_parameters()
        sol = solver.solve()
        assert sol.ok, (k, sol.status)
    assert solver.highs_run_s > 0.05  # the instance's clock passed the limit: the old rule failed here
    solver.reload()
    assert solver.highs_run_s == 0.0 and solver.solve().ok and solver.time_limit_s == 0.05


def test_time_limit_must_be_positive() -> None:
    """A zero time limit is refused when the model is loaded."""
    with pytest.raises(ValueError, match="time_limit_s"):
        PersistentModel(_small_lp()[0], time_limit_s=0.0)


def test_only_the_solver_module_talks_to_the_solver() -> None:
    """No module imports highspy or reads Pyomo's private solver attributes; solver.py alone uses Pyomo's
    solvers, through public calls only (no ``._name`` attribute access at all)."""
    private = re.compile(r"\b(import highspy|from highspy|_solver_model|_pyomo_var_to|_pyomo_con_to)\b")
    users = []
    paths = [p for top in ("cosim", "models", "analysis", "benchmarks") for p in (ROOT / top).rglob("*.py")]
    assert len(paths) > 40
    for path in sorted(paths):
        text = path.read_text(encoding="utf-8")
        if path.relative_to(ROOT).as_posix() == "models/market/solver.py":
            assert not re.search(r"\._[A-Za-z]", text), "solver.py reaches a private attribute"
        assert not private.search(text), f"{path.relative_to(ROOT)} bypasses Pyomo's public solver API"
        if "pyomo.contrib.solver" in text or "pyomo.contrib.appsi" in text:
            users.append(path.relative_to(ROOT).as_posix())
    assert users == ["models/market/solver.py"]


def _random_lp(seed: int) -> pyo.ConcreteModel:
    """min c x, A x >= b, 0 <= x <= 1: an LP that takes simplex iterations (presolve off)."""
    rng = np.random.default_rng(seed)
    a, c = rng.uniform(0.0, 1.0, (12, 30)), rng.uniform(1.0, 2.0, 30)
    m = pyo.ConcreteModel()
    m.J, m.R = pyo.RangeSet(0, 29), pyo.RangeSet(0, 11)
    m.x = pyo.Var(m.J, bounds=(0.0, 1.0))
    m.row = pyo.Constraint(m.R, rule=lambda m, r: sum(a[r, j] * m.x[j] for j in m.J) >= 3.0)
    m.obj = pyo.Objective(expr=sum(c[j] * m.x[j] for j in m.J))
    return m


def _iterations(solver: PersistentModel) -> int:
    sol = solver.solve()
    assert sol.ok
    return int(sol.results.extra_info.simplex_iteration_count)  # type: ignore[union-attr]


def test_reload_starts_cold_from_the_model_as_it_stands() -> None:
    """After `reload` the next solve takes a fresh instance's iterations (no basis), and HiGHS holds the
    model as it stands, including a change never pushed with update_bounds."""
    m = _random_lp(1)
    solver = PersistentModel(m, options={"presolve": "off"})
    cold = _iterations(solver)
    assert cold > 0 and _iterations(solver) == 0  # warm: the optimal basis is kept
    solver.reload()
    assert _iterations(solver) == cold
    m.x[0].setub(0.0)  # not pushed: only a reload loads it
    solver.reload()
    sol = solver.solve()
    assert sol.ok and sol.values([m.x[0]])[0] == 0.0


def test_checkpoint_reloads_the_running_and_the_resumed_solver_alike() -> None:
    """Capturing a checkpoint reloads the running solver cold, restoring one reloads the resumed solver:
    their next solves take the same iterations and give the same values."""
    running = PersistentModel(_random_lp(2), options={"presolve": "off"})
    _iterations(running)
    tree = checkpoint.capture(running)
    resumed = checkpoint.restore(PersistentModel(_random_lp(2), options={"presolve": "off"}), tree)
    assert running.n_reloads == 1 and resumed.n_reloads == 2  # the count is restored, then it reloads
    assert _iterations(running) == _iterations(resumed) > 0
    xs = [list(s.model.x.values()) for s in (running, resumed)]
    assert np.array_equal(running.solve().values(xs[0]), resumed.solve().values(xs[1]))


def test_reload_prints_nothing() -> None:
    """A reload (a new HiGHS instance, whose output is on until a solve) writes nothing on stdout, not
    even HiGHS's note on a quadratic objective whose Hessian is all zeros."""
    code = (
        "import pyomo.environ as pyo\n"
        "from cosim.models.market.solver import PersistentModel\n"
        "m = pyo.ConcreteModel(); m.c2 = pyo.Param(mutable=True, initialize=0.0)\n"
        "m.x = pyo.Var(bounds=(0, 1)); m.obj = pyo.Objective(expr=m.x + m.c2 * m.x**2)\n"
        "s = PersistentModel(m); s.solve(); s.before_capture(); s.after_restore(); s.solve()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""
