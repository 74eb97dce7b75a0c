"""The one place the market's Pyomo models meet a solver: HiGHS through Pyomo's public persistent API.

Every LP/QP of the market (`dcopf.WelfareModel` and so the uniform auction and the DC-OPF, the N-1
SCOPF, the stochastic extensive form, the arbitrage LP) is a Pyomo model handed to `PersistentModel`,
which loads it once into ``pyomo.contrib.solver``'s persistent ``highs`` solver and re-solves it after
changes made through public calls only:

- variable bounds changed with ``Var.setlb``/``setub`` reach HiGHS through ``update_bounds(vars)``
  (the solver's ``update_variables``, one vector call);
- mutable parameters in the objective or in constraint coefficients and bounds reach it through
  ``update_parameters()`` (the solver's ``update_parameters``, which re-evaluates every mutable
  coefficient: call it only when such a parameter changed);
- constraints added to or removed from the model reach it through ``add_constraints`` /
  ``remove_constraints``; a new objective through ``set_objective``.

Nothing is checked automatically at solve time (every ``auto_updates`` flag is off): the structure is
fixed unless changed by the calls above, which is what makes a re-solve cost little more than HiGHS's
own warm-started run. Every solve has a time limit (`DEFAULT_TIME_LIMIT_S` unless given); a solve that
stops at it, or at anything but a proven optimum, is a failed solve (``Solution.ok`` False, its
``status`` the termination condition). This module is the only one that imports HiGHS's Python
bindings, and it does so only through Pyomo.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.common.tee
import pyomo.environ as pyo
from pyomo.common.enums import CaptureOutputMode
from pyomo.contrib.solver.common.results import Results, TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs

DEFAULT_TIME_LIMIT_S = 60.0  # a market clearing that has not finished in a minute has failed
# HiGHS's QP solver regularises by 1e-7 by default, which moves the duals (prices) by ~1e-4 $/MWh;
# tight feasibility tolerances keep prices and dispatch accurate to well below a cent.
DEFAULT_OPTIONS: dict[str, Any] = {
    "qp_regularization_value": 1e-10,
    "primal_feasibility_tolerance": 1e-9,
    "dual_feasibility_tolerance": 1e-9,
}


_banner_silenced = False


def silence_banner() -> None:
    """Swallow the banner HiGHS prints on stdout (at C level) when a process builds its first instance."""
    global _banner_silenced
    if _banner_silenced:
        return
    _banner_silenced = True
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout at all: nothing to keep clean
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            m = pyo.ConcreteModel()
            m.x = pyo.Var(bounds=(0, 1))
            m.cost = pyo.Objective(expr=m.x)
            Highs().set_instance(m)  # HiGHS's first instance in the process prints the banner
            ctypes.CDLL(None).fflush(None)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class Solution:
    """The outcome of one solve: ``ok`` when optimal, then values are read from ``results``."""

    ok: bool
    status: str
    results: Results | None = None

    def values(self, variables: Sequence[Any]) -> np.ndarray:
        """Primal values of ``variables`` (in their order)."""
        if not variables:
            return np.zeros(0)
        assert self.results is not None
        prim = self.results.solution_loader.get_vars(list(variables))
        return np.fromiter((prim[v] for v in variables), dtype=float, count=len(variables))

    def duals(self, constraints: Sequence[Any]) -> np.ndarray:
        """Duals of ``constraints``: d(objective)/d(right-hand side), HiGHS's sign for a minimisation."""
        if not constraints:
            return np.zeros(0)
        assert self.results is not None
        duals = self.results.solution_loader.get_duals(list(constraints))
        return np.fromiter((duals[c] for c in constraints), dtype=float, count=len(constraints))

    def reduced_costs(self, variables: Sequence[Any]) -> np.ndarray:
        """Reduced costs of ``variables``: d(objective)/d(variable) at an active bound."""
        if not variables:
            return np.zeros(0)
        assert self.results is not None
        rc = self.results.solution_loader.get_reduced_costs(list(variables))
        return np.fromiter((rc[v] for v in variables), dtype=float, count=len(variables))

    @property
    def objective(self) -> float:
        """The objective value (NaN when not solved)."""
        if self.results is None or self.results.incumbent_objective is None:
            return float("nan")
        return float(self.results.incumbent_objective)


def _loaded_highs(solver: Highs) -> Any:
    """The highspy instance Pyomo's persistent solver holds.

    Pyomo 6.10 offers no public accessor for it: this is the code base's one access to a private Pyomo
    attribute, used only to carry HiGHS's basis across a checkpoint (``cosim run --resume``).
    """
    return solver._solver_model


def get_basis(h: Any) -> tuple[list[int], list[int]] | None:
    """A highspy instance's current basis (the warm start of its next solve) as plain lists, or None."""
    b = h.getBasis()
    if not b.valid:
        return None
    return [int(s) for s in b.col_status], [int(s) for s in b.row_status]


def set_basis(h: Any, basis: tuple[list[int], list[int]] | None) -> None:
    """Give a highspy instance a basis taken by `get_basis`."""
    if basis is None:
        return
    import highspy

    b = highspy.HighsBasis()
    b.col_status = [highspy.HighsBasisStatus(s) for s in basis[0]]
    b.row_status = [highspy.HighsBasisStatus(s) for s in basis[1]]
    b.valid = True
    h.setBasis(b)


class PersistentModel:
    """A Pyomo model loaded once into a persistent HiGHS instance and re-solved after public updates.

    In a checkpoint (`cosim.checkpoint`) it keeps HiGHS's basis. After each checkpoint the next solve
    loads the model into a new HiGHS instance and restarts it from that basis, in the checkpointed run as
    in a resumed one: HiGHS's other state (its factorisation, edge weights, random generator) cannot be
    stored, and an instance that has solved before can reach another optimal vertex of a degenerate LP
    from the same basis (the market of an island: `cosim run --resume` must be bit-identical).

    Parameters
    ----------
    model : the Pyomo model (one active objective; linear constraints, linear or quadratic objective)
    time_limit_s : wall-clock limit of every solve [s] (default `DEFAULT_TIME_LIMIT_S`); reaching it is a
        failed solve
    options : HiGHS options on top of `DEFAULT_OPTIONS` (output is always off)
    """

    checkpoint_drop = ()  # holds HiGHS (via Pyomo): captured attribute by attribute, with its hooks

    def __init__(
        self,
        model: pyo.ConcreteModel,
        *,
        time_limit_s: float | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        if time_limit_s is None:
            time_limit_s = DEFAULT_TIME_LIMIT_S  # read at construction: a study (or a test) may change it
        if not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
        self.model = model
        silence_banner()
        self.solver = Highs()
        cfg = self.solver.config
        cfg.load_solutions = False
        cfg.raise_exception_on_nonoptimal_result = False
        cfg.time_limit = float(time_limit_s)
        auto = cfg.auto_updates
        # Nothing is re-checked at solve time: every change reaches HiGHS through the calls below.
        auto.check_for_new_or_removed_constraints = False
        auto.check_for_new_or_removed_vars = False
        auto.check_for_new_or_removed_params = False
        auto.check_for_new_objective = False
        auto.update_constraints = False
        auto.update_vars = False
        auto.update_named_expressions = False
        auto.update_objective = False
        auto.update_parameters = False
        for key, value in {"output_flag": False, **DEFAULT_OPTIONS, **(options or {})}.items():
            cfg.solver_options[key] = value
        self.solver.set_instance(model)
        self.n_solves = 0
        self._basis: tuple[list[int], list[int]] | None = None  # kept in a checkpoint
        self.pending_basis: tuple[list[int], list[int]] | None = None  # set before the next solve
        self._reload = False  # the next solve loads the model into a new HiGHS instance (a checkpoint)
        self.n_loads = 1  # HiGHS instances loaded so far

    def basis(self) -> tuple[list[int], list[int]] | None:
        """HiGHS's current basis as plain lists (None before a solve)."""
        return get_basis(_loaded_highs(self.solver))

    def before_capture(self) -> None:
        """Keep the basis for a checkpoint; the next solve restarts from it in a new HiGHS instance."""
        self._basis = self.pending_basis = self.basis()
        self._reload = True

    def after_restore(self) -> None:
        """The next solve starts from the checkpoint's basis in a new HiGHS instance."""
        self.pending_basis, self._reload = self._basis, True

    @property
    def time_limit_s(self) -> float:
        """The time limit of every solve [s]."""
        return float(self.solver.config.time_limit)

    def update_bounds(self, variables: Sequence[Any]) -> None:
        """Push the current bounds of ``variables`` (set with ``setlb``/``setub``) to HiGHS."""
        if len(variables):
            self.solver.update_variables(list(variables))

    def update_parameters(self) -> None:
        """Push every mutable parameter's current value (objective, coefficients, bounds) to HiGHS."""
        self.solver.update_parameters()

    def add_constraints(self, constraints: Sequence[Any]) -> None:
        """Load constraints newly added to the model."""
        if len(constraints):
            self.solver.add_constraints(list(constraints))

    def remove_constraints(self, constraints: Sequence[Any]) -> None:
        """Unload constraints (before deleting them from the model)."""
        if len(constraints):
            self.solver.remove_constraints(list(constraints))

    def set_objective(self, objective: Any) -> None:
        """Load ``objective`` (an active objective of the model) in place of the current one."""
        self.solver.set_objective(objective)

    def solve(self) -> Solution:
        """Solve with the model as loaded; a solver error is reported in the `Solution`, never raised."""
        self.n_solves += 1
        if self._reload:  # after a checkpoint: the model as it is now, in a new instance
            try:  # (Pyomo captures what a new instance prints before its output is switched off)
                self.solver.set_instance(self.model)
            except Exception as err:  # noqa: BLE001 - a solver failure is a failed solve, reported
                return Solution(False, f"error: {err}")
            self._reload = False
            self.n_loads += 1
        # HiGHS's output is off, so there is nothing to capture: Pyomo's documented switch
        # (`CaptureOutputMode`) skips the capture of the process's output streams, whose reader threads
        # cost more than a warm-started solve on a loaded machine; restored right after.
        capture = pyomo.common.tee.OVERRIDE_CAPTURE_OUTPUT
        pyomo.common.tee.OVERRIDE_CAPTURE_OUTPUT = CaptureOutputMode.DISABLE
        try:
            if self.pending_basis is not None:
                set_basis(_loaded_highs(self.solver), self.pending_basis)
                self.pending_basis = None
            res = self.solver.solve(self.model)
        except Exception as err:  # noqa: BLE001 - a solver failure is a failed solve, reported
            return Solution(False, f"error: {err}")
        finally:
            pyomo.common.tee.OVERRIDE_CAPTURE_OUTPUT = capture
        tc = res.termination_condition
        if tc != TerminationCondition.convergenceCriteriaSatisfied:
            return Solution(False, tc.name, res)
        return Solution(True, "optimal", res)
