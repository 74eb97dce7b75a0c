"""Data every market design shares: one interval's bids and offers, and its clearing.

Quantities are MW held for the interval, prices $/MWh, so welfare and cost are $/h.
Each demand step buys up to ``demand_mw`` at up to ``demand_price``; each supply step sells between
``supply_min_mw`` and ``supply_max_mw`` at a cost of ``supply_price * s + supply_c2 * s**2`` $/h (the
variable cost a design minimises), plus the constant ``supply_c0`` $/h of its cost curve while it is
committed (offered at all in the interval: ``supply_max_mw > 0``), as MATPOWER counts the constant term of
every on-line generator whatever its dispatch (:func:`fixed_cost`).
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
    supply_c0: FloatArray | None = None  # (n_s,) $/h, constant cost while committed, default 0
    demand_q_ratio: FloatArray | None = None  # (n_d,) Mvar/MW of each demand step (acopf), default its own

    def __post_init__(self) -> None:
        n_s = len(self.supply_bus)
        for name in ("supply_min_mw", "supply_c2", "supply_c0"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(n_s))


def fixed_cost(bids: Bids) -> float:
    """$/h of the constant cost terms of the committed supply steps (those with ``supply_max_mw > 0``)."""
    committed = np.asarray(bids.supply_max_mw, dtype=float) > 0.0
    return float(np.sum(np.asarray(bids.supply_c0, dtype=float)[committed]))


@dataclass(frozen=True)
class Clearing:
    """One interval's market result."""

    price_per_mwh: FloatArray  # (n_bus,) marginal price of energy per bus (uniform: one value repeated)
    demand_mw: FloatArray  # (n_d,) cleared demand per step
    supply_mw: FloatArray  # (n_s,) cleared supply per step
    welfare: float  # $/h, sum(demand_price * d) - generation cost
    cost: float  # $/h, variable generation cost of the dispatch (no constant terms: see fixed_cost)
    congestion_rent: float  # $/h, sum over buses of price * (demand - supply) at that bus
    line_flow_mw: FloatArray  # (n_branch,) DC flows from-bus -> to-bus (uniform: empty)
    status: str  # "optimal", or the solver's word for what went wrong
    price_q_per_mvarh: FloatArray | None = None  # (n_bus,) reactive marginal price (acopf only)
    vm_pu: FloatArray | None = None  # (n_bus,) voltage magnitude of the OPF's solution (acopf only)
    q_mvar: FloatArray | None = None  # (n_bus,) reactive power dispatched per bus, + = injection (acopf)


TOL_MW = 1e-6  # a step is "accepted" above, "rejected" below this many MW from its bounds


def clearing_price_interval(bids: Bids, demand_mw: np.ndarray, supply_mw: np.ndarray) -> tuple[float, float]:
    """The interval [lo, hi] of prices that support a copper-plate dispatch as a market equilibrium.

    lo = max(marginal cost of every supply step sold above its minimum, bid of every demand step not
    fully served); hi = min(marginal cost of every supply step sold below its maximum, bid of every
    demand step served at all). The marginal cost of a step is ``supply_price + 2*supply_c2*s``.
    A partially cleared step lies in both sets, so its price pins the interval to a point.
    Empty sets give -inf / +inf.
    """
    d, s = np.asarray(demand_mw, dtype=float), np.asarray(supply_mw, dtype=float)
    p_d = np.asarray(bids.demand_price, dtype=float)
    mc = np.asarray(bids.supply_price, dtype=float) + 2.0 * np.asarray(bids.supply_c2, dtype=float) * s
    d_max = np.asarray(bids.demand_mw, dtype=float)
    s_min = np.asarray(bids.supply_min_mw, dtype=float)
    s_max = np.asarray(bids.supply_max_mw, dtype=float)
    lo_set = np.r_[mc[s > s_min + TOL_MW], p_d[d < d_max - TOL_MW]]
    hi_set = np.r_[mc[s < s_max - TOL_MW], p_d[d > TOL_MW]]
    lo = float(lo_set.max()) if len(lo_set) else -np.inf
    hi = float(hi_set.min()) if len(hi_set) else np.inf
    return lo, hi
