"""Posted-price baselines: the tariff clock, demand-response adders and price-taking response."""

from __future__ import annotations

import datetime as dt

import numpy as np

from cosim.models.market.clearing import Bids
from cosim.models.market.tariff import PostedPrice, posted_price

DAY = int(dt.datetime(2016, 7, 1, tzinfo=dt.UTC).timestamp())


def test_tariff_periods_and_event_adder() -> None:
    """Each hour takes the price of the period it falls in; an event adds its adder only inside it."""
    times = DAY + 3600 * np.arange(48)
    tariff = [(0.0, 100.0), (7.0, 250.0), (20.0, 150.0)]
    event = (DAY + 17 * 3600, DAY + 19 * 3600, 500.0)
    price = posted_price(times, tariff, [event])
    assert list(price[[0, 6, 7, 18, 19, 20, 23, 24]]) == [100, 100, 250, 750, 250, 150, 150, 100]
    assert price[17] == price[18] == 750 and price[17 + 24] == 250


def test_price_takers_respond_and_upstream_balances() -> None:
    """Bids at or above the price are served, offers at or below it run, and the grid takes the rest."""
    bids = Bids(
        demand_bus=np.zeros(4, np.int64),
        demand_mw=np.array([5.0, 2.0, 2.0, 100.0]),  # inelastic, two elastic steps, upstream export
        demand_price=np.array([3000.0, 250.0, 90.0, 30.0]),
        supply_bus=np.zeros(2, np.int64),
        supply_max_mw=np.array([3.0, 100.0]),  # PV, upstream import
        supply_price=np.array([0.0, 80.0]),
    )
    taker = PostedPrice(np.array([False, False, False, True]), np.array([False, True]))
    peak = taker.clear(bids, 200.0, n_bus=3)
    assert list(peak.demand_mw) == [5.0, 2.0, 0.0, 0.0] and list(peak.supply_mw) == [3.0, 4.0]
    night = taker.clear(bids, 50.0, n_bus=3)
    assert list(night.demand_mw[:3]) == [5.0, 2.0, 2.0] and night.supply_mw[1] == 6.0
    assert peak.status == night.status == "optimal" and np.all(peak.price_per_mwh == 200.0)
