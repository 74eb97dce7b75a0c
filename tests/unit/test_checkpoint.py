"""Checkpoint pieces: segment boundaries, the checkpoint_steps key, state capture/restore, atomic files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyomo.environ as pyo
import pytest

from cosim.checkpoint import capture, load, restore, save, segments
from cosim.errors import CosimError
from cosim.models.market.solver import PersistentModel
from cosim.scenario import OutputConfig


def test_segments_end_at_checkpoints() -> None:
    """Runs between checkpoints end at multiples of the interval, also when resumed mid-run; 0: one run."""
    assert segments(0, 50, 12) == [(0, 12), (12, 24), (24, 36), (36, 48), (48, 50)]
    assert segments(24, 50, 12) == [(24, 36), (36, 48), (48, 50)]
    assert segments(0, 10, 0) == [(0, 10)]
    assert segments(0, 24, 12) == [(0, 12), (12, 24)]


@pytest.mark.parametrize("bad", [-1, True, "month", 1.5])
def test_checkpoint_steps_refuses_nonsense(bad: Any) -> None:
    """checkpoint_steps takes 'week', a count >= 0 or null; negatives, booleans, other words: refused."""
    assert OutputConfig().checkpoint_steps == "week"
    assert OutputConfig(checkpoint_steps=None).checkpoint_steps is None
    with pytest.raises(ValueError, match="checkpoint_steps"):
        OutputConfig(checkpoint_steps=bad)


class _Core:
    """A core with plain state, a generator, a derived part and an unpicklable part."""

    checkpoint_drop = ("_cache",)

    def __init__(self) -> None:
        self.rng = np.random.default_rng(1)
        self.soc = np.zeros(3)
        self.solver = lambda: None  # cannot be pickled: kept as built
        self._cache = {"written": 0}
        self.rebuilt = 0

    def after_restore(self) -> None:
        self.rebuilt += 1


def test_capture_restore_keeps_state_and_rebuilds_the_rest() -> None:
    """Restored: arrays and the generator's state; kept fresh: the unpicklable and the dropped attributes."""
    run = _Core()
    run.soc += 2.5
    run.rng.random(5)
    run._cache["written"] = 7
    tree = pickle.loads(pickle.dumps(capture(run)))
    fresh = _Core()
    solver = fresh.solver
    assert restore(fresh, tree) is fresh
    assert np.array_equal(fresh.soc, [2.5] * 3)
    assert fresh.rng.random() == run.rng.random()
    assert fresh.solver is solver and fresh._cache == {"written": 0} and fresh.rebuilt == 1


def test_checkpoint_file_is_atomic_and_checked(tmp_path: Path) -> None:
    """save leaves no temporary file; load refuses another seed and a missing file with one message."""
    path = tmp_path / "run.h5.ckpt"
    save(path, {"identity": {"seed": 1}, "step": 12})
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5.ckpt"]
    assert load(path, {"seed": 1})["step"] == 12
    with pytest.raises(CosimError, match="different seed"):
        load(path, {"seed": 2})
    with pytest.raises(CosimError, match="no checkpoint"):
        load(tmp_path / "none.ckpt", {"seed": 1})


def _tied_market(n: int) -> tuple[pyo.ConcreteModel, PersistentModel]:
    """A copper-plate clearing of ``n`` supply and ``n`` demand steps, bounds and prices set per interval."""
    m = pyo.ConcreteModel()
    m.S = pyo.RangeSet(0, n - 1)
    m.supply_price = pyo.Param(m.S, mutable=True, initialize=0.0)
    m.demand_price = pyo.Param(m.S, mutable=True, initialize=0.0)
    m.s = pyo.Var(m.S, bounds=(0.0, 0.0))
    m.d = pyo.Var(m.S, bounds=(0.0, 0.0))
    m.balance = pyo.Constraint(expr=sum(m.s[j] for j in m.S) == sum(m.d[i] for i in m.S))
    m.cost = pyo.Objective(expr=sum(m.supply_price[j] * m.s[j] - m.demand_price[j] * m.d[j] for j in m.S))
    return m, PersistentModel(m)


def _clear(m: pyo.ConcreteModel, solver: PersistentModel, interval: np.ndarray) -> bytes:
    """Write every bound and price of one interval, solve; the dispatch and the price as bytes."""
    s_mw, s_price, d_mw, d_price = interval
    for j in m.S:
        m.s[j].setub(float(s_mw[j]))
        m.d[j].setub(float(d_mw[j]))
        m.supply_price[j].set_value(float(s_price[j]))
        m.demand_price[j].set_value(float(d_price[j]))
    solver.update_bounds([*m.s.values(), *m.d.values()])
    solver.update_parameters()
    sol = solver.solve()
    assert sol.ok
    return np.r_[sol.values([*m.s.values(), *m.d.values()]), sol.duals([m.balance])].tobytes()


def test_a_restored_solver_reaches_the_same_vertex_of_a_degenerate_lp() -> None:
    """After a checkpoint, a running HiGHS model and one restored from the checkpoint clear tied offers
    (many optimal dispatches, as in an island's market) bit for bit alike, interval after interval."""
    rng = np.random.default_rng(0)
    n, n_interval, at = 12, 24, 12
    intervals = [  # quarter-MW steps at few prices: ties everywhere
        np.array([rng.integers(1, 5, n) * 0.25, rng.integers(1, 4, n) * 10.0,
                  rng.integers(1, 5, n) * 0.25, rng.integers(2, 6, n) * 10.0])
        for _ in range(n_interval)
    ]  # fmt: skip
    m, running = _tied_market(n)
    before = [_clear(m, running, x) for x in intervals[:at]]
    tree = pickle.loads(pickle.dumps(capture(running)))  # the checkpoint, written and read back
    after = [_clear(m, running, x) for x in intervals[at:]]
    m2, fresh = _tied_market(n)  # the resumed run builds its model anew
    resumed = restore(fresh, tree)
    assert resumed is fresh and len(set(before)) > 1
    assert [_clear(m2, resumed, x) for x in intervals[at:]] == after
    # reloaded cold at the capture; the resumed one (whose count is restored) again at the restore
    assert (running.n_reloads, resumed.n_reloads) == (1, 2)


def test_capture_never_stores_a_solver_inside_a_picklable_container() -> None:
    """A dict holding a Pyomo model (which would pickle) is captured item by item: the model is left out
    as soon as the trial pickle meets it, the plain entries are stored."""
    import pyomo.environ as pyo

    model = pyo.ConcreteModel()
    model.x = pyo.Var(range(50))
    pickle.dumps(model)  # Pyomo models do pickle: only the rule keeps it out
    kind, items = capture({"model": model, "soc": np.ones(2)})
    assert kind == "items" and items["model"] == ("skip", None) and items["soc"][0] == "value"
