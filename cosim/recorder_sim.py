"""mosaik adapter of the HDF5 recorder: routes each (source entity, attribute) to a dataset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.adapter import Late, ShiftedSim
from cosim.recorder import H5Recorder
from cosim.runguard import raise_if_stopped

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Recorder": {"public": True, "params": [], "attrs": [], "any_inputs": True}},
}


class RecorderSim(ShiftedSim):
    """Appends one row per step: ``/time`` plus every routed input.

    ``routes`` maps ``(full source id, attribute)`` to a dataset path; ``on_step(k)`` is called after
    step ``k`` is recorded (the progress bar). An input that comes as a :class:`~cosim.models.adapter.Late`
    holds values of earlier steps: a step's row is held until every late dataset has delivered its value
    for that step (the last step of a segment has them all: nothing is held across a checkpoint).
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
        self._held: dict[int, dict[str, Any]] = {}  # rows waiting for late values, by step
        self._late_from: dict[str, int] = {}  # late dataset -> first step it has not delivered

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        return [{"eid": "recorder", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        assert self.recorder is not None
        raise_if_stopped()  # a stop signal that landed where Python could not raise it
        k = self.step_index(time, self.step_s)
        row = self._held.setdefault(k, {})
        row["time"] = self.start_unix_s + self.time_offset_s + time
        for attr, sources in inputs["recorder"].items():
            for src, value in sources.items():
                path = self.routes[(src, attr)]
                if not isinstance(value, Late):
                    row[path] = value
                    continue
                self._late_from.setdefault(path, k)
                for j, v in value.values:
                    self._held.setdefault(j, {})[path] = v
                    self._late_from[path] = j + 1
        whole = min(self._late_from.values(), default=k + 1)  # rows before it have every value
        for j in sorted(j for j in self._held if j < whole):
            self.recorder.append(self._held.pop(j))
            if self.on_step is not None:
                self.on_step(j)
        return time + self.step_s

    def get_data(self, outputs: dict[str, list[str]]) -> dict[str, Any]:
        return {}
