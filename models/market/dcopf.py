"""Network-constrained market clearing: welfare-maximising DC optimal power flow with LMPs.

The Pyomo model is built once per run (fixed numbers of demand and supply steps, fixed network):
quantities are variable bounds, prices and quadratic cost coefficients mutable parameters of the
objective. Each interval only what changed is written, and `solver.PersistentModel` (Pyomo's public
persistent HiGHS interface, which warm-starts from the previous basis and supports quadratic
objectives and duals) pushes just those changes and re-solves.

Sign conventions: injections (supply) positive, withdrawals (demand) positive in their own
variables; branch flow positive from ``branch_from`` to ``branch_to``; prices in $/MWh are the
marginal value of energy (positive when energy is valuable).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyomo.environ as pyo

from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.network_dc import DCNetwork
from cosim.models.market.solver import PersistentModel

BID_PARAMS = ("demand_mw", "demand_price", "supply_min_mw", "supply_max_mw", "supply_price", "supply_c2")
COST_PARAMS = ("demand_price", "supply_price", "supply_c2")  # mutable parameters of the objective
ANGLE_BOUND_RAD = 1e3  # |theta| bound; a solution at it is reported as status "angle bound"


class WelfareModel:
    """A welfare-maximising dispatch over nodes joined by DC branches, built once, solved many times.

    Minimises ``sum(supply_price*s + supply_c2*s**2) - sum(demand_price*d)`` subject to one energy
    balance per node, ``sum(s at n) - sum(d at n) - sum(flow out of n) + sum(flow into n) == 0``,
    ``flow = base_mva * b_pu * (theta_from - theta_to - shift)``, ``|flow| <= rate_mw`` and one
    angle fixed to zero per island. With no branches and one node it is a copper-plate auction.

    Quantities are the bounds of ``d`` (``[0, demand_mw]``) and ``s`` (``[supply_min_mw,
    supply_max_mw]``); prices and ``supply_c2`` are mutable parameters of the objective. Each interval
    `write` changes only what changed and tells the persistent solver (`solver.PersistentModel`) just
    that: the bounds of the variables whose quantities changed, and the parameters only when a price or
    ``c2`` changed.

    Parameters
    ----------
    n_node : number of nodes
    demand_node, supply_node : (n_d,), (n_s,) node of each step (positions, 0..n_node-1)
    branch_from, branch_to, k_mw_per_rad, shift_rad, rate_mw : (n_br,) branch data;
        ``k_mw_per_rad = base_mva * b_pu``
    angle_ref : nodes whose angle is fixed to zero (one per island)
    solver_options : extra HiGHS options
    time_limit_s : time limit of each solve [s]; reaching it is a failed clearing
    """

    checkpoint_drop = ("_written",)  # what HiGHS holds: a restored run writes all again

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
        time_limit_s: float | None = None,
    ) -> None:
        self.n_node = int(n_node)
        self.demand_node = np.asarray(demand_node, dtype=np.int64)
        self.supply_node = np.asarray(supply_node, dtype=np.int64)
        self.n_demand, self.n_supply = len(self.demand_node), len(self.supply_node)
        self.n_branch = len(branch_from)
        self.model = self._build(branch_from, branch_to, k_mw_per_rad, shift_rad, rate_mw, angle_ref)
        m = self.model
        self._d = [m.d[i] for i in range(self.n_demand)]
        self._s = [m.s[j] for j in range(self.n_supply)]
        self._flow = [m.flow[k] for k in range(self.n_branch)]
        self._balance_nodes = np.array([n for n in range(self.n_node) if n in m.balance], dtype=np.int64)
        self._balance = [m.balance[n] for n in self._balance_nodes.tolist()]
        # ParamData handles of the objective in index order, and the values last written (NaN: never).
        self._params = {name: list(getattr(m, name).values()) for name in COST_PARAMS}
        self._written = {
            name: np.full(self.n_demand if name.startswith("demand") else self.n_supply, np.nan)
            for name in BID_PARAMS
        }
        self.solver = PersistentModel(m, time_limit_s=time_limit_s, options=solver_options)
        self.status = "not solved"
        self.last_node_duals = np.full(self.n_node, np.nan)
        self.last_line_duals = np.full(self.n_branch, np.nan)

    @property
    def n_solves(self) -> int:
        """Number of solves so far."""
        return self.solver.n_solves

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
        m.demand_price = pyo.Param(m.D, mutable=True, initialize=0.0)
        m.supply_price = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.supply_c2 = pyo.Param(m.S, mutable=True, initialize=0.0)
        m.d = pyo.Var(m.D, bounds=(0.0, 0.0))  # [0, demand_mw]
        m.s = pyo.Var(m.S, bounds=(0.0, 0.0))  # [supply_min_mw, supply_max_mw]
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
                return pyo.Constraint.Skip
            return expr == 0

        m.balance = pyo.Constraint(m.N, rule=balance)
        m.obj = pyo.Objective(
            expr=sum(m.supply_price[j] * m.s[j] + m.supply_c2[j] * m.s[j] ** 2 for j in m.S)
            - sum(m.demand_price[i] * m.d[i] for i in m.D),
            sense=pyo.minimize,
        )
        return m

    def write(self, bids: Bids) -> None:
        """Write one interval's bids into the model and the loaded solver (only the values that changed)."""
        new = bid_arrays(bids, self._written)
        self.solver.update_bounds(moved_bounds(self._d, self._s, new, self._written))
        push_costs(self.solver, self._params, new, self._written)
        self._written = {name: value.copy() for name, value in new.items()}

    def solve(self) -> bool:
        """Solve with the bids as written; True when optimal (values then in ``last_*``)."""
        sol = self.solver.solve()
        self.status = sol.status
        if not sol.ok:
            return False
        self.last_d, self.last_s = sol.values(self._d), sol.values(self._s)
        self.last_flow = sol.values(self._flow)
        # HiGHS reports d(objective)/d(rhs); the rhs of a balance row is a withdrawal, so the row dual
        # is the marginal cost of energy at that node. A node with nothing attached has no row: NaN.
        duals = np.full(self.n_node, np.nan)
        duals[self._balance_nodes] = sol.duals(self._balance)
        self.last_node_duals = duals
        # A flow variable's reduced cost is d(cost)/d(flow) at its bound: negative when the upper
        # limit binds. Net congestion price: +mu at the upper (from->to) limit, -mu at the lower one.
        self.last_line_duals = -sol.reduced_costs(self._flow) + 0.0
        return True


def bid_arrays(bids: Bids, written: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The bids as float arrays, checked against the shapes the model was built for."""
    new = {name: np.asarray(getattr(bids, name), dtype=float) for name in BID_PARAMS}
    for name, value in new.items():
        if value.shape != written[name].shape:
            raise ValueError(
                f"bids.{name} has shape {value.shape}, the model was built for {written[name].shape}"
            )
    return new


def moved_bounds(
    d: list[Any], s: list[Any], new: dict[str, np.ndarray], written: dict[str, np.ndarray]
) -> list[Any]:
    """Set the demand and supply variables' bounds that changed; return those variables."""
    moved: list[Any] = []
    for i in np.flatnonzero(new["demand_mw"] != written["demand_mw"]).tolist():
        d[i].setub(float(new["demand_mw"][i]))
        moved.append(d[i])
    lo, hi = new["supply_min_mw"], new["supply_max_mw"]
    for j in np.flatnonzero((lo != written["supply_min_mw"]) | (hi != written["supply_max_mw"])).tolist():
        s[j].setlb(float(lo[j]))
        s[j].setub(float(hi[j]))
        moved.append(s[j])
    return moved


def push_costs(
    solver: PersistentModel,
    params: dict[str, list[Any]],
    new: dict[str, np.ndarray],
    written: dict[str, np.ndarray],
) -> None:
    """Set the cost parameters that changed and push them to the solver (once, only if any changed)."""
    changed = False
    for name in COST_PARAMS:
        for i in np.flatnonzero(new[name] != written[name]).tolist():
            params[name][i].set_value(float(new[name][i]))
            changed = True
    if changed:
        solver.update_parameters()


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
    time_limit_s : time limit of each solve [s]; reaching it is a failed clearing

    Notes
    -----
    After a successful ``clear``, ``last_line_duals`` holds (n_br,) net congestion prices in $/MWh
    per MW of flow: ``mu_up - mu_down`` of the branch's limits, positive when the from->to limit
    binds, so that ``LMP_b = LMP_slack - sum_l PTDF[l, b] * last_line_duals[l]``.
    An islanded bus has its own reference angle; its demand is served only by supply at that island.
    A solver result other than optimal (``supply_min_mw`` above what can be served, or the time limit)
    gives a ``Clearing`` with NaN numbers and ``status`` set to the solver's termination condition;
    nothing is raised.
    """

    def __init__(
        self,
        network: DCNetwork,
        demand_bus: np.ndarray,
        supply_bus: np.ndarray,
        *,
        time_limit_s: float | None = None,
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
            time_limit_s=time_limit_s,
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
