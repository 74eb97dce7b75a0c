"""Security-constrained market clearing: a preventive N-1 DC-OPF with LMPs (PTDF/LODF formulation).

The dispatch maximises welfare as `dcopf.DCOPF` does, and in addition keeps every monitored branch
within ``contingency_limit_factor * rate_mw`` after the outage of any single branch of the contingency
list (preventive: the dispatch is not redispatched after the outage), and within ``rate_mw`` before.

Formulation (no angle variables). Columns: demand steps ``d``, supply steps ``s`` and the net injection
``p_b`` of every bus. Rows:

* bus balance ``sum(s at b) - sum(d at b) - p_b == 0`` (dual: the LMP of bus b, $/MWh);
* island balance ``sum(p_b for b in island) == 0`` (dual: the island's energy price lambda);
* pre-contingency limit of a monitored branch l:
  ``-rate_l <= PTDF[l] @ p + f0_l <= rate_l``;
* post-contingency limit of l after the outage of k, with ``LODF[l, k] = (PTDF[l, from_k] - PTDF[l, to_k])
  / (1 - (PTDF[k, from_k] - PTDF[k, to_k]))``:
  ``-c * rate_l <= (PTDF[l] + LODF[l, k] * PTDF[k]) @ p + f0_l + LODF[l, k] * f0_k <= c * rate_l``.

``PTDF`` is taken per island (injection at the bus, withdrawal at its island's reference bus) and ``f0``
is the flow that phase shifts drive with no injection, so pre-contingency flows are ``PTDF @ p + f0``
exactly as in the angle formulation. With ``p`` free, stationarity gives
``LMP_b = lambda_island(b) - sum over limit rows r of mu_r * H_r[b]``, ``H_r`` the row's coefficients and
``mu_r`` its net price (positive when the from->to limit binds): the cost of security is in the LMPs.

An outage that splits an island (``PTDF[k, from_k] - PTDF[k, to_k] == 1``: a radial branch, LODF
undefined) cannot be secured preventively; it is dropped from the list and reported in ``islanding``.

Lazy constraints (``constraints="lazy"``, the default). The model is built once with the balance rows
and the pre-contingency limits; post-contingency rows are added only when needed: after each solve the
post-contingency flows of all (branch, outage) pairs are computed from the solution (one numpy
broadcast ``F + LODF * F[k]``), and for every monitored branch whose limit is exceeded (by more than
``VIOLATION_TOL_MW``) after some outage, the row of its worst outage is added to the Pyomo model and
to the loaded solver (``add_constraints`` of `solver.PersistentModel`); HiGHS then re-solves from its
current basis, until no post-contingency limit is exceeded.
The final solution is optimal for the full problem (it is optimal for a relaxation and feasible for
the full problem), and the rows left out have zero duals, so the LMPs are exact. Rows stay in the
instance for the rest of the run (they are the ones that bind again in the next intervals); each
interval only writes changed bounds and costs, as in `dcopf`, and adds rows when a new pair binds.
``constraints="full"`` adds every pair at build (for small nets, and as a check of the lazy loop).
The model is a Pyomo model (``model``): the lazy rows are the ``post_limit`` ConstraintList, so the
model always holds exactly what the solver holds.

An outage is one branch of `network_dc.DCNetwork`: a pandapower line with ``parallel > 1`` goes out as
a whole, a three-winding transformer is three branches (one per winding, each its own outage).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr import LinearExpression

from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.dcopf import (
    BID_PARAMS,
    COST_PARAMS,
    _check_buses,
    _nan_clearing,
    bid_arrays,
    moved_bounds,
    nodal_clearing,
    push_costs,
)
from cosim.models.market.network_dc import DCNetwork
from cosim.models.market.solver import PersistentModel, Solution

ISLANDING_TOL = 1e-8  # 1 - (PTDF[k, from_k] - PTDF[k, to_k]) below this: the outage of k splits an island
VIOLATION_TOL_MW = 1e-7  # a post-contingency flow this far beyond its limit adds the row
COEF_TOL = 1e-12  # smaller PTDF/LODF coefficients are dropped from the rows (|p| * 1e-12 MW at most)
DUAL_TOL = 1e-9  # a limit row with a larger |dual| is reported as binding


def ptdf_by_island(network: DCNetwork) -> np.ndarray:
    """(n_br, n_bus) MW of branch flow per MW injected at a bus and withdrawn at its island's reference.

    Unlike `DCNetwork.ptdf`, whose columns outside the slack's island are zero, every island is covered.
    """
    n_bus, n_br = network.n_bus, network.n_branch
    if n_br == 0:
        return np.zeros((0, n_bus))
    rows = np.arange(n_br)
    cft = np.zeros((n_br, n_bus))
    cft[rows, network.branch_from] += 1.0
    cft[rows, network.branch_to] -= 1.0
    bf = network.b_pu[:, None] * cft
    bbus = cft.T @ bf
    free = np.setdiff1d(np.arange(n_bus), network.island_ref)
    out = np.zeros((n_br, n_bus))
    if len(free):
        # PTDF[:, free] = Bf[:, free] @ inv(Bbus[free, free]), i.e. the transpose of a solve.
        out[:, free] = np.linalg.solve(bbus[np.ix_(free, free)], bf[:, free].T).T
    return out


def shift_flow_mw(network: DCNetwork, ptdf: np.ndarray) -> np.ndarray:
    """(n_br,) branch flows that phase shifts drive when every bus injection is zero.

    ``flow = base_mva * b * (theta_f - theta_t - shift)`` is ``Bf @ theta + Pfinj`` with
    ``Pfinj = -base_mva * b * shift``, and the injections ``Bbus @ theta + (Cf - Ct).T @ Pfinj``, so
    ``flow = PTDF @ p + Pfinj - PTDF @ ((Cf - Ct).T @ Pfinj)``.
    """
    pfinj = -network.base_mva * network.b_pu * network.shift_rad
    pbusinj = np.bincount(network.branch_from, pfinj, network.n_bus) - np.bincount(
        network.branch_to, pfinj, network.n_bus
    )
    return np.asarray(pfinj - ptdf @ pbusinj)


def security_cost(secured: Clearing, unsecured: Clearing) -> float:
    """$/h the security constraints cost in one interval: ``unsecured.welfare - secured.welfare``.

    With the same demand served in both clearings (inelastic demand) this is ``secured.cost -
    unsecured.cost``; unlike the cost difference it is never negative when security curtails elastic
    demand (which lowers generation cost). ``unsecured`` is the `dcopf.DCOPF` clearing of the same bids.
    """
    return float(unsecured.welfare - secured.welfare)


class SCOPF:
    """Locational marginal pricing by a preventive N-1 security-constrained DC-OPF (PTDF/LODF).

    Parameters
    ----------
    network : DCNetwork
    demand_bus, supply_bus : pandapower bus index of each demand / supply step, fixed for the run
    contingencies : branches whose single outage is secured: positions into the network's branches or
        names of ``network.branch_name`` (``"line 3"``, ``"trafo 0"``); None (default) all branches,
        an empty list none (the result is then the DC-OPF's)
    contingency_limit_factor : post-contingency limit as a multiple of ``rate_mw`` (e.g. 1.2 for a
        short-term emergency rating); pre-contingency flows stay within ``rate_mw``
    constraints : ``"lazy"`` (default) adds post-contingency rows when they are violated, ``"full"``
        adds every (monitored branch, outage) row at build
    max_rounds : solves per interval in the lazy loop before giving up (status ``"security loop limit"``)
    solver_options : extra HiGHS options
    time_limit_s : time limit of each solve of the lazy loop [s]; reaching it is a failed clearing

    Attributes
    ----------
    contingencies : (n_c,) positions of the secured outages (islanding ones removed), in given order
    contingency_names : their names
    islanding : positions of the requested outages that split an island, excluded
    islanding_names : their names
    monitored : positions of the branches with a finite rating (the only limits)
    ptdf : (n_br, n_bus) `ptdf_by_island`; lodf : (n_br, n_c) LODF of each secured outage (column
        ``j`` for ``contingencies[j]``, -1 on the outaged branch itself)
    shift_flow_mw : (n_br,) `shift_flow_mw`

    After a successful ``clear``: ``last_post_flow_mw`` (n_br, n_c) flows after each secured outage
    (0 on the outaged branch), ``last_line_duals`` (n_br,) net price of each pre-contingency limit as in
    `dcopf.DCOPF`, ``last_energy_price`` (n_bus,) lambda of each bus's island, ``last_binding`` the
    limits with a nonzero dual as arrays ``branch``, ``outage`` (-1: pre-contingency) and ``price``
    ($/MWh per MW, positive when the from->to limit binds), so that ``LMP = last_energy_price -
    sum_r price_r * (PTDF[branch_r] + LODF[branch_r, outage_r] * PTDF[outage_r])``; ``last_rounds`` the
    number of solves of the interval and ``n_security_rows`` the post-contingency rows in the model.
    A solver result other than optimal gives a ``Clearing`` with NaN numbers and the solver's status.
    """

    # What the model and its HiGHS instance hold: a restored run writes all again and re-adds the rows.
    checkpoint_drop = ("_written", "_limit_rows")

    def __init__(
        self,
        network: DCNetwork,
        demand_bus: np.ndarray,
        supply_bus: np.ndarray,
        contingencies: Iterable[int | str] | None = None,
        contingency_limit_factor: float = 1.0,
        *,
        constraints: str = "lazy",
        max_rounds: int = 100,
        solver_options: dict[str, Any] | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        if constraints not in ("lazy", "full"):
            raise ValueError(f"constraints must be 'lazy' or 'full', not {constraints!r}")
        factor = float(contingency_limit_factor)
        if not np.isfinite(factor) or factor <= 0:
            raise ValueError(f"contingency_limit_factor must be a positive number, not {factor}")
        self.network, self.factor, self.max_rounds = network, factor, int(max_rounds)
        self.demand_bus = np.asarray(demand_bus, dtype=np.int64)
        self.supply_bus = np.asarray(supply_bus, dtype=np.int64)
        self.demand_node = network.position_of(self.demand_bus) if len(self.demand_bus) else np.zeros(0, int)
        self.supply_node = network.position_of(self.supply_bus) if len(self.supply_bus) else np.zeros(0, int)
        self.n_demand, self.n_supply = len(self.demand_node), len(self.supply_node)
        n_br = network.n_branch

        self.ptdf = ptdf_by_island(network)
        self.shift_flow_mw = shift_flow_mw(network, self.ptdf)
        rate = np.asarray(network.rate_mw, dtype=float)
        self.monitored = np.flatnonzero(np.isfinite(rate))
        self._limit_pre = rate
        self._limit_post = factor * rate

        requested = self._positions(contingencies)
        rows = np.arange(n_br)
        ptdf_kk = (
            self.ptdf[rows, network.branch_from] - self.ptdf[rows, network.branch_to] if n_br else np.zeros(0)
        )
        denom = 1.0 - ptdf_kk[requested]
        splits = np.abs(denom) < ISLANDING_TOL
        self.islanding = requested[splits]
        self.contingencies = requested[~splits]
        self.islanding_names = [network.branch_name[k] for k in self.islanding]
        self.contingency_names = [network.branch_name[k] for k in self.contingencies]
        k = self.contingencies
        transfer = self.ptdf[:, network.branch_from[k]] - self.ptdf[:, network.branch_to[k]]
        self.lodf = transfer / denom[~splits]
        self.lodf[k, np.arange(len(k))] = -1.0
        self.n_contingency = len(k)
        # Whether each (branch, outage) pair can ever need a row: a monitored branch other than the outage.
        self._can_bind = np.zeros((n_br, self.n_contingency), dtype=bool)
        self._can_bind[self.monitored, :] = True
        self._can_bind[k, np.arange(self.n_contingency)] = False
        self._pair_row = np.full((n_br, self.n_contingency), -1, dtype=np.int64)

        self._build(solver_options, time_limit_s)
        if constraints == "full":
            ll, jj = np.nonzero(self._can_bind)
            self._add_pairs(ll, jj)

        self.status = "not solved"
        self.last_rounds = 0
        self.n_solves = 0
        self.last_d, self.last_s = np.full(self.n_demand, np.nan), np.full(self.n_supply, np.nan)
        self.last_flow = np.full(n_br, np.nan)
        self.last_node_duals = np.full(network.n_bus, np.nan)
        self.last_post_flow_mw = np.full((n_br, self.n_contingency), np.nan)
        self.last_line_duals = np.full(n_br, np.nan)
        self.last_energy_price = np.full(network.n_bus, np.nan)
        self.last_binding: dict[str, np.ndarray] = {
            "branch": np.zeros(0, np.int64),
            "outage": np.zeros(0, np.int64),
            "price": np.zeros(0),
        }

    # ---- structure ------------------------------------------------------------------------------------

    def _positions(self, contingencies: Iterable[int | str] | None) -> np.ndarray:
        net = self.network
        if contingencies is None:
            return np.arange(net.n_branch, dtype=np.int64)
        name_to_pos = {name: k for k, name in enumerate(net.branch_name)}
        out: list[int] = []
        for c in contingencies:
            if isinstance(c, str):
                if c not in name_to_pos:
                    raise ValueError(f"contingency {c!r} is not a branch of the network")
                pos = name_to_pos[c]
            else:
                pos = int(c)
                if not 0 <= pos < net.n_branch:
                    raise ValueError(f"contingency {c} is not a branch position (0..{net.n_branch - 1})")
            if pos not in out:
                out.append(pos)
        return np.array(out, dtype=np.int64)

    def _build(self, solver_options: dict[str, Any] | None, time_limit_s: float | None) -> None:
        net = self.network
        nd, ns, nn = self.n_demand, self.n_supply, net.n_bus
        m = pyo.ConcreteModel(name="scopf")
        m.D, m.S, m.N = pyo.RangeSet(0, nd - 1), pyo.RangeSet(0, ns - 1), pyo.RangeSet(0, nn - 1)
        m.demand_price = pyo.Param(m.D, mutable=True, initialize=0.0)
        m.supply_price = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.supply_c2 = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.d = pyo.Var(m.D, bounds=(0.0, 0.0))  # [0, demand_mw]
        m.s = pyo.Var(m.S, bounds=(0.0, 0.0))  # [supply_min_mw, supply_max_mw]
        # Net injections are boxed by a bound no bus can reach (HiGHS's QP solver fails on free columns
        # without curvature), set from the bids in `write`.
        m.p = pyo.Var(m.N, bounds=(0.0, 0.0))
        self._p_bound = 0.0
        self._d, self._s, self._p = list(m.d.values()), list(m.s.values()), list(m.p.values())

        d_at: list[list[int]] = [[] for _ in range(nn)]
        s_at: list[list[int]] = [[] for _ in range(nn)]
        for i, b in enumerate(self.demand_node):
            d_at[b].append(i)
        for j, b in enumerate(self.supply_node):
            s_at[b].append(j)
        m.bus_balance = pyo.Constraint(
            m.N, rule=lambda m, b: sum(m.s[j] for j in s_at[b]) - sum(m.d[i] for i in d_at[b]) - m.p[b] == 0
        )
        self._bus_rows = list(m.bus_balance.values())
        # A bus with no branch and no step has an empty balance: NaN price, as in `dcopf`.
        touched = np.zeros(nn, dtype=bool)
        touched[self.demand_node] = True
        touched[self.supply_node] = True
        touched[net.branch_from] = True
        touched[net.branch_to] = True
        self._priced = touched
        m.I = pyo.RangeSet(0, len(net.island_ref) - 1)
        m.island_balance = pyo.Constraint(
            m.I, rule=lambda m, i: sum(m.p[b] for b in np.flatnonzero(net.island == i).tolist()) == 0
        )
        self._island_rows = list(m.island_balance.values())

        # Pre-contingency limits of the monitored branches; post-contingency ones go to `post` as added.
        mon = self.monitored
        lim, f0 = self._limit_pre[mon], self.shift_flow_mw[mon]
        rows = self._rows(self.ptdf[mon], -lim - f0, lim - f0)
        m.pre_limit = pyo.Constraint(pyo.RangeSet(0, len(mon) - 1), rule=lambda m, r: rows[r])
        m.post_limit = pyo.ConstraintList()
        # Limit rows and what they are: branch l, outage position k (-1: pre-contingency).
        self._limit_rows: list[Any] = list(m.pre_limit.values())
        self._limit_branch: list[np.ndarray] = [mon]
        self._limit_outage: list[np.ndarray] = [np.full(len(mon), -1, dtype=np.int64)]

        m.obj = pyo.Objective(
            expr=sum(m.supply_price[j] * m.s[j] + m.supply_c2[j] * m.s[j] ** 2 for j in m.S)
            - sum(m.demand_price[i] * m.d[i] for i in m.D),
            sense=pyo.minimize,
        )
        self.model = m
        self._params = {name: list(getattr(m, name).values()) for name in COST_PARAMS}
        self._written = {
            name: np.full(nd if name.startswith("demand") else ns, np.nan) for name in BID_PARAMS
        }
        self.solver = PersistentModel(m, time_limit_s=time_limit_s, options=solver_options)

    def _rows(self, coef: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> list[tuple[float, Any, float]]:
        """Ranged rows ``lower <= coef @ p <= upper`` (coefficients below ``COEF_TOL`` dropped)."""
        out = []
        for row, lo, hi in zip(coef, lower.tolist(), upper.tolist(), strict=True):
            nz = np.flatnonzero(np.abs(row) > COEF_TOL)
            expr = LinearExpression(
                constant=0.0, linear_coefs=row[nz].tolist(), linear_vars=[self._p[b] for b in nz.tolist()]
            )
            out.append((lo, expr, hi))
        return out

    def _add_pairs(self, branch: np.ndarray, col: np.ndarray) -> None:
        """Add the post-contingency rows of (monitored branch, contingency column) pairs."""
        if len(branch) == 0:
            return
        outage = self.contingencies[col]
        lodf = self.lodf[branch, col]
        coef = self.ptdf[branch] + lodf[:, None] * self.ptdf[outage]
        f0 = self.shift_flow_mw[branch] + lodf * self.shift_flow_mw[outage]
        lim = self._limit_post[branch]
        added = [self.model.post_limit.add(row) for row in self._rows(coef, -lim - f0, lim - f0)]
        self.solver.add_constraints(added)
        self._pair_row[branch, col] = len(self._limit_rows) + np.arange(len(added))
        self._limit_rows.extend(added)
        self._limit_branch.append(np.asarray(branch, dtype=np.int64))
        self._limit_outage.append(np.asarray(outage, dtype=np.int64))

    def before_restore(self, fields: dict[str, Any]) -> None:
        """Note how many batches of limit rows the freshly built model already holds (pre-contingency, and
        every pair with ``constraints="full"``)."""
        self._n_built = len(self._limit_branch)

    def after_restore(self) -> None:
        """Re-add the checkpoint's post-contingency rows to the fresh model, in the order they were added,
        and set the injections' bounds: the model then equals the checkpointed one, row for row."""
        built = self.__dict__.pop("_n_built")
        batches = list(zip(self._limit_branch, self._limit_outage, strict=True))[built:]
        del self._limit_branch[built:], self._limit_outage[built:]
        column = {int(k): c for c, k in enumerate(self.contingencies)}
        for branch, outage in batches:
            self._add_pairs(branch, np.array([column[int(k)] for k in outage], dtype=np.int64))
        for v in self._p:
            v.setlb(-self._p_bound)
            v.setub(self._p_bound)
        self.solver.update_bounds(self._p)

    @property
    def n_security_rows(self) -> int:
        """Post-contingency rows in the model."""
        return int(np.sum(self._pair_row >= 0))

    # ---- one interval ---------------------------------------------------------------------------------

    def write(self, bids: Bids) -> None:
        """Write one interval's bids into the model and the loaded solver (only the values that changed)."""
        w = self._written
        new = bid_arrays(bids, w)
        lo, hi = new["supply_min_mw"], new["supply_max_mw"]
        moved = moved_bounds(self._d, self._s, new, w)
        # |p_b| <= total offered + total demanded always holds: the bound never binds.
        bound = 1.0 + float(np.sum(np.abs(hi)) + np.sum(np.abs(lo)) + np.sum(new["demand_mw"]))
        if bound > self._p_bound or bound < 0.25 * self._p_bound:
            self._p_bound = 2.0 * bound
            for v in self._p:
                v.setlb(-self._p_bound)
                v.setub(self._p_bound)
            moved.extend(self._p)
        self.solver.update_bounds(moved)
        push_costs(self.solver, self._params, new, w)
        self._written = {name: value.copy() for name, value in new.items()}

    def post_contingency_flows(self, flow: np.ndarray) -> np.ndarray:
        """(n_br, n_c) flows after each secured outage, from pre-contingency flows (0 on the outage)."""
        k = self.contingencies
        post = flow[:, None] + self.lodf * flow[k][None, :]
        post[k, np.arange(len(k))] = 0.0
        return np.asarray(post)

    def solve(self) -> bool:
        """Solve with the bids as written, adding violated post-contingency rows until none is violated.

        True when optimal (values then in ``last_*``); otherwise ``status`` says why.
        """
        self.last_rounds = 0
        for _ in range(self.max_rounds):
            sol = self.solver.solve()
            self.last_rounds += 1
            self.n_solves += 1
            if not sol.ok:
                self.status = sol.status
                return False
            flow = self.ptdf @ sol.values(self._p) + self.shift_flow_mw
            post = self.post_contingency_flows(flow)
            excess = np.abs(post) - self._limit_post[:, None]
            new = self._can_bind & (excess > VIOLATION_TOL_MW) & (self._pair_row < 0)
            if not new.any():
                self._store(sol, flow, post)
                self.status = "optimal"
                return True
            # For each overloaded branch, the row of its worst outage (the others often follow).
            branch = np.flatnonzero(new.any(axis=1))
            worst = np.argmax(np.where(new[branch], excess[branch], -np.inf), axis=1)
            try:
                self._add_pairs(branch, worst)
            except Exception as err:  # noqa: BLE001 - a solver failure is reported, never raised
                self.status = f"error: {err}"
                return False
        self.status = "security loop limit"
        return False

    def _store(self, sol: Solution, flow: np.ndarray, post: np.ndarray) -> None:
        net = self.network
        self.last_d, self.last_s, self.last_flow = sol.values(self._d), sol.values(self._s), flow
        self.last_post_flow_mw = post
        # HiGHS reports d(objective)/d(rhs); the rhs of a bus row is a withdrawal, so its dual is the LMP.
        lmp = sol.duals(self._bus_rows) + 0.0
        lmp[~self._priced] = np.nan
        self.last_node_duals = lmp
        self.last_energy_price = sol.duals(self._island_rows)[net.island] + 0.0
        # A limit row's dual is negative when its upper (from->to) limit binds: net price = -dual.
        price = -sol.duals(self._limit_rows) + 0.0
        line_duals = np.zeros(net.n_branch)
        line_duals[self.monitored] = price[: len(self.monitored)]
        self.last_line_duals = line_duals
        on = np.abs(price) > DUAL_TOL
        self.last_binding = {
            "branch": np.concatenate(self._limit_branch)[on],
            "outage": np.concatenate(self._limit_outage)[on],
            "price": price[on],
        }

    def clear(self, bids: Bids) -> Clearing:
        """Clear one interval: secure dispatch, LMP per bus (``network.bus`` order), pre-contingency flows."""
        _check_buses("demand_bus", bids.demand_bus, self.demand_bus)
        _check_buses("supply_bus", bids.supply_bus, self.supply_bus)
        net = self.network
        self.write(bids)
        if not self.solve():
            return _nan_clearing(net.n_bus, self.n_demand, self.n_supply, net.n_branch, self.status)
        return nodal_clearing(bids, self, net.n_bus)
