"""mosaik adapter of the private release: the agents' metered consumption in, noisy aggregates out."""

from __future__ import annotations

from typing import Any

import numpy as np
from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.adapter import ShiftedSim
from cosim.models.privacy.release import PrivateRelease

OUTPUTS = ("released", "true", "epsilon_spent", "refused")
META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Privacy": {"public": True, "params": [], "attrs": ["p_mw", *OUTPUTS, "summary"]}},
}


class PrivacySim(ShiftedSim):
    """Releases each period's per-group consumption sums and active counts, or NaN when the budget refuses.

    A period is ``steps_per_release`` steps (1: every step); its release comes with its last step, the
    other steps give NaN.

    Only the released (noisy) values leave this simulator, and ``true`` when the study evaluates the
    release; ``errors`` (a list the caller keeps) collects each release's error metrics
    ``(sum MAE MWh, sum relative error, count MAE, count relative error)``. In a process of its own the
    adapter gets plain parameters, ``scenario`` (the validated scenario as JSON data) and ``groups`` (the
    group of every agent), and builds the very release the world would. ``summary`` reports refusals, the
    budget spent and the mean errors.
    """

    def __init__(self) -> None:
        super().__init__(META)
        self._out: dict[str, Any] = {}

    def setup(  # type: ignore[override]
        self,
        *,
        step_s: int,
        release: PrivateRelease | None = None,
        scenario: dict[str, Any] | None = None,
        groups: list[int] | None = None,
        evaluate: bool = False,
        errors: list[tuple[float, float, float, float]] | None = None,
        steps_per_release: int = 1,
        carry: dict[str, Any] | None = None,
    ) -> None:
        if release is None:  # out of process: build it here
            from cosim.models.privacy.component import build_release
            from cosim.scenario import Scenario

            release = build_release(Scenario.model_validate(scenario), np.asarray(groups, dtype=np.int64))
            errors = [] if evaluate else None
        self.release, self.step_s, self.dt_h = release, step_s, step_s / 3600.0
        self.errors, self.evaluate = errors, errors is not None
        self.per_release = int(steps_per_release)
        self.carry = carry if carry is not None else {}
        # consumption of the period so far, MWh per agent (carried across segments and checkpoints)
        self._energy: np.ndarray | None = self.carry.get("privacy_energy_mwh")

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("PrivacySim holds exactly one Privacy entity")
        return [{"eid": "privacy", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        (p_mw,) = inputs["privacy"]["p_mw"].values()
        # each step's consumption (no negative: an injection is not consumption), summed over the period
        step_mwh = np.clip(np.asarray(p_mw, dtype=float), 0.0, None) * self.dt_h
        self._energy = step_mwh if self._energy is None else self._energy + step_mwh
        self.carry["privacy_energy_mwh"] = self._energy
        n = self.release.n_group
        if (
            self.step_index(time, self.step_s) + 1
        ) % self.per_release:  # the period goes on: nothing released yet
            spent = self.release.accountant.epsilon_spent
            nan = np.full(2 * n, np.nan)
            self._out = {"released": nan, "true": nan, "epsilon_spent": spent, "refused": False}
            return time + self.step_s
        consumption_mwh, self._energy = self._energy, None  # clipped to [0, declared] inside
        self.carry["privacy_energy_mwh"] = None
        result = self.release.release(consumption_mwh)
        true = np.full(2 * n, np.nan)
        if self.evaluate:
            sums, counts = self.release.true_aggregates(consumption_mwh)
            true = np.r_[sums, counts]
        if result is None:
            released = np.full(2 * n, np.nan)
        else:
            released = np.r_[result.sums_mwh, result.counts]
            if self.errors is not None:
                e = result.error_metrics(sums, counts)
                self.errors.append((e.sum_mae_mwh, e.sum_relative_error, e.count_mae, e.count_relative_error))
        spent = self.release.accountant.epsilon_spent
        self._out = {"released": released, "true": true, "epsilon_spent": spent, "refused": result is None}
        return time + self.step_s

    def output(self, attr: str) -> Any:
        if attr != "summary":
            return self._out[attr]
        mean = None
        if self.errors is not None:  # NaN before the first release
            mean = np.nanmean(np.asarray(self.errors), axis=0).tolist() if self.errors else [np.nan] * 4
        return {
            "n_refused": self.release.n_refused, "epsilon_spent": self.release.accountant.epsilon_spent,
            "mean_errors": mean,
        }  # fmt: skip
