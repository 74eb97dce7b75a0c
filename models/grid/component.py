"""The grid component: AC power flow of the agents' set-points, outages and islands."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from cosim.component import Component, Contract, Dataset, Link
from cosim.errors import ScenarioError
from cosim.models.adapter import SolverStats
from cosim.models.grid.events import Event, EventSchedule, parse_branch
from cosim.models.grid.network import element_names
from cosim.models.grid.powerflow import ACPowerFlow
from cosim.models.grid.switching import SwitchingPowerFlow
from cosim.scenario import OutageEvent, Scenario, parse_duration_s

_LABELS = "grid or market group"
DATASETS: tuple[Dataset, ...] = (
    Dataset("grid/bus/vm_pu", "pu", "bus", "voltage magnitude", attr="vm_pu",
            note="columns in pandapower bus index order"),
    Dataset("grid/bus/va_degree", "degree", "bus", "voltage angle", attr="va_degree"),
    Dataset("grid/line/loading_percent", "percent", "line", "current loading", attr="line_loading_percent",
            note="pandapower definition (`max_i_ka * df * parallel`)"),
    Dataset("grid/trafo/loading_percent", "percent", "trafo", "loading", attr="trafo_loading_percent",
            note="pandapower's current-based definition"),
    Dataset("grid/losses_mw", "MW", None, "line and transformer losses", attr="losses_mw"),
    Dataset("grid/import_mw", "MW", None, "power from the external grid", attr="import_mw",
            note="negative: export"),
    Dataset("grid/converged", "1", None, "power flow converged", np.bool_, attr="converged",
            note="when not, the step's grid values are NaN"),
    Dataset("grid/n_voltage_violations", "1", None, "buses outside min/max_vm_pu", np.int64,
            attr="n_voltage_violations", note="band of each bus, default 0.95-1.05 pu"),
    Dataset("grid/n_overloads", "1", None, "lines and trafos above max_loading_percent", np.int64,
            attr="n_overloads", note="default 100"),
    Dataset("grid/bus/name", "", "bus", "bus names", str, _LABELS, "static"),
    Dataset("grid/bus/index", "pandapower index", "bus", "pandapower bus index", np.int64, kind="static"),
    Dataset("grid/bus/vn_kv", "kV", "bus", "nominal voltage", kind="static"),
    Dataset("grid/line/name", "", "line", "line names", str, kind="static"),
    Dataset("grid/line/from_bus", "pandapower index", "line", "from bus", np.int64, kind="static"),
    Dataset("grid/line/to_bus", "pandapower index", "line", "to bus", np.int64, kind="static"),
    Dataset("grid/trafo/name", "", "trafo", "transformer names", str, kind="static"),
    Dataset("grid/trafo/hv_bus", "pandapower index", "trafo", "high-voltage bus", np.int64, kind="static"),
    Dataset("grid/trafo/lv_bus", "pandapower index", "trafo", "low-voltage bus", np.int64, kind="static"),
    Dataset("events/kind", "", "event", "island or line_outage", str, "events", "static",
            note="written whatever `output.groups` holds"),
    Dataset("events/element", "", "event", "the outaged branch, or the grid-forming unit", str, "events",
            "static"),
    Dataset("events/start", "Unix s", "event", "start of the event", np.int64, "events", "static"),
    Dataset("events/end", "Unix s", "event", "end of the event (exclusive)", np.int64, "events", "static"),
    Dataset("grid/islanded", "1", None, "the microgrid runs without the upstream grid", np.int8, "events",
            attr="islanded"),
    Dataset("grid/grid_forming_mw", "MW", None, "islanded: the slack unit's output", when="events",
            attr="grid_forming_mw", note="NaN when not islanded"),
)  # fmt: skip
# the power flow's series, recorded every step
SERIES = tuple(row for row in DATASETS if row.kind == "series" and not row.when)


def build_events(scenario: Scenario, net: Any, fleet: Any) -> EventSchedule | None:
    """The scenario's outages with their branches and grid-forming units resolved, or None without events."""
    if not scenario.events:
        return None
    table, problems, events = fleet.table, [], []
    names = list(table.name)
    batteries = table.where("battery")
    for i, e in enumerate(scenario.events):
        start = int(e.start.timestamp())
        end = start + parse_duration_s(e.duration)
        if isinstance(e, OutageEvent):
            try:
                events.append(Event("line_outage", start, end, branch=parse_branch(net, e.element)))
            except ValueError as exc:
                problems.append((f"events.{i}.element", str(exc)))
            continue
        if e.grid_forming is None:
            if not len(batteries):
                problems.append((f"events.{i}.grid_forming", "no battery to form the island: add "
                                 "agents.battery.share or name a generator agent"))  # fmt: skip
                continue
            unit = int(batteries[np.argmax(fleet.batteries.capacity_mwh)])
        elif e.grid_forming in names and table.kind[names.index(e.grid_forming)] in (
            "battery",
            "gen",
            "sgen",
        ):
            unit = names.index(e.grid_forming)
        else:
            problems.append(
                (f"events.{i}.grid_forming", f"{e.grid_forming!r} is not a battery, gen or sgen agent")
            )
            continue
        events.append(Event("island", start, end, grid_forming=unit, reserve_share=e.reserve_share))
    if problems:
        raise ScenarioError(problems)
    return EventSchedule(net, table.elements, table.bus, events, fleet.times_s, scenario.time.step_s)


class Grid(Component):
    """Runs the power flow of every step; switches the topology at outages and islands."""

    name, sim, sim_name, entity = "grid", "cosim.models.grid.sim:GridSim", "Grid", "Grid"
    state_attrs = ("power_flow", "events", "stats")

    def __init__(self, scenario: Scenario, built: dict[str, Any]) -> None:
        agents = built["agents"]
        self.net, fleet = agents.net, agents.fleet
        self.built, self.step_s = built, scenario.time.step_s
        self.events = build_events(scenario, self.net, fleet)
        flow = ACPowerFlow if self.events is None else SwitchingPowerFlow
        assert scenario.grid is not None
        pf = scenario.grid.power_flow
        self.power_flow = flow(
            self.net, fleet.table.elements, tolerance_mva=pf.tolerance_mva, max_iteration=pf.max_iteration
        )
        self.stats = SolverStats()

    def contract(self, groups: Iterable[str]) -> Contract:
        groups, net, out = set(groups), self.net, Contract()
        if groups & {"grid", "market"}:
            out.add_static(DATASETS, {"grid/bus/name": np.array(element_names(net.bus, "bus"), dtype=str)})
            out.labels |= {"grid/bus/name": "bus", "grid/line/name": "line", "grid/trafo/name": "trafo"}
        if "grid" in groups:
            width = {"bus": len(net.bus), "line": len(net.line), "trafo": len(net.trafo), None: None}
            for row in SERIES:
                out.record(DATASETS, row.path, width[row.along])
            static = {
                "grid/bus/index": net.bus.index.to_numpy(),
                "grid/bus/vn_kv": net.bus.vn_kv.to_numpy(dtype=float),
                "grid/line/name": np.array(element_names(net.line, "line"), dtype=str),
                "grid/line/from_bus": net.line.from_bus.to_numpy(),
                "grid/line/to_bus": net.line.to_bus.to_numpy(),
                "grid/trafo/name": np.array(element_names(net.trafo, "trafo"), dtype=str),
                "grid/trafo/hv_bus": net.trafo.hv_bus.to_numpy(),
                "grid/trafo/lv_bus": net.trafo.lv_bus.to_numpy(),
            }
            out.add_static(DATASETS, static)
        if self.events is not None:
            events = self.events.events
            static = {
                "events/kind": np.array([e.kind for e in events]),
                "events/element": np.array([e.element for e in events]),
                "events/start": np.array([e.start_s for e in events], dtype=np.int64),
                "events/end": np.array([e.end_s for e in events], dtype=np.int64),
            }
            out.add_static(DATASETS, static)
            out.dims |= {path: ("event",) for path in static}
            if "grid" in groups:
                out.record(DATASETS, "grid/islanded")
                out.record(DATASETS, "grid/grid_forming_mw")
        return out

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        return {
            "power_flow": self.power_flow, "step_s": self.step_s, "stats": self.stats, "events": self.events,
            "time_offset_s": offset_s, "carry": carry,
        }  # fmt: skip

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        out = [Link("agents", ("p_mw", "q_mvar"))]
        market = self.built.get("market")
        if market is not None and market.caps.reactive:
            # the OPF's state is the grid's: its voltages and reactive dispatch
            out.append(Link("market", (("vm_pu", "vm_set_pu"), ("q_mvar", "q_set_mvar"))))
        return out

    def finish(self, groups: Iterable[str]) -> Contract:
        return Contract(
            attrs={"n_not_converged": self.stats.n_not_converged, "power_flow_s": self.stats.solver_s}
        )


def build(scenario: Scenario, built: dict[str, Any]) -> Grid | None:
    """The power flow of the agents' grid, or None without a grid."""
    return None if "agents" not in built else Grid(scenario, built)
