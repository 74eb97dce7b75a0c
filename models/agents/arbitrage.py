"""Storage arbitrage: a battery's charge/discharge schedule against a price forecast, as one small LP.

Maximises ``sum_t dt_h * (sell_t * d_t - buy_t * c_t)`` over charge ``c_t`` and discharge ``d_t`` (MW, >= 0)
subject to the energy balance ``e_{t+1} = e_t + dt_h * (eta_charge * c_t - d_t / eta_discharge)``, the power
limit on each, the energy limits on ``e`` and, optionally, the end energy back at the start (so that a
horizon's profit is not bought by emptying the battery). A Pyomo model (`ArbitrageLP`), built once per
planner and re-solved through the market's persistent solver (`cosim.models.market.solver`).

A round trip buys 1 MWh at ``buy`` and sells ``eta_charge * eta_discharge`` MWh at ``sell``: it pays only if
``sell / buy > 1 / (eta_charge * eta_discharge)`` (1.2346 at 0.9/0.9), so below that ratio the optimal
schedule does not cycle (tested against this breakeven).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo

from cosim.models.market.solver import PersistentModel

SELL_EARLY = 1e-6  # per interval: the relative weight that breaks ties towards selling earlier


@dataclass(frozen=True)
class Schedule:
    """An arbitrage schedule over ``T`` intervals."""

    charge_mw: np.ndarray  # (T,)
    discharge_mw: np.ndarray  # (T,)
    energy_mwh: np.ndarray  # (T + 1,) energy at each interval start and at the end
    profit: float  # $ over the horizon at the forecast prices


class ArbitrageLP:
    """The arbitrage LP over ``n`` intervals as a Pyomo model, built once and re-solved for new inputs.

    Variables ``c_t``, ``d_t`` (MW) and the energy ``e_0..e_n`` (MWh); constraints
    ``e_{t+1} = e_t + dt_h * (eta_charge * c_t - d_t / eta_discharge)`` and, with ``end_at_start``,
    ``e_n >= e_0``; prices are mutable parameters of the objective, limits and the start energy are
    variable bounds, so a re-solve pushes only those to the persistent solver (`solver.PersistentModel`).
    Ties between equally profitable schedules (equal prices at several intervals) are broken towards
    selling earlier: the revenue of interval ``t`` is weighted by ``1 - SELL_EARLY * t`` in the
    objective (the forecast is less reliable further ahead). Only revenue is weighted down, so no
    schedule gains from the weight and idling (profit 0) stays optimal below breakeven; the reported
    profit is at the unweighted prices.
    """

    def __init__(
        self,
        n: int,
        *,
        eta_charge: float,
        eta_discharge: float,
        dt_h: float,
        end_at_start: bool,
        time_limit_s: float | None = None,
    ) -> None:
        self.n, self.eta_charge, self.eta_discharge, self.dt_h = int(n), eta_charge, eta_discharge, dt_h
        m = pyo.ConcreteModel(name="arbitrage")
        m.T, m.E = pyo.RangeSet(0, self.n - 1), pyo.RangeSet(0, self.n)
        m.buy = pyo.Param(m.T, mutable=True, initialize=0.0)
        m.sell = pyo.Param(m.T, mutable=True, initialize=0.0)
        m.c = pyo.Var(m.T, bounds=(0.0, 0.0))
        m.d = pyo.Var(m.T, bounds=(0.0, 0.0))
        m.e = pyo.Var(m.E, bounds=(0.0, 0.0))
        m.energy = pyo.Constraint(
            m.T,
            rule=lambda m, t: (
                m.e[t + 1] == m.e[t] + dt_h * eta_charge * m.c[t] - dt_h / eta_discharge * m.d[t]
            ),
        )
        if end_at_start:
            m.end = pyo.Constraint(expr=m.e[self.n] >= m.e[0])
        m.profit = pyo.Objective(
            expr=sum(dt_h * ((1.0 - SELL_EARLY * t) * m.sell[t] * m.d[t] - m.buy[t] * m.c[t]) for t in m.T),
            sense=pyo.maximize,
        )
        self.model = m
        self._c, self._d = list(m.c.values()), list(m.d.values())
        self._e = list(m.e.values())
        self._buy, self._sell = list(m.buy.values()), list(m.sell.values())
        self.solver = PersistentModel(m, time_limit_s=time_limit_s)

    def solve(
        self,
        buy: np.ndarray,
        sell: np.ndarray,
        *,
        power_mw: float,
        capacity_mwh: float,
        energy_mwh: float,
        energy_min_mwh: float,
    ) -> Schedule:
        """The profit-maximising schedule for these prices, limits and start energy (see `schedule`)."""
        if len(buy) != self.n or len(sell) != self.n:
            raise ValueError(f"prices of {len(buy)} and {len(sell)} intervals for an LP of {self.n}")
        for p, value in zip(self._buy + self._sell, np.r_[buy, sell].tolist(), strict=True):
            p.set_value(value)
        for v in self._c + self._d:
            v.setub(power_mw)
        self._e[0].setlb(energy_mwh)
        self._e[0].setub(energy_mwh)
        for v in self._e[1:]:
            v.setlb(energy_min_mwh)
            v.setub(capacity_mwh)
        self.solver.update_parameters()
        self.solver.update_bounds(self._c + self._d + self._e)
        sol = self.solver.solve()
        if not sol.ok:
            raise ValueError(f"arbitrage schedule infeasible or failed: {sol.status}")
        c, d = sol.values(self._c), sol.values(self._d)
        dt = self.dt_h
        energy = energy_mwh + np.r_[0.0, np.cumsum(dt * (self.eta_charge * c - d / self.eta_discharge))]
        return Schedule(c, d, energy, float(dt * (np.dot(sell, d) - np.dot(buy, c))))


def schedule(
    buy_per_mwh: np.ndarray,
    sell_per_mwh: np.ndarray,
    *,
    power_mw: float,
    capacity_mwh: float,
    energy_mwh: float,
    eta_charge: float = 0.95,
    eta_discharge: float = 0.95,
    energy_min_mwh: float = 0.0,
    dt_h: float = 1.0,
    end_at_start: bool = True,
    lp: ArbitrageLP | None = None,
) -> Schedule:
    """The profit-maximising schedule for prices ``buy_per_mwh`` and ``sell_per_mwh`` (T,), $/MWh.

    Parameters
    ----------
    power_mw : charge and discharge power limit
    capacity_mwh, energy_min_mwh : energy limits
    energy_mwh : energy at the start
    eta_charge, eta_discharge : efficiencies in (0, 1]
    end_at_start : the energy at the end must be at least the energy at the start
    lp : an `ArbitrageLP` built for these ``T``, efficiencies, ``dt_h`` and ``end_at_start`` to re-solve
        (default: a new one)

    Raises
    ------
    ValueError
        for inconsistent limits (the start energy outside them), or a failed solve.
    """
    buy, sell = np.asarray(buy_per_mwh, dtype=float), np.asarray(sell_per_mwh, dtype=float)
    if not energy_min_mwh <= energy_mwh <= capacity_mwh:
        raise ValueError(f"start energy {energy_mwh} MWh outside [{energy_min_mwh}, {capacity_mwh}]")
    if lp is None:
        lp = ArbitrageLP(
            len(buy), eta_charge=eta_charge, eta_discharge=eta_discharge, dt_h=dt_h, end_at_start=end_at_start
        )
    return lp.solve(
        buy,
        sell,
        power_mw=power_mw,
        capacity_mwh=capacity_mwh,
        energy_mwh=energy_mwh,
        energy_min_mwh=energy_min_mwh,
    )


class ArbitragePlanner:
    """Battery bids from arbitrage schedules against a persistence forecast of the market price.

    The forecast of an interval is the price cleared at the battery's bus one day earlier, so the
    batteries stay idle for the first day. At every day start, and when a battery's energy has left
    its plan (a bid not fully cleared), the battery re-plans over ``horizon_steps`` with `schedule`
    (ending with at least the energy it starts with). It bids its planned charge and discharge for the
    next interval at limit prices that keep every round trip above breakeven: it buys at up to
    ``eta_c * eta_d`` times the highest forecast price of the horizon, and sells at no less than the
    lowest forecast price divided by ``eta_c * eta_d`` (never below what refilling would cost).

    Parameters
    ----------
    batteries : the fleet's `Batteries` (their state of charge is read, not changed)
    price_pos : (n_battery,) position of each battery's bus in the market's price vector
    steps_per_day, dt_h : interval layout
    horizon_steps : planning horizon [intervals]
    """

    def __init__(
        self, batteries: Any, price_pos: np.ndarray, steps_per_day: int, dt_h: float, horizon_steps: int
    ) -> None:
        self.batteries, self.price_pos = batteries, np.asarray(price_pos, dtype=np.int64)
        self.steps_per_day, self.dt_h, self.horizon = int(steps_per_day), float(dt_h), int(horizon_steps)
        n = len(self.price_pos)
        self._seen = np.full((self.steps_per_day, n), np.nan)  # last day's prices by step of day
        self._n_seen = 0
        self._plan: list[Schedule | None] = [None] * n
        self._plan_start = np.zeros(n, dtype=np.int64)
        self._lp: ArbitrageLP | None = None  # built at the first plan, re-solved for every later one
        self.n_plans = 0

    def observe(self, k: int, price_per_mwh: np.ndarray) -> None:
        """Remember the prices cleared for interval ``k`` (NaN when the clearing failed)."""
        self._seen[k % self.steps_per_day] = np.asarray(price_per_mwh, dtype=float)[self.price_pos]
        self._n_seen += 1

    def _forecast(self, k: int) -> np.ndarray:
        """(horizon, n_battery) forecast from interval ``k``: yesterday's price at the same time of day."""
        rows = (k + np.arange(self.horizon)) % self.steps_per_day
        return self._seen[rows]

    def bids(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Charge MW, charge limit $/MWh, discharge MW, discharge limit $/MWh of every battery for ``k``."""
        b = self.batteries
        n = len(self.price_pos)
        charge, discharge = np.zeros(n), np.zeros(n)
        buy_limit, sell_limit = np.zeros(n), np.full(n, np.inf)
        if self._n_seen < self.steps_per_day:
            return charge, buy_limit, discharge, np.zeros(n)
        forecast = self._forecast(k)
        eta = b.eta_charge * b.eta_discharge
        for i in range(n):
            f = forecast[:, i]
            if not np.isfinite(f).all():
                continue  # a failed clearing in the last day: no forecast, stay idle
            plan, j = self._plan[i], k - self._plan_start[i]
            if (
                plan is None
                or k % self.steps_per_day == 0
                or j >= len(plan.charge_mw)
                or abs(plan.energy_mwh[j] - b.soc_mwh[i]) > 1e-3 * b.capacity_mwh[i]  # left its plan
            ):
                if self._lp is None:
                    self._lp = ArbitrageLP(
                        self.horizon, eta_charge=b.eta_charge, eta_discharge=b.eta_discharge, dt_h=self.dt_h,
                        end_at_start=True,
                    )  # fmt: skip
                plan = schedule(
                    f, f, power_mw=float(b.power_mw[i]), capacity_mwh=float(b.soc_max_mwh[i]),
                    energy_mwh=float(np.clip(b.soc_mwh[i], b.soc_min_mwh[i], b.soc_max_mwh[i])),
                    eta_charge=b.eta_charge, eta_discharge=b.eta_discharge,
                    energy_min_mwh=float(b.soc_min_mwh[i]), dt_h=self.dt_h, lp=self._lp,
                )  # fmt: skip
                self._plan[i], self._plan_start[i], j = plan, k, 0
                self.n_plans += 1
            assert plan is not None
            charge[i], discharge[i] = plan.charge_mw[j], plan.discharge_mw[j]
            buy_limit[i], sell_limit[i] = eta * f.max(), f.min() / eta
        tiny = 1e-9 * np.maximum(b.power_mw, 1e-12)
        charge, discharge = np.where(charge > tiny, charge, 0.0), np.where(discharge > tiny, discharge, 0.0)
        return charge, buy_limit, discharge, np.where(np.isfinite(sell_limit), sell_limit, 0.0)
