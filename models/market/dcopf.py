"""Network-constrained market clearing: welfare-maximising DC optimal power flow with LMPs.

The Pyomo model is built once per run (fixed numbers of demand and supply steps, fixed network) with
mutable parameters for quantities, prices and quadratic cost coefficients; each interval only the
parameters that changed are written and a persistent HiGHS instance (``pyomo.contrib.solver``'s
``highs``, which warm-starts from the previous basis and supports quadratic objectives and duals)
re-solves it.

Sign conventions: injections (supply) positive, withdrawals (demand) positive in their own
variables; branch flow positive from ``branch_from`` to ``branch_to``; prices in $/MWh are the
marginal value of energy (positive when energy is valuable).
"""

from __future__ import annotations

from typing import Any

import highspy
import numpy as np
import pyomo.environ as pyo
from pyomo.contrib.solver.common.results import TerminationCondition
from pyomo.contrib.solver.solvers.highs import Highs

from cosim.models.market import solver
from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.network_dc import DCNetwork
from cosim.models.market.solver import silence_banner

BID_PARAMS = ("demand_mw", "demand_price", "supply_min_mw", "supply_max_mw", "supply_price", "supply_c2")
ANGLE_BOUND_RAD = 1e3  # |theta| bound; a solution at it is reported as status "angle bound"


class WelfareModel:
    """A welfare-maximising dispatch over nodes joined by DC branches, built once, solved many times.

    Minimises ``sum(supply_price*s + supply_c2*s**2) - sum(demand_price*d)`` subject to one energy
    balance per node, ``sum(s at n) - sum(d at n) - sum(flow out of n) + sum(flow into n) == 0``,
    ``flow = base_mva * b_pu * (theta_from - theta_to - shift)``, ``|flow| <= rate_mw`` and one
    angle fixed to zero per island. With no branches and one node it is a copper-plate auction.

    Parameters
    ----------
    n_node : number of nodes
    demand_node, supply_node : (n_d,), (n_s,) node of each step (positions, 0..n_node-1)
    branch_from, branch_to, k_mw_per_rad, shift_rad, rate_mw : (n_br,) branch data;
        ``k_mw_per_rad = base_mva * b_pu``
    angle_ref : nodes whose angle is fixed to zero (one per island)
    solver_options : extra HiGHS options
    update : ``"direct"`` (default) writes changed parameters to the Pyomo model and pushes the same
        changes to the loaded HiGHS instance as vectors, then runs HiGHS and reads its solution arrays;
        ``"pyomo"`` leaves both to Pyomo's persistent interface (``auto_updates.update_parameters``),
        which re-evaluates every mutable coefficient each solve (~4x slower, see the benchmark).
    """

    def __init__(
        self,
        n_node: int,
        demand_node: np.ndarray,
        supply_node: np.ndarray,
        branch_from: np.ndarray,
        branch_to: np.ndarray,
        k_mw_per_rad: np.ndarray,
        shift_rad: np.ndarray,
        rate_mw: np.ndarray,
        angle_ref: np.ndarray,
        solver_options: dict[str, Any] | None = None,
        update: str = "direct",
    ) -> None:
        self.n_node = int(n_node)
        self.demand_node = np.asarray(demand_node, dtype=np.int64)
        self.supply_node = np.asarray(supply_node, dtype=np.int64)
        self.n_demand, self.n_supply = len(self.demand_node), len(self.supply_node)
        self.n_branch = len(branch_from)
        self.model = self._build(branch_from, branch_to, k_mw_per_rad, shift_rad, rate_mw, angle_ref)
        m = self.model
        # ParamData handles in index order, and the values last written to them (NaN: never written).
        self._params = {
            name: [
                getattr(m, name)[i]
                for i in range(self.n_demand if name.startswith("demand") else self.n_supply)
            ]
            for name in BID_PARAMS
        }
        self._written = {name: np.full(len(p), np.nan) for name, p in self._params.items()}
        self._d = [m.d[i] for i in range(self.n_demand)]
        self._s = [m.s[j] for j in range(self.n_supply)]
        self._flow = [m.flow[k] for k in range(self.n_branch)]
        self._balance = [m.balance[n] if n in m.balance else None for n in range(self.n_node)]
        silence_banner()
        self.solver = Highs()
        cfg = self.solver.config
        cfg.load_solutions = False
        cfg.raise_exception_on_nonoptimal_result = False
        auto = cfg.auto_updates
        # The structure never changes: only parameters (bounds, costs) are pushed each solve.
        auto.check_for_new_or_removed_constraints = False
        auto.check_for_new_or_removed_vars = False
        auto.check_for_new_or_removed_params = False
        auto.check_for_new_objective = False
        auto.update_constraints = False
        auto.update_vars = False
        auto.update_named_expressions = False
        auto.update_objective = False
        auto.update_parameters = True
        # HiGHS's QP solver regularises by 1e-7 by default, which moves the duals (LMPs) by ~1e-4 $/MWh.
        cfg.solver_options.update(
            {
                "output_flag": False,
                "time_limit": solver.TIME_LIMIT_S,
                "qp_regularization_value": 1e-10,
                "primal_feasibility_tolerance": 1e-9,
                "dual_feasibility_tolerance": 1e-9,
                **(solver_options or {}),
            }
        )
        self.solver.set_instance(m)
        if update not in ("direct", "pyomo"):
            raise ValueError(f"update must be 'direct' or 'pyomo', not {update!r}")
        self.update = update
        auto.update_parameters = update == "pyomo"
        # Column and row positions of the model's components in the loaded HiGHS instance.
        self._highs = self.solver._solver_model
        var_map, con_map = self.solver._pyomo_var_to_solver_var_map, self.solver._pyomo_con_to_solver_con_map
        self._col_d = np.array([var_map[id(v)] for v in self._d], dtype=np.int32)
        self._col_s = np.array([var_map[id(v)] for v in self._s], dtype=np.int32)
        self._col_flow = np.array([var_map[id(v)] for v in self._flow], dtype=np.int32)
        self._row_balance = np.array([-1 if c is None else con_map[c] for c in self._balance], dtype=np.int64)
        for key, value in cfg.solver_options.items():
            self._highs.setOptionValue(key, value)
        self._hessian_on = True  # the interface passed the (all-zero) Hessian of the c2 terms
        self._pass_hessian()
        self.status = "not solved"
        self.last_node_duals = np.full(self.n_node, np.nan)
        self.last_line_duals = np.full(self.n_branch, np.nan)
        self.n_solves = 0

    def _build(
        self,
        branch_from: np.ndarray,
        branch_to: np.ndarray,
        k_mw_per_rad: np.ndarray,
        shift_rad: np.ndarray,
        rate_mw: np.ndarray,
        angle_ref: np.ndarray,
    ) -> pyo.ConcreteModel:
        m = pyo.ConcreteModel(name="welfare")
        nd, ns, nn, nb = self.n_demand, self.n_supply, self.n_node, len(branch_from)
        m.D, m.S = pyo.RangeSet(0, nd - 1), pyo.RangeSet(0, ns - 1)
        m.N, m.L = pyo.RangeSet(0, nn - 1), pyo.RangeSet(0, nb - 1)
        m.demand_mw = pyo.Param(m.D, mutable=True, initialize=0.0)
        m.demand_price = pyo.Param(m.D, mutable=True, initialize=0.0)
        m.supply_min_mw = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.supply_max_mw = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.supply_price = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.supply_c2 = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.d = pyo.Var(m.D, bounds=lambda m, i: (0.0, m.demand_mw[i]))
        m.s = pyo.Var(m.S, bounds=lambda m, j: (m.supply_min_mw[j], m.supply_max_mw[j]))
        kk, sh = np.asarray(k_mw_per_rad, dtype=float), np.asarray(shift_rad, dtype=float)
        # The angle variable is theta * angle_scale (the median branch k = base_mva * b_pu, MW/rad),
        # so that the flow-definition coefficients are near 1 rather than ~1e4.
        finite = np.abs(kk[np.isfinite(kk) & (kk != 0)])
        angle_scale = float(np.median(finite)) if len(finite) else 1.0
        self.angle_scale = angle_scale
        refs = {int(r) for r in angle_ref}
        # Angles are boxed (ANGLE_BOUND_RAD, far beyond any physical angle): HiGHS's active-set QP
        # solver fails on free columns with no curvature ("Solve error" on MATPOWER case9).
        a = ANGLE_BOUND_RAD * angle_scale
        m.theta = pyo.Var(m.N, bounds=lambda m, n: (0.0, 0.0) if n in refs else (-a, a))

        def flow_bounds(m: pyo.ConcreteModel, k: int) -> tuple[float | None, float | None]:
            r = float(rate_mw[k])
            return (-r, r) if np.isfinite(r) else (None, None)

        m.flow = pyo.Var(m.L, bounds=flow_bounds)
        f, t = np.asarray(branch_from, dtype=np.int64), np.asarray(branch_to, dtype=np.int64)
        m.flow_def = pyo.Constraint(
            m.L,
            rule=lambda m, k: (
                m.flow[k] - float(kk[k] / angle_scale) * (m.theta[int(f[k])] - m.theta[int(t[k])])
                == -float(kk[k] * sh[k])
            ),
        )
        d_at: list[list[int]] = [[] for _ in range(nn)]
        s_at: list[list[int]] = [[] for _ in range(nn)]
        out_of: list[list[int]] = [[] for _ in range(nn)]
        into: list[list[int]] = [[] for _ in range(nn)]
        for i, n in enumerate(self.demand_node):
            d_at[n].append(i)
        for j, n in enumerate(self.supply_node):
            s_at[n].append(j)
        for k in range(nb):
            out_of[f[k]].append(k)
            into[t[k]].append(k)

        def balance(m: pyo.ConcreteModel, n: int) -> Any:
            expr = (
                sum(m.s[j] for j in s_at[n])
                - sum(m.d[i] for i in d_at[n])
                - sum(m.flow[k] for k in out_of[n])
                + sum(m.flow[k] for k in into[n])
            )
            if isinstance(expr, int | float):  # a node with nothing attached
                return pyo.Constraint.Feasible
            return expr == 0

        m.balance = pyo.Constraint(m.N, rule=balance)
        m.obj = pyo.Objective(
            expr=sum(m.supply_price[j] * m.s[j] + m.supply_c2[j] * m.s[j] ** 2 for j in m.S)
            - sum(m.demand_price[i] * m.d[i] for i in m.D),
            sense=pyo.minimize,
        )
        return m

    def write(self, bids: Bids) -> None:
        """Write one interval's bids into the model's parameters (only the values that changed).

        With ``update="direct"`` the same changes are pushed to the loaded HiGHS instance at once, as
        vectors; with ``update="pyomo"`` the persistent interface pushes every parameter at solve.
        """
        changed: dict[str, np.ndarray] = {}
        for name in BID_PARAMS:
            new = np.asarray(getattr(bids, name), dtype=float)
            old = self._written[name]
            if new.shape != old.shape:
                raise ValueError(f"bids.{name} has shape {new.shape}, the model was built for {old.shape}")
            idx = np.flatnonzero(new != old)
            params = self._params[name]
            for i in idx.tolist():
                params[i].set_value(float(new[i]))
            self._written[name] = new.copy()
            changed[name] = idx
        if self.update == "direct":
            self._push(changed)

    def _push(self, changed: dict[str, np.ndarray]) -> None:
        h, w = self._highs, self._written
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

    def _pass_hessian(self) -> None:
        """Give HiGHS the diagonal Hessian 2*supply_c2 (none at all when every c2 is 0: an LP)."""
        h = self._highs
        dim = h.getNumCol()
        c2 = self._written["supply_c2"]
        nz = np.flatnonzero(np.nan_to_num(c2) != 0)
        cols = self._col_s[nz]
        order = np.argsort(cols)
        cols, vals = cols[order], 2.0 * c2[nz][order]
        start = np.searchsorted(cols, np.arange(dim + 1)).astype(np.int32)
        if len(nz) == 0 and not self._hessian_on:
            return
        h.passHessian(dim, len(nz), highspy.HessianFormat.kTriangular, start, cols.astype(np.int32), vals)
        self._hessian_on = len(nz) > 0

    def solve(self) -> bool:
        """Solve with the parameters as written; True when optimal (values then in ``last_*``)."""
        self.n_solves += 1
        try:
            if self.update == "direct":
                ok = self._solve_direct()
            else:
                ok = self._solve_pyomo()
        except Exception as err:  # noqa: BLE001 - a solver failure is reported, never raised
            self.status = f"error: {err}"
            return False
        if ok:
            self.status = "optimal"
        return ok

    def _solve_direct(self) -> bool:
        h = self._highs
        h.run()
        status = h.getModelStatus()
        if status != highspy.HighsModelStatus.kOptimal:
            self.status = h.modelStatusToString(status)
            return False
        sol = h.getSolution()
        col, row_dual, col_dual = (np.asarray(x) for x in (sol.col_value, sol.row_dual, sol.col_dual))
        self._store(
            col[self._col_d], col[self._col_s], col[self._col_flow], row_dual, col_dual[self._col_flow]
        )
        return True

    def _solve_pyomo(self) -> bool:
        res = self.solver.solve(self.model)
        if res.termination_condition != TerminationCondition.convergenceCriteriaSatisfied:
            self.status = res.termination_condition.name
            return False
        sol = res.solution_loader
        prim = sol.get_vars()
        duals = sol.get_duals()
        rc = sol.get_reduced_costs(self._flow) if self.n_branch else {}
        row_dual = np.full(self._highs.getNumRow(), np.nan)
        for c, r in zip(self._balance, self._row_balance, strict=True):
            if c is not None:
                row_dual[r] = duals[c]
        self._store(
            np.array([prim.get(v, 0.0) for v in self._d]),
            np.array([prim.get(v, 0.0) for v in self._s]),
            np.array([prim.get(v, 0.0) for v in self._flow]),
            row_dual,
            np.array([rc[v] for v in self._flow]),
        )
        return True

    def _store(
        self, d: np.ndarray, s: np.ndarray, flow: np.ndarray, row_dual: np.ndarray, flow_rc: np.ndarray
    ) -> None:
        self.last_d, self.last_s, self.last_flow = d, s, flow
        # HiGHS reports d(objective)/d(rhs); the rhs of a balance row is a withdrawal, so the row dual
        # is the marginal cost of energy at that node. A node with nothing attached has no row: NaN.
        duals = np.full(self.n_node, np.nan)
        has_row = self._row_balance >= 0
        duals[has_row] = row_dual[self._row_balance[has_row]]
        self.last_node_duals = duals
        # A flow variable's reduced cost is d(cost)/d(flow) at its bound: negative when the upper
        # limit binds. Net congestion price: +mu at the upper (from->to) limit, -mu at the lower one.
        self.last_line_duals = -flow_rc + 0.0


def _nan_clearing(n_price: int, n_d: int, n_s: int, n_br: int, status: str) -> Clearing:
    return Clearing(
        price_per_mwh=np.full(n_price, np.nan),
        demand_mw=np.full(n_d, np.nan),
        supply_mw=np.full(n_s, np.nan),
        welfare=float("nan"),
        cost=float("nan"),
        congestion_rent=float("nan"),
        line_flow_mw=np.full(n_br, np.nan),
        status=status,
    )


def _check_buses(name: str, given: np.ndarray, fixed: np.ndarray) -> None:
    if len(given) != len(fixed) or not np.array_equal(np.asarray(given), fixed):
        raise ValueError(f"bids.{name} differs from the buses the market was built with")


class DCOPF:
    """Locational marginal pricing by a welfare-maximising DC-OPF (angle formulation).

    Parameters
    ----------
    network : DCNetwork
    demand_bus, supply_bus : pandapower bus index of each demand / supply step, fixed for the run
    update : how parameter changes reach HiGHS, ``"direct"`` or ``"pyomo"`` (see `WelfareModel`)

    Notes
    -----
    After a successful ``clear``, ``last_line_duals`` holds (n_br,) net congestion prices in $/MWh
    per MW of flow: ``mu_up - mu_down`` of the branch's limits, positive when the from->to limit
    binds, so that ``LMP_b = LMP_slack - sum_l PTDF[l, b] * last_line_duals[l]``.
    An islanded bus has its own reference angle; its demand is served only by supply at that island.
    A solver result other than optimal (only possible through ``supply_min_mw``) gives a ``Clearing``
    with NaN numbers and ``status`` set to the solver's termination condition; nothing is raised.
    """

    def __init__(
        self, network: DCNetwork, demand_bus: np.ndarray, supply_bus: np.ndarray, *, update: str = "direct"
    ) -> None:
        self.network = network
        self.demand_bus = np.asarray(demand_bus, dtype=np.int64)
        self.supply_bus = np.asarray(supply_bus, dtype=np.int64)
        self.core = WelfareModel(
            n_node=network.n_bus,
            demand_node=network.position_of(self.demand_bus) if len(self.demand_bus) else np.zeros(0, int),
            supply_node=network.position_of(self.supply_bus) if len(self.supply_bus) else np.zeros(0, int),
            branch_from=network.branch_from,
            branch_to=network.branch_to,
            k_mw_per_rad=network.base_mva * network.b_pu,
            shift_rad=network.shift_rad,
            rate_mw=network.rate_mw,
            angle_ref=network.island_ref,
            update=update,
        )

    @property
    def model(self) -> pyo.ConcreteModel:
        """The Pyomo model (built once)."""
        return self.core.model

    @property
    def last_line_duals(self) -> np.ndarray:
        """(n_br,) net congestion price of each branch's flow limit at the last clearing, $/MWh per MW."""
        return self.core.last_line_duals

    def clear(self, bids: Bids) -> Clearing:
        """Clear one interval: dispatch, LMP per bus (``network.bus`` order) and DC branch flows."""
        _check_buses("demand_bus", bids.demand_bus, self.demand_bus)
        _check_buses("supply_bus", bids.supply_bus, self.supply_bus)
        core, net = self.core, self.network
        core.write(bids)
        if not core.solve():
            return _nan_clearing(net.n_bus, core.n_demand, core.n_supply, net.n_branch, core.status)
        return nodal_clearing(bids, core, net.n_bus)


def nodal_clearing(bids: Bids, core: Any, n_bus: int) -> Clearing:
    """The `Clearing` of a solved nodal model (``last_d``, ``last_s``, ``last_node_duals``, ``last_flow``).

    Cost ``supply_price s + supply_c2 s**2``, welfare the bids served minus it, congestion rent the sum of
    LMP x net withdrawal over nodes.
    """
    d, s, lmp = core.last_d, core.last_s, core.last_node_duals
    cost = float(np.dot(bids.supply_price, s) + np.dot(np.asarray(bids.supply_c2, dtype=float), s * s))
    net_withdrawal = np.bincount(core.demand_node, d, n_bus) - np.bincount(core.supply_node, s, n_bus)
    return Clearing(
        price_per_mwh=lmp.copy(),
        demand_mw=d,
        supply_mw=s,
        welfare=float(np.dot(bids.demand_price, d)) - cost,
        cost=cost,
        congestion_rent=float(np.nansum(lmp * net_withdrawal)),
        line_flow_mw=core.last_flow.copy(),
        status="optimal",
    )
