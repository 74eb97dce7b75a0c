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
``VIOLATION_TOL_MW``) after some outage, the row of its worst outage is added to the loaded HiGHS
instance; HiGHS then re-solves from its current basis, until no post-contingency limit is exceeded.
The final solution is optimal for the full problem (it is optimal for a relaxation and feasible for
the full problem), and the rows left out have zero duals, so the LMPs are exact. Rows stay in the
instance for the rest of the run (they are the ones that bind again in the next intervals); each
interval only writes changed bounds and costs, as in `dcopf`, and adds rows when a new pair binds.
``constraints="full"`` adds every pair at build (for small nets, and as a check of the lazy loop).
The model is written straight into a ``highspy.Highs`` instance, with no Pyomo layer: the rows the
lazy loop adds go to the solver only, and a Pyomo model would fall out of step with them.

An outage is one branch of `network_dc.DCNetwork`: a pandapower line with ``parallel > 1`` goes out as
a whole, a three-winding transformer is three branches (one per winding, each its own outage).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import highspy
import numpy as np

from cosim.models.market import solver
from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.dcopf import BID_PARAMS, _check_buses, _nan_clearing, nodal_clearing
from cosim.models.market.network_dc import DCNetwork
from cosim.models.market.solver import new_highs

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

        self._build(solver_options)
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

    def _build(self, solver_options: dict[str, Any] | None) -> None:
        net = self.network
        nd, ns, nn = self.n_demand, self.n_supply, net.n_bus
        self._col_d = np.arange(nd, dtype=np.int32)
        self._col_s = nd + np.arange(ns, dtype=np.int32)
        self._col_p = nd + ns + np.arange(nn, dtype=np.int32)
        h = new_highs()
        # HiGHS's QP solver regularises by 1e-7 by default, which moves the duals (LMPs) by ~1e-4 $/MWh.
        options = {
            "output_flag": False,
            "time_limit": solver.TIME_LIMIT_S,
            "qp_regularization_value": 1e-10,
            "primal_feasibility_tolerance": 1e-9,
            "dual_feasibility_tolerance": 1e-9,
            **(solver_options or {}),
        }
        for key, value in options.items():
            h.setOptionValue(key, value)
        n_col = nd + ns + nn
        h.addVars(n_col, np.zeros(n_col), np.zeros(n_col))
        self._p_bound = 0.0  # |p| bound, set from the bids (never binding); 0 until the first bids
        self._highs = h

        # Bus balance rows: sum(s at b) - sum(d at b) - p_b == 0, one per bus, rows 0..n_bus-1.
        entries: list[list[tuple[int, float]]] = [[] for _ in range(nn)]
        for i, b in enumerate(self.demand_node):
            entries[b].append((int(self._col_d[i]), -1.0))
        for j, b in enumerate(self.supply_node):
            entries[b].append((int(self._col_s[j]), 1.0))
        for b in range(nn):
            entries[b].append((int(self._col_p[b]), -1.0))
        self._add_rows(entries, np.zeros(nn), np.zeros(nn))
        self._row_bus = np.arange(nn, dtype=np.int64)
        # A bus with no branch and no step has an empty balance: NaN price, as in `dcopf`.
        touched = np.zeros(nn, dtype=bool)
        touched[self.demand_node] = True
        touched[self.supply_node] = True
        touched[net.branch_from] = True
        touched[net.branch_to] = True
        self._priced = touched

        # Island balance rows: sum(p in island) == 0.
        n_isl = len(net.island_ref)
        isl_entries: list[list[tuple[int, float]]] = [[] for _ in range(n_isl)]
        for b in range(nn):
            isl_entries[int(net.island[b])].append((int(self._col_p[b]), 1.0))
        self._row_island = self._add_rows(isl_entries, np.zeros(n_isl), np.zeros(n_isl))

        # Pre-contingency limits of the monitored branches.
        mon = self.monitored
        self._row_pre = np.full(net.n_branch, -1, dtype=np.int64)
        coef = self.ptdf[mon]
        lim, f0 = self._limit_pre[mon], self.shift_flow_mw[mon]
        self._row_pre[mon] = self._add_rows(self._sparse(coef), -lim - f0, lim - f0)
        # Rows of the limits and what they are: branch l, outage position k (-1: pre-contingency).
        self._limit_rows: list[np.ndarray] = [self._row_pre[mon]]
        self._limit_branch: list[np.ndarray] = [mon]
        self._limit_outage: list[np.ndarray] = [np.full(len(mon), -1, dtype=np.int64)]
        self._written = {
            name: np.full(nd if name.startswith("demand") else ns, np.nan) for name in BID_PARAMS
        }
        self._hessian_on = False

    def _sparse(self, coef: np.ndarray) -> list[list[tuple[int, float]]]:
        cols = self._col_p
        return [
            [(int(cols[b]), float(row[b])) for b in np.flatnonzero(np.abs(row) > COEF_TOL)] for row in coef
        ]

    def _add_rows(
        self, entries: list[list[tuple[int, float]]], lower: np.ndarray, upper: np.ndarray
    ) -> np.ndarray:
        """Append rows (lists of (column, value)) to the HiGHS instance; return their row numbers."""
        h = self._highs
        first = h.getNumRow()
        n = len(entries)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        start = np.cumsum([0] + [len(e) for e in entries[:-1]]).astype(np.int32)
        index = np.array([c for e in entries for c, _ in e], dtype=np.int32)
        value = np.array([v for e in entries for _, v in e], dtype=float)
        h.addRows(
            n, np.asarray(lower, dtype=float), np.asarray(upper, dtype=float), len(index), start, index, value
        )
        return first + np.arange(n, dtype=np.int64)

    def _add_pairs(self, branch: np.ndarray, col: np.ndarray) -> None:
        """Add the post-contingency rows of (monitored branch, contingency column) pairs."""
        if len(branch) == 0:
            return
        outage = self.contingencies[col]
        lodf = self.lodf[branch, col]
        coef = self.ptdf[branch] + lodf[:, None] * self.ptdf[outage]
        f0 = self.shift_flow_mw[branch] + lodf * self.shift_flow_mw[outage]
        lim = self._limit_post[branch]
        rows = self._add_rows(self._sparse(coef), -lim - f0, lim - f0)
        self._pair_row[branch, col] = rows
        self._limit_rows.append(rows)
        self._limit_branch.append(np.asarray(branch, dtype=np.int64))
        self._limit_outage.append(np.asarray(outage, dtype=np.int64))

    @property
    def n_security_rows(self) -> int:
        """Post-contingency rows in the model."""
        return int(np.sum(self._pair_row >= 0))

    # ---- one interval ---------------------------------------------------------------------------------

    def write(self, bids: Bids) -> None:
        """Push one interval's bids to the HiGHS instance (only the values that changed)."""
        h, w = self._highs, self._written
        changed: dict[str, np.ndarray] = {}
        for name in BID_PARAMS:
            new = np.asarray(getattr(bids, name), dtype=float)
            if new.shape != w[name].shape:
                raise ValueError(
                    f"bids.{name} has shape {new.shape}, the model was built for {w[name].shape}"
                )
            changed[name] = np.flatnonzero(new != w[name])
            w[name] = new.copy()
        idx = np.union1d(changed["demand_mw"], changed["demand_price"])
        if len(idx):
            cols = self._col_d[idx]
            h.changeColsBounds(len(idx), cols, np.zeros(len(idx)), w["demand_mw"][idx])
            h.changeColsCost(len(idx), cols, -w["demand_price"][idx])
        idx = np.union1d(changed["supply_min_mw"], changed["supply_max_mw"])
        if len(idx):
            h.changeColsBounds(len(idx), self._col_s[idx], w["supply_min_mw"][idx], w["supply_max_mw"][idx])
        idx = changed["supply_price"]
        if len(idx):
            h.changeColsCost(len(idx), self._col_s[idx], w["supply_price"][idx])
        if len(changed["supply_c2"]):
            self._pass_hessian()
        # Net injections are boxed by a bound no bus can reach (HiGHS's QP solver fails on free columns
        # without curvature); |p_b| <= total offered + total demanded always holds.
        bound = 1.0 + float(
            np.sum(np.abs(w["supply_max_mw"])) + np.sum(np.abs(w["supply_min_mw"])) + np.sum(w["demand_mw"])
        )
        if bound > self._p_bound or bound < 0.25 * self._p_bound:
            self._p_bound = 2.0 * bound
            n = len(self._col_p)
            h.changeColsBounds(n, self._col_p, np.full(n, -self._p_bound), np.full(n, self._p_bound))

    def _pass_hessian(self) -> None:
        """Give HiGHS the diagonal Hessian 2*supply_c2 (none at all when every c2 is 0: an LP)."""
        h = self._highs
        dim = h.getNumCol()
        c2 = self._written["supply_c2"]
        nz = np.flatnonzero(np.nan_to_num(c2) != 0)
        if len(nz) == 0 and not self._hessian_on:
            return
        cols = self._col_s[nz]
        order = np.argsort(cols)
        cols, vals = cols[order], 2.0 * c2[nz][order]
        start = np.searchsorted(cols, np.arange(dim + 1)).astype(np.int32)
        h.passHessian(
            dim, len(nz), int(highspy.HessianFormat.kTriangular), start, cols.astype(np.int32), vals
        )
        self._hessian_on = len(nz) > 0

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
        h = self._highs
        self.last_rounds = 0
        try:
            for _ in range(self.max_rounds):
                h.run()
                self.last_rounds += 1
                self.n_solves += 1
                model_status = h.getModelStatus()
                if model_status != highspy.HighsModelStatus.kOptimal:
                    self.status = h.modelStatusToString(model_status)
                    return False
                sol = h.getSolution()
                col = np.asarray(sol.col_value)
                flow = self.ptdf @ col[self._col_p] + self.shift_flow_mw
                post = self.post_contingency_flows(flow)
                excess = np.abs(post) - self._limit_post[:, None]
                new = self._can_bind & (excess > VIOLATION_TOL_MW) & (self._pair_row < 0)
                if not new.any():
                    self._store(col, np.asarray(sol.row_dual), flow, post)
                    self.status = "optimal"
                    return True
                # For each overloaded branch, the row of its worst outage (the others often follow).
                branch = np.flatnonzero(new.any(axis=1))
                worst = np.argmax(np.where(new[branch], excess[branch], -np.inf), axis=1)
                self._add_pairs(branch, worst)
        except Exception as err:  # noqa: BLE001 - a solver failure is reported, never raised
            self.status = f"error: {err}"
            return False
        self.status = "security loop limit"
        return False

    def _store(self, col: np.ndarray, row_dual: np.ndarray, flow: np.ndarray, post: np.ndarray) -> None:
        net = self.network
        self.last_d, self.last_s, self.last_flow = col[self._col_d], col[self._col_s], flow
        self.last_post_flow_mw = post
        # HiGHS reports d(objective)/d(rhs); the rhs of a bus row is a withdrawal, so its dual is the LMP.
        lmp = row_dual[self._row_bus] + 0.0
        lmp[~self._priced] = np.nan
        self.last_node_duals = lmp
        self.last_energy_price = row_dual[self._row_island][net.island] + 0.0
        # A limit row's dual is negative when its upper (from->to) limit binds: net price = -dual.
        rows = np.concatenate(self._limit_rows)
        price = -row_dual[rows] + 0.0
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
