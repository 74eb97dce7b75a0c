"""Data every market design shares: one interval's bids and offers, and its clearing.

Quantities are MW held for the interval, prices $/MWh, so welfare and cost are $/h.
Each demand step buys up to ``demand_mw`` at up to ``demand_price``; each supply step sells between
``supply_min_mw`` and ``supply_max_mw`` at a cost of ``supply_price * s + supply_c2 * s**2`` $/h.
Buses are pandapower bus indices. Who owns which step is kept by the caller (the bidding core).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FloatArray = np.ndarray
IntArray = np.ndarray


@dataclass(frozen=True)
class Bids:
    """One interval's price-quantity steps."""

    demand_bus: IntArray  # (n_d,)
    demand_mw: FloatArray  # (n_d,) >= 0
    demand_price: FloatArray  # (n_d,) $/MWh, willingness to pay
    supply_bus: IntArray  # (n_s,)
    supply_max_mw: FloatArray  # (n_s,) >= supply_min_mw
    supply_price: FloatArray  # (n_s,) $/MWh, linear cost coefficient
    supply_min_mw: FloatArray | None = None  # (n_s,) default 0
    supply_c2: FloatArray | None = None  # (n_s,) $/MW^2h, quadratic cost coefficient, default 0

    def __post_init__(self) -> None:
        n_s = len(self.supply_bus)
        if self.supply_min_mw is None:
            object.__setattr__(self, "supply_min_mw", np.zeros(n_s))
        if self.supply_c2 is None:
            object.__setattr__(self, "supply_c2", np.zeros(n_s))


@dataclass(frozen=True)
class Clearing:
    """One interval's market result."""

    price_per_mwh: FloatArray  # (n_bus,) marginal price of energy per bus (uniform: one value repeated)
    demand_mw: FloatArray  # (n_d,) cleared demand per step
    supply_mw: FloatArray  # (n_s,) cleared supply per step
    welfare: float  # $/h, sum(demand_price * d) - generation cost
    cost: float  # $/h, generation cost of the dispatch
    congestion_rent: float  # $/h, sum over buses of price * (demand - supply) at that bus
    line_flow_mw: FloatArray  # (n_branch,) DC flows from-bus -> to-bus (uniform: empty)
    status: str  # "optimal", or the solver's word for what went wrong
    price_q_per_mvarh: FloatArray | None = None  # (n_bus,) reactive marginal price (acopf only)
