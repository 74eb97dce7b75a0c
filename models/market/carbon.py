"""A carbon price on the market's bids: a cost adder per MWh of each step's emission factor.

Market-side on purpose: the market applies it to the offers it clears, and the emissions accounting
(``cosim.models.accounting``), which depends on the market, only supplies the factors (kg CO2/MWh).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from cosim.models.market.clearing import Bids

__all__ = ["KG_PER_T", "carbon_priced"]

KG_PER_T = 1000.0


def carbon_priced(
    bids: Bids,
    supply_kg_per_mwh: np.ndarray,
    carbon_price_per_t: float,
    demand_kg_per_mwh: np.ndarray | None = None,
) -> Bids:
    """The bids with a carbon price as a cost adder: ``price + factor * carbon_price_per_t / 1000``.

    Supply prices rise by ``f * cp / 1000`` $/MWh; demand prices fall by ``g * cp / 1000`` (the export
    step, ``g < 0``, then values exporting more, as it displaces upstream generation). Give the factors
    the clearing should respond to (``IntervalFactors.supply_marginal_kg_per_mwh`` and
    ``demand_marginal_kg_per_mwh`` of the emissions accounting, at a forecast import for a stack).
    """
    adder = float(carbon_price_per_t) / KG_PER_T
    demand_price = np.asarray(bids.demand_price, dtype=float)
    if demand_kg_per_mwh is not None:
        demand_price = demand_price - np.asarray(demand_kg_per_mwh, dtype=float) * adder
    return dataclasses.replace(
        bids,
        supply_price=np.asarray(bids.supply_price, dtype=float) + np.asarray(supply_kg_per_mwh) * adder,
        demand_price=demand_price,
    )
