"""mosaik adapter of the agent fleet: one entity ``fleet`` whose attributes are arrays over agents."""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.agents.fleet import Fleet

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Fleet": {
            "public": True,
            "params": [],
            "attrs": ["p_mw", "q_mvar", "soc_mwh"],
        }
    },
}


class AgentsSim(mosaik_api_v3.Simulator):
    """Steps the :class:`Fleet` once per scenario step and publishes its set-points."""

    def __init__(self) -> None:
        super().__init__(META)
        self.fleet: Fleet | None = None
        self._out: dict[str, Any] = {}

    def init(self, sid: str, time_resolution: float = 1.0, *, fleet: Fleet) -> Meta:  # type: ignore[override]
        self.fleet = fleet
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1 or self._out:
            raise ValueError("AgentsSim holds exactly one Fleet entity")
        return [{"eid": "fleet", "type": model}]

    def step(self, time: int, inputs: dict[str, Any], max_advance: int) -> int:
        assert self.fleet is not None
        setpoints = self.fleet.step(time // self.fleet.step_s)
        self._out = {"p_mw": setpoints.p_mw, "q_mvar": setpoints.q_mvar, "soc_mwh": setpoints.soc_mwh}
        return time + self.fleet.step_s

    def get_data(self, outputs: dict[str, list[str]]) -> dict[str, Any]:
        return {eid: {attr: self._out[attr] for attr in attrs} for eid, attrs in outputs.items()}
