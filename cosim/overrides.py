"""Command-line overrides of a scenario (--steps/--days, --seed, --out) and what they change."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from cosim.errors import ScenarioError
from cosim.scenario import INT64_MAX, LAST_END, Scenario, memory_problems


def effective(
    scenario: Scenario,
    *,
    steps: int | None = None,
    days: float | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
) -> Scenario:
    """Apply command-line overrides; the result is what the run records as its scenario."""
    update: dict[str, Any] = {}
    if steps is not None or days is not None:
        step_s = scenario.time.step_s
        if days is not None and not math.isfinite(days):
            raise ScenarioError([("--days", f"{days} is not a finite number of days")])
        n = steps if steps is not None else int(round(float(days or 0) * 86400)) // step_s
        if n < 1:
            raise ScenarioError([("--steps/--days", "must give at least one step")])
        end = scenario.time.start.timestamp() + n * step_s
        if end > LAST_END.timestamp():
            raise ScenarioError([("--steps/--days", f"the run would end after {LAST_END:%Y-%m-%d}")])
        update["time"] = scenario.time.model_copy(update={"duration": f"{n * step_s}s", "end": None})
    if seed is not None:
        if not 0 <= seed <= INT64_MAX:
            raise ScenarioError([("--seed", f"must lie in 0 .. {INT64_MAX}")])
        update["seed"] = seed
    if out is not None:
        update["output"] = scenario.output.model_copy(update={"path": Path(out)})
    result = scenario.model_copy(update=update)
    too_big = memory_problems(result)
    if too_big:
        raise ScenarioError([("--steps/--days" if k == "time" else k, m) for k, m in too_big])
    return result


def override_notes(scenario: Scenario, run: Scenario) -> list[str]:
    """What a run's --steps/--days changes that the user should hear: a longer period, events left out."""
    before, after, step_s = scenario.time.n_steps, run.time.n_steps, scenario.time.step_s
    start = scenario.time.start
    if after > before:
        return [
            f"the run is {after} steps long, beyond the scenario's period of {before} step(s) "
            f"(ending {start + dt.timedelta(seconds=before * step_s):%Y-%m-%d %H:%M} UTC)"
        ]
    end = start + dt.timedelta(seconds=after * step_s)
    dated = [(f"events.{i} ({e.kind})", e.start) for i, e in enumerate(scenario.events)]
    if scenario.market is not None:
        dated += [(f"market.dr_events.{i}", e.start) for i, e in enumerate(scenario.market.dr_events)]
    return [
        f"{what} at {when:%Y-%m-%d %H:%M} UTC falls outside the shortened run (ending {end:%Y-%m-%d %H:%M}) "
        "and does not happen"
        for what, when in dated
        if when >= end
    ]
