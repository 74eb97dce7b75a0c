"""The model cores of a scenario built outside a run: for learning environments, benchmarks and tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from cosim.models.agents.component import build_planner
from cosim.models.market.component import build_market
from cosim.scenario import Scenario

__all__ = ["build_market", "build_models", "build_planner"]


def build_models(scenario: Scenario) -> tuple[Any, Any, Any, np.ndarray, Any]:
    """Network, agent fleet and power flow of a scenario, the step start times (Unix s) and its events."""
    from cosim.models.agents.component import Agents
    from cosim.models.grid.component import Grid

    built: dict[str, Any] = {}
    agents = built["agents"] = Agents(scenario, built)
    grid = Grid(scenario, built)
    return agents.net, agents.fleet, grid.power_flow, agents.times_s, grid.events
