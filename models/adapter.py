"""A base of the mosaik adapters: the time offset of a resumed run.

mosaik always starts its clock at 0. A run resumed from a checkpoint at step ``k0`` (and each segment
between two checkpoints) runs mosaik for the remaining steps, and every adapter adds ``time_offset_s``
(``k0 * step_s``) to mosaik's time to find the scenario's step.
"""

from __future__ import annotations

import mosaik_api_v3


class ShiftedSim(mosaik_api_v3.Simulator):
    """A time-based adapter whose mosaik time 0 is the scenario's second ``time_offset_s``."""

    time_offset_s: int = 0

    def step_index(self, time: int, step_s: int) -> int:
        """The scenario step of mosaik time ``time``."""
        return (time + self.time_offset_s) // step_s
