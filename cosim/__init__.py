"""Transactive-energy co-simulation platform: ``load_scenario``, ``run``, ``open_results``; ``sweep``.

The heavy libraries (pandapower, Pyomo, mosaik, h5py; Dask for studies) load on first use of a name that
needs them, so ``import cosim`` stays fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from cosim.errors import CosimError, ModelNotConverged, ResultsError, ScenarioError

if TYPE_CHECKING:
    from cosim.dask_sweep import load_study, sweep
    from cosim.results import Results, open_results
    from cosim.rl import MarketEnv, MarketParallelEnv
    from cosim.scenario import Scenario, load_scenario
    from cosim.world import RunSummary, run

try:
    __version__ = version("cosim-te")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "Results": "cosim.results",
    "open_results": "cosim.results",
    "Scenario": "cosim.scenario",
    "load_scenario": "cosim.scenario",
    "MarketEnv": "cosim.rl",
    "MarketParallelEnv": "cosim.rl",
    "RunSummary": "cosim.world",
    "run": "cosim.world",
    "sweep": "cosim.dask_sweep",
    "load_study": "cosim.dask_sweep",
}

__all__ = [
    "CosimError",
    "MarketEnv",
    "MarketParallelEnv",
    "ModelNotConverged",
    "ResultsError",
    "Results",
    "RunSummary",
    "Scenario",
    "ScenarioError",
    "__version__",
    "load_scenario",
    "load_study",
    "open_results",
    "run",
    "sweep",
]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (PEP 562)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cosim' has no attribute {name!r}")
