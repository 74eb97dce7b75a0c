"""Transactive-energy co-simulation platform: ``load_scenario``, ``run``, ``open_results``."""

from cosim.errors import CosimError, ModelNotConverged, ResultsError, ScenarioError
from cosim.results import Results, open_results
from cosim.scenario import Scenario, load_scenario
from cosim.world import RunSummary, run

__all__ = [
    "CosimError",
    "ModelNotConverged",
    "ResultsError",
    "Results",
    "RunSummary",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "open_results",
    "run",
]
