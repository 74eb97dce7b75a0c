"""The emission factors of the offers and a carbon price on them: a cost adder per MWh of each step's factor.

Market-side on purpose: the market builds the factors of its offers and applies the price where the offers
are made; the emissions accounting (``cosim.models.accounting``), which depends on the market, uses the
same factors (kg CO2/MWh) to account the dispatch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosim.models.market.bidding import UPSTREAM
from cosim.models.market.clearing import Bids

__all__ = [
    "DEMAND_KINDS",
    "KG_PER_T",
    "EmissionFactors",
    "IntervalFactors",
    "StepFactors",
    "UpstreamGrid",
    "carbon_priced",
]

KG_PER_T = 1000.0
DEMAND_KINDS = ("load", "ev")  # agent kinds that consume: no emission factor of their own


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


# ---------------------------------------------------------------------------------------------- factors
@dataclass(frozen=True)
class UpstreamGrid:
    """Emission factor of the upstream grid: constant, one value per interval, or a merit-order stack.

    Build it with :meth:`constant`, :meth:`series` or :meth:`stack`.
    """

    kg_per_mwh: np.ndarray  # constant (1,), series (T,), stack (n_unit,) in merit order
    capacity_mw: np.ndarray | None = None  # stack: (n_unit,) in merit order
    cost_per_mwh: np.ndarray | None = None  # stack: (n_unit,) in merit order
    base_mw: np.ndarray | None = None  # stack: (1,) or (T,) upstream demand served before the import
    cum_mw: np.ndarray | None = field(default=None, repr=False)  # stack: (n_unit + 1,) 0, cumulative MW
    cum_kg_per_h: np.ndarray | None = field(default=None, repr=False)  # stack: emission rate at cum_mw

    @classmethod
    def constant(cls, kg_per_mwh: float) -> UpstreamGrid:
        """The same factor every interval, average and marginal alike."""
        return cls(np.array([float(kg_per_mwh)]))

    @classmethod
    def series(cls, kg_per_mwh: np.ndarray) -> UpstreamGrid:
        """One factor per interval (e.g. hourly), average and marginal alike."""
        return cls(np.asarray(kg_per_mwh, dtype=float).ravel())

    @classmethod
    def stack(
        cls,
        capacity_mw: np.ndarray,
        cost_per_mwh: np.ndarray,
        kg_per_mwh: np.ndarray,
        base_mw: float | np.ndarray = 0.0,
    ) -> UpstreamGrid:
        """A merit-order stack of upstream units, dispatched by cost to ``base_mw`` plus the import.

        Parameters
        ----------
        capacity_mw, cost_per_mwh, kg_per_mwh : (n_unit,) the units (any order; sorted by cost, stable)
        base_mw : the upstream system's own demand, constant or one value per interval
        """
        cap = np.asarray(capacity_mw, dtype=float)
        cost = np.asarray(cost_per_mwh, dtype=float)
        ef = np.asarray(kg_per_mwh, dtype=float)
        if not (cap.shape == cost.shape == ef.shape) or cap.ndim != 1 or len(cap) == 0:
            raise ValueError("capacity_mw, cost_per_mwh and kg_per_mwh must be equal-length 1-d arrays")
        if np.any(cap < 0):
            raise ValueError("capacities must be >= 0")
        order = np.argsort(cost, kind="stable")
        cap, cost, ef = cap[order], cost[order], ef[order]
        return cls(
            ef,
            cap,
            cost,
            np.atleast_1d(np.asarray(base_mw, dtype=float)),
            np.r_[0.0, np.cumsum(cap)],
            np.r_[0.0, np.cumsum(cap * ef)],
        )

    @property
    def kind(self) -> str:
        """``"constant"``, ``"series"`` or ``"stack"``."""
        if self.capacity_mw is not None:
            return "stack"
        return "constant" if len(self.kg_per_mwh) == 1 else "series"

    def _level_mw(self, step: int, import_mw: Any) -> np.ndarray:
        assert self.base_mw is not None
        base = self.base_mw[0 if len(self.base_mw) == 1 else step]
        return base + np.asarray(import_mw, dtype=float)

    def _stack_kg_per_h(self, level_mw: np.ndarray) -> np.ndarray:
        """Emission rate of the stack dispatched to ``level_mw`` (last unit stretched beyond capacity)."""
        assert self.cum_mw is not None and self.cum_kg_per_h is not None
        top = self.cum_mw[-1]
        inside = np.interp(np.clip(level_mw, 0.0, top), self.cum_mw, self.cum_kg_per_h)
        return np.asarray(inside + np.clip(level_mw - top, 0.0, None) * self.kg_per_mwh[-1])

    def marginal_kg_per_mwh(self, step: int, import_mw: Any = 0.0) -> np.ndarray:
        """Factor of the next MWh imported at net import ``import_mw`` (< 0: export) in interval ``step``."""
        if self.kind != "stack":
            value = self.kg_per_mwh[0 if len(self.kg_per_mwh) == 1 else step]
            return np.full(np.shape(import_mw), value)
        assert self.cum_mw is not None
        level = np.clip(self._level_mw(step, import_mw), 0.0, None)
        unit = np.searchsorted(self.cum_mw[1:], level, side="right")
        return np.asarray(self.kg_per_mwh[np.minimum(unit, len(self.kg_per_mwh) - 1)])

    def attributed_kg_per_mwh(self, step: int, import_mw: Any = 0.0) -> np.ndarray:
        """Factor of the energy imported at ``import_mw``: the stack's emissions it causes per MWh.

        ``(E(base + import) - E(base)) / import`` for a stack (either sign of the import), the marginal
        factor as the import goes to zero; the value itself for a constant or a series.
        """
        if self.kind != "stack":
            return self.marginal_kg_per_mwh(step, import_mw)
        imp = np.asarray(import_mw, dtype=float)
        level = self._level_mw(step, imp)
        base = level - imp
        small = np.abs(imp) < 1e-9
        safe = np.where(small, 1.0, imp)
        avg = (self._stack_kg_per_h(level) - self._stack_kg_per_h(base)) / safe
        return np.asarray(np.where(small, self.marginal_kg_per_mwh(step, imp), avg))


def _default_upstream() -> UpstreamGrid:
    return UpstreamGrid.constant(527.0)


@dataclass(frozen=True)
class EmissionFactors:
    """Emission factors per kind of agent and of the upstream grid (defaults: see the module table)."""

    pv_kg_per_mwh: float = 41.0
    sgen_kg_per_mwh: float = 48.0
    gen_kg_per_mwh: float = 490.0
    battery_kg_per_mwh: float = 0.0
    upstream: UpstreamGrid = field(default_factory=_default_upstream)

    def of_kind(self, kind: np.ndarray) -> np.ndarray:
        """(n,) factor of each agent kind (``pv``, ``sgen``, ``gen``, ``battery``; 0 for ``load``, ``ev``).

        Raises
        ------
        ValueError
            for a kind that is none of these.
        """
        kind = np.asarray(kind).astype(str)
        table = {
            "pv": self.pv_kg_per_mwh,
            "sgen": self.sgen_kg_per_mwh,
            "gen": self.gen_kg_per_mwh,
            "battery": self.battery_kg_per_mwh,
            **dict.fromkeys(DEMAND_KINDS, 0.0),
        }
        unknown = sorted(set(kind.tolist()) - set(table))
        if unknown:
            raise ValueError(f"no emission factor for agent kinds {unknown}")
        return np.array([table[k] for k in kind.tolist()], dtype=float)


@dataclass(frozen=True)
class IntervalFactors:
    """The factors of every step in one interval (kg CO2 per MWh of the step's own quantity)."""

    supply_kg_per_mwh: np.ndarray  # (n_s,) for totals: imports at the attributed upstream factor
    supply_marginal_kg_per_mwh: np.ndarray  # (n_s,) for marginal factors and prices: imports at the marginal
    demand_marginal_kg_per_mwh: np.ndarray  # (n_d,) 0, export steps -(marginal upstream factor)
    upstream_marginal_kg_per_mwh: float
    upstream_attributed_kg_per_mwh: float


class StepFactors:
    """Emission factors of a run's fixed step layout (built once; :meth:`at` each interval).

    Parameters
    ----------
    supply_owner, demand_owner : (n_s,), (n_d,) agent position owning each step, ``UPSTREAM`` (-1) for the
        upstream grid (``Bidder.supply_owner``, ``Bidder.demand_owner``)
    agent_kind : (n_agent,) kind of every agent (``AgentTable.kind``)
    factors : per-kind factors and the upstream grid
    agent_kg_per_mwh : (n_agent,) factors per agent, overriding the per-kind ones
    """

    def __init__(
        self,
        supply_owner: np.ndarray,
        demand_owner: np.ndarray,
        agent_kind: np.ndarray,
        factors: EmissionFactors | None = None,
        agent_kg_per_mwh: np.ndarray | None = None,
    ) -> None:
        self.factors = factors if factors is not None else EmissionFactors()
        self.supply_owner = np.asarray(supply_owner, dtype=np.int64)
        self.demand_owner = np.asarray(demand_owner, dtype=np.int64)
        if agent_kg_per_mwh is None:
            self.agent_kg_per_mwh = self.factors.of_kind(agent_kind)
        else:
            self.agent_kg_per_mwh = np.asarray(agent_kg_per_mwh, dtype=float)
        self.upstream_supply = self.supply_owner == UPSTREAM
        self.upstream_demand = self.demand_owner == UPSTREAM
        own = self.agent_kg_per_mwh[np.maximum(self.supply_owner, 0)] if len(self.agent_kg_per_mwh) else 0.0
        self._supply = np.where(self.upstream_supply, np.nan, own)

    @classmethod
    def from_bidder(
        cls,
        bidder: Any,
        agent_kind: np.ndarray,
        factors: EmissionFactors | None = None,
        agent_kg_per_mwh: np.ndarray | None = None,
    ) -> StepFactors:
        """From a ``Bidder``'s step owners."""
        return cls(bidder.supply_owner, bidder.demand_owner, agent_kind, factors, agent_kg_per_mwh)

    def import_mw(self, supply_mw: np.ndarray, demand_mw: np.ndarray) -> float:
        """Net import of a clearing: upstream supply minus upstream (export) demand [MW]."""
        return float(np.sum(supply_mw[self.upstream_supply]) - np.sum(demand_mw[self.upstream_demand]))

    def at(self, step: int, import_mw: float = 0.0) -> IntervalFactors:
        """The factors of interval ``step`` at net import ``import_mw`` (the clearing's, or a forecast)."""
        up = self.factors.upstream
        marginal = float(up.marginal_kg_per_mwh(step, import_mw))
        attributed = float(up.attributed_kg_per_mwh(step, import_mw))
        return IntervalFactors(
            supply_kg_per_mwh=np.where(self.upstream_supply, attributed, self._supply),
            supply_marginal_kg_per_mwh=np.where(self.upstream_supply, marginal, self._supply),
            demand_marginal_kg_per_mwh=np.where(self.upstream_demand, -marginal, 0.0),
            upstream_marginal_kg_per_mwh=marginal,
            upstream_attributed_kg_per_mwh=attributed,
        )

    def seller_kg_per_mwh(self, seller: np.ndarray, factors: IntervalFactors) -> np.ndarray:
        """(n_trade,) factor of each trade's seller (agent position, or ``UPSTREAM``: the marginal factor)."""
        seller = np.asarray(seller, dtype=np.int64)
        own = self.agent_kg_per_mwh[np.maximum(seller, 0)] if len(self.agent_kg_per_mwh) else 0.0
        return np.asarray(
            np.where(seller == UPSTREAM, factors.upstream_marginal_kg_per_mwh, own), dtype=float
        )
