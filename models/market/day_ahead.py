"""Design stochastic in the co-simulation: each day cleared ahead against scenarios, settled in real time.

At the first interval of every day the next ``steps_per_day`` intervals are cleared at once by
`StochasticDayAhead`. The uncertain steps are the consumers' demand (loads and EVs) and the output of
PV and static generators; their scenarios are the day's forecast with normal multiplicative errors,
one common error per interval for all PV and one for all load (weather and habits move together),
AR(1) over the day. The forecast itself is the profile that will happen (`baseline`) with an error
drawn the same way, so the realised day looks like one more scenario. Firm steps (generators, the
upstream day-ahead import and export) follow their day-ahead schedule; batteries stay out (the
two-stage model has no state of charge between hours).

In real time (every interval) consumers take what their profile says and PV delivers its profile:
each agent's deviation from its day-ahead schedule is settled with the upstream grid at the
balancing prices (short: buys at ``up_price``, long: sells at ``down_price``). Money is $ per
interval, quantities MW (load convention).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cosim.models.market.bidding import Bidder
from cosim.models.market.clearing import Bids
from cosim.models.market.stochastic import DayClearing, DayScenarios, StochasticDayAhead


@dataclass(frozen=True)
class Interval:
    """One interval of a day-ahead clearing, settled against what happened."""

    day_ahead: DayClearing  # the day's clearing (VSS, EVPI, ... for the report at its first interval)
    hour: int  # position in the day
    bids: Bids  # the day-ahead bids of the interval
    award_mw: np.ndarray  # (n_agent,) what each agent did: realised (uncertain) or scheduled (firm)
    scheduled_mw: np.ndarray  # (n_agent,) day-ahead schedule, load convention
    day_ahead_payment: np.ndarray  # (n_agent,) $ at the day-ahead price
    balancing_payment: np.ndarray  # (n_agent,) $ for the deviation at the balancing prices


class DayAheadMarket:
    """Clears each day ahead against scenarios and settles every interval in real time.

    Parameters
    ----------
    bidder : the run's step layout (batteries must not bid)
    baseline_mw : ``k -> (n_agent,)`` what every agent will do in interval ``k`` (its profile)
    kind : (n_agent,) agent kinds
    steps_per_day, dt_h, n_steps : interval layout and the run's length (a last partial day repeats
        its last interval's profile)
    n_scenarios, pv_error_sd, load_error_sd, error_rho : the scenario model
    up_price_per_mwh, down_price_per_mwh : balancing prices of the upstream grid
    rng : random generator of forecast errors and scenarios
    time_limit_s : wall-clock limit of every solve of a day's clearing [s] (default
        `solver.DEFAULT_TIME_LIMIT_S`); a day that reaches it is a failed clearing
    """

    def __init__(
        self,
        bidder: Bidder,
        baseline_mw: Callable[[int], np.ndarray],
        kind: np.ndarray,
        steps_per_day: int,
        dt_h: float,
        n_steps: int,
        n_scenarios: int,
        pv_error_sd: float,
        load_error_sd: float,
        error_rho: float,
        up_price_per_mwh: float,
        down_price_per_mwh: float,
        rng: np.random.Generator,
        time_limit_s: float | None = None,
    ) -> None:
        self.bidder, self.baseline_mw, self.dt_h = bidder, baseline_mw, dt_h
        self.steps_per_day, self.n_scenarios, self.n_steps = int(steps_per_day), int(n_scenarios), n_steps
        self.sd = np.array([pv_error_sd, load_error_sd])
        self.rho, self.rng = float(error_rho), rng
        self.up, self.down = float(up_price_per_mwh), float(down_price_per_mwh)
        kind = np.asarray(kind).astype(str)
        self.uncertain_agent = np.isin(kind, ("load", "ev", "pv", "sgen"))
        d_own, s_own = bidder.demand_owner, bidder.supply_owner
        self._d_unc = (d_own >= 0) & np.isin(kind[np.maximum(d_own, 0)], ("load", "ev"))
        self._s_unc = (s_own >= 0) & np.isin(kind[np.maximum(s_own, 0)], ("pv", "sgen"))
        self.model = StochasticDayAhead(self.steps_per_day, len(d_own), len(s_own), time_limit_s=time_limit_s)
        self._day: tuple[int, DayClearing, list[Bids]] | None = None

    def _errors(self, n: int) -> np.ndarray:
        """(n, steps_per_day, 2) multiplicative errors of PV and load, AR(1) over the day."""
        z = self.rng.standard_normal((n, self.steps_per_day, 2))
        e = np.empty_like(z)
        e[:, 0] = z[:, 0]
        for t in range(1, self.steps_per_day):
            e[:, t] = self.rho * e[:, t - 1] + np.sqrt(1.0 - self.rho**2) * z[:, t]
        return e * self.sd

    def clear_day(self, k0: int) -> tuple[DayClearing, list[Bids]]:
        """Forecast, scenarios and the stochastic clearing of the day starting at interval ``k0``."""
        steps = np.minimum(k0 + np.arange(self.steps_per_day), self.n_steps - 1)
        truth = np.array([self.baseline_mw(int(k)) for k in steps])  # (T, n_agent)
        factor = 1.0 + self._errors(1 + self.n_scenarios)  # forecast, then the scenarios around it
        forecast = self._scaled(truth, factor[0])
        zero = np.zeros(len(self.bidder.battery_agents))
        bids = [self.bidder.bids(f, zero, zero) for f in forecast]
        d_mw, s_mw = [], []
        for f in factor[1:]:
            scen = self._scaled(forecast, f)
            sb = [self.bidder.bids(x, zero, zero) for x in scen]
            d_mw.append(np.where(self._d_unc, [b.demand_mw for b in sb], np.nan))
            s_mw.append(np.where(self._s_unc, [b.supply_max_mw for b in sb], np.nan))
        p = np.full(self.n_scenarios, 1.0 / self.n_scenarios)
        scenarios = DayScenarios(p, np.array(d_mw), np.array(s_mw))
        return self.model.clear_day(bids, scenarios, self.up, self.down), bids

    def _scaled(self, p_mw: np.ndarray, factor: np.ndarray) -> np.ndarray:
        """(T, n_agent) with generation scaled by the PV factor and consumption by the load factor."""
        unc = self.uncertain_agent
        f = np.where(p_mw < 0.0, factor[:, :1], factor[:, 1:])
        return np.where(unc, p_mw * np.clip(f, 0.0, None), p_mw)

    def interval(self, k: int, realised_mw: np.ndarray) -> Interval:
        """Interval ``k``: clear its day if it starts one, then settle what happened against the schedule."""
        hour = k % self.steps_per_day
        if self._day is None or self._day[0] != k - hour:
            day, bids = self.clear_day(k - hour)
            self._day = (k - hour, day, bids)
        _, day, day_bids = self._day
        b = self.bidder
        n_agent = b.n_agent
        scheduled = np.zeros(n_agent)
        d_ok, s_ok = b.demand_owner >= 0, b.supply_owner >= 0
        np.add.at(scheduled, b.demand_owner[d_ok], day.demand_mw[hour][d_ok])
        np.subtract.at(scheduled, b.supply_owner[s_ok], day.supply_mw[hour][s_ok])
        award = np.where(self.uncertain_agent, realised_mw, scheduled)
        deviation = award - scheduled
        price = float(day.price_per_mwh[hour])
        balancing = (
            np.clip(deviation, 0, None) * self.up - np.clip(-deviation, 0, None) * self.down
        ) * self.dt_h
        return Interval(day, hour, day_bids[hour], award, scheduled, scheduled * price * self.dt_h, balancing)
