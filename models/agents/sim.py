"""mosaik adapter of the agent fleet: one entity ``fleet`` whose attributes are arrays over agents.

Without a market the fleet follows its profiles. With one, the fleet gets this step's awards
(``award_mw``, same time) and sends the bids for the next step (``bids``, a time-shifted connection),
so the market clears each interval one step ahead and no same-time loop is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.adapter import ShiftedSim
from cosim.models.agents.arbitrage import ArbitragePlanner
from cosim.models.agents.fleet import Fleet
from cosim.models.grid.events import EventSchedule
from cosim.models.market.bidding import Bidder

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Fleet": {
            "public": True,
            "params": [],
            "attrs": [
                *("p_mw", "q_mvar", "soc_mwh", "award_mw", "price_per_mwh", "bids", "forecast_mw"),
                *("grid_forming_mw", "grid_forming_mwh"),
            ],
        }
    },
}


def next_bids(
    fleet: Fleet,
    bidder: Bidder,
    k: int,
    planner: ArbitragePlanner | None = None,
    events: EventSchedule | None = None,
    strategic: Sequence[Any] = (),
) -> dict[str, Any]:
    """The fleet's bids for step ``k`` from its forecast and its batteries' limits (or arbitrage plans).

    ``strategic`` : bidders (``agents.strategic``) whose ``bid(k, bids)`` replaces their agent's steps.

    Islanded, batteries offer what their limits allow (no plan); a grid-forming battery always keeps its
    reserve off the market.
    Returns ``{"bids": Bids, "forecast_mw": forecast, "grid_forming_mwh": stored}``: what the market
    clears, what the agents do (batteries idle) if the clearing fails, and the energy left to form an island.
    """
    k = min(k, len(fleet.times_s) - 1)
    forecast_mw, forecast_q_mvar = fleet.baseline(k)
    islanded = events is not None and events.state(k).islanded
    prices = None
    if planner is None or islanded:
        charge, discharge = fleet.batteries.limits(fleet.step_s / 3600.0)
    else:
        charge, charge_price, discharge, discharge_price = planner.bids(k)
        prices = charge_price, discharge_price
    if events is not None:
        charge, discharge = _hold_reserve(fleet, events, islanded, charge, discharge)
    bids = bidder.bids(forecast_mw, charge, discharge, *(prices or (None, None)), forecast_q_mvar)
    for s in strategic:
        bids = s.bid(k, bids)
    return {"bids": bids, "forecast_mw": forecast_mw, "grid_forming_mwh": _grid_forming_mwh(fleet, events, k)}


def _grid_forming_mwh(fleet: Fleet, events: EventSchedule | None, k: int) -> float:
    """Energy left above its minimum in the battery forming the island of step ``k`` (inf otherwise)."""
    unit = None if events is None else events.state(k).grid_forming
    if unit is None:
        return np.inf
    batteries = list(fleet.table.where("battery"))
    if unit not in batteries:
        return np.inf
    b, i = fleet.batteries, batteries.index(unit)
    return float(b.soc_mwh[i] - b.soc_min_mwh[i])


def _hold_reserve(
    fleet: Fleet, events: EventSchedule, islanded: bool, charge: np.ndarray, discharge: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Limits with each grid-forming battery's blackstart reserve kept off the market.

    The reserve share of its energy is held at all times (it must be there when the island begins);
    islanded, the same share of its power is kept as headroom for voltage and frequency.
    """
    b, dt_h = fleet.batteries, fleet.step_s / 3600.0
    position = {int(a): i for i, a in enumerate(fleet.table.where("battery"))}
    charge, discharge = charge.copy(), discharge.copy()
    for agent, r in events.reserve_share.items():
        if agent not in position:
            continue  # a generator forms the island: no storage reserve
        i = position[agent]
        spare_mwh = max(0.0, b.soc_mwh[i] - b.soc_min_mwh[i] - r * b.capacity_mwh[i])
        discharge[i] = min(discharge[i], spare_mwh * b.eta_discharge / dt_h)
        if islanded:
            charge[i] = min(charge[i], (1.0 - r) * b.power_mw[i])
            discharge[i] = min(discharge[i], (1.0 - r) * b.power_mw[i])
    return charge, discharge


class AgentsSim(ShiftedSim):
    """Steps the :class:`Fleet` once per scenario step and publishes its set-points (and bids)."""

    def __init__(self) -> None:
        super().__init__(META)
        self.fleet: Fleet | None = None
        self.bidder: Bidder | None = None
        self.planner: ArbitragePlanner | None = None
        self.events: EventSchedule | None = None
        self.strategic: Sequence[Any] = ()
        self._out: dict[str, Any] = {}

    def setup(  # type: ignore[override]
        self,
        *,
        fleet: Fleet,
        bidder: Bidder | None = None,
        planner: ArbitragePlanner | None = None,
        events: EventSchedule | None = None,
        strategic: Sequence[Any] = (),
        carry: dict[str, Any] | None = None,
    ) -> None:
        self.fleet, self.bidder, self.planner, self.events = fleet, bidder, planner, events
        self.strategic = strategic
        self.carry = carry if carry is not None else {}
        self._out = dict(self.carry.get("agents", {}))  # the previous step's outputs, on a resume
        self._created = False

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1 or self._created:
            raise ValueError("AgentsSim holds exactly one Fleet entity")
        self._created = True
        return [{"eid": "fleet", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        fleet = self.fleet
        assert fleet is not None
        k = self.step_index(time, fleet.step_s)
        self._debit_grid_forming(k, inputs.get("fleet", {}).get("grid_forming_mw", {}))
        awards = inputs.get("fleet", {}).get("award_mw", {})
        if self.bidder is None or not awards:
            setpoints = fleet.step(k)
        else:
            (award_mw,) = awards.values()
            setpoints = fleet.step_awarded(k, award_mw)
            (price,) = inputs["fleet"]["price_per_mwh"].values()
            if self.planner is not None:
                self.planner.observe(k, price)
            for s in self.strategic:
                s.settle(k, award_mw, price)
        self._out = {"p_mw": setpoints.p_mw, "q_mvar": setpoints.q_mvar, "soc_mwh": setpoints.soc_mwh}
        if self.bidder is not None:
            self._out |= next_bids(fleet, self.bidder, k + 1, self.planner, self.events, self.strategic)
        self.carry["agents"] = self._out
        return time + fleet.step_s

    def _debit_grid_forming(self, k: int, got: dict[str, Any]) -> None:
        """Islanded in step ``k - 1``, the grid-forming battery delivered what the power flow's slack did
        (its set-point plus losses and mismatch): its energy follows, one step late."""
        fleet = self.fleet
        assert fleet is not None
        if self.events is None or not got or k == 0:
            return
        (delivered_mw,) = got.values()
        unit = self.events.state(k - 1).grid_forming
        batteries = list(fleet.table.where("battery"))
        if unit is None or unit not in batteries or not np.isfinite(delivered_mw):
            return
        i = batteries.index(unit)
        fleet.batteries.debit(i, float(delivered_mw) + float(self._out["p_mw"][unit]), fleet.step_s / 3600.0)
