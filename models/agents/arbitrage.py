"""Storage arbitrage: a battery's charge/discharge schedule against a price forecast, as one small LP.

Maximises ``sum_t dt_h * (sell_t * d_t - buy_t * c_t)`` over charge ``c_t`` and discharge ``d_t`` (MW, >= 0)
subject to the energy balance ``e_{t+1} = e_t + dt_h * (eta_charge * c_t - d_t / eta_discharge)``, the power
limit on each, the energy limits on ``e`` and, optionally, the end energy back at the start (so that a
horizon's profit is not bought by emptying the battery). Solved with HiGHS through ``scipy.optimize.linprog``.

A round trip buys 1 MWh at ``buy`` and sells ``eta_charge * eta_discharge`` MWh at ``sell``: it pays only if
``sell / buy > 1 / (eta_charge * eta_discharge)`` (1.2346 at 0.9/0.9), so below that ratio the optimal
schedule does not cycle (tested against this breakeven).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linprog

from cosim.models.market.solver import TIME_LIMIT_S


@dataclass(frozen=True)
class Schedule:
    """An arbitrage schedule over ``T`` intervals."""

    charge_mw: np.ndarray  # (T,)
    discharge_mw: np.ndarray  # (T,)
    energy_mwh: np.ndarray  # (T + 1,) energy at each interval start and at the end
    profit: float  # $ over the horizon at the forecast prices


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
) -> Schedule:
    """The profit-maximising schedule for prices ``buy_per_mwh`` and ``sell_per_mwh`` (T,), $/MWh.

    Parameters
    ----------
    power_mw : charge and discharge power limit
    capacity_mwh, energy_min_mwh : energy limits
    energy_mwh : energy at the start
    eta_charge, eta_discharge : efficiencies in (0, 1]
    end_at_start : the energy at the end must be at least the energy at the start

    Raises
    ------
    ValueError
        for inconsistent limits (the start energy outside them).
    """
    buy, sell = np.asarray(buy_per_mwh, dtype=float), np.asarray(sell_per_mwh, dtype=float)
    n = len(buy)
    if not energy_min_mwh <= energy_mwh <= capacity_mwh:
        raise ValueError(f"start energy {energy_mwh} MWh outside [{energy_min_mwh}, {capacity_mwh}]")
    # variables: c (T), d (T); energy after t: e_t = e0 + dt * cumsum(eta_c c - d / eta_d)
    lower = np.tril(np.ones((n, n)))  # a day or two of intervals: dense is fine
    a_energy = np.hstack([lower * dt_h * eta_charge, -lower * dt_h / eta_discharge])  # e_t - e0
    a_ub = np.vstack([a_energy, -a_energy])
    b_ub = np.r_[np.full(n, capacity_mwh - energy_mwh), np.full(n, energy_mwh - energy_min_mwh)]
    if end_at_start:  # -(e_T - e0) <= 0
        a_ub = np.vstack([a_ub, -a_energy[-1]])
        b_ub = np.r_[b_ub, 0.0]
    cost = np.r_[buy * dt_h, -sell * dt_h]
    res = linprog(
        cost,
        A_ub=a_ub,
        b_ub=b_ub,
        bounds=[(0.0, power_mw)] * (2 * n),
        method="highs",
        options={"time_limit": TIME_LIMIT_S},
    )
    if res.status != 0:
        raise ValueError(f"arbitrage schedule infeasible or failed: {res.message}")
    c, d = res.x[:n], res.x[n:]
    energy = energy_mwh + np.r_[0.0, np.cumsum(dt_h * (eta_charge * c - d / eta_discharge))]
    return Schedule(c, d, energy, float(-res.fun))


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
                plan = schedule(
                    f, f, power_mw=float(b.power_mw[i]), capacity_mwh=float(b.soc_max_mwh[i]),
                    energy_mwh=float(np.clip(b.soc_mwh[i], b.soc_min_mwh[i], b.soc_max_mwh[i])),
                    eta_charge=b.eta_charge, eta_discharge=b.eta_discharge,
                    energy_min_mwh=float(b.soc_min_mwh[i]), dt_h=self.dt_h,
                )  # fmt: skip
                self._plan[i], self._plan_start[i], j = plan, k, 0
                self.n_plans += 1
            assert plan is not None
            charge[i], discharge[i] = plan.charge_mw[j], plan.discharge_mw[j]
            buy_limit[i], sell_limit[i] = eta * f.max(), f.min() / eta
        tiny = 1e-9 * np.maximum(b.power_mw, 1e-12)
        charge, discharge = np.where(charge > tiny, charge, 0.0), np.where(discharge > tiny, discharge, 0.0)
        return charge, buy_limit, discharge, np.where(np.isfinite(sell_limit), sell_limit, 0.0)
