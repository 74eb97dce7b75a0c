"""The market's one solver interface: time limits, failed solves, parameter updates, no private API."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest

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


def test_time_limit_must_be_positive() -> None:
    """A zero time limit is refused when the model is loaded."""
    with pytest.raises(ValueError, match="time_limit_s"):
        PersistentModel(_small_lp()[0], time_limit_s=0.0)


def test_only_the_solver_module_talks_to_the_solver() -> None:
    """No module but solver.py imports highspy or reads Pyomo's private solver maps; solver.py alone uses
    Pyomo's solvers, and reaches Pyomo's loaded HiGHS instance in one documented accessor (for resume)."""
    private = re.compile(r"\b(import highspy|from highspy|_solver_model|_pyomo_var_to|_pyomo_con_to)\b")
    users = []
    paths = [p for top in ("cosim", "models", "analysis", "benchmarks") for p in (ROOT / top).rglob("*.py")]
    assert len(paths) > 40
    for path in sorted(paths):
        text = path.read_text(encoding="utf-8")
        if path.relative_to(ROOT).as_posix() == "models/market/solver.py":
            assert text.count("._solver_model") == 1, "one accessor (_loaded_highs) reaches Pyomo's instance"
            assert not re.search(r"\b(_pyomo_var_to|_pyomo_con_to)\b", text)
        else:
            assert not private.search(text), f"{path.relative_to(ROOT)} bypasses models/market/solver.py"
        if "pyomo.contrib.solver" in text or "pyomo.contrib.appsi" in text:
            users.append(path.relative_to(ROOT).as_posix())
    assert users == ["models/market/solver.py"]
