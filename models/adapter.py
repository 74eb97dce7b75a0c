"""The base of the mosaik adapters: the parameters they share, their outputs, and plain data on the wire.

mosaik always starts its clock at 0. A run resumed from a checkpoint at step ``k0`` (and each segment
between two checkpoints) runs mosaik for the remaining steps, and every adapter adds ``time_offset_s``
(``k0 * step_s``) to mosaik's time to find the scenario's step.

An adapter keeps its latest outputs in ``_out``; the outputs named in ``wire_outputs`` go to a simulator in
another process and leave encoded as plain JSON data (`cosim.wire`); an adapter decodes its inputs unless
the world says none can be encoded (``wire_inputs=False``: no simulator runs in another process), so the
same adapter runs in the world's process or in its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import Meta

from cosim.wire import decode, encode


@dataclass
class SolverStats:
    """Counters the adapter keeps for the run summary."""

    solver_s: float = 0.0
    n_not_converged: int = 0
    wait_s: float = 0.0  # the world's time waiting for a model running in a worker process


@dataclass(frozen=True)
class Late:
    """An output's values for steps before the current one, ``[(step, value), ...]`` in step order, from a
    model running a step behind the world (`cosim.models.ledger.worker`): the recorder writes each value
    at its own step."""

    values: list[tuple[int, Any]]


class ShiftedSim(mosaik_api_v3.Simulator):
    """A time-based adapter whose mosaik time 0 is the scenario's second ``time_offset_s``.

    Subclasses implement ``setup(**params)`` (their own parameters) and ``advance(time, inputs)`` (a step on
    decoded inputs), and keep their outputs in ``_out``.
    """

    time_offset_s: int = 0
    wire_outputs: frozenset[str] = frozenset()
    wire_all: bool = False  # in a process of its own: every output leaves as plain data
    wire_inputs: bool = True  # inputs may come as plain data from another process: decode them
    _out: dict[str, Any]

    def init(  # type: ignore[override]
        self,
        sid: str,
        time_resolution: float = 1.0,
        *,
        time_offset_s: int = 0,
        wire_outputs: Iterable[str] = (),
        wire_inputs: bool = True,
        **params: Any,
    ) -> Meta:
        self.time_offset_s, self.wire_outputs = int(time_offset_s), frozenset(wire_outputs)
        self.wire_inputs = wire_inputs
        self._out = {}
        self.setup(**params)
        return self.meta

    def setup(self, **params: Any) -> None:
        """Take the adapter's own parameters."""

    def step(self, time: int, inputs: dict[str, Any], max_advance: int) -> int:
        return self.advance(time, decode(inputs) if self.wire_inputs else inputs)

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        """One step on decoded inputs; returns the time of the next step."""
        raise NotImplementedError

    def output(self, attr: str) -> Any:
        """The latest value of an output attribute."""
        return self._out[attr]

    def get_data(self, outputs: dict[str, list[str]]) -> dict[str, Any]:
        return {
            eid: {
                a: encode(self.output(a)) if self.wire_all or a in self.wire_outputs else self.output(a)
                for a in attrs
            }
            for eid, attrs in outputs.items()
        }

    def step_index(self, time: int, step_s: int) -> int:
        """The scenario step of mosaik time ``time``."""
        return (time + self.time_offset_s) // step_s
