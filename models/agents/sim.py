"""mosaik adapter of the agent fleet: one entity ``fleet`` whose attributes are arrays over agents.

Without a market the fleet follows its profiles. With one, the fleet gets this step's awards
(``award_mw``, same time) and sends the bids for the next step (``bids``, a time-shifted connection),
so the market clears each interval one step ahead and no same-time loop is needed.
"""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.agents.arbitrage import ArbitragePlanner
from cosim.models.agents.fleet import Fleet
from cosim.models.market.bidding import Bidder

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Fleet": {
            "public": True,
            "params": [],
            "attrs": ["p_mw", "q_mvar", "soc_mwh", "award_mw", "price_per_mwh", "bids", "forecast_mw"],
        }
    },
}


def next_bids(
    fleet: Fleet, bidder: Bidder, k: int, planner: ArbitragePlanner | None = None
) -> dict[str, Any]:
    """The fleet's bids for step ``k`` from its forecast and its batteries' limits (or arbitrage plans).

    Returns ``{"bids": Bids, "forecast_mw": forecast}``: what the market clears, and what the agents
    do (batteries idle) if the clearing fails.
    """
    k = min(k, len(fleet.times_s) - 1)
    forecast_mw, _ = fleet.baseline(k)
    if planner is None:
        bids = bidder.bids(forecast_mw, *fleet.batteries.limits(fleet.step_s / 3600.0))
    else:
        charge, charge_price, discharge, discharge_price = planner.bids(k)
        bids = bidder.bids(forecast_mw, charge, discharge, charge_price, discharge_price)
    return {"bids": bids, "forecast_mw": forecast_mw}


class AgentsSim(mosaik_api_v3.Simulator):
    """Steps the :class:`Fleet` once per scenario step and publishes its set-points (and bids)."""

    def __init__(self) -> None:
        super().__init__(META)
        self.fleet: Fleet | None = None
        self.bidder: Bidder | None = None
        self.planner: ArbitragePlanner | None = None
        self._out: dict[str, Any] = {}

    def init(  # type: ignore[override]
        self,
        sid: str,
        time_resolution: float = 1.0,
        *,
        fleet: Fleet,
        bidder: Bidder | None = None,
        planner: ArbitragePlanner | None = None,
    ) -> Meta:
        self.fleet, self.bidder, self.planner = fleet, bidder, planner
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1 or self._out:
            raise ValueError("AgentsSim holds exactly one Fleet entity")
        return [{"eid": "fleet", "type": model}]

    def step(self, time: int, inputs: dict[str, Any], max_advance: int) -> int:
        fleet = self.fleet
        assert fleet is not None
        k = time // fleet.step_s
        awards = inputs.get("fleet", {}).get("award_mw", {})
        if self.bidder is None or not awards:
            setpoints = fleet.step(k)
        else:
            (award_mw,) = awards.values()
            setpoints = fleet.step_awarded(k, award_mw)
            if self.planner is not None:
                (price,) = inputs["fleet"]["price_per_mwh"].values()
                self.planner.observe(k, price)
        self._out = {"p_mw": setpoints.p_mw, "q_mvar": setpoints.q_mvar, "soc_mwh": setpoints.soc_mwh}
        if self.bidder is not None:
            self._out |= next_bids(fleet, self.bidder, k + 1, self.planner)
        return time + fleet.step_s

    def get_data(self, outputs: dict[str, list[str]]) -> dict[str, Any]:
        return {eid: {attr: self._out[attr] for attr in attrs} for eid, attrs in outputs.items()}
