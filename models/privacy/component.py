"""The privacy component: differentially private release of the agents' metered consumption."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cosim.component import Component, Contract, Dataset, Link, plain_scenario, rng_for
from cosim.scenario import Scenario
from cosim.units import UDUNITS

COLUMNS = "privacy/series_name"
_MIXED = "per column: privacy/series_units"
DATASETS: tuple[Dataset, ...] = (
    Dataset("privacy/released", _MIXED, "series", "noisy per-bus sums and active counts (NaN: refused)",
            attr="released",
            note="the noisy per-group consumption sums (MWh), then the noisy active counts; NaN rows: "
            "refused by the budget, or inside a period with `release_every: day` (the day's release is on "
            "its last step); the only metered data that leaves the privacy simulator"),
    Dataset("privacy/epsilon_spent", "1", None, "epsilon spent so far (cumulative)", attr="epsilon_spent"),
    Dataset("privacy/refused", "1", None, "the release would have exceeded the budget", np.bool_,
            attr="refused"),
    Dataset("privacy/true", _MIXED, "series", "true aggregates", when="evaluate", attr="true",
            note="clamped"),
    Dataset(COLUMNS, "", "series", "names of the released series", str, kind="static",
            note="`<bus> consumption_mwh`, `<bus> active_count` (`grid` when grouped over the grid)"),
    Dataset("privacy/series_units", "", "series", "the UDUNITS unit of each column of released and true",
            str, kind="static", note="`MW h`, `1`"),
)  # fmt: skip
ERRORS = ("mae_consumption_mwh", "relative_error_consumption", "mae_count", "relative_error_count")


def steps_per_release(scenario: Scenario) -> int:
    """Steps in one release period of the private release (``privacy.release_every``)."""
    assert scenario.privacy is not None
    return 1 if scenario.privacy.release_every == "step" else 86400 // scenario.time.step_s


def groups_and_names(scenario: Scenario, net: Any, fleet: Any) -> tuple[np.ndarray, np.ndarray]:
    """The release group of every agent (its bus, or one group) and the names of the released series."""
    from cosim.models.grid.network import element_names

    cfg = scenario.privacy
    assert cfg is not None
    where = fleet.table.bus if cfg.group_by == "bus" else np.zeros(len(fleet.table), dtype=np.int64)
    buses, groups = np.unique(where, return_inverse=True)
    bus_names = np.asarray(element_names(net.bus, "bus"))[net.bus.index.get_indexer(buses)]
    bus_names = bus_names if cfg.group_by == "bus" else np.array(["grid"])
    names = [f"{b} consumption_mwh" for b in bus_names] + [f"{b} active_count" for b in bus_names]
    return groups.astype(np.int64), np.array(names)


def build_release(scenario: Scenario, groups: np.ndarray) -> Any:
    """The scenario's private release over agents in ``groups``."""
    from cosim.models.privacy.release import PrivateRelease

    cfg = scenario.privacy
    assert cfg is not None
    mwh_per_kw = steps_per_release(scenario) * scenario.time.step_s / 3600.0 / 1000.0  # kW over a period
    return PrivateRelease(
        groups,
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


class Privacy(Component):
    """Releases noisy per-bus consumption sums and active counts within a privacy budget."""

    name, sim, sim_name, entity = "privacy", "cosim.models.privacy.sim:PrivacySim", "Privacy", "Privacy"
    reports = True
    state_attrs = ("release", "errors")

    def __init__(self, scenario: Scenario, built: dict[str, Any]) -> None:
        agents = built["agents"]
        self.scenario, self.cfg, self.step_s = scenario, scenario.privacy, scenario.time.step_s
        assert self.cfg is not None
        self.groups, self.names = groups_and_names(scenario, agents.net, agents.fleet)
        self.release = build_release(scenario, self.groups)
        self.per_release = steps_per_release(scenario)
        # evaluated: each release's (sum MAE MWh, sum relative error, count MAE, count relative error)
        self.errors: list[tuple[float, float, float, float]] | None = [] if self.cfg.evaluate else None

    def contract(self, groups: Iterable[str]) -> Contract:
        cfg, names = self.cfg, self.names
        assert cfg is not None
        if "privacy" not in set(groups):
            return Contract()
        out = Contract(labels={COLUMNS: "series"})
        for row in DATASETS:
            if row.kind == "series" and (row.when != "evaluate" or cfg.evaluate):
                out.record(DATASETS, row.path, len(names) if row.along else None)
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
        out.add_static(DATASETS, {COLUMNS: names, "privacy/series_units": per_column})
        out.attrs = attrs
        return out

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        return {
            "release": self.release,
            "step_s": self.step_s,
            "errors": self.errors,
            "steps_per_release": self.per_release,
            "time_offset_s": offset_s,
            "carry": carry,
        }

    def plain_params(self, offset_s: int) -> dict[str, Any]:
        return {
            "scenario": plain_scenario(self.scenario), "groups": self.groups.tolist(),
            "evaluate": self.errors is not None, "step_s": self.step_s, "steps_per_release": self.per_release,
            "time_offset_s": offset_s,
        }  # fmt: skip

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        return [Link("agents", ("p_mw",))]

    def finish(self, groups: Iterable[str]) -> Contract:
        """Refusals, the budget spent and, when evaluated, the mean errors of the releases."""
        if "privacy" not in set(groups):
            return Contract()
        summary = self.summary
        attrs = {"privacy/n_refused": summary["n_refused"], "privacy/epsilon_spent": summary["epsilon_spent"]}
        if summary["mean_errors"] is not None:
            attrs |= {f"privacy/{k}": float(v) for k, v in zip(ERRORS, summary["mean_errors"], strict=True)}
        return Contract(attrs=attrs)

    def warnings(self) -> list[str]:
        n = int(self.summary["n_refused"] or 0)
        return [f"{n} private release(s) refused: the privacy budget was spent"] if n else []


def build(scenario: Scenario, built: dict[str, Any]) -> Privacy | None:
    """The private release, or None without a privacy section or a grid."""
    return None if scenario.privacy is None or "agents" not in built else Privacy(scenario, built)
