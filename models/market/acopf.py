"""AC optimal power flow as a market: welfare maximisation with AC physics, via pandapower's OPF.

The grid's own injections are replaced, once, by OPF elements that stand for the bid steps:

* each demand step is a controllable ``load`` with ``0 <= p <= demand_mw`` and the linear cost
  ``-demand_price`` (minimising cost then maximises welfare). Its reactive power follows its active
  power at a fixed ratio ``q = demand_q_ratio * p`` (constant power factor, MATPOWER's dispatchable-load
  constraint, which pandapower's PIPS applies when ``delta=0``). A demand step whose price is at least
  ``fixed_demand_price_per_mwh`` is not elastic: it is served in full (``p = demand_mw``, ``q`` as above),
  as a fixed load of MATPOWER, so that with only such steps the objective is MATPOWER's generation cost;
  an infeasible clear then reports ``"not converged"`` instead of shedding load;
* each supply step is a controllable ``sgen`` with ``supply_min_mw <= p <= supply_max_mw``, the cost
  ``supply_price * p + supply_c2 * p**2`` and no reactive power (unity power factor);
* the reactive capability of the grid is a property of its buses, not of the bids: per bus, the sum of
  the ``min_q_mvar``/``max_q_mvar`` of the net's in-service gens, ext_grids and controllable sgens
  (``+-q_limit_mvar`` where a gen or ext_grid has no finite limit) is one reactive-only controllable
  ``sgen`` (``p = 0``), or the ext_grid itself at the slack bus. With one supply step per generator this
  is exactly MATPOWER's problem, because reactive power has no cost and boxes on Q add up per bus;
* the ext_grid is controllable (its voltage is free within the bus limits, as in MATPOWER) and carries
  no active power: import from the upstream grid is a supply step at the slack bus like any other.

Branch ratings are pandapower's (``max_loading_percent`` of ``max_i_ka`` at the rated voltage, or of a
transformer's ``sn_mva``: MATPOWER's ``RATE_A`` in MVA). ``branch_limit="mva"`` (default, MATPOWER's
``opf.flow_lim = 'S'``) limits the apparent power at both ends of a branch to it; ``"current"``
(pandapower's default) limits the current, i.e. ``|S| <= RATE_A * |V|``, looser above 1 pu. A branch
without a rating in the MATPOWER case (``rateA = 0``, which pandapower's converter turns into
``max_i_ka`` or ``sn_mva`` of 99999) has no limit here either, as in MATPOWER: a finite but huge limit
makes PIPS fail numerically (case5). Bus voltage limits are the net's ``min_vm_pu``/``max_vm_pu`` or the
constructor's overrides. Prices are the Lagrange multipliers of the bus balances (``res_bus.lam_p``,
``res_bus.lam_q``) in $/MWh and $/Mvarh. A clearing also gives the OPF's state: the voltage magnitude of
every bus and the reactive power dispatched at every bus (its reactive-only sgen, or the ext_grid).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandapower as pp
from numpy.linalg import LinAlgError
from pandapower.optimal_powerflow import OPFNotConverged

from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.pypower_compat import PipsTimeLimit, enable_apparent_power_limits

_SOLVER_OPTIONS = {"delta": 0.0, "calculate_voltage_angles": True}
BRANCH_LIMITS = {"mva": 0, "current": 2}  # PYPOWER's OPF_FLOW_LIM of each branch_limit
NO_RATING = 99999.0  # pandapower's from_mpc: max_i_ka (kA) or sn_mva (MVA) of a branch with rateA = 0


class ACOPF:
    """AC optimal power flow as a market: welfare maximisation over the bids with AC physics and voltage
    limits, solved by pandapower's OPF (PIPS interior point). Gives active and reactive marginal prices
    per bus.

    Parameters
    ----------
    net
        pandapower network; deep-copied, the original is not touched.
    demand_bus, supply_bus
        Bus of each demand / supply step; every ``Bids`` passed to :meth:`clear` must use these.
    demand_q_ratio
        Reactive over active power of each demand step (Mvar/MW, > 0 inductive); default 0.
    vm_min_pu, vm_max_pu
        Voltage limits of every bus, overriding the net's ``min_vm_pu``/``max_vm_pu`` when given.
    fixed_demand_price_per_mwh
        Demand steps bidding at least this price are served in full (fixed loads); default: all elastic.
    q_limit_mvar
        Reactive limit used for a gen or ext_grid of the net that has none.
    branch_limit
        ``"mva"`` (apparent power, MATPOWER's default) or ``"current"`` (pandapower's default).
    time_limit_s
        Wall-clock limit of one clearing [s] (all its PIPS starts together, checked every PIPS
        iteration: `pypower_compat.PipsTimeLimit`); None: `solver.DEFAULT_TIME_LIMIT_S`. Reaching it
        is a failed clearing, status ``"time limit"``.
    """

    def __init__(
        self,
        net: Any,
        demand_bus: np.ndarray,
        supply_bus: np.ndarray,
        *,
        demand_q_ratio: np.ndarray | None = None,
        vm_min_pu: float | None = None,
        vm_max_pu: float | None = None,
        fixed_demand_price_per_mwh: float | None = None,
        q_limit_mvar: float = 1e4,
        branch_limit: str = "mva",
        time_limit_s: float | None = None,
    ) -> None:
        if time_limit_s is None:
            from cosim.models.market.solver import DEFAULT_TIME_LIMIT_S

            time_limit_s = DEFAULT_TIME_LIMIT_S  # read at construction, as `solver.PersistentModel` does
        if not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
        self.time_limit_s = float(time_limit_s)
        if branch_limit not in BRANCH_LIMITS:
            raise ValueError(f"branch_limit {branch_limit!r} is not one of {sorted(BRANCH_LIMITS)}")
        if branch_limit == "mva":
            enable_apparent_power_limits()
        self.demand_bus = np.asarray(demand_bus, dtype=np.int64)
        self.supply_bus = np.asarray(supply_bus, dtype=np.int64)
        n_d, n_s = len(self.demand_bus), len(self.supply_bus)
        ratio = np.zeros(n_d) if demand_q_ratio is None else np.asarray(demand_q_ratio, dtype=float)
        if ratio.shape != (n_d,):
            raise ValueError(f"demand_q_ratio has shape {ratio.shape}, expected ({n_d},)")
        self.demand_q_ratio = ratio
        self.fixed_demand_price_per_mwh = fixed_demand_price_per_mwh
        self.net = net = copy.deepcopy(net)
        missing = np.setdiff1d(np.r_[self.demand_bus, self.supply_bus], net.bus.index.to_numpy())
        if missing.size:
            raise ValueError(f"buses {missing.tolist()} are not in the net")
        if vm_min_pu is not None:
            net.bus["min_vm_pu"] = float(vm_min_pu)
        if vm_max_pu is not None:
            net.bus["max_vm_pu"] = float(vm_max_pu)
        _unrated_branches_unlimited(net)
        self._options: dict[str, Any] = dict(_SOLVER_OPTIONS, OPF_FLOW_LIM=BRANCH_LIMITS[branch_limit])
        if _shifts_only_rotate_angles(net):
            # PIPS does not converge from its starts with the 150 degree shift of distribution trafos
            # (SimBench LV/MV); in a radial net a shift only rotates the angles behind it: leave it out.
            self._options["calculate_voltage_angles"] = False
        q_min_bus, q_max_bus = _reactive_capability_mvar(net, q_limit_mvar)
        slack_buses = set(net.ext_grid.bus[net.ext_grid.in_service].tolist())

        # drop the net's own injections and costs
        for table in ("load", "sgen", "gen", "storage", "poly_cost", "pwl_cost"):
            if table in net:
                net[table] = net[table].iloc[0:0]
        net.ext_grid["controllable"] = True
        net.ext_grid[["min_p_mw", "max_p_mw"]] = 0.0
        net.ext_grid["min_q_mvar"] = [q_min_bus.get(b, 0.0) for b in net.ext_grid.bus]
        net.ext_grid["max_q_mvar"] = [q_max_bus.get(b, 0.0) for b in net.ext_grid.bus]
        for eg in net.ext_grid.index:
            pp.create_poly_cost(net, eg, "ext_grid", cp1_eur_per_mw=0.0)

        self._load_idx = np.array(
            [pp.create_load(net, int(b), p_mw=0.0, controllable=True) for b in self.demand_bus],
            dtype=np.int64,
        )
        self._sgen_idx = np.array(
            [pp.create_sgen(net, int(b), p_mw=0.0, controllable=True) for b in self.supply_bus],
            dtype=np.int64,
        )
        q_buses = [
            b for b in sorted(set(q_min_bus) - slack_buses) if q_min_bus[b] != 0.0 or q_max_bus[b] != 0.0
        ]
        self._q_sgen_idx = np.array(
            [_reactive_sgen(net, b, q_min_bus[b], q_max_bus[b]) for b in q_buses], dtype=np.int64
        )
        net.sgen.loc[self._sgen_idx, ["min_q_mvar", "max_q_mvar"]] = 0.0
        self._load_cost = np.array(
            [pp.create_poly_cost(net, int(i), "load", cp1_eur_per_mw=0.0) for i in self._load_idx],
            dtype=np.int64,
        )
        self._sgen_cost = np.array(
            [pp.create_poly_cost(net, int(i), "sgen", cp1_eur_per_mw=0.0) for i in self._sgen_idx],
            dtype=np.int64,
        )
        self._converged = False
        self.n_d, self.n_s = n_d, n_s

    def clear(self, bids: Bids) -> Clearing:
        """Clear one interval's bids with an AC-OPF.

        Parameters
        ----------
        bids
            Steps on the buses given to the constructor, in the same order; their ``demand_q_ratio``,
            when given, replaces the constructor's for this clearing.

        Returns
        -------
        Clearing
            ``status`` is ``"optimal"``, or ``"not converged"`` with NaN results when PIPS fails
            (including an infeasible clear: too little supply for the fixed demand, voltage or flow limits),
            or ``"time limit"`` when the clearing reached ``time_limit_s``.
        """
        self._check(bids)
        net = self.net
        d_max = np.asarray(bids.demand_mw, dtype=float)
        price_d = np.asarray(bids.demand_price, dtype=float)
        s_min = np.asarray(bids.supply_min_mw, dtype=float)
        s_max = np.asarray(bids.supply_max_mw, dtype=float)
        price_s = np.asarray(bids.supply_price, dtype=float)
        c2 = np.asarray(bids.supply_c2, dtype=float)
        fixed = (
            np.zeros(self.n_d, dtype=bool)
            if self.fixed_demand_price_per_mwh is None
            else price_d >= self.fixed_demand_price_per_mwh
        )
        ratio = self.demand_q_ratio if bids.demand_q_ratio is None else np.asarray(bids.demand_q_ratio, float)
        q_max = ratio * d_max
        # a step of zero size cannot be a dispatchable load in PIPS (its power factor is undefined)
        net.load.loc[self._load_idx, "controllable"] = d_max > 1e-9
        # limits: elastic 0 <= p <= d (constant power factor via PIPS), fixed p = d and q = ratio * d
        net.load.loc[self._load_idx, "min_p_mw"] = np.where(fixed, d_max, 0.0)
        net.load.loc[self._load_idx, "max_p_mw"] = d_max
        net.load.loc[self._load_idx, "min_q_mvar"] = np.where(fixed, q_max, np.minimum(q_max, 0.0))
        net.load.loc[self._load_idx, "max_q_mvar"] = np.where(fixed, q_max, np.maximum(q_max, 0.0))
        net.load.loc[self._load_idx, "p_mw"] = d_max  # a start consistent with the power factor
        net.load.loc[self._load_idx, "q_mvar"] = q_max
        net.poly_cost.loc[self._load_cost, "cp1_eur_per_mw"] = -price_d
        net.sgen.loc[self._sgen_idx, "min_p_mw"] = s_min
        net.sgen.loc[self._sgen_idx, "max_p_mw"] = s_max
        share = min(1.0, d_max.sum() / s_max.sum()) if s_max.sum() > 0 else 0.0
        net.sgen.loc[self._sgen_idx, "p_mw"] = np.clip(share * s_max, s_min, s_max)
        net.poly_cost.loc[self._sgen_cost, "cp1_eur_per_mw"] = price_s
        net.poly_cost.loc[self._sgen_cost, "cp2_eur_per_mw2"] = c2

        status = self._solve()
        if status != "optimal":
            return self._failed(status)
        lam_p = net.res_bus.lam_p.loc[net.bus.index].to_numpy(dtype=float)
        lam_q = net.res_bus.lam_q.loc[net.bus.index].to_numpy(dtype=float)
        d = net.res_load.p_mw.loc[self._load_idx].to_numpy(dtype=float)
        s = net.res_sgen.p_mw.loc[self._sgen_idx].to_numpy(dtype=float)
        cost = float(price_s @ s + c2 @ (s * s))
        bus_pos = net.bus.index.get_indexer
        net_load_mw = np.zeros(len(net.bus))
        np.add.at(net_load_mw, bus_pos(self.demand_bus), d)
        np.add.at(net_load_mw, bus_pos(self.supply_bus), -s)
        flows = np.r_[
            net.res_line.p_from_mw.to_numpy(dtype=float), net.res_trafo.p_hv_mw.to_numpy(dtype=float)
        ]
        return Clearing(
            vm_pu=net.res_bus.vm_pu.loc[net.bus.index].to_numpy(dtype=float),
            q_mvar=self._reactive_dispatch_mvar(),
            price_per_mwh=lam_p,
            demand_mw=d,
            supply_mw=s,
            welfare=float(price_d @ d) - cost,
            cost=cost,
            # in AC this is the merchandising surplus: congestion rent plus the rent on losses
            congestion_rent=float(lam_p @ net_load_mw),
            line_flow_mw=flows,
            status="optimal",
            price_q_per_mvarh=lam_q,
        )

    def _reactive_dispatch_mvar(self) -> np.ndarray:
        """(n_bus,) reactive power the OPF dispatches at each bus (generator convention), 0 where none."""
        net = self.net
        q = np.zeros(len(net.bus))
        at = net.bus.index.get_indexer
        sgen = net.sgen.loc[self._q_sgen_idx]
        np.add.at(q, at(sgen.bus), net.res_sgen.q_mvar.loc[self._q_sgen_idx].to_numpy(dtype=float))
        ext = net.ext_grid[net.ext_grid.in_service]
        np.add.at(q, at(ext.bus), net.res_ext_grid.q_mvar.loc[ext.index].to_numpy(dtype=float))
        return q

    def _solve(self) -> str:
        """Run PIPS from a flat start, then warm-started from the previous result, then from a power flow.

        Flat first keeps a clearing independent of the history; ``init="results"`` (pandapower restarts
        PIPS from the previous voltages and dispatch, not its multipliers) was no faster on case9/case118
        and failed on case14, so it is the first fallback. All the starts share one time limit.
        """
        inits = ["flat"] + (["results"] if self._converged else []) + ["pf"]
        self._converged = False
        with PipsTimeLimit(self.time_limit_s) as limit:
            for init in inits:
                if limit.expired():
                    return "time limit"
                try:
                    pp.runopp(self.net, init=init, **self._options)
                except (OPFNotConverged, LinAlgError, pp.LoadflowNotConverged):
                    if limit.reached:
                        return "time limit"
                    continue
                if self.net.OPF_converged:
                    self._converged = True
                    return "optimal"
        return "not converged"

    def _failed(self, status: str) -> Clearing:
        """A clearing of NaNs carrying the solver's word."""
        n_bus, n_branch = len(self.net.bus), len(self.net.line) + len(self.net.trafo)
        return Clearing(
            price_per_mwh=np.full(n_bus, np.nan),
            demand_mw=np.full(self.n_d, np.nan),
            supply_mw=np.full(self.n_s, np.nan),
            welfare=float("nan"),
            cost=float("nan"),
            congestion_rent=float("nan"),
            line_flow_mw=np.full(n_branch, np.nan),
            status=status,
            price_q_per_mvarh=np.full(n_bus, np.nan),
            vm_pu=np.full(n_bus, np.nan),
            q_mvar=np.full(n_bus, np.nan),
        )

    def _check(self, bids: Bids) -> None:
        """Bids must use the steps (buses, order) the OPF was built for."""
        if not np.array_equal(np.asarray(bids.demand_bus), self.demand_bus):
            raise ValueError("bids.demand_bus differs from the demand_bus the ACOPF was built with")
        if not np.array_equal(np.asarray(bids.supply_bus), self.supply_bus):
            raise ValueError("bids.supply_bus differs from the supply_bus the ACOPF was built with")


def _reactive_capability_mvar(net: Any, q_limit_mvar: float) -> tuple[dict[int, float], dict[int, float]]:
    """Per bus, the summed reactive limits of the net's in-service gens, ext_grids and controllable sgens."""
    q_min: dict[int, float] = {}
    q_max: dict[int, float] = {}
    for table, default in (("gen", q_limit_mvar), ("ext_grid", q_limit_mvar), ("sgen", 0.0)):
        tab = net[table]
        if tab.empty:
            continue
        keep = tab.in_service.to_numpy(dtype=bool)
        if table == "sgen":
            ctrl = tab["controllable"] if "controllable" in tab else np.zeros(len(tab), dtype=bool)
            keep &= np.asarray(ctrl, dtype=bool)
        for col, sign, out in (("min_q_mvar", -1.0, q_min), ("max_q_mvar", 1.0, q_max)):
            vals = tab[col].to_numpy(dtype=float) if col in tab else np.full(len(tab), np.nan)
            vals = np.where(np.isfinite(vals), vals, sign * default)
            for b, v in zip(tab.bus.to_numpy()[keep], vals[keep], strict=True):
                out[int(b)] = out.get(int(b), 0.0) + float(v)
    for b in set(q_min) | set(q_max):
        q_min.setdefault(b, 0.0)
        q_max.setdefault(b, 0.0)
    return q_min, q_max


def _reactive_sgen(net: Any, bus: int, q_min_mvar: float, q_max_mvar: float) -> int:
    """A reactive-only controllable sgen (p = 0) with the bus's reactive capability; its index."""
    return int(
        pp.create_sgen(
            net,
            int(bus),
            p_mw=0.0,
            controllable=True,
            min_p_mw=0.0,
            max_p_mw=0.0,
            min_q_mvar=q_min_mvar,
            max_q_mvar=q_max_mvar,
        )  # fmt: skip
    )


def _unrated_branches_unlimited(net: Any) -> None:
    """Give branches without a rating (pandapower's 99999 marker) ``max_loading_percent = 0``: no limit."""
    for table, rating in (("line", "max_i_ka"), ("trafo", "sn_mva")):
        tab = net[table]
        if len(tab) and "max_loading_percent" in tab:
            unrated = tab[rating].to_numpy(dtype=float) >= NO_RATING
            net[table].loc[unrated, "max_loading_percent"] = 0.0


def _shifts_only_rotate_angles(net: Any) -> bool:
    """True when transformers shift phase but the in-service network is radial (a forest)."""
    import networkx as nx
    import pandapower.topology as top

    shifts = net.trafo.get("shift_degree")
    if shifts is None or not np.any(np.asarray(shifts[net.trafo.in_service], dtype=float) != 0.0):
        return False
    graph = top.create_nxgraph(net, respect_switches=True, include_out_of_service=False, multi=False)
    return bool(nx.is_forest(graph))
