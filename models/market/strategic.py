"""A strategic player in a network market: its bilevel offer problem as an MPEC, and market-power screens.

The player (one agent's supply steps) chooses its offer price(s) ``o`` in ``[true cost, cap]`` to
maximise its profit ``sum(LMP at its bus * s) - sum(true cost * s)``, anticipating the clearing. The
lower level is the network clearing the run uses, written in PTDF form as an LP (every step linear,
``supply_c2 == 0``):

    min  sum_k price_k s_k - sum_i bid_i d_i
    s.t. sum over island of (s - d) == 0                              (lambda_island, free)
         -L_r <= H_r @ inj + f0_r <= L_r                                (mu_dn_r, mu_up_r >= 0)
         smin <= s <= smax,  0 <= d <= dmax                             (a_dn, a_up, b_dn, b_up >= 0)

with ``inj`` the net injection per bus. The limit rows ``H`` are the PTDF rows of the branches with a
rating (dcopf) and, for scopf, also the post-contingency rows ``PTDF[l] + LODF[l, k] * PTDF[k]`` with
``contingency_limit_factor * rate`` (the same rows `scopf.SCOPF` enforces). Rows that no dispatch within
the steps' bounds can bind are dropped (exact). ``LMP_b = lambda_island(b) - sum_r H_r[b] (mu_up_r -
mu_dn_r)``.

The lower level is replaced by its KKT conditions: primal and dual feasibility, stationarity
``price_k - LMP + a_up - a_dn = 0`` (supply), ``-bid_i + LMP + b_up - b_dn = 0`` (demand), and each
complementarity pair linearised exactly by a binary ``z``: ``slack <= M_p (1 - z)``, ``dual <= M_d z``.
The primal bounds ``M_p`` come from the data (``smax - smin``, ``dmax``, ``L_r + max|flow_r|``); the
dual bounds ``M_d`` are ``DUAL_BOUND_FACTOR`` x the largest price in the data (bids, offers, the cap)
for prices and bound duals, and ``MU_BOUND_FACTOR`` x that for congestion duals. They are checked after
the solve: a solution with a dual at its bound, or an infeasible MILP (the lower level always has an
optimum, so its duals were cut off), is solved again with all dual bounds x10 (up to ``MAX_BOUND_TRIES``
times); a bound still reached is reported in the status.

The player's revenue ``LMP * s`` is bilinear; with complementarity it equals ``o * s + a_up * smax -
a_dn * smin``, and by strong duality (the primal objective equals the dual one, ``D = sum(a_dn smin -
a_up smax) - sum(b_up dmax) - sum(mu_up (L - f0) + mu_dn (L + f0))``) the player's ``sum(o * s) = D -
sum(price_k s_k, k not the player's) + sum(bid_i d_i)``: the objective is linear, the MPEC a MILP.

Among offers of equal profit the lowest is chosen (the objective subtracts ``TIE_BREAK`` x the markup):
a player whose offer does not move its profit offers its cost. The solution is the optimistic bilevel
one: where the clearing has ties (the player marginal at the
price where another step takes over), it picks the one the player likes. A real clearing may break the
tie the other way; `StrategicPlayer` then offers ``TIE_MARGIN_PER_MWH`` less.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyomo.environ as pyo

from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.network_dc import DCNetwork
from cosim.models.market.scopf import ptdf_by_island, shift_flow_mw
from cosim.models.market.solver import PersistentModel

DUAL_BOUND_FACTOR = 10.0  # |LMP|, bound duals <= this x the largest |price| in the data
MU_BOUND_FACTOR = 100.0  # congestion duals <= this x the largest |price| in the data
MAX_BOUND_TRIES = 3  # solves with bounds x1, x10, x100
MIP_OPTIONS = {"mip_rel_gap": 1e-9, "mip_abs_gap": 1e-7, "mip_feasibility_tolerance": 1e-9}
BOUND_TOL = 1e-6  # a dual within this share of its bound counts as at the bound
COEF_TOL = 1e-10  # |H| coefficients below this are dropped
TIE_MARGIN_PER_MWH = 0.01  # offered below the MPEC's price when the clearing breaks a tie against the player
TOL_MW = 1e-6
INFEASIBLE = ("provenInfeasible", "infeasibleOrUnbounded")  # HiGHS statuses of a MILP cut off by its bounds
TIE_BREAK = 1e-6  # $/h per $/MWh of markup: among offers of equal profit, the lowest


@dataclass(frozen=True)
class LimitRows:
    """Flow-limit rows ``-limit <= H @ inj + f0 <= limit`` of a network clearing, per bus position."""

    h: np.ndarray  # (n_row, n_bus)
    f0_mw: np.ndarray  # (n_row,)
    limit_mw: np.ndarray  # (n_row,)
    island: np.ndarray  # (n_bus,) island number of each bus


def limit_rows(network: DCNetwork, scopf: Any = None) -> LimitRows:
    """The limit rows a dcopf clearing enforces, plus, given an `scopf.SCOPF`, its post-contingency rows."""
    ptdf = ptdf_by_island(network)
    f0 = shift_flow_mw(network, ptdf)
    rate = np.asarray(network.rate_mw, dtype=float)
    mon = np.flatnonzero(np.isfinite(rate))
    h, off, lim = [ptdf[mon]], [f0[mon]], [rate[mon]]
    if scopf is not None and scopf.n_contingency:
        k = np.asarray(scopf.contingencies)
        grid_l, grid_j = np.meshgrid(mon, np.arange(len(k)), indexing="ij")
        ll, jj = grid_l.ravel(), grid_j.ravel()
        keep = ll != k[jj]
        ll, jj = ll[keep], jj[keep]
        lodf = scopf.lodf[ll, jj]
        h.append(ptdf[ll] + lodf[:, None] * ptdf[k[jj]])
        off.append(f0[ll] + lodf * f0[k[jj]])
        lim.append(scopf.factor * rate[ll])
    hh = np.concatenate(h) if h else np.zeros((0, network.n_bus))
    hh[np.abs(hh) < COEF_TOL] = 0.0
    return LimitRows(hh, np.concatenate(off), np.concatenate(lim), np.asarray(network.island))


@dataclass(frozen=True)
class MPECSolution:
    """The player's optimal offer and the clearing it anticipates."""

    status: str  # "optimal", or what went wrong
    offer_per_mwh: np.ndarray  # (n_player_steps,)
    profit: float  # $/h, anticipated: LMP * s - true cost
    supply_mw: np.ndarray  # (n_s,)
    demand_mw: np.ndarray  # (n_d,)
    price_per_mwh: np.ndarray  # (n_bus,) LMP per bus position
    bound_scale: float  # multiple of the default dual bounds the solution was found with


class StrategicMPEC:
    """The player's bilevel offer problem as a MILP (KKT by big-M binaries, strong-duality objective).

    Parameters
    ----------
    network : DCNetwork of the clearing
    demand_bus, supply_bus : pandapower bus of each demand / supply step (the bids' layout)
    player_steps : positions of the player's supply steps
    offer_price_max_per_mwh : the cap on the player's offer
    rows : the clearing's flow-limit rows (`limit_rows`)
    time_limit_s : HiGHS time limit per solve
    """

    def __init__(
        self,
        network: DCNetwork,
        demand_bus: np.ndarray,
        supply_bus: np.ndarray,
        player_steps: np.ndarray,
        offer_price_max_per_mwh: float,
        rows: LimitRows | None = None,
        time_limit_s: float = 30.0,
    ) -> None:
        self.network = network
        self.demand_node = network.position_of(demand_bus) if len(demand_bus) else np.zeros(0, np.int64)
        self.supply_node = network.position_of(supply_bus) if len(supply_bus) else np.zeros(0, np.int64)
        self.player = np.asarray(player_steps, dtype=np.int64)
        if len(self.player) == 0:
            raise ValueError("the strategic player has no supply step")
        self.cap = float(offer_price_max_per_mwh)
        self.rows = rows if rows is not None else limit_rows(network)
        self.time_limit_s = float(time_limit_s)

    def _screen_rows(self, bids: Bids) -> tuple[np.ndarray, np.ndarray]:
        """Rows some dispatch within the bounds can bind, and the largest |flow| of each (MW)."""
        n_bus = self.network.n_bus
        inj_hi = np.bincount(self.supply_node, bids.supply_max_mw, n_bus)
        inj_lo = -np.bincount(self.demand_node, bids.demand_mw, n_bus)
        h = self.rows.h
        hi = np.maximum(h * inj_hi, h * inj_lo).sum(axis=1) + self.rows.f0_mw
        lo = np.minimum(h * inj_hi, h * inj_lo).sum(axis=1) + self.rows.f0_mw
        reach = np.maximum(np.abs(hi), np.abs(lo))
        return np.flatnonzero(reach > self.rows.limit_mw - TOL_MW), reach

    def solve(self, bids: Bids, true_cost_per_mwh: np.ndarray) -> MPECSolution:
        """Solve the MPEC for one interval's bids; ``true_cost_per_mwh`` (n_player_steps,) the player's."""
        c2 = np.asarray(bids.supply_c2, dtype=float)
        if np.any(c2 != 0):
            raise ValueError("the strategic MPEC needs linear offers (supply_c2 == 0 on every step)")
        cost = np.asarray(true_cost_per_mwh, dtype=float)
        scale = 1.0
        for _ in range(MAX_BOUND_TRIES):
            sol, at_bound = self._solve_once(bids, cost, scale)
            # the lower level always has an optimum (every demand step may go unserved), so an infeasible
            # MILP means the dual bounds cut off every dual optimum: widen them too
            too_tight = sol.status in INFEASIBLE or (sol.status == "optimal" and at_bound)
            if not too_tight:
                return sol
            scale *= 10.0
        return replace(sol, status="dual bound reached")

    def _solve_once(self, bids: Bids, cost: np.ndarray, scale: float) -> tuple[MPECSolution, bool]:
        m, checks = self._build(bids, cost, scale)
        # the MILP's rows depend on the interval's screened branches: a model of its own for each solve
        res = PersistentModel(m, time_limit_s=self.time_limit_s, options=MIP_OPTIONS).solve()
        n_bus = self.network.n_bus
        if not res.ok:
            nan = MPECSolution(
                status=res.status,
                offer_per_mwh=np.full(len(self.player), np.nan),
                profit=float("nan"),
                supply_mw=np.full(len(bids.supply_bus), np.nan),
                demand_mw=np.full(len(bids.demand_bus), np.nan),
                price_per_mwh=np.full(n_bus, np.nan),
                bound_scale=scale,
            )
            return nan, False
        assert res.results is not None
        res.results.solution_loader.load_vars()
        val = np.vectorize(lambda v: pyo.value(v), otypes=[float])
        at_bound = any(
            len(comp) and bool(np.any(np.abs(val(list(comp.values()))) >= (1.0 - BOUND_TOL) * bound))
            for comp, bound in checks
        )
        sol = MPECSolution(
            status="optimal",
            offer_per_mwh=val([m.o[p] for p in m.P]),
            profit=float(pyo.value(m.profit)),
            supply_mw=val([m.s[k] for k in m.S]),
            demand_mw=val([m.d[i] for i in m.D]),
            price_per_mwh=val([m.lmp[b] for b in m.B]),
            bound_scale=scale,
        )
        return sol, at_bound

    def _build(
        self, bids: Bids, cost: np.ndarray, scale: float
    ) -> tuple[pyo.ConcreteModel, list[tuple[Any, float]]]:
        """The MILP of one interval, and each dual variable with its big-M bound (checked after the solve)."""
        smin = np.asarray(bids.supply_min_mw, dtype=float)
        smax = np.asarray(bids.supply_max_mw, dtype=float)
        dmax = np.asarray(bids.demand_mw, dtype=float)
        price = np.asarray(bids.supply_price, dtype=float).copy()
        bid = np.asarray(bids.demand_price, dtype=float)
        player = self.player
        pos = {int(k): j for j, k in enumerate(player)}
        lo_o = cost
        hi_o = np.maximum(cost, self.cap)
        p_big = float(np.max(np.abs(np.r_[price, bid, hi_o, lo_o, 1.0])))
        m_price = DUAL_BOUND_FACTOR * p_big * scale
        m_bound = 2.0 * m_price  # |price - LMP|
        m_mu = MU_BOUND_FACTOR * p_big * scale
        rows, reach = self._screen_rows(bids)
        h, f0, lim = self.rows.h[rows], self.rows.f0_mw[rows], self.rows.limit_mw[rows]
        island = self.rows.island
        n_bus = self.network.n_bus
        sn, dn = self.supply_node, self.demand_node

        m = pyo.ConcreteModel(name="strategic_mpec")
        m.S, m.D = pyo.RangeSet(0, len(smax) - 1), pyo.RangeSet(0, len(dmax) - 1)
        m.B, m.R = pyo.RangeSet(0, n_bus - 1), pyo.RangeSet(0, len(rows) - 1)
        m.P = pyo.RangeSet(0, len(player) - 1)
        m.G = pyo.Set(initialize=sorted({int(g) for g in island}))
        m.s = pyo.Var(m.S, bounds=lambda _, k: (smin[k], smax[k]))
        m.d = pyo.Var(m.D, bounds=lambda _, i: (0.0, dmax[i]))
        m.o = pyo.Var(m.P, bounds=lambda _, p: (lo_o[p], hi_o[p]))
        m.lam = pyo.Var(m.G, bounds=(-m_price, m_price))
        m.mu_up = pyo.Var(m.R, bounds=(0.0, m_mu))
        m.mu_dn = pyo.Var(m.R, bounds=(0.0, m_mu))
        m.a_up = pyo.Var(m.S, bounds=(0.0, m_bound))
        m.a_dn = pyo.Var(m.S, bounds=(0.0, m_bound))
        m.b_up = pyo.Var(m.D, bounds=(0.0, m_bound))
        m.b_dn = pyo.Var(m.D, bounds=(0.0, m_bound))
        for name, idx in (("z_sup", m.S), ("z_sdn", m.S), ("z_dup", m.D), ("z_ddn", m.D)):
            setattr(m, name, pyo.Var(idx, domain=pyo.Binary))
        m.z_fup = pyo.Var(m.R, domain=pyo.Binary)
        m.z_fdn = pyo.Var(m.R, domain=pyo.Binary)

        s_at = [np.flatnonzero(sn == b) for b in range(n_bus)]
        d_at = [np.flatnonzero(dn == b) for b in range(n_bus)]
        m.inj = pyo.Expression(
            m.B, rule=lambda m, b: sum(m.s[int(k)] for k in s_at[b]) - sum(m.d[int(i)] for i in d_at[b])
        )
        nz = [np.flatnonzero(h[r]) for r in range(len(rows))]
        m.flow = pyo.Expression(
            m.R, rule=lambda m, r: sum(float(h[r, b]) * m.inj[int(b)] for b in nz[r]) + float(f0[r])
        )
        col = [np.flatnonzero(h[:, b]) for b in range(n_bus)]
        m.lmp = pyo.Expression(
            m.B,
            rule=lambda m, b: (
                m.lam[int(island[b])]
                - sum(float(h[r, b]) * (m.mu_up[int(r)] - m.mu_dn[int(r)]) for r in col[b])
            ),
        )

        def offer(m: pyo.ConcreteModel, k: int) -> Any:
            return m.o[pos[k]] if k in pos else float(price[k])

        # primal feasibility
        m.balance = pyo.Constraint(
            m.G, rule=lambda m, g: sum(m.inj[int(b)] for b in np.flatnonzero(island == g)) == 0
        )
        m.flow_up = pyo.Constraint(m.R, rule=lambda m, r: m.flow[r] <= float(lim[r]))
        m.flow_dn = pyo.Constraint(m.R, rule=lambda m, r: -m.flow[r] <= float(lim[r]))
        # stationarity
        m.stat_s = pyo.Constraint(
            m.S, rule=lambda m, k: offer(m, k) - m.lmp[int(sn[k])] + m.a_up[k] - m.a_dn[k] == 0
        )
        m.stat_d = pyo.Constraint(
            m.D, rule=lambda m, i: -float(bid[i]) + m.lmp[int(dn[i])] + m.b_up[i] - m.b_dn[i] == 0
        )
        # complementarity, slack <= M_p (1 - z), dual <= M_d z
        ds = np.maximum(smax - smin, 0.0)
        fm = lim + reach[rows]
        m.c_sup = pyo.Constraint(m.S, rule=lambda m, k: smax[k] - m.s[k] <= ds[k] * (1 - m.z_sup[k]))
        m.c_sup_d = pyo.Constraint(m.S, rule=lambda m, k: m.a_up[k] <= m_bound * m.z_sup[k])
        m.c_sdn = pyo.Constraint(m.S, rule=lambda m, k: m.s[k] - smin[k] <= ds[k] * (1 - m.z_sdn[k]))
        m.c_sdn_d = pyo.Constraint(m.S, rule=lambda m, k: m.a_dn[k] <= m_bound * m.z_sdn[k])
        m.c_dup = pyo.Constraint(m.D, rule=lambda m, i: dmax[i] - m.d[i] <= dmax[i] * (1 - m.z_dup[i]))
        m.c_dup_d = pyo.Constraint(m.D, rule=lambda m, i: m.b_up[i] <= m_bound * m.z_dup[i])
        m.c_ddn = pyo.Constraint(m.D, rule=lambda m, i: m.d[i] <= dmax[i] * (1 - m.z_ddn[i]))
        m.c_ddn_d = pyo.Constraint(m.D, rule=lambda m, i: m.b_dn[i] <= m_bound * m.z_ddn[i])
        m.c_fup = pyo.Constraint(m.R, rule=lambda m, r: lim[r] - m.flow[r] <= fm[r] * (1 - m.z_fup[r]))
        m.c_fup_d = pyo.Constraint(m.R, rule=lambda m, r: m.mu_up[r] <= m_mu * m.z_fup[r])
        m.c_fdn = pyo.Constraint(m.R, rule=lambda m, r: lim[r] + m.flow[r] <= fm[r] * (1 - m.z_fdn[r]))
        m.c_fdn_d = pyo.Constraint(m.R, rule=lambda m, r: m.mu_dn[r] <= m_mu * m.z_fdn[r])

        # objective: the player's o*s by strong duality, its revenue by complementarity
        dual_obj = (
            sum(smin[k] * m.a_dn[k] - smax[k] * m.a_up[k] for k in m.S)
            - sum(dmax[i] * m.b_up[i] for i in m.D)
            - sum((lim[r] - f0[r]) * m.mu_up[r] + (lim[r] + f0[r]) * m.mu_dn[r] for r in m.R)
        )
        others = [k for k in range(len(smax)) if k not in pos]
        player_os = dual_obj - sum(price[k] * m.s[k] for k in others) + sum(bid[i] * m.d[i] for i in m.D)
        revenue = player_os + sum(smax[k] * m.a_up[k] - smin[k] * m.a_dn[k] for k in player.tolist())
        true_cost = sum(cost[j] * m.s[int(k)] for j, k in enumerate(player))
        m.profit = pyo.Expression(expr=revenue - true_cost)
        markup = sum(m.o[p] - float(lo_o[p]) for p in m.P)
        m.obj = pyo.Objective(expr=m.profit - TIE_BREAK * markup, sense=pyo.maximize)
        checks = [(m.lam, m_price), (m.a_up, m_bound), (m.a_dn, m_bound), (m.b_up, m_bound)]
        checks += [(m.b_dn, m_bound), (m.mu_up, m_mu), (m.mu_dn, m_mu)]
        return m, checks


@dataclass(frozen=True)
class StrategicInterval:
    """One interval of the strategic player: its offer, profits, Lerner index and the welfare it costs."""

    status: str  # the MPEC's status ("optimal": the offer is the MPEC's; else the player offered its cost)
    offer_per_mwh: float  # offered price of the player's (first) step
    strategic_profit: float  # $/h, LMP x dispatch - true cost in the strategic clearing
    competitive_profit: float  # $/h, the same with the player offering its true cost
    anticipated_profit: float  # $/h, the MPEC's objective
    lerner_index: float  # (LMP - marginal cost) / LMP at the player's bus, strategic clearing
    welfare_loss: float  # $/h, competitive minus strategic welfare, both at true costs


def true_welfare(bids: Bids, clearing: Clearing) -> float:
    """$/h bids served minus the true cost (``bids`` as offered truthfully) of a clearing's dispatch."""
    return float(
        np.dot(bids.demand_price, clearing.demand_mw) - np.dot(bids.supply_price, clearing.supply_mw)
    )


class StrategicPlayer:
    """Replaces the player's offer by the MPEC's before each clearing and measures what that does.

    Parameters
    ----------
    mpec : the player's `StrategicMPEC`
    """

    def __init__(self, mpec: StrategicMPEC) -> None:
        self.mpec = mpec
        self.player = mpec.player
        self.bus = int(mpec.supply_node[mpec.player[0]])

    def _profit(self, clearing: Clearing, cost: np.ndarray) -> float:
        s = clearing.supply_mw[self.player]
        lmp = clearing.price_per_mwh[self.mpec.supply_node[self.player]]
        return float(np.dot(lmp - cost, s))

    def play(self, bids: Bids, clear: Callable[[Bids], Clearing]) -> tuple[Bids, Clearing, StrategicInterval]:
        """The offered bids, their clearing by ``clear`` and the interval's measures.

        ``bids`` hold the player's true cost; ``clear`` is the run's network clearing (its prices per
        network bus position). A failed MPEC leaves the player at its cost.
        """
        cost = np.asarray(bids.supply_price, dtype=float)[self.player]
        competitive = clear(bids)
        sol = self.mpec.solve(bids, cost)
        offer = sol.offer_per_mwh if sol.status == "optimal" else cost
        offered = _with_offer(bids, self.player, offer)
        clearing = clear(offered)
        if sol.status == "optimal" and clearing.status == "optimal":
            short = clearing.supply_mw[self.player] < sol.supply_mw[self.player] - 1e-4
            if np.any(short):  # the clearing broke a tie against the player: undercut it
                offer = np.maximum(cost, offer - TIE_MARGIN_PER_MWH)
                offered = _with_offer(bids, self.player, offer)
                clearing = clear(offered)
        ok = clearing.status == "optimal" and competitive.status == "optimal"
        nan = float("nan")
        lmp = float(clearing.price_per_mwh[self.bus]) if ok else nan
        lerner = (lmp - float(cost[0])) / lmp if ok and lmp != 0 else nan
        return (
            offered,
            clearing,
            StrategicInterval(
                status=sol.status,
                offer_per_mwh=float(offer[0]),
                strategic_profit=self._profit(clearing, cost) if ok else nan,
                competitive_profit=self._profit(competitive, cost) if ok else nan,
                anticipated_profit=sol.profit,
                lerner_index=lerner,
                welfare_loss=true_welfare(bids, competitive) - true_welfare(bids, clearing) if ok else nan,
            ),
        )


def _with_offer(bids: Bids, steps: np.ndarray, offer: np.ndarray) -> Bids:
    price = np.asarray(bids.supply_price, dtype=float).copy()
    price[steps] = offer
    return replace(bids, supply_price=price)


def supply_screens(
    supplier: np.ndarray, n_supplier: int, supply_max_mw: np.ndarray, supply_mw: np.ndarray, demand_mw: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """HHI of cleared supply, residual supply index and pivotal flag of every supplier, in one interval.

    Parameters
    ----------
    supplier : (n_s,) supplier (owner) position 0..n_supplier-1 of every supply step
    supply_max_mw : (n_s,) capacity offered this interval; supply_mw : (n_s,) cleared
    demand_mw : total cleared demand

    Returns
    -------
    hhi : sum over suppliers of (100 x share of cleared supply)**2, 0..10000 (NaN: nothing cleared)
    rsi : (n_supplier,) (total capacity - the supplier's capacity) / demand (NaN: no demand)
    pivotal : (n_supplier,) rsi < 1: demand cannot be met without the supplier
    """
    cap = np.bincount(supplier, np.asarray(supply_max_mw, dtype=float), n_supplier)
    sold = np.bincount(supplier, np.clip(np.asarray(supply_mw, dtype=float), 0.0, None), n_supplier)
    total = sold.sum()
    hhi = float(np.sum((100.0 * sold / total) ** 2)) if total > TOL_MW else float("nan")
    rsi = (cap.sum() - cap) / demand_mw if demand_mw > TOL_MW else np.full(n_supplier, np.nan)
    return hhi, rsi, rsi < 1.0
