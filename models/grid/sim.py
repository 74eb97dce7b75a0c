"""mosaik adapter of the AC power flow: one entity ``grid`` taking agent arrays, giving grid arrays.

With events (an `EventSchedule`) the power flow is a `SwitchingPowerFlow` solved in each step's topology.
Optional inputs ``vm_set_pu`` and ``q_set_mvar`` (per bus, e.g. from an AC-OPF market) set the voltage of
the voltage-controlled buses and add reactive injections at the others (see `ACPowerFlow.solve`).
"""

from __future__ import annotations

import time as wallclock
from typing import Any

import numpy as np
from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.adapter import ShiftedSim, SolverStats
from cosim.models.grid.events import EventSchedule
from cosim.models.grid.powerflow import ACPowerFlow, Limits, PowerFlowResult
from cosim.models.grid.switching import SwitchingPowerFlow

OUTPUTS = (
    "vm_pu",
    "va_degree",
    "line_loading_percent",
    "trafo_loading_percent",
    "losses_mw",
    "import_mw",
    "converged",
    "n_voltage_violations",
    "n_overloads",
    "islanded",
    "grid_forming_mw",
)
META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Grid": {
            "public": True,
            "params": [],
            "attrs": ["p_mw", "q_mvar", "vm_set_pu", "q_set_mvar", *OUTPUTS],
        },
    },
}


def _optional(inputs: dict[str, Any], attr: str) -> np.ndarray | None:
    """The one value of an optional input attribute as an array, or None when not connected."""
    got = inputs.get(attr)
    return np.asarray(next(iter(got.values())), dtype=float) if got else None


class GridSim(ShiftedSim):
    """Runs one AC power flow per step on the agents' set-points (load convention)."""

    def __init__(self) -> None:
        super().__init__(META)
        self.power_flow: ACPowerFlow | SwitchingPowerFlow | None = None
        self.step_s = 0
        self.result: PowerFlowResult | None = None
        self.stats = SolverStats()

    def setup(  # type: ignore[override]
        self,
        *,
        power_flow: ACPowerFlow | SwitchingPowerFlow,
        step_s: int,
        stats: SolverStats | None = None,
        events: EventSchedule | None = None,
        carry: dict[str, Any] | None = None,
    ) -> None:
        self.power_flow, self.step_s, self.events = power_flow, step_s, events
        self.carry = carry if carry is not None else {}
        self.islanded = False
        self.limits = Limits.of(power_flow.net)
        self.stats = stats if stats is not None else SolverStats()

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1 or self.result is not None:
            raise ValueError("GridSim holds exactly one Grid entity")
        return [{"eid": "grid", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        assert self.power_flow is not None
        (p_mw,) = inputs["grid"]["p_mw"].values()
        (q_mvar,) = inputs["grid"]["q_mvar"].values()
        vm_set, q_set = (_optional(inputs["grid"], attr) for attr in ("vm_set_pu", "q_set_mvar"))
        t0 = wallclock.perf_counter()
        if self.events is None:
            self.result = self.power_flow.solve(np.asarray(p_mw), np.asarray(q_mvar), vm_set, q_set)
        else:
            assert isinstance(self.power_flow, SwitchingPowerFlow)
            state = self.events.state(self.step_index(time, self.step_s))
            self.islanded = state.islanded
            self.result = self.power_flow.solve(
                np.asarray(p_mw), np.asarray(q_mvar), out_branches=state.out_branches,
                grid_forming=state.grid_forming, vm_set_pu=vm_set, q_set_mvar=q_set,
            )  # fmt: skip
        self.stats.solver_s += wallclock.perf_counter() - t0
        self.stats.n_not_converged += not self.result.converged
        self.n_violations = self.limits.violations(self.result)
        if self.events is not None:  # what the time-shifted connection to the agents carries
            self.carry["grid_forming_mw"] = self.result.grid_forming_mw
        return time + self.step_s

    def output(self, attr: str) -> Any:
        assert self.result is not None
        if attr in ("n_voltage_violations", "n_overloads"):
            return self.n_violations[attr == "n_overloads"]
        return self.islanded if attr == "islanded" else getattr(self.result, attr)
