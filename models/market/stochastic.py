"""Two-stage stochastic linear programs, and a stochastic day-ahead market clearing (``design: stochastic``).

Two-stage stochastic LP (extensive form)
----------------------------------------
::

    min  c x + sum_s p_s q_s y_s
    s.t. a_lo   <= A x             <= a_hi,     x_lo   <= x   <= x_hi       (first stage, here and now)
         h_lo_s <= T_s x + W_s y_s <= h_hi_s,   y_lo_s <= y_s <= y_hi_s     (recourse, every scenario s)

A row with ``lo == hi`` is an equality, ``lo = -inf`` or ``hi = +inf`` makes it one-sided (`row_bounds`
turns ``<=``, ``==``, ``>=`` and a right-hand side into these bounds). ``T`` and ``W`` are one matrix
for every scenario or one per scenario. The problem is written as one Pyomo LP and solved by HiGHS
through `solver.PersistentModel` (every solve under a time limit); the models are persistent: a new
problem of the same structure only pushes the vectors (costs, bounds) that changed and HiGHS
warm-starts from the previous basis; rows whose matrix coefficients changed are re-loaded, a changed
sparsity pattern or size rebuilds the model.

Measures (minimisation; Birge & Louveaux, *Introduction to Stochastic Programming*, Section 4.1-4.2):

- RP, recourse problem: the optimum of the extensive form, the expected cost of the stochastic solution;
- WS, wait-and-see: ``sum_s p_s z_s``, ``z_s`` the optimum of scenario ``s`` alone (perfect information);
- EV, expected-value problem: the optimum of one scenario with the probability-weighted mean data;
- EEV: the expected cost of the EV problem's first stage ``x_EV``, ``c x_EV + sum_s p_s Q_s(x_EV)``
  (``+inf`` when ``x_EV`` leaves some scenario without a feasible recourse);
- VSS = EEV - RP >= 0, the value of the stochastic solution; EVPI = RP - WS >= 0, the expected value
  of perfect information. Always WS <= RP <= EEV (up to the solver's tolerances, ~1e-9 relative).

Stochastic day-ahead clearing
-----------------------------
The ``T`` hours of the next day are cleared at once, each hour against the `Bids` layout of the run
(one hour per interval: $/h sums to $). Steps that have scenario quantities are *uncertain* (PV, the
load): in real time a supply step delivers its scenario's quantity ``R`` (it may be spilled at no
cost) and a demand step consumes its scenario's quantity, whatever their day-ahead schedule. Every
other step is *firm* (upstream day-ahead import and export, batteries, generators, elastic steps that
follow their award) and delivers its day-ahead schedule.

- First stage, per hour ``t``: ``0 <= d_ti <= demand_mw``, ``supply_min_mw <= s_tj <= supply_max_mw``
  and a copper-plate balance ``sum_j s_tj = sum_i d_ti``; cost as bid,
  ``sum_j supply_price s_tj - sum_i demand_price d_ti``.
- Second stage, per scenario ``s`` and hour ``t``: the upstream grid absorbs the deviation of the
  uncertain steps from their schedule, balancing up ``b+ >= 0`` bought at ``up_price`` and down
  ``b- >= 0`` sold at ``down_price``, with ``0 <= spill <= sum_{uncertain supply} R``::

      b+ - b- - spill = sum_{uncertain demand} (R - d) - sum_{uncertain supply} (R - s)

  cost ``up_price b+ - down_price b-``.
- Minimised: expected cost = day-ahead as-bid cost + expected balancing cost (= -expected welfare).

The day-ahead price of hour ``t`` is the dual of its balance in the RP (dual ties at a step boundary
are not broken as `UniformAuction` does: HiGHS gives one price of the interval). The real-time price
of scenario ``s`` is the dual of its balancing row divided by ``p_s``. Balancing prices should bracket
the day-ahead prices (``down_price <= price <= up_price``), or the clearing uses balancing as a
cheaper source than the day-ahead offers. An uncertain step's day-ahead schedule is bounded by its
bid quantity (its forecast, say): offer the largest scenario quantity to let the clearing go above it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.core.expr import LinearExpression

from cosim.models.market.clearing import Bids
from cosim.models.market.solver import PersistentModel

INF = float("inf")
_PROB_TOL = 1e-9  # probabilities must sum to 1 within this
_COEFF_REBUILD_SHARE = 0.2  # more changed matrix coefficients than this share: rebuild the instance
SOLVER_OPTIONS: dict[str, Any] = {}  # on top of `solver.DEFAULT_OPTIONS` (tolerances 1e-9)

Matrix = Any  # a scipy sparse matrix/array or a dense 2-D array


def row_bounds(rhs: Any, sense: Any) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) row bounds of rows ``expr <sense> rhs``; sense ``<=``, ``==`` (or ``=``) or ``>=`` per row.

    ``rhs`` may have leading dimensions (scenarios); ``sense`` broadcasts against it.
    """
    rhs = np.asarray(rhs, dtype=float)
    sense = np.broadcast_to(np.asarray(sense, dtype=str), rhs.shape)
    known = np.isin(sense, ("<=", "==", "=", ">="))
    if not known.all():
        raise ValueError(f"unknown row sense(s) {sorted(set(sense[~known].tolist()))}")
    lo = np.where(sense == "<=", -INF, rhs)
    hi = np.where(sense == ">=", INF, rhs)
    return lo, hi


def _csc(m: Matrix, shape: tuple[int, int], name: str) -> Any:
    out = m if sp.issparse(m) and m.format == "csc" else sp.csc_array(m)
    if out.shape != shape:
        raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
    return out


def _vec(v: Any, n: int, name: str) -> np.ndarray:
    out = np.array(np.broadcast_to(np.asarray(v, dtype=float), (n,)))
    if np.isnan(out).any():
        raise ValueError(f"{name} has NaN")
    return out


def _mat(v: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    out = np.array(np.broadcast_to(np.asarray(v, dtype=float), shape))
    if np.isnan(out).any():
        raise ValueError(f"{name} has NaN")
    return out


def _pmean(p: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Probability-weighted mean over axis 0, with infinite bounds kept (scenarios of p = 0 ignored)."""
    live = a[p > 0]
    pos, neg = np.isposinf(live).any(axis=0), np.isneginf(live).any(axis=0)
    if (pos & neg).any():
        raise ValueError("a bound is +inf in one scenario and -inf in another: no mean")
    mean = np.tensordot(p[p > 0], np.where(np.isinf(live), 0.0, live), axes=1)
    return np.where(pos, INF, np.where(neg, -INF, mean))


@dataclass(frozen=True)
class TwoStageLP:
    """A two-stage stochastic LP with finitely many scenarios (see the module docstring).

    Shapes: ``c, x_lo, x_hi`` (n_x,); ``A`` (m1, n_x), ``a_lo, a_hi`` (m1,); ``prob`` (S,);
    ``q, y_lo, y_hi`` (S, n_y) (or (n_y,), the same for every scenario); ``T`` (m2, n_x) and ``W``
    (m2, n_y), one matrix or a sequence of S; ``h_lo, h_hi`` (S, m2) (or (m2,)). Bounds may be
    ``±inf``. ``A`` may have no rows (``np.zeros((0, n_x))``).
    """

    c: np.ndarray
    x_lo: np.ndarray
    x_hi: np.ndarray
    A: Matrix
    a_lo: np.ndarray
    a_hi: np.ndarray
    prob: np.ndarray
    q: np.ndarray
    y_lo: np.ndarray
    y_hi: np.ndarray
    T: Matrix | Sequence[Matrix]
    W: Matrix | Sequence[Matrix]
    h_lo: np.ndarray
    h_hi: np.ndarray

    def __post_init__(self) -> None:
        put = object.__setattr__
        c = _vec(self.c, len(np.asarray(self.c)), "c")
        n_x = len(c)
        put(self, "c", c)
        put(self, "x_lo", _vec(self.x_lo, n_x, "x_lo"))
        put(self, "x_hi", _vec(self.x_hi, n_x, "x_hi"))
        m1 = int(np.shape(self.A)[0])
        put(self, "A", _csc(self.A, (m1, n_x), "A"))
        put(self, "a_lo", _vec(self.a_lo, m1, "a_lo"))
        put(self, "a_hi", _vec(self.a_hi, m1, "a_hi"))
        prob = np.asarray(self.prob, dtype=float).ravel()
        if len(prob) == 0 or (prob < 0).any() or abs(prob.sum() - 1.0) > _PROB_TOL:
            raise ValueError(f"prob must be >= 0 and sum to 1, got {prob}")
        put(self, "prob", prob)
        n_s = len(prob)
        per_w = isinstance(self.W, list | tuple)
        w0 = self.W[0] if per_w else self.W  # type: ignore[index]
        m2, n_y = (int(k) for k in np.shape(w0))
        for name, shape in (("W", (m2, n_y)), ("T", (m2, n_x))):
            given = getattr(self, name)
            if isinstance(given, list | tuple):
                if len(given) != n_s:
                    raise ValueError(f"{name} has {len(given)} matrices for {n_s} scenarios")
                put(self, name, tuple(_csc(m, shape, f"{name}[{k}]") for k, m in enumerate(given)))
            else:
                put(self, name, _csc(given, shape, name))
        for name, width in (("q", n_y), ("y_lo", n_y), ("y_hi", n_y), ("h_lo", m2), ("h_hi", m2)):
            put(self, name, _mat(getattr(self, name), (n_s, width), name))
        if (self.x_lo > self.x_hi).any() or (self.y_lo > self.y_hi).any():
            raise ValueError("a lower bound is above its upper bound")

    @property
    def n_x(self) -> int:
        """Number of first-stage variables."""
        return len(self.c)

    @property
    def n_y(self) -> int:
        """Number of recourse variables per scenario."""
        return int(self.q.shape[1])

    @property
    def n_scenarios(self) -> int:
        """Number of scenarios."""
        return len(self.prob)

    @property
    def m1(self) -> int:
        """Number of first-stage rows."""
        return int(self.A.shape[0])

    @property
    def m2(self) -> int:
        """Number of recourse rows per scenario."""
        return int(self.h_lo.shape[1])

    def T_of(self, s: int) -> Any:
        """Technology matrix of scenario ``s`` (csc)."""
        return self.T[s] if isinstance(self.T, tuple) else self.T

    def W_of(self, s: int) -> Any:
        """Recourse matrix of scenario ``s`` (csc)."""
        return self.W[s] if isinstance(self.W, tuple) else self.W

    def _one(self, q: Any, y_lo: Any, y_hi: Any, T: Any, W: Any, h_lo: Any, h_hi: Any) -> TwoStageLP:
        return TwoStageLP(
            self.c,
            self.x_lo,
            self.x_hi,
            self.A,
            self.a_lo,
            self.a_hi,
            np.ones(1),
            q[None],
            y_lo[None],
            y_hi[None],
            T,
            W,
            h_lo[None],
            h_hi[None],
        )

    def scenario(self, s: int) -> TwoStageLP:
        """The deterministic problem of scenario ``s`` alone (probability 1)."""
        return self._one(
            self.q[s], self.y_lo[s], self.y_hi[s], self.T_of(s), self.W_of(s), self.h_lo[s], self.h_hi[s]
        )

    def mean(self) -> TwoStageLP:
        """The expected-value problem: one scenario with the probability-weighted mean data."""
        p = self.prob

        def mean_mat(ms: Any) -> Any:
            if not isinstance(ms, tuple):
                return ms
            return sp.csc_array(sum((pk * m for pk, m in zip(p, ms, strict=True) if pk > 0), start=0 * ms[0]))

        return self._one(
            p @ self.q,
            _pmean(p, self.y_lo),
            _pmean(p, self.y_hi),
            mean_mat(self.T),
            mean_mat(self.W),
            _pmean(p, self.h_lo),
            _pmean(p, self.h_hi),
        )


@dataclass(frozen=True)
class StochasticSolution:
    """The stochastic solution of a `TwoStageLP` and, when asked for, its measures.

    ``status`` is ``"optimal"`` when the recourse problem (RP) solved, else ``"RP: <termination condition>"``
    and every number NaN. A failure of the WS or EV problem is appended (``"optimal; EV: ..."``) and
    leaves its own numbers NaN. ``first_stage_dual`` (m1,) and ``recourse_dual`` (S, m2) are the
    extensive form's row duals, d(expected cost)/d(row bound): a recourse row's dual includes ``p_s``.
    """

    status: str
    rp: float
    x: np.ndarray  # (n_x,) first stage of the stochastic solution
    y: np.ndarray  # (S, n_y) recourse of every scenario
    first_stage_cost: float  # c x
    recourse_cost: np.ndarray  # (S,) q_s y_s
    first_stage_dual: np.ndarray  # (m1,)
    recourse_dual: np.ndarray  # (S, m2)
    ws: float = np.nan
    ws_by_scenario: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (S,) optimum with perfect info
    ev: float = np.nan
    x_ev: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (n_x,) first stage of the EV problem
    eev: float = np.nan

    @property
    def vss(self) -> float:
        """Value of the stochastic solution, EEV - RP (>= 0; +inf when x_EV has no feasible recourse)."""
        return self.eev - self.rp

    @property
    def evpi(self) -> float:
        """Expected value of perfect information, RP - WS (>= 0)."""
        return self.rp - self.ws


def _same_key(new: tuple[Any, ...], old: tuple[Any, ...] | None) -> bool:
    """Same form and size (by value) and the same matrix objects (by identity)."""
    if old is None or len(new) != len(old) or new[:2] != old[:2]:
        return False
    return all(a is b for a, b in zip(new[2:], old[2:], strict=True))


def _bound(v: float) -> float | None:
    return None if np.isinf(v) else v


class _PyomoLP:
    """One persistent LP as a Pyomo model: min cost x, col_lo <= x <= col_hi, row_lo <= M x <= row_hi.

    Row ``r`` is ``M[r] @ x - act_r == 0`` with its bounds on the activity variable ``act_r``, so that
    every bound (columns' and rows') is a variable bound, pushed as a vector (``update_bounds``); costs
    are mutable parameters (``update_parameters``, only when some cost changed). The dual of a row is
    that of the original ``row_lo <= M x <= row_hi``. Changed matrix coefficients re-load their rows
    (``remove_constraints`` / ``add_constraints``); a changed sparsity pattern or size rebuilds the model.
    """

    checkpoint_drop = ("_key", "_mat", "_vec", "model", "solver", "_x", "_act", "_cost", "_rows")

    def __init__(self, options: Mapping[str, Any], time_limit_s: float | None) -> None:
        self.options, self.time_limit_s = dict(options), time_limit_s
        self._key: tuple[Any, ...] | None = None  # matrix inputs the loaded matrix was built from
        self._mat: Any = None  # the loaded matrix (csc, canonical)
        self._vec: dict[str, np.ndarray] = {}
        self.n_builds = 0

    def before_capture(self) -> None:
        """A checkpoint: the next load rebuilds the model (a new HiGHS instance, solved cold), as in the
        run resumed from it, whose loaded matrix is dropped (``checkpoint_drop``)."""
        self._key, self._mat = None, None

    def load(
        self,
        key: tuple[Any, ...],
        matrix: Callable[[], Any],
        cost: np.ndarray,
        col_lo: np.ndarray,
        col_hi: np.ndarray,
        row_lo: np.ndarray,
        row_hi: np.ndarray,
    ) -> None:
        """Make the loaded LP this one; ``key`` (compared by identity) says whether ``matrix()`` changed."""
        vec = {"cost": cost, "col_lo": col_lo, "col_hi": col_hi, "row_lo": row_lo, "row_hi": row_hi}
        if not _same_key(key, self._key):
            new = sp.csc_array(matrix())
            new.sum_duplicates()
            new.sort_indices()
            if not self._same_pattern(new):
                self._build(new, vec)
                self._key = key
                return
            self._push_coefficients(new)
            self._key = key
        self._push_vectors(vec)

    def _same_pattern(self, new: Any) -> bool:
        old = self._mat
        return (
            old is not None
            and old.shape == new.shape
            and np.array_equal(old.indptr, new.indptr)
            and np.array_equal(old.indices, new.indices)
        )

    def _row_expr(self, csr: Any, r: int) -> Any:
        lo, hi = csr.indptr[r], csr.indptr[r + 1]
        x = self._x
        return LinearExpression(
            constant=0.0,
            linear_coefs=[*csr.data[lo:hi].tolist(), -1.0],
            linear_vars=[*(x[j] for j in csr.indices[lo:hi].tolist()), self._act[r]],
        )

    def _build(self, mat: Any, vec: dict[str, np.ndarray]) -> None:
        n_row, n_col = mat.shape
        m = pyo.ConcreteModel(name="two_stage_lp")
        m.J, m.R = pyo.RangeSet(0, n_col - 1), pyo.RangeSet(0, n_row - 1)
        m.cost = pyo.Param(m.J, mutable=True, initialize=dict(enumerate(vec["cost"].tolist())))
        col_lo, col_hi = vec["col_lo"].tolist(), vec["col_hi"].tolist()
        row_lo, row_hi = vec["row_lo"].tolist(), vec["row_hi"].tolist()
        m.x = pyo.Var(m.J, bounds=lambda m, j: (_bound(col_lo[j]), _bound(col_hi[j])))
        m.act = pyo.Var(m.R, bounds=lambda m, r: (_bound(row_lo[r]), _bound(row_hi[r])))
        self._x, self._act = list(m.x.values()), list(m.act.values())
        csr = sp.csr_array(mat)
        m.row = pyo.Constraint(m.R, rule=lambda m, r: self._row_expr(csr, r) == 0)
        m.obj = pyo.Objective(expr=sum(m.cost[j] * m.x[j] for j in m.J), sense=pyo.minimize)
        self.model = m
        self._cost, self._rows = list(m.cost.values()), list(m.row.values())
        self.solver = PersistentModel(m, time_limit_s=self.time_limit_s, options=self.options)
        self._mat = mat
        self._vec = {k: v.copy() for k, v in vec.items()}
        self.n_builds += 1

    def _push_coefficients(self, new: Any) -> None:
        changed = np.flatnonzero(new.data != self._mat.data)
        if len(changed) > _COEFF_REBUILD_SHARE * max(new.nnz, 1):
            self._build(new, self._vec)
            return
        rows = sorted(set(new.indices[changed].tolist()))
        cons = [self._rows[r] for r in rows]
        self.solver.remove_constraints(cons)
        csr = sp.csr_array(new)
        for r, con in zip(rows, cons, strict=True):
            con.set_value(self._row_expr(csr, r) == 0)
        self.solver.add_constraints(cons)
        self._mat = new

    def _push_vectors(self, vec: dict[str, np.ndarray]) -> None:
        old = self._vec
        idx = np.flatnonzero(vec["cost"] != old["cost"])
        for j in idx.tolist():
            self._cost[j].set_value(float(vec["cost"][j]))
        if len(idx):
            self.solver.update_parameters()
        moved: list[Any] = []
        for kind, variables in (("col", self._x), ("row", self._act)):
            lo, hi = vec[f"{kind}_lo"], vec[f"{kind}_hi"]
            for k in np.flatnonzero((lo != old[f"{kind}_lo"]) | (hi != old[f"{kind}_hi"])).tolist():
                variables[k].setlb(_bound(float(lo[k])))
                variables[k].setub(_bound(float(hi[k])))
                moved.append(variables[k])
        self.solver.update_bounds(moved)
        self._vec = {k: v.copy() for k, v in vec.items()}

    def solve(self, read: bool = True) -> tuple[str, float, np.ndarray, np.ndarray]:
        """(status, objective, column values, row duals); status ``"optimal"`` or the solver's word.

        With ``read`` False only the status and the objective (values and duals empty).
        """
        sol = self.solver.solve()
        if not sol.ok:
            return sol.status, np.nan, np.zeros(0), np.zeros(0)
        if not read:
            return "optimal", sol.objective, np.zeros(0), np.zeros(0)
        return "optimal", sol.objective, sol.values(self._x), sol.duals(self._rows)


def _stack_T(lp: TwoStageLP) -> Any:
    if isinstance(lp.T, tuple):
        return sp.vstack(lp.T, format="csc")
    return sp.kron(np.ones((lp.n_scenarios, 1)), lp.T, format="csc")


def _diag_W(lp: TwoStageLP) -> Any:
    if isinstance(lp.W, tuple):
        return sp.block_diag(lp.W, format="csc")
    return sp.kron(sp.eye_array(lp.n_scenarios), lp.W, format="csc")


def _extensive_matrix(lp: TwoStageLP) -> Any:
    """Columns [x, y_0, .., y_{S-1}]; rows [A; T_s x + W_s y_s for every s]."""
    zero = sp.csc_array((lp.m1, lp.n_scenarios * lp.n_y))
    return sp.vstack([sp.hstack([lp.A, zero]), sp.hstack([_stack_T(lp), _diag_W(lp)])], format="csc")


def _key(lp: TwoStageLP, form: str) -> tuple[Any, ...]:
    """(form, scenarios, matrix objects): what says that a loaded matrix may be reused unchanged."""
    return (form, lp.n_scenarios, lp.A, lp.T, lp.W)


class StochasticLP:
    """Solver of `TwoStageLP` problems: RP, and on request WS, EV and EEV, on persistent Pyomo models.

    The models kept: the extensive form (RP, then EEV with the first stage fixed), and the
    one-scenario form for EV and for WS (every scenario alone in turn: only its recourse data change
    between them; one WS model per scenario when ``T`` or ``W`` differ by scenario). Solving a problem
    of the same structure again (same matrix objects, or equal values) only pushes what changed.
    """

    checkpoint_drop = ()  # holds HiGHS (via Pyomo): captured attribute by attribute, with its hooks

    def __init__(
        self, solver_options: Mapping[str, Any] | None = None, time_limit_s: float | None = None
    ) -> None:
        options = {**SOLVER_OPTIONS, **(solver_options or {})}
        self._options, self._time_limit_s = options, time_limit_s
        self._rp, self._ev = _PyomoLP(options, time_limit_s), _PyomoLP(options, time_limit_s)
        self._ws: dict[int, _PyomoLP] = {}  # by scenario when T or W differ by scenario, else one (0)

    def before_restore(self, fields: dict[str, Any]) -> None:
        """Create the WS models a checkpoint holds state of (they are otherwise made when first needed)."""
        kind, ws = fields.get("_ws", ("skip", None))
        if kind == "items":
            for key in ws:
                self._ws.setdefault(key, _PyomoLP(self._options, self._time_limit_s))

    @property
    def n_builds(self) -> int:
        """How many times an instance was built (not updated) so far."""
        return self._rp.n_builds + sum(m.n_builds for m in self._ws.values()) + self._ev.n_builds

    def solve(self, lp: TwoStageLP, measures: bool = True) -> StochasticSolution:
        """The stochastic solution of ``lp``; with ``measures`` also WS, EV and EEV (so VSS and EVPI)."""
        status, rp, x, y, duals = self._solve_extensive(self._rp, lp, "RP")
        n_s = lp.n_scenarios
        if status != "optimal":
            nan = np.full
            return StochasticSolution(
                f"RP: {status}",
                np.nan,
                nan(lp.n_x, np.nan),
                nan((n_s, lp.n_y), np.nan),
                np.nan,
                nan(n_s, np.nan),
                nan(lp.m1, np.nan),
                nan((n_s, lp.m2), np.nan),
            )
        sol = StochasticSolution(
            status="optimal",
            rp=rp,
            x=x,
            y=y,
            first_stage_cost=float(lp.c @ x),
            recourse_cost=np.einsum("sk,sk->s", lp.q, y),
            first_stage_dual=duals[: lp.m1],
            recourse_dual=duals[lp.m1 :].reshape(n_s, lp.m2),
        )
        if not measures:
            return sol
        notes: list[str] = []
        ws, ws_by = self._wait_and_see(lp, notes)
        ev, x_ev, eev = self._expected_value(lp, notes)
        return StochasticSolution(
            status="; ".join(["optimal", *notes]),
            rp=sol.rp,
            x=sol.x,
            y=sol.y,
            first_stage_cost=sol.first_stage_cost,
            recourse_cost=sol.recourse_cost,
            first_stage_dual=sol.first_stage_dual,
            recourse_dual=sol.recourse_dual,
            ws=ws,
            ws_by_scenario=ws_by,
            ev=ev,
            x_ev=x_ev,
            eev=eev,
        )

    def _solve_extensive(
        self,
        inst: _PyomoLP,
        lp: TwoStageLP,
        what: str,
        fix_x: np.ndarray | None = None,
        read: bool = True,
    ) -> tuple[str, float, np.ndarray, np.ndarray, np.ndarray]:
        n_s, n_x = lp.n_scenarios, lp.n_x
        x_lo, x_hi = (lp.x_lo, lp.x_hi) if fix_x is None else (fix_x, fix_x)
        inst.load(
            _key(lp, "extensive"),
            lambda: _extensive_matrix(lp),
            np.concatenate([lp.c, (lp.prob[:, None] * lp.q).ravel()]),
            np.concatenate([x_lo, lp.y_lo.ravel()]),
            np.concatenate([x_hi, lp.y_hi.ravel()]),
            np.concatenate([lp.a_lo, lp.h_lo.ravel()]),
            np.concatenate([lp.a_hi, lp.h_hi.ravel()]),
        )
        status, obj, col, row_dual = inst.solve(read)
        if status != "optimal" or not read:
            return status, obj, np.zeros(0), np.zeros(0), np.zeros(0)
        return status, obj, col[:n_x], col[n_x:].reshape(n_s, lp.n_y), row_dual

    def _wait_and_see(self, lp: TwoStageLP, notes: list[str]) -> tuple[float, np.ndarray]:
        # Each scenario alone (probability 1) on the one-scenario model: its optimum is the objective.
        z = np.full(lp.n_scenarios, np.nan)
        per_scenario = isinstance(lp.T, tuple) or isinstance(lp.W, tuple)
        for s in range(lp.n_scenarios):
            key = s if per_scenario else 0
            if key not in self._ws:
                self._ws[key] = _PyomoLP(self._options, self._time_limit_s)
            status, z[s] = self._solve_extensive(self._ws[key], lp.scenario(s), "WS", read=False)[:2]
            if status != "optimal":
                notes.append(f"WS: {status}")
                return np.nan, np.full(lp.n_scenarios, np.nan)
        return float(lp.prob @ z), z

    def _expected_value(self, lp: TwoStageLP, notes: list[str]) -> tuple[float, np.ndarray, float]:
        mean = lp.mean()
        status, ev, x_ev, _, _ = self._solve_extensive(self._ev, mean, "EV")
        if status != "optimal":
            notes.append(f"EV: {status}")
            return np.nan, np.full(lp.n_x, np.nan), np.nan
        x_fix = np.clip(x_ev, lp.x_lo, lp.x_hi)
        status, eev, _, _, _ = self._solve_extensive(self._rp, lp, "EEV", fix_x=x_fix, read=False)
        if status != "optimal":
            # x_EV is feasible in the first stage (same rows), so the recourse of some scenario is not.
            notes.append(f"EEV: {status}")
            eev = INF if "nfeasible" in status else np.nan
        return ev, x_ev, eev


def solve_two_stage(lp: TwoStageLP, measures: bool = True) -> StochasticSolution:
    """Solve one `TwoStageLP` on fresh models (use a `StochasticLP` to solve many)."""
    return StochasticLP().solve(lp, measures)


# ---- scenarios -------------------------------------------------------------------------------------


def forecast_scenarios(
    forecast: Any,
    n_scenarios: int,
    sd: float,
    rng: np.random.Generator | int | None = None,
    *,
    rho: float = 0.0,
    antithetic: bool = False,
    upper: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scenarios of a forecast with normal multiplicative errors, and their (equal) probabilities.

    ``forecast`` (T,) or (T, k) (hours first); scenario ``s`` is ``forecast * (1 + e_s)`` with
    ``e_s ~ N(0, sd^2)`` for every hour and column, AR(1) over the hours with coefficient ``rho``
    (stationary: the same ``sd`` every hour), clipped to ``[0, upper]``. ``antithetic`` pairs every
    error with its negative (``n_scenarios`` even): the scenarios are then symmetric around the
    forecast (until clipped). Returns ``(quantities (S, *forecast.shape), probabilities (S,))``.
    """
    f = np.asarray(forecast, dtype=float)
    if n_scenarios < 1 or sd < 0 or not -1.0 < rho < 1.0:
        raise ValueError("need n_scenarios >= 1, sd >= 0 and -1 < rho < 1")
    if antithetic and n_scenarios % 2:
        raise ValueError("antithetic scenarios come in pairs: n_scenarios must be even")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n_draw = n_scenarios // 2 if antithetic else n_scenarios
    z = gen.standard_normal((n_draw, *f.shape))
    e = np.empty_like(z)
    if len(f):
        e[:, 0] = z[:, 0]
        for t in range(1, len(f)):
            e[:, t] = rho * e[:, t - 1] + np.sqrt(1.0 - rho * rho) * z[:, t]
    e *= sd
    if antithetic:
        e = np.stack([e, -e], axis=1).reshape(n_scenarios, *f.shape)
    out = np.clip(f * (1.0 + e), 0.0, None if upper is None else np.asarray(upper, dtype=float))
    return out, np.full(n_scenarios, 1.0 / n_scenarios)


@dataclass(frozen=True)
class DayScenarios:
    """Real-time quantities of the uncertain steps in every scenario of one day, and their probabilities.

    ``demand_mw`` (S, T, n_demand) and ``supply_mw`` (S, T, n_supply): what each step consumes /
    can deliver in real time; NaN in every scenario and hour for a firm step (it follows its
    day-ahead schedule). A step is uncertain in every hour or in none.
    """

    probability: np.ndarray  # (S,)
    demand_mw: np.ndarray  # (S, T, n_demand)
    supply_mw: np.ndarray  # (S, T, n_supply)

    def __post_init__(self) -> None:
        p = np.asarray(self.probability, dtype=float).ravel()
        if len(p) == 0 or (p < 0).any() or abs(p.sum() - 1.0) > _PROB_TOL:
            raise ValueError(f"probabilities must be >= 0 and sum to 1, got {p}")
        object.__setattr__(self, "probability", p)
        for name in ("demand_mw", "supply_mw"):
            a = np.asarray(getattr(self, name), dtype=float)
            if a.ndim != 3 or a.shape[0] != len(p):
                raise ValueError(f"{name} must be (n_scenarios={len(p)}, T, n_steps), got {a.shape}")
            nan = np.isnan(a)
            if (nan.any(axis=(0, 1)) != nan.all(axis=(0, 1))).any():
                raise ValueError(f"{name}: a step is NaN (firm) in some scenarios or hours only")
            if (a[~nan] < 0).any():
                raise ValueError(f"{name} has negative quantities")
            object.__setattr__(self, name, a)
        if self.demand_mw.shape[1] != self.supply_mw.shape[1]:
            raise ValueError("demand_mw and supply_mw have different numbers of hours")

    @classmethod
    def of_steps(
        cls,
        probability: Any,
        n_demand: int,
        n_supply: int,
        demand: Mapping[int, Any] | None = None,
        supply: Mapping[int, Any] | None = None,
    ) -> DayScenarios:
        """Scenarios given for a few steps only, ``{step: (S, T) quantities}``; every other step firm."""
        p = np.asarray(probability, dtype=float).ravel()
        given = [np.asarray(v, dtype=float) for v in (*(demand or {}).values(), *(supply or {}).values())]
        if not given:
            raise ValueError("no uncertain step: give scenarios for at least one")
        n_hours = given[0].shape[1]
        out = []
        for n, steps in ((n_demand, demand or {}), (n_supply, supply or {})):
            a = np.full((len(p), n_hours, n), np.nan)
            for k, v in steps.items():
                a[:, :, k] = v
            out.append(a)
        return cls(p, out[0], out[1])

    @property
    def n_scenarios(self) -> int:
        """Number of scenarios."""
        return len(self.probability)

    @property
    def n_hours(self) -> int:
        """Number of hours."""
        return int(self.demand_mw.shape[1])

    @property
    def uncertain_demand(self) -> np.ndarray:
        """(n_demand,) True for the demand steps with scenario quantities."""
        return ~np.isnan(self.demand_mw[0, 0])

    @property
    def uncertain_supply(self) -> np.ndarray:
        """(n_supply,) True for the supply steps with scenario quantities."""
        return ~np.isnan(self.supply_mw[0, 0])


# ---- stochastic day-ahead clearing ----------------------------------------------------------------


@dataclass(frozen=True)
class DayClearing:
    """One day's stochastic day-ahead clearing, its real-time recourse and the day's VSS and EVPI.

    Money in $ for the day (hours of 1 h), expected over the scenarios; costs are as bid
    (``-welfare``). Without ``measures`` (or when WS / EV failed) ws, ev, eev, vss and evpi are NaN.
    """

    status: str  # "optimal", or what went wrong (see `StochasticSolution.status`)
    price_per_mwh: np.ndarray  # (T,) day-ahead price (dual of the hour's balance)
    demand_mw: np.ndarray  # (T, n_demand) day-ahead schedule
    supply_mw: np.ndarray  # (T, n_supply)
    rt_price_per_mwh: np.ndarray  # (S, T) real-time price of each scenario
    balancing_up_mw: np.ndarray  # (S, T) bought upstream in real time
    balancing_down_mw: np.ndarray  # (S, T) sold upstream in real time
    spill_mw: np.ndarray  # (S, T) uncertain supply spilled
    day_ahead_cost: float  # $, as bid: supply cost - demand value of the day-ahead schedule
    expected_balancing_cost: float  # $
    expected_cost: float  # $, RP = day_ahead_cost + expected_balancing_cost
    ws: float  # $, wait-and-see
    ev: float  # $, expected-value problem
    eev: float  # $, expected result of the expected-value schedule
    vss: float  # $, EEV - RP
    evpi: float  # $, RP - WS
    ev_demand_mw: np.ndarray  # (T, n_demand) schedule of the expected-value problem
    ev_supply_mw: np.ndarray  # (T, n_supply)


class StochasticDayAhead:
    """Stochastic day-ahead clearing of ``n_hours`` hours (see the module docstring), built once.

    Parameters
    ----------
    n_hours, n_demand, n_supply : day size and step layout, fixed for the run
    solver_options : extra HiGHS options
    time_limit_s : wall-clock limit of every HiGHS solve [s] (default `solver.DEFAULT_TIME_LIMIT_S`)

    The structure (matrices) depends only on the day size, the number of scenarios and which steps
    are uncertain; a day with the same ones only pushes the changed bids, scenario quantities and
    balancing prices to the persistent models, which warm-start.
    """

    checkpoint_drop = ()  # holds HiGHS (via Pyomo): captured attribute by attribute, with its hooks

    def __init__(
        self,
        n_hours: int,
        n_demand: int,
        n_supply: int,
        solver_options: Mapping[str, Any] | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        self.n_hours, self.n_demand, self.n_supply = int(n_hours), int(n_demand), int(n_supply)
        self.solver = StochasticLP(solver_options, time_limit_s)
        self._masks: tuple[np.ndarray, np.ndarray] | None = None
        self._matrices: tuple[Any, Any, Any] = (None, None, None)

    def _structure(self, unc_d: np.ndarray, unc_s: np.ndarray) -> tuple[Any, Any, Any]:
        """(A, T, W) of the day; the same objects while the uncertain steps stay the same."""
        if self._masks is not None and all(
            np.array_equal(a, b) for a, b in zip(self._masks, (unc_d, unc_s), strict=True)
        ):
            return self._matrices
        n_t, n_d = self.n_hours, self.n_demand
        eye = sp.eye_array(n_t, format="csc")
        balance = np.r_[-np.ones(n_d), np.ones(self.n_supply)][None]
        deviation = np.r_[unc_d.astype(float), -unc_s.astype(float)][None]
        a_mat = sp.csc_array(sp.kron(eye, balance))
        t_mat = sp.csc_array(sp.kron(eye, deviation))
        t_mat.eliminate_zeros()
        w_mat = sp.csc_array(sp.kron(eye, np.array([[1.0, -1.0, -1.0]])))
        self._masks, self._matrices = (unc_d.copy(), unc_s.copy()), (a_mat, t_mat, w_mat)
        return self._matrices

    def problem(
        self, bids: Sequence[Bids], scenarios: DayScenarios, up_price_per_mwh: Any, down_price_per_mwh: Any
    ) -> TwoStageLP:
        """The day's `TwoStageLP`: x = per hour [d (n_demand), s (n_supply)], y = per hour [b+, b-, spill]."""
        n_t, n_d, n_s = self.n_hours, self.n_demand, self.n_supply
        if len(bids) != n_t or scenarios.n_hours != n_t:
            raise ValueError(
                f"need {n_t} hours of bids and scenarios, got {len(bids)} and {scenarios.n_hours}"
            )
        if scenarios.demand_mw.shape[2] != n_d or scenarios.supply_mw.shape[2] != n_s:
            raise ValueError("scenario steps differ from the market's step layout")

        def stack(name: str, n: int) -> np.ndarray:
            out = np.array([np.asarray(getattr(b, name), dtype=float) for b in bids])
            if out.shape != (n_t, n):
                raise ValueError(f"bids.{name} is {out.shape}, the market was built for {(n_t, n)}")
            return out

        if np.any(stack("supply_c2", n_s) != 0):
            raise ValueError("the stochastic clearing is linear: supply_c2 must be 0")
        d_mw, d_price = stack("demand_mw", n_d), stack("demand_price", n_d)
        s_min, s_max, s_price = (
            stack("supply_min_mw", n_s),
            stack("supply_max_mw", n_s),
            stack("supply_price", n_s),
        )
        unc_d, unc_s = scenarios.uncertain_demand, scenarios.uncertain_supply
        a_mat, t_mat, w_mat = self._structure(unc_d, unc_s)
        n_sc = scenarios.n_scenarios
        up = np.broadcast_to(np.asarray(up_price_per_mwh, dtype=float), (n_t,))
        down = np.broadcast_to(np.asarray(down_price_per_mwh, dtype=float), (n_t,))
        r_d = np.nan_to_num(scenarios.demand_mw)  # firm steps: 0, unused
        r_s = np.nan_to_num(scenarios.supply_mw)
        net = r_d.sum(axis=2) - r_s.sum(axis=2)  # (S, T) realised net demand of the uncertain steps
        y_hi = np.stack([np.full((n_sc, n_t), INF), np.full((n_sc, n_t), INF), r_s.sum(axis=2)], axis=2)
        return TwoStageLP(
            c=np.concatenate([-d_price, s_price], axis=1).ravel(),
            x_lo=np.concatenate([np.zeros((n_t, n_d)), s_min], axis=1).ravel(),
            x_hi=np.concatenate([d_mw, s_max], axis=1).ravel(),
            A=a_mat,
            a_lo=np.zeros(n_t),
            a_hi=np.zeros(n_t),
            prob=scenarios.probability,
            q=np.stack([up, -down, np.zeros(n_t)], axis=1).ravel(),
            y_lo=np.zeros(3 * n_t),
            y_hi=y_hi.reshape(n_sc, 3 * n_t),
            T=t_mat,
            W=w_mat,
            h_lo=net,
            h_hi=net,
        )

    def clear_day(
        self,
        bids: Sequence[Bids],
        scenarios: DayScenarios,
        up_price_per_mwh: Any,
        down_price_per_mwh: Any,
        *,
        measures: bool = True,
    ) -> DayClearing:
        """Clear one day: ``bids`` one `Bids` per hour; balancing prices scalars or (T,) in $/MWh."""
        lp = self.problem(bids, scenarios, up_price_per_mwh, down_price_per_mwh)
        sol = self.solver.solve(lp, measures)
        n_t, n_d, n_sc = self.n_hours, self.n_demand, scenarios.n_scenarios
        x = sol.x.reshape(n_t, -1)
        y = sol.y.reshape(n_sc, n_t, 3)
        x_ev = sol.x_ev.reshape(n_t, -1) if len(sol.x_ev) else np.full_like(x, np.nan)
        p = scenarios.probability
        with np.errstate(divide="ignore", invalid="ignore"):
            rt_price = np.where(p[:, None] > 0, sol.recourse_dual / p[:, None], np.nan)
        return DayClearing(
            status=sol.status,
            price_per_mwh=sol.first_stage_dual.copy(),
            demand_mw=x[:, :n_d].copy(),
            supply_mw=x[:, n_d:].copy(),
            rt_price_per_mwh=rt_price,
            balancing_up_mw=y[:, :, 0].copy(),
            balancing_down_mw=y[:, :, 1].copy(),
            spill_mw=y[:, :, 2].copy(),
            day_ahead_cost=sol.first_stage_cost,
            expected_balancing_cost=float(p @ sol.recourse_cost),
            expected_cost=sol.rp,
            ws=sol.ws,
            ev=sol.ev,
            eev=sol.eev,
            vss=sol.vss,
            evpi=sol.evpi,
            ev_demand_mw=x_ev[:, :n_d].copy(),
            ev_supply_mw=x_ev[:, n_d:].copy(),
        )


def clear_day(
    bids: Sequence[Bids],
    scenarios: DayScenarios,
    up_price_per_mwh: Any,
    down_price_per_mwh: Any,
    *,
    measures: bool = True,
) -> DayClearing:
    """Clear one day on a freshly built `StochasticDayAhead` (build one to clear many days)."""
    n_d, n_s = scenarios.demand_mw.shape[2], scenarios.supply_mw.shape[2]
    market = StochasticDayAhead(len(bids), n_d, n_s)
    return market.clear_day(bids, scenarios, up_price_per_mwh, down_price_per_mwh, measures=measures)
