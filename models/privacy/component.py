"""The privacy component: differentially private release of the agents' metered consumption."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cosim.component import Component, Contract, Link, rng_for
from cosim.models.grid.network import element_names
from cosim.recorder import Series
from cosim.scenario import Scenario
from cosim.units import UDUNITS

COLUMNS = "privacy/series_name"
ERRORS = ("mae_consumption_mwh", "relative_error_consumption", "mae_count", "relative_error_count")


def steps_per_release(scenario: Scenario) -> int:
    """Steps in one release period of the private release (``privacy.release_every``)."""
    assert scenario.privacy is not None
    return 1 if scenario.privacy.release_every == "step" else 86400 // scenario.time.step_s


def build_release(scenario: Scenario, net: Any, fleet: Any) -> tuple[Any, np.ndarray]:
    """The private release of the scenario (groups: the agents' buses) and the names of its series."""
    from cosim.models.privacy.release import PrivateRelease

    cfg = scenario.privacy
    assert cfg is not None
    where = fleet.table.bus if cfg.group_by == "bus" else np.zeros(len(fleet.table), dtype=np.int64)
    buses, groups = np.unique(where, return_inverse=True)
    mwh_per_kw = steps_per_release(scenario) * scenario.time.step_s / 3600.0 / 1000.0  # kW over a period
    release = PrivateRelease(
        groups.astype(np.int64),
        cfg.declared_max_kw * mwh_per_kw,
        cfg.epsilon,
        cfg.budget,
        cfg.mechanism,
        cfg.delta,
        budget_delta=cfg.budget_delta,
        sum_share=cfg.sum_share,
        active_threshold_mwh=cfg.active_threshold_kw * mwh_per_kw,
        composition=cfg.composition,
        sum_method=cfg.sum_method,
        noise=cfg.noise,
        rng=rng_for(scenario.seed, "privacy") if cfg.noise == "seeded" else None,
    )
    bus_names = np.asarray(element_names(net.bus, "bus"))[net.bus.index.get_indexer(buses)]
    bus_names = bus_names if cfg.group_by == "bus" else np.array(["grid"])
    names = [f"{b} consumption_mwh" for b in bus_names] + [f"{b} active_count" for b in bus_names]
    return release, np.array(names)


class Privacy(Component):
    """Releases noisy per-bus consumption sums and active counts within a privacy budget."""

    name, sim, sim_name, entity = "privacy", "cosim.models.privacy.sim:PrivacySim", "Privacy", "Privacy"
    state_attrs = ("release", "errors")

    def __init__(self, scenario: Scenario, built: dict[str, Any]) -> None:
        agents = built["agents"]
        self.cfg, self.step_s = scenario.privacy, scenario.time.step_s
        assert self.cfg is not None
        self.release, self.names = build_release(scenario, agents.net, agents.fleet)
        self.per_release = steps_per_release(scenario)
        # evaluated: each release's (sum MAE MWh, sum relative error, count MAE, count relative error)
        self.errors: list[tuple[float, float, float, float]] | None = [] if self.cfg.evaluate else None

    def contract(self, groups: Iterable[str]) -> Contract:
        cfg, names = self.cfg, self.names
        assert cfg is not None
        if "privacy" not in set(groups):
            return Contract()
        n, unit = len(names), "per column: privacy/series_units"
        series = [
            Series(
                "privacy/released",
                unit,
                np.float64,
                n,
                "noisy per-bus sums and active counts (NaN: refused)",
                COLUMNS,
            ),
            Series("privacy/epsilon_spent", "1", np.float64, None, "epsilon spent so far (cumulative)"),
            Series("privacy/refused", "1", np.bool_, None, "the release would have exceeded the budget"),
        ]
        if cfg.evaluate:
            series.append(Series("privacy/true", unit, np.float64, n, "true aggregates", COLUMNS))
        attrs = {
            "privacy/epsilon": cfg.epsilon,
            "privacy/budget": cfg.budget,
            "privacy/mechanism": cfg.mechanism,
            "privacy/delta": cfg.delta,
            "privacy/composition": cfg.composition,
            "privacy/declared_max_kw": cfg.declared_max_kw,
            "privacy/noise": cfg.noise,
        }
        per_column = np.array([UDUNITS["MWh" if n.endswith("_mwh") else "1"] for n in names])
        return Contract(
            series=series,
            static={COLUMNS: (names, ""), "privacy/series_units": (per_column, "")},
            routes={s.path.split("/")[1]: s.path for s in series},
            attrs=attrs,
            labels={COLUMNS: "series"},
        )

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        return {
            "release": self.release,
            "step_s": self.step_s,
            "errors": self.errors,
            "steps_per_release": self.per_release,
            "time_offset_s": offset_s,
            "carry": carry,
        }

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        return [Link("agents", ("p_mw",))]

    def finish(self, groups: Iterable[str]) -> Contract:
        """Refusals, the budget spent and, when evaluated, the mean errors of the releases."""
        if "privacy" not in set(groups):
            return Contract()
        attrs: dict[str, Any] = {
            "privacy/n_refused": self.release.n_refused,
            "privacy/epsilon_spent": self.release.accountant.epsilon_spent,
        }
        if self.errors is not None:  # NaN before the first release
            mean = np.nanmean(np.asarray(self.errors), axis=0) if self.errors else np.full(4, np.nan)
            attrs |= {f"privacy/{k}": float(v) for k, v in zip(ERRORS, mean, strict=True)}
        return Contract(attrs=attrs)

    def warnings(self) -> list[str]:
        n = int(self.release.n_refused or 0)
        return [f"{n} private release(s) refused: the privacy budget was spent"] if n else []


def build(scenario: Scenario, built: dict[str, Any]) -> Privacy | None:
    """The private release, or None without a privacy section or a grid."""
    return None if scenario.privacy is None or "agents" not in built else Privacy(scenario, built)
