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

import numpy as np
from scipy.optimize import linprog


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
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(0.0, power_mw)] * (2 * n), method="highs")
    if res.status != 0:
        raise ValueError(f"arbitrage schedule infeasible or failed: {res.message}")
    c, d = res.x[:n], res.x[n:]
    energy = energy_mwh + np.r_[0.0, np.cumsum(dt_h * (eta_charge * c - d / eta_discharge))]
    return Schedule(c, d, energy, float(-res.fun))
