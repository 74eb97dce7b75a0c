"""The agents component: the network the agents live on, their fleet and profiles, their bidding behaviour."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from cosim.component import Component, Contract, Dataset, Link, rng_for
from cosim.errors import ScenarioError
from cosim.models.agents import profiles
from cosim.models.agents.arbitrage import ArbitragePlanner
from cosim.models.agents.fleet import Fleet, build_fleet
from cosim.models.grid.network import load_network
from cosim.scenario import Scenario, SimbenchGrid

_NAMES = "agents or market group"
DATASETS: tuple[Dataset, ...] = (
    Dataset("agents/name", "", "agent", "agent names", str, _NAMES, "static"),
    Dataset("agents/bus", "pandapower index", "agent", "bus of each agent", np.int64, _NAMES, "static"),
    Dataset("agents/kind", "", "agent", "kind of each agent: load, sgen, pv, battery, ev, gen", str, _NAMES,
            "static"),
    Dataset("agents/storage_name", "", "battery", "the batteries' agent names", str, _NAMES, "static"),
    Dataset("agents/household", "1, row of /agents/household_name (-1: none)", "agent",
            "household behind each agent's meter", np.int64, f"{_NAMES}; household profiles", "static"),
    Dataset("agents/household_name", "", "household", "household names", str,
            f"{_NAMES}; household profiles", "static"),
    Dataset("agents/p_mw", "MW", "agent", "active power, + = consumption", attr="p_mw",
            note="set-points (load convention: negative = injection); the power flow sees exactly these"),
    Dataset("agents/q_mvar", "Mvar", "agent", "reactive power, + = consumption", attr="q_mvar"),
    Dataset("agents/soc_mwh", "MWh", "battery", "energy at step end", attr="soc_mwh"),
)  # fmt: skip


def load_grid(scenario: Scenario) -> Any:
    """The pandapower network of ``grid`` (a broken file or case names its key)."""
    g = scenario.grid
    if g is None:
        raise ScenarioError([("grid", "required key is missing")])
    kind = {"simbench": "code", "pandapower": "case", "file": "path"}[g.source]
    try:
        return load_network(
            g.source, code=getattr(g, "code", ""), case=getattr(g, "case", ""), path=getattr(g, "path", None)
        )
    except Exception as exc:  # a broken file or case: name the key
        raise ScenarioError([(f"grid.{kind}", f"cannot load the network: {exc}")]) from None


def step_times_s(scenario: Scenario) -> np.ndarray:
    """Start of every step of the run, Unix s."""
    t = scenario.time
    return int(t.start.timestamp()) + t.step_s * np.arange(t.n_steps, dtype=np.int64)


def build_fleet_of(scenario: Scenario, net: Any, times_s: np.ndarray) -> Fleet:
    """The agents of the grid with their profiles (SimBench's, or constant loads and clear-sky PV).

    The profiles keep only the rows of the run's steps, and ``net`` loses its ``profiles`` frames (the power
    flow and the market copy the net: they need none).
    """
    g, t, pv_cfg = scenario.grid, scenario.time, scenario.agents.pv
    simbench = isinstance(g, SimbenchGrid)
    tables = profiles.simbench_tables(net) if simbench else profiles.constant_tables(net)
    try:
        pv_pu = profiles.simbench_pv_pu(net, pv_cfg.profile) if simbench else None
    except ValueError as exc:
        raise ScenarioError([("agents.pv.profile", str(exc))]) from None
    if pv_pu is None:
        if pv_cfg.profile is not None:
            raise ScenarioError([("agents.pv.profile", "only SimBench grids ship named PV profiles")])
        pv_pu = profiles.clear_sky_pv_pu(t.start.year, pv_cfg.latitude_deg)
    # memory in proportion to the run: only the rows its steps read; the net's profile frames go
    tables, pv_pu = profiles.sliced(tables, times_s, t.step_s), pv_pu.sliced(times_s, t.step_s)
    net.pop("profiles", None)
    try:
        return build_fleet(
            net, scenario.agents, rng_for(scenario.seed, "agents"), tables, pv_pu, times_s, t.step_s
        )
    except ValueError as exc:
        path, _, msg = str(exc).partition(": ")
        raise ScenarioError([(path, msg or str(exc))]) from None


def build_planner(scenario: Scenario, net: Any, fleet: Fleet) -> ArbitragePlanner | None:
    """The batteries' arbitrage planner (``market.battery_bidding: arbitrage``), else None."""
    m, step_s = scenario.market, scenario.time.step_s
    if m is None or m.battery_bidding != "arbitrage":
        return None
    if 86400 % step_s:
        raise ScenarioError([("market.battery_bidding", "arbitrage needs a step that divides a day")])
    rows = net.bus.index.get_indexer(fleet.table.bus[fleet.table.where("battery")])
    horizon = max(2, round(m.arbitrage_horizon_h * 3600 / step_s))
    return ArbitragePlanner(fleet.batteries, rows, 86400 // step_s, step_s / 3600.0, horizon)


class Agents(Component):
    """Households, PV, batteries and generators: set-points every step, bids to the market."""

    name, sim, sim_name, entity = "agents", "cosim.models.agents.sim:AgentsSim", "Agents", "Fleet"
    state_attrs = ("fleet", "planner", "strategic")

    def __init__(self, scenario: Scenario, built: dict[str, Any]) -> None:
        self.scenario, self.built = scenario, built
        self.times_s = step_times_s(scenario)
        self.net = load_grid(scenario)
        self.fleet = build_fleet_of(scenario, self.net, self.times_s)
        self.planner = build_planner(scenario, self.net, self.fleet)
        self.strategic: list[Any] = []  # learning bidders, once the market is built (`ready`)

    def ready(self) -> None:
        """Build the learning bidders of ``agents.strategic``: they bid into the market built after us."""
        if self.scenario.agents.strategic:
            from cosim.learn import build_strategic

            market = getattr(self.built.get("market"), "market", None)
            self.strategic = list(build_strategic(self.scenario, self.net, self.fleet, market))

    def contract(self, groups: Iterable[str]) -> Contract:
        groups = set(groups)
        out = Contract()
        table = self.fleet.table
        batteries = table.where("battery")
        if groups & {"agents", "market"}:
            names = {
                "agents/name": table.name.astype(str),
                "agents/bus": table.bus,
                "agents/kind": table.kind.astype(str),
                "agents/storage_name": table.name[batteries].astype(str),
            }
            if table.household is not None and table.household_name is not None:
                names |= {"agents/household": table.household,
                          "agents/household_name": table.household_name.astype(str)}  # fmt: skip
            out.add_static(DATASETS, names)
            out.labels |= {
                "agents/name": "agent",
                "agents/storage_name": "battery",
                "agents/household_name": "household",
            }
        if "agents" in groups:
            for path in ("agents/p_mw", "agents/q_mvar"):
                out.record(DATASETS, path, len(table))
            out.record(DATASETS, "agents/soc_mwh", len(batteries))
        if self.strategic:
            from cosim.learn import policy_attrs

            cfg = self.scenario.agents.strategic
            out.attrs["agents/strategic"] = json.dumps({s.agent: str(s.policy) for s in cfg})
            out.attrs["agents/strategic_policies"] = policy_attrs(self.strategic, [s.policy for s in cfg])
        return out

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        market = self.built.get("market")
        return {
            "fleet": self.fleet,
            "bidder": market.market.bidder if market else None,
            "planner": self.planner,
            "events": self.built["grid"].events,
            "strategic": self.strategic,
            "time_offset_s": offset_s,
            "carry": carry,
        }

    def first_bids(self, k_from: int, carry: dict[str, Any]) -> dict[str, Any]:
        """The bids the market clears at step ``k_from``: made now for the first step, else what the agents
        sent at the end of the step before (carried across segments)."""
        if k_from:
            return {key: carry["agents"][key] for key in ("bids", "forecast_mw", "grid_forming_mwh")}
        from cosim.models.agents.sim import next_bids

        events = self.built["grid"].events
        return next_bids(
            self.fleet, self.built["market"].market.bidder, 0, self.planner, events, self.strategic
        )

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        out = []
        if self.built["grid"].events is not None:
            initial = {"grid_forming_mw": carry.get("grid_forming_mw", np.nan)}
            out.append(Link("grid", ("grid_forming_mw",), time_shifted=True, initial_data=initial))
        if "market" in self.built:
            out.append(Link("market", ("award_mw", "price_per_mwh")))
        return out


def build(scenario: Scenario, built: dict[str, Any]) -> Agents | None:
    """The agents of the scenario's grid, or None without a grid (the ledger alone on its workload)."""
    return None if scenario.grid is None else Agents(scenario, built)
