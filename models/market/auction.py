"""Copper-plate uniform-price double auction (no network), built once and re-solved each interval.

Welfare ``sum(demand_price*d) - sum(supply_price*s + supply_c2*s**2)`` is maximised subject to one
balance ``sum(s) == sum(d)``: the Pyomo model of `dcopf` (`WelfareModel`) on a single node, solved
through `solver`.
Quantities MW, prices $/MWh (positive: the marginal value of energy).
"""

from __future__ import annotations

import numpy as np

from cosim.models.market.clearing import Bids, Clearing, clearing_price_interval
from cosim.models.market.dcopf import WelfareModel, _nan_clearing


class UniformAuction:
    """Uniform-price double auction of price-quantity steps.

    Parameters
    ----------
    n_demand, n_supply : numbers of demand and supply steps (fixed for the run)
    time_limit_s : time limit of each solve [s]; reaching it is a failed clearing

    Notes
    -----
    Price (tie rule): the dual of the balance is not unique when the cleared quantity sits exactly on
    a step boundary. The price reported is then the midpoint of the interval of market-clearing
    prices [max(price of the last accepted supply step, highest fully rejected demand bid),
    min(lowest fully rejected supply offer, price of the last accepted demand bid)], computed from
    the solution by `clearing_price_interval`; when a marginal step is partially cleared the interval
    is a point and that step's price is the price. If one end of the interval is unbounded (no
    rejected offer, say), the solver's dual, clipped into the interval, is reported.
    A solver result other than optimal (only possible through ``supply_min_mw``) gives NaN numbers and
    ``status`` set to the solver's termination condition; nothing is raised.
    """

    def __init__(self, n_demand: int, n_supply: int, *, time_limit_s: float | None = None) -> None:
        self.n_demand, self.n_supply = int(n_demand), int(n_supply)
        empty_i, empty_f = np.zeros(0, dtype=np.int64), np.zeros(0)
        self.core = WelfareModel(
            n_node=1,
            demand_node=np.zeros(self.n_demand, dtype=np.int64),
            supply_node=np.zeros(self.n_supply, dtype=np.int64),
            branch_from=empty_i,
            branch_to=empty_i,
            k_mw_per_rad=empty_f,
            shift_rad=empty_f,
            rate_mw=empty_f,
            angle_ref=np.zeros(1, dtype=np.int64),
            time_limit_s=time_limit_s,
        )
        self.last_price_interval: tuple[float, float] = (np.nan, np.nan)

    @property
    def model(self) -> object:
        """The Pyomo model (built once)."""
        return self.core.model

    def clear(self, bids: Bids) -> Clearing:
        """Clear one interval; ``price_per_mwh`` has one element (the caller repeats it per bus)."""
        core = self.core
        core.write(bids)
        if not core.solve():
            return _nan_clearing(1, self.n_demand, self.n_supply, 0, core.status)
        d, s = core.last_d, core.last_s
        lo, hi = clearing_price_interval(bids, d, s)
        self.last_price_interval = (lo, hi)
        if np.isfinite(lo) and np.isfinite(hi):
            price = 0.5 * (lo + hi)
        else:
            price = float(np.clip(core.last_node_duals[0], min(lo, hi), max(lo, hi)))
        cost = float(np.dot(bids.supply_price, s) + np.dot(np.asarray(bids.supply_c2, dtype=float), s * s))
        return Clearing(
            price_per_mwh=np.array([price]),
            demand_mw=d,
            supply_mw=s,
            welfare=float(np.dot(bids.demand_price, d)) - cost,
            cost=cost,
            congestion_rent=0.0,
            line_flow_mw=np.zeros(0),
            status="optimal",
        )
