"""mosaik adapter of the HDF5 recorder: routes each (source entity, attribute) to a dataset."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


@dataclass
class HeldRows:
    """Rows waiting for late values: ``rows`` by step, and per late dataset the first step it has not
    delivered. One for the whole run: rows are held across segments, and a checkpoint keeps them."""

    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    late_from: dict[str, int] = field(default_factory=dict)


class RecorderSim(ShiftedSim):
    """Appends one row per step: ``/time`` plus every routed input.

    ``routes`` maps ``(full source id, attribute)`` to a dataset path; ``on_step(k)`` is called after
    step ``k`` is recorded (the progress bar). An input that comes as a :class:`~cosim.models.adapter.Late`
    holds values of earlier steps: a step's row is held (in ``held``, the run's :class:`HeldRows`) until every
    late dataset has delivered its value for that step, then appended in step order.
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
        held: HeldRows,
        on_step: Callable[[int], None] | None = None,
    ) -> None:
        self.recorder, self.routes, self.held = recorder, routes, held
        self.start_unix_s, self.step_s, self.on_step = start_unix_s, step_s, on_step

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        return [{"eid": "recorder", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        assert self.recorder is not None
        raise_if_stopped()  # a stop signal that landed where Python could not raise it
        k = self.step_index(time, self.step_s)
        held, late_from = self.held.rows, self.held.late_from
        row = held.setdefault(k, {})
        row["time"] = self.start_unix_s + self.time_offset_s + time
        for attr, sources in inputs["recorder"].items():
            for src, value in sources.items():
                path = self.routes[(src, attr)]
                if not isinstance(value, Late):
                    row[path] = value
                    if path in late_from:  # late until now (a resume without the worker)
                        late_from[path] = k + 1
                    continue
                late_from.setdefault(path, k)
                for j, v in value.values:
                    held.setdefault(j, {})[path] = v
                    late_from[path] = j + 1
        whole = min(late_from.values(), default=k + 1)  # rows before it have every value
        for j in sorted(j for j in held if j < whole):
            self.recorder.append(held.pop(j))
            if self.on_step is not None:
                self.on_step(j)
        return time + self.step_s

    def get_data(self, outputs: dict[str, list[str]]) -> dict[str, Any]:
        return {}
