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
``status`` the termination condition). HiGHS (1.x) compares its ``time_limit`` with the run time of all
the runs of an instance together (HiGHS issue #1477), so a model re-solved every step would fail every
solve once its solves summed to the limit (a minute of DC-OPFs: ~900 steps of the MVLV grid); each solve
therefore gets the limit on top of the instance's run time so far (Pyomo's ``timing_info.highs_time``).
This module is the only one that imports HiGHS's Python bindings, and it does so only through Pyomo's
public API (no private attribute of Pyomo's solver).

Checkpoints (`cosim.checkpoint`): HiGHS's warm-start state (its basis, factors) cannot be stored, and a
resumed run must solve exactly as the uninterrupted run did. So at every checkpoint both runs reload
their solvers cold (`PersistentModel.reload`: ``set_instance`` again, a new HiGHS instance without a
basis): the uninterrupted run when its state is captured (``before_capture``), the resumed run when it
is restored (``after_restore``). From the checkpoint on both solve the same LPs from the same (no)
start. The cost is one cold solve per model after each checkpoint.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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


@contextmanager
def _no_output_capture() -> Iterator[None]:
    """Skip Pyomo's capture of the process's output streams for the calls inside (HiGHS's output is off).

    Pyomo's documented switch (`CaptureOutputMode`): the capture's reader threads cost more than a
    warm-started solve on a loaded machine; the previous mode is restored on exit.
    """
    capture = pyomo.common.tee.OVERRIDE_CAPTURE_OUTPUT
    pyomo.common.tee.OVERRIDE_CAPTURE_OUTPUT = CaptureOutputMode.DISABLE
    try:
        yield
    finally:
        pyomo.common.tee.OVERRIDE_CAPTURE_OUTPUT = capture


class PersistentModel:
    """A Pyomo model loaded once into a persistent HiGHS instance and re-solved after public updates.

    At a checkpoint (`cosim.checkpoint`) it reloads its solver cold (`reload`), in the checkpointed run
    (``before_capture``) as in a resumed one (``after_restore``), so that both runs solve alike after it.

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
        cfg.time_limit = self.limit_s = float(time_limit_s)
        self.highs_run_s = 0.0  # HiGHS's run time of the loaded instance, all solves so far [s]
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
        self.n_reloads = 0

    def reload(self) -> None:
        """Load the model, as it stands, into a new HiGHS instance: the next solve starts cold (no basis).

        Public Pyomo only (``set_instance`` again); options and time limit are kept. Pyomo's capture of the
        output stays on here: the new instance prints (e.g. about an empty Hessian) until a solve sets
        ``output_flag`` off.
        """
        self.solver.set_instance(self.model)
        self.highs_run_s = 0.0
        self.n_reloads += 1

    def before_capture(self) -> None:
        """A checkpoint of the running study: reload cold, as the run resumed from it will."""
        self.reload()

    def after_restore(self) -> None:
        """A run resumed from a checkpoint: reload cold, as the checkpointed run did."""
        self.reload()

    @property
    def time_limit_s(self) -> float:
        """The time limit of every solve [s]."""
        return self.limit_s

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
        self.solver.config.time_limit = self.limit_s + self.highs_run_s  # HiGHS's clock runs on across solves
        try:
            with _no_output_capture():
                res = self.solver.solve(self.model)
        except Exception as err:  # noqa: BLE001 - a solver failure is a failed solve, reported
            return Solution(False, f"error: {err}")
        highs_s = getattr(res.timing_info, "highs_time", None)
        if highs_s is not None:
            self.highs_run_s = float(highs_s)
        tc = res.termination_condition
        if tc != TerminationCondition.convergenceCriteriaSatisfied:
            return Solution(False, tc.name, res)
        return Solution(True, "optimal", res)
