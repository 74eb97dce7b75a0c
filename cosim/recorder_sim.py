"""mosaik adapter of the HDF5 recorder: routes each (source entity, attribute) to a dataset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.adapter import ShiftedSim
from cosim.recorder import H5Recorder

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Recorder": {"public": True, "params": [], "attrs": [], "any_inputs": True}},
}


class RecorderSim(ShiftedSim):
    """Appends one row per step: ``/time`` plus every routed input.

    ``routes`` maps ``(full source id, attribute)`` to a dataset path; ``on_step(k)`` is called after
    step ``k`` is recorded (the progress bar).
    """

    def __init__(self) -> None:
        super().__init__(META)
        self.recorder: H5Recorder | None = None

    def setup(  # type: ignore[override]
        self,
        *,
        recorder: H5Recorder,
        routes: dict[tuple[str, str], str],
        start_unix_s: int,
        step_s: int,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        self.recorder, self.routes = recorder, routes
        self.start_unix_s, self.step_s, self.on_step = start_unix_s, step_s, on_step

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        return [{"eid": "recorder", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        assert self.recorder is not None
        row: dict[str, Any] = {"time": self.start_unix_s + self.time_offset_s + time}
        for attr, sources in inputs["recorder"].items():
            for src, value in sources.items():
                row[self.routes[(src, attr)]] = value
        self.recorder.append(row)
        if self.on_step is not None:
            self.on_step(self.step_index(time, self.step_s))
        return time + self.step_s

    def get_data(self, outputs: dict[str, list[str]]) -> dict[str, Any]:
        return {}
