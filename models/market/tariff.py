"""Baselines without a market: agents respond to a posted price (time-of-use tariff, demand response).

No balance is cleared: every participant takes the posted price as given. A demand step is consumed
when its bid is at least the price (so the elastic part of a load is the demand response), a supply
step runs when its offer is at most the price, and the upstream grid supplies or absorbs the rest.
Injections are credited at the same posted price (net metering). Money is $/h, powers MW.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from cosim.models.market.clearing import Bids, Clearing


def posted_price(
    times_s: np.ndarray,
    tariff: list[tuple[float, float]],
    events: list[tuple[int, int, float]] | None = None,
) -> np.ndarray:
    """Price [$/MWh] at each step start: the daily tariff plus the adders of the events under way.

    Parameters
    ----------
    times_s : (T,) Unix seconds of each step start
    tariff : ``(from_hour, price_per_mwh)`` periods in order from hour 0 (UTC)
    events : ``(start_s, end_s, price_adder_per_mwh)``
    """
    hour = (np.asarray(times_s, dtype=np.int64) % 86400) / 3600.0
    starts = np.array([h for h, _ in tariff])
    prices = np.array([p for _, p in tariff])
    price = prices[np.searchsorted(starts, hour, side="right") - 1]
    for start_s, end_s, adder in events or []:
        price = price + adder * ((times_s >= start_s) & (times_s < end_s))
    return price


def utc_seconds(stamp: dt.datetime) -> int:
    """Unix seconds of an aware datetime."""
    return int(stamp.timestamp())


class PostedPrice:
    """Price-taking response to one price for every bus.

    Parameters
    ----------
    upstream_demand, upstream_supply : masks of the upstream grid's steps (they balance the rest)
    """

    def __init__(self, upstream_demand: np.ndarray, upstream_supply: np.ndarray) -> None:
        self.up_d, self.up_s = np.asarray(upstream_demand, bool), np.asarray(upstream_supply, bool)

    def clear(self, bids: Bids, price_per_mwh: float, n_bus: int) -> Clearing:
        """Who consumes and produces at ``price_per_mwh``; the upstream grid takes the difference."""
        assert bids.supply_min_mw is not None and bids.supply_c2 is not None
        d = np.where((bids.demand_price >= price_per_mwh) & ~self.up_d, bids.demand_mw, 0.0)
        s = np.where((bids.supply_price <= price_per_mwh) & ~self.up_s, bids.supply_max_mw, 0.0)
        s = np.maximum(s, np.where(self.up_s, 0.0, bids.supply_min_mw))
        net_mw = d.sum() - s.sum()
        if net_mw > 0 and self.up_s.any():
            s[np.flatnonzero(self.up_s)[0]] = net_mw
        elif net_mw < 0 and self.up_d.any():
            d[np.flatnonzero(self.up_d)[0]] = -net_mw
        cost = float(bids.supply_price @ s + bids.supply_c2 @ s**2)
        return Clearing(
            price_per_mwh=np.full(n_bus, price_per_mwh),
            demand_mw=d,
            supply_mw=s,
            welfare=float(bids.demand_price @ d) - cost,
            cost=cost,
            congestion_rent=0.0,
            line_flow_mw=np.zeros(0),
            status="optimal" if abs(d.sum() - s.sum()) < 1e-9 else "no upstream grid to balance",
        )
