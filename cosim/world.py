"""Build the mosaik World a scenario describes and run it: agents -> grid -> recorder, every step.

All three simulators are time-based with the scenario's step and run in-process, so the arrays they
exchange are passed by reference (no serialisation). Within one step the data flow is acyclic
(agents' set-points feed the power flow; both feed the recorder), so plain same-time connections
suffice; the market of a later issue closes the loop with the same pattern.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import math
import subprocess
import time as wallclock
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mosaik
import numpy as np

from cosim.checkpoint import capture as capture_state
from cosim.checkpoint import checkpoint_path
from cosim.checkpoint import load as load_checkpoint
from cosim.checkpoint import restore as restore_state
from cosim.checkpoint import save as save_checkpoint
from cosim.errors import CosimError, ScenarioError
from cosim.models.agents import profiles
from cosim.models.agents.arbitrage import ArbitragePlanner
from cosim.models.agents.fleet import Fleet, build_fleet
from cosim.models.agents.sim import next_bids
from cosim.models.grid.events import Event, EventSchedule, parse_branch
from cosim.models.grid.network import element_names, load_network
from cosim.models.grid.powerflow import ACPowerFlow
from cosim.models.grid.sim import SolverStats
from cosim.models.grid.switching import SwitchingPowerFlow
from cosim.models.ledger.consensus import ENGINES
from cosim.models.ledger.ledger import BLOCK_COLUMNS, TX_COLUMNS, VOTE_COLUMNS, LedgerModel
from cosim.models.ledger.network import BITCOIN, GossipParams
from cosim.models.ledger.sim import SERIES as LEDGER_SERIES
from cosim.models.ledger.sim import replay as ledger_replay
from cosim.models.market.bidding import Bidder, BidRules
from cosim.models.market.market import Market
from cosim.models.market.sim import DAY_COLUMNS
from cosim.models.market.tariff import posted_price, utc_seconds
from cosim.recorder import H5Recorder, Series, Table, write_failure
from cosim.runguard import claim_output, sigterm_as_interrupt
from cosim.scenario import (
    INT64_MAX,
    LAST_END,
    OutageEvent,
    Scenario,
    SimbenchGrid,
    StochasticConfig,
    load_scenario,
    memory_problems,
    parse_duration_s,
)
from cosim.units import UDUNITS

SCREENS = ("hhi", "rsi", "rsi_min", "pivotal")  # market-power screens of network designs
STRATEGIC = (  # datasets of market.strategic
    "strategic_offer_per_mwh",
    "strategic_optimal",
    "strategic_profit",
    "competitive_profit",
    "lerner_index",
    "welfare_loss",
)
SIM_CONFIG: dict[str, Any] = {
    "Agents": {"python": "cosim.models.agents.sim:AgentsSim"},
    "Grid": {"python": "cosim.models.grid.sim:GridSim"},
    "Market": {"python": "cosim.models.market.sim:MarketSim"},
    "Ledger": {"python": "cosim.models.ledger.sim:LedgerSim"},
    "Accounting": {"python": "cosim.models.accounting.sim:AccountingSim"},
    "Privacy": {"python": "cosim.models.privacy.sim:PrivacySim"},
    "Recorder": {"python": "cosim.recorder_sim:RecorderSim"},
}
PACKAGES = ("cosim-te", "numpy", "scipy", "pandas", "pandapower", "simbench", "mosaik", "h5py", "pydantic")


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports."""

    path: Path
    n_steps: int
    wall_s: float
    power_flow_s: float
    n_not_converged: int
    market_s: float = 0.0
    n_market_failed: int = 0
    ledger_s: float = 0.0
    warnings: tuple[str, ...] = ()  # what a user must not miss: a halted ledger, refused private releases


def rng_for(seed: int, model: str) -> np.random.Generator:
    """The one random generator of a model, from the scenario seed and the model's name."""
    return np.random.default_rng([seed, zlib.crc32(model.encode())])


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


def build_models(
    scenario: Scenario,
) -> tuple[Any, Fleet, ACPowerFlow | SwitchingPowerFlow, np.ndarray, EventSchedule | None]:
    """Network, agent fleet and power flow of a scenario, the step start times (Unix s) and its events."""
    g = scenario.grid
    if g is None:
        raise ScenarioError([("grid", "required key is missing")])
    kind = {"simbench": "code", "pandapower": "case", "file": "path"}[g.source]
    try:
        net = load_network(
            g.source,
            code=getattr(g, "code", ""),
            case=getattr(g, "case", ""),
            path=getattr(g, "path", None),
        )
    except Exception as exc:  # a broken file or case: name the key
        raise ScenarioError([(f"grid.{kind}", f"cannot load the network: {exc}")]) from None
    step_s, t = scenario.time.step_s, scenario.time
    times_s = int(t.start.timestamp()) + step_s * np.arange(t.n_steps, dtype=np.int64)
    if isinstance(g, SimbenchGrid):
        tables = profiles.simbench_tables(net)
    else:
        tables = profiles.constant_tables(net)
    pv_cfg = scenario.agents.pv
    try:
        pv_pu = profiles.simbench_pv_pu(net, pv_cfg.profile) if isinstance(g, SimbenchGrid) else None
    except ValueError as exc:
        raise ScenarioError([("agents.pv.profile", str(exc))]) from None
    if pv_pu is None:
        if pv_cfg.profile is not None:
            raise ScenarioError([("agents.pv.profile", "only SimBench grids ship named PV profiles")])
        pv_pu = profiles.clear_sky_pv_pu(t.start.year, pv_cfg.latitude_deg)
    try:
        fleet = build_fleet(
            net, scenario.agents, rng_for(scenario.seed, "agents"), tables, pv_pu, times_s, step_s
        )
    except ValueError as exc:
        path, _, msg = str(exc).partition(": ")
        raise ScenarioError([(path, msg or str(exc))]) from None
    pf = g.power_flow
    events = build_events(scenario, net, fleet)
    flow = ACPowerFlow if events is None else SwitchingPowerFlow
    power_flow = flow(
        net, fleet.table.elements, tolerance_mva=pf.tolerance_mva, max_iteration=pf.max_iteration
    )
    return net, fleet, power_flow, times_s, events


def build_events(scenario: Scenario, net: Any, fleet: Fleet) -> EventSchedule | None:
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


def build_market(
    scenario: Scenario, net: Any, fleet: Fleet, events: EventSchedule | None = None
) -> Market | None:
    """The scenario's market (bidding rules, design model built once), or None without a market section."""
    m = scenario.market
    if m is None:
        return None
    central = m.design == "central"  # fixed demand, no storage schedule: demand all inelastic
    stochastic = m.design == "stochastic"  # no state of charge between the day's hours: batteries out
    rules = BidRules(
        voll_per_mwh=m.voll_per_mwh,
        inelastic_share=1.0 if central else m.inelastic_share,
        utility_per_mwh=() if central else tuple(m.utility_per_mwh),
        sgen_price_per_mwh=m.sgen_price_per_mwh,
        battery_charge_price_per_mwh=m.battery_charge_price_per_mwh,
        battery_discharge_price_per_mwh=m.battery_discharge_price_per_mwh,
        import_price_per_mwh=m.upstream.import_price_per_mwh,
        export_price_per_mwh=m.upstream.export_price_per_mwh,
        max_import_mw=m.upstream.max_import_mw,
        max_export_mw=m.upstream.max_export_mw,
        critical_voll_per_mwh=m.critical_voll_per_mwh,
    )
    table = fleet.table
    names = list(table.name)
    unknown = [n for n in m.critical_loads if n not in names or table.kind[names.index(n)] != "load"]
    if unknown:
        raise ScenarioError([("market.critical_loads", f"not load agents of this grid: {unknown}")])
    bidder = Bidder(
        net, table.kind, table.bus, table.elements, rules, batteries_bid=not (central or stochastic),
        critical=np.isin(table.name.astype(str), m.critical_loads),
    )  # fmt: skip
    p0, q0 = fleet.baseline(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        q_ratio = np.nan_to_num(q0 / p0)[np.maximum(bidder.demand_owner, 0)] * (bidder.demand_owner >= 0)
    posted = None
    if m.design in ("tou", "dr"):
        dr = [(utc_seconds(e.start), utc_seconds(e.end), e.price_adder_per_mwh) for e in m.dr_events]
        tariff = [(p.from_hour, p.price_per_mwh) for p in m.tariff]
        posted = posted_price(fleet.times_s, tariff, dr)
    day_ahead = None
    if stochastic:
        from cosim.models.market.day_ahead import DayAheadMarket

        st, step_s = m.stochastic or StochasticConfig(), scenario.time.step_s
        day_ahead = DayAheadMarket(
            bidder, lambda k: fleet.baseline(k)[0], table.kind, 86400 // step_s, step_s / 3600.0,
            len(fleet.times_s), st.n_scenarios, st.pv_error_sd, st.load_error_sd, st.error_rho,
            st.up_price_per_mwh, st.down_price_per_mwh, rng_for(scenario.seed, "forecast"),
        )  # fmt: skip
    strategic = None if m.strategic is None else _strategic_player(m.strategic, table, bidder, fleet)
    try:
        return Market(
            net, m.design, bidder, scenario.time.step_s / 3600.0, m.on_failure, q_ratio, posted,
            contingencies=m.contingencies, contingency_limit_factor=m.contingency_limit_factor,
            day_ahead=day_ahead, events=events, branch_limit=m.branch_limit, strategic=strategic,
        )  # fmt: skip
    except ValueError as exc:  # e.g. an unknown branch name in contingencies
        raise ScenarioError([("market.contingencies", str(exc))]) from None


def _strategic_player(cfg: Any, table: Any, bidder: Bidder, fleet: Fleet) -> tuple[np.ndarray, float, float]:
    """(supply steps, cap, time limit) of ``market.strategic``'s player, checked against the grid.

    Raises
    ------
    ScenarioError
        for a name that is no generator agent (with the nearest names), or offers the MPEC cannot take.
    """
    import difflib

    names = [str(n) for n in table.name]
    kinds = [str(k) for k in table.kind]
    valid = [n for n, k in zip(names, kinds, strict=True) if k in ("gen", "sgen", "pv")]
    if cfg.player not in valid:
        why = (
            f"{cfg.player!r} is a {kinds[names.index(cfg.player)]}"
            if cfg.player in names
            else f"no agent named {cfg.player!r}"
        )
        nearest = (
            ", ".join(map(repr, difflib.get_close_matches(cfg.player, valid, n=3, cutoff=0.0))) or "none"
        )
        raise ScenarioError([(
            "market.strategic.player",
            f"{why}: the player must be a generator agent (gen, sgen, pv); nearest: {nearest} "
            "(as in /agents/name)",
        )])  # fmt: skip
    steps = np.flatnonzero(bidder.supply_owner == names.index(cfg.player))
    zeros = np.zeros(len(bidder.battery_agents))
    bids = bidder.bids(fleet.baseline(0)[0], zeros, zeros)
    if np.any(np.asarray(bids.supply_c2) != 0):
        raise ScenarioError([(
            "market.strategic",
            "the player's MPEC needs linear offers, but the grid's cost data (poly_cost cp2) has quadratic "
            "terms: set them to 0 or remove market.strategic",
        )])  # fmt: skip
    return steps, cfg.offer_price_max_per_mwh, cfg.time_limit_s


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


@dataclass
class Accounting:
    """The emissions and equity accounts of a run, with what their HDF5 contract needs."""

    emissions: Any = None  # EmissionAccounting
    equity: Any = None  # EquityAccumulator
    beneficiary: np.ndarray | None = None  # (n_agent,) bool: low-income agents the rule favours
    baseline_price_per_mwh: np.ndarray | None = None
    baseline_export_per_mwh: np.ndarray | None = None
    attrs: dict[str, Any] | None = None
    unit_of: np.ndarray | None = None  # (n_agent,) equity unit of each agent (-1: none); None: per device
    unit_name: np.ndarray | None = None  # (n_unit,) names of the equity units


def _upstream_emissions(scenario: Scenario) -> Any:
    from cosim.models.accounting.emissions import UpstreamGrid

    assert scenario.emissions is not None
    up = scenario.emissions.upstream
    if up.stack is not None:
        units = np.array([(u.capacity_mw, u.cost_per_mwh, u.kg_per_mwh) for u in up.stack])
        return UpstreamGrid.stack(units[:, 0], units[:, 1], units[:, 2], up.base_mw)
    if up.series_csv is not None:
        import pandas as pd

        try:
            series = pd.read_csv(up.series_csv)["kg_per_mwh"].to_numpy(dtype=float)
        except (KeyError, ValueError, OSError) as exc:
            raise ScenarioError(
                [("emissions.upstream.series_csv", f"needs a numeric column kg_per_mwh: {exc}")]
            ) from None
        if len(series) < scenario.time.n_steps or not np.isfinite(series).all() or (series < 0).any():
            raise ScenarioError([(
                "emissions.upstream.series_csv",
                f"needs {scenario.time.n_steps} finite, non-negative rows (one per step), has {len(series)}",
            )])  # fmt: skip
        return UpstreamGrid.series(series)
    return UpstreamGrid.constant(527.0 if up.kg_per_mwh is None else up.kg_per_mwh)


def element_factors(scenario: Scenario, net: Any, fleet: Fleet, factors: Any) -> np.ndarray:
    """(n_agent,) emission factor of every agent: its kind's, or its own from ``emissions.elements``.

    Raises
    ------
    ScenarioError
        for a name that is no generating agent of the grid (with the nearest valid names), before the run.
    """
    import difflib

    from cosim.models.accounting.emissions import DEMAND_KINDS

    assert scenario.emissions is not None
    table = fleet.table
    out = factors.of_kind(table.kind)
    position = {str(name): i for i, name in enumerate(table.name)}
    valid = [str(n) for n, k in zip(table.name, table.kind, strict=True) if k not in DEMAND_KINDS]
    upstream = set(element_names(net.ext_grid, "ext_grid"))
    problems = []
    for name, kg_per_mwh in scenario.emissions.elements.items():
        i = position.get(name)
        if i is not None and table.kind[i] not in DEMAND_KINDS:
            out[i] = kg_per_mwh
            continue
        if i is not None:
            why = f"{name!r} is a {table.kind[i]}: it consumes, only generating elements carry a factor"
        elif name in upstream:
            why = f"{name!r} is the upstream grid (ext_grid): set emissions.upstream instead"
        else:
            nearest = ", ".join(map(repr, difflib.get_close_matches(name, valid, n=3, cutoff=0.0))) or "none"
            why = f"no generating element named {name!r} in the grid; nearest: {nearest} (as in /agents/name)"
        problems.append((f"emissions.elements.{name}", why))
    if problems:
        raise ScenarioError(problems)
    return out


def _emissions_network(market: Market, net: Any, losses: bool) -> tuple[Any, Any, bool]:
    """(network, reference DC-OPF or None, losses) the marginal emission factors of a design are taken on.

    dcopf, central, scopf: the design's own DC network and clearing (nodal factors, losses as asked);
    acopf: the DC network of the net and a DC-OPF re-clearing the same bids (nodal factors of the DC
    approximation); the copper-plate designs: one node (the system marginal factor, the same at every bus,
    no loss adjustment: the clearing has no network to carry losses).
    """
    from cosim.models.market.dcopf import DCOPF
    from cosim.models.market.network_dc import copper_plate, dc_network

    if market.design in ("dcopf", "central", "scopf"):
        return market.model.network, None, losses
    if market.design == "acopf":
        network = dc_network(net)
        return network, DCOPF(network, market.bidder.demand_bus, market.bidder.supply_bus), losses
    return copper_plate(net), None, False


def build_accounting(scenario: Scenario, net: Any, fleet: Fleet, market: Market | None) -> Accounting:
    """Emissions and equity accounts of the scenario (and the carbon price put on the market's offers)."""
    from cosim.models.accounting.emissions import EmissionAccounting, EmissionFactors
    from cosim.models.accounting.equity import EquityAccumulator, study_month_of_step
    from cosim.models.agents.fleet import household_rows

    out = Accounting()
    table = fleet.table
    if scenario.emissions is not None:
        em = scenario.emissions
        factors = EmissionFactors(
            em.pv_kg_per_mwh, em.sgen_kg_per_mwh, em.gen_kg_per_mwh, em.battery_kg_per_mwh,
            _upstream_emissions(scenario),
        )  # fmt: skip
        agent_kg_per_mwh = element_factors(scenario, net, fleet, factors)  # checked with or without a market
        if market is not None:
            network, reference, losses = _emissions_network(market, net, em.losses)
            out.emissions = EmissionAccounting(
                net, network, market.bidder, table.kind, table.bus, factors, agent_kg_per_mwh,
                losses=losses, reference=reference,
            )  # fmt: skip
            if em.carbon_price_per_t > 0:
                market.carbon = (out.emissions.steps, em.carbon_price_per_t)
            out.attrs = {
                "emissions/carbon_price_per_t": em.carbon_price_per_t,
                "emissions/upstream": factors.upstream.kind,
                "emissions/elements": json.dumps(em.elements),
            }
    if scenario.equity is not None and scenario.market is not None:
        eq, m = scenario.equity, scenario.market
        periods = [(p.from_hour, p.price_per_mwh) for p in (eq.baseline_tariff or m.tariff)]
        flat = [(0.0, m.upstream.import_price_per_mwh)]  # no tariff given: a flat one at the import price
        out.baseline_price_per_mwh = posted_price(fleet.times_s, periods or flat)
        if eq.baseline_export_price_per_mwh is not None:
            out.baseline_export_per_mwh = np.full(len(fleet.times_s), eq.baseline_export_price_per_mwh)
        out.equity = EquityAccumulator(len(table), study_month_of_step(fleet.times_s))
        homes = set(household_rows(net, scenario.agents.household_profiles).tolist())
        loads = [a for a in table.where("load") if net.load.index.get_loc(table.elements[a][1]) in homes]
        rng = rng_for(scenario.seed, "equity")
        out.beneficiary = np.zeros(len(table), dtype=bool)
        if loads:
            out.beneficiary[
                rng.choice(loads, size=round(eq.low_income_share * len(loads)), replace=False)
            ] = True
        if eq.unit == "household" and table.household is not None:
            out.unit_of, out.unit_name = table.household, table.household_name
        else:
            out.unit_name = table.name
        out.attrs = (out.attrs or {}) | {
            "equity/rule": eq.rule, "equity/levy_per_mwh": eq.levy_per_mwh, "equity/unit": eq.unit
        }  # fmt: skip
    return out


def _equity_datasets(scenario: Scenario, accounting: Accounting, times_s: np.ndarray) -> tuple[dict, dict]:
    """The /equity datasets and attributes of a finished run."""
    from cosim.models.accounting.equity import study_month_of_step, study_outputs

    eq = scenario.equity
    if accounting.equity is None or eq is None:
        return {}, {}
    unit_of, names = accounting.unit_of, accounting.unit_name
    n_unit = None if names is None else len(names)
    res = study_outputs(accounting.equity, accounting.beneficiary, eq.rule, eq.levy_per_mwh, unit_of, n_unit)
    month = study_month_of_step(times_s)
    starts = times_s[np.searchsorted(month, np.arange(accounting.equity.n_month))]
    units = {
        "energy_bought_mwh": "MWh",
        "energy_sold_mwh": "MWh",
        "gini": "1",
        "gini_bill": "1",
        "lorenz": "1",
    }
    data = {f"equity/{k}": (np.asarray(v), units.get(k, "$")) for k, v in res.items() if np.ndim(v)}
    low = np.asarray(accounting.beneficiary)
    if unit_of is not None and n_unit is not None:
        low = np.bincount(unit_of[unit_of >= 0], low[unit_of >= 0], minlength=n_unit) > 0
    data["equity/low_income"] = (low, "1")
    data["equity/unit_name"] = (np.asarray(names, dtype=str), "")
    data["equity/month_start"] = (starts, "Unix s")
    attrs = {
        "equity/gini_surplus": res["gini_surplus"], "equity/gini_bill": res["gini_bill_study"],
        "equity/absolute_gini_surplus": res["absolute_gini_surplus"],
        "equity/lorenz_shifted": bool(res["lorenz_shifted"]),
    }  # fmt: skip
    return data, attrs


def _steps_per_release(scenario: Scenario) -> int:
    """Steps in one release period of the private release (``privacy.release_every``)."""
    assert scenario.privacy is not None
    return 1 if scenario.privacy.release_every == "step" else 86400 // scenario.time.step_s


def build_privacy(scenario: Scenario, net: Any, fleet: Fleet) -> tuple[Any, np.ndarray] | None:
    """The private release of the scenario (groups: the agents' buses) and the names of its series."""
    from cosim.models.privacy.release import PrivateRelease

    cfg = scenario.privacy
    if cfg is None:
        return None
    where = fleet.table.bus if cfg.group_by == "bus" else np.zeros(len(fleet.table), dtype=np.int64)
    buses, groups = np.unique(where, return_inverse=True)
    mwh_per_kw = _steps_per_release(scenario) * scenario.time.step_s / 3600.0 / 1000.0  # kW over a period
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


def _privacy_contract(
    scenario: Scenario, names: np.ndarray | None
) -> tuple[list[Series], dict[str, tuple[np.ndarray, str]], dict[tuple[str, str], str], dict[str, Any]]:
    """Series, static datasets, routes and attributes of the /privacy group."""
    cfg = scenario.privacy
    if cfg is None or names is None or "privacy" not in scenario.output.groups:
        return [], {}, {}, {}
    n, col = len(names), "privacy/series_name"
    series = [
        Series(
            "privacy/released",
            "per column: privacy/series_units",
            np.float64,
            n,
            "noisy per-bus sums and active counts (NaN: refused)",
            col,
        ),
        Series("privacy/epsilon_spent", "1", np.float64, None, "epsilon spent so far (cumulative)"),
        Series("privacy/refused", "1", np.bool_, None, "the release would have exceeded the budget"),
    ]
    if cfg.evaluate:
        series.append(
            Series("privacy/true", "per column: privacy/series_units", np.float64, n, "true aggregates", col)
        )
    routes = {("Privacy-0.privacy", s.path.split("/")[1]): s.path for s in series}
    attrs = {
        "privacy/epsilon": cfg.epsilon, "privacy/budget": cfg.budget, "privacy/mechanism": cfg.mechanism,
        "privacy/delta": cfg.delta, "privacy/composition": cfg.composition,
        "privacy/declared_max_kw": cfg.declared_max_kw, "privacy/noise": cfg.noise,
    }  # fmt: skip
    per_column = np.array([UDUNITS["MWh" if n.endswith("_mwh") else "1"] for n in names])
    return series, {col: (names, ""), "privacy/series_units": (per_column, "")}, routes, attrs


def _privacy_summary(release: Any, errors: list[tuple[float, float, float, float]] | None) -> dict[str, Any]:
    """Attributes of /privacy at the end of a run: refusals and the mean errors of the releases."""
    out: dict[str, Any] = {
        "privacy/n_refused": release.n_refused, "privacy/epsilon_spent": release.accountant.epsilon_spent,
    }  # fmt: skip
    if errors is not None:  # evaluated: the mean errors of the releases, NaN before the first one
        mean = np.nanmean(np.asarray(errors), axis=0) if errors else np.full(4, np.nan)
        keys = ("mae_consumption_mwh", "relative_error_consumption", "mae_count", "relative_error_count")
        out |= {f"privacy/{k}": float(v) for k, v in zip(keys, mean, strict=True)}
    return out


def nakamoto_coefficient(power: np.ndarray) -> int:
    """Fewest validators holding more than 1/3 of the voting power (enough to halt finality)."""
    share = np.sort(power)[::-1] / power.sum()
    return int(np.searchsorted(np.cumsum(share), 1.0 / 3.0, side="right") + 1)


GOSSIP_FIELDS = tuple(f.name for f in dataclasses.fields(GossipParams))


def network_params(scenario: Scenario) -> dict[str, Any]:
    """The consensus engine's network keywords for the scenario's ``ledger.network`` (preset resolved)."""
    assert scenario.ledger is not None
    net = scenario.ledger.network
    out: dict[str, Any] = {}
    if net.regions is not None:
        out |= {"regions": net.regions, "one_way_delay_s": np.asarray(net.one_way_delay_ms) / 1e3}
    if scenario.ledger.network_preset == "direct":
        return out | {
            "jitter_sd_s": 0.005 if net.jitter_sd_s is None else net.jitter_sd_s,
            "bandwidth_mbps": 100.0 if net.bandwidth_mbps is None else net.bandwidth_mbps,
        }
    given = {k: getattr(net, k) for k in GOSSIP_FIELDS if getattr(net, k) is not None}
    graph_seed = int(rng_for(scenario.seed, "network").integers(2**63))
    return out | {"gossip": dataclasses.replace(BITCOIN, **given), "graph_seed": graph_seed}


def build_ledger(scenario: Scenario, n_accounts: int) -> tuple[LedgerModel, dict[str, Any]] | None:
    """The scenario's ledger model (consensus engine, keys, contracts) and the attributes describing it."""
    cfg = scenario.ledger
    if cfg is None:
        return None
    rng = rng_for(scenario.seed, "ledger")
    n = cfg.validators
    power = (
        np.ones(n) if cfg.is_permissioned or cfg.power_sigma == 0 else rng.lognormal(0.0, cfg.power_sigma, n)
    )
    common: dict[str, Any] = {"faulty": cfg.faulty} | network_params(scenario)
    specific: dict[str, dict[str, Any]] = {
        "pow": {
            "block_interval_s": cfg.block_interval_s, "confirmations": cfg.confirmations,
            "hash_rate_hps": cfg.hash_rate_hps or n * cfg.miner_hash_rate_hps,
            "j_per_hash": cfg.j_per_hash, "hash_share": power,
        },
        "pos": {
            "slot_s": cfg.slot_s, "slots_per_epoch": cfg.slots_per_epoch, "stake": power,
            "node_power_w": cfg.node_power_w,
        },
        "bft": {
            "voting_power": power, "behaviour": cfg.behaviour, "timeout_commit_s": cfg.timeout_commit_s,
            "timeout_propose_s": cfg.timeout_propose_s, "create_empty_blocks": cfg.create_empty_blocks,
            "node_power_w": cfg.node_power_w,
        },
    }  # fmt: skip
    engine = ENGINES[cfg.consensus](
        n, rng_for(scenario.seed, "consensus"), **common, **specific[cfg.consensus]
    )
    gate_s = 0.0 if cfg.workload is not None else cfg.gate_closure_s
    up = scenario.market.upstream if scenario.market is not None else None
    model = LedgerModel(
        engine,
        n_accounts,
        rng,
        epoch_unix_s=scenario.time.start.timestamp() - gate_s,
        step_s=scenario.time.step_s,
        gate_closure_s=gate_s,
        late_rule=cfg.late_rule,
        meter_delay_s=cfg.meter_delay_s,
        initial_balance=cfg.initial_balance,
        gas_limit=cfg.gas_limit,
        import_price_per_mwh=up.import_price_per_mwh if up else 0.0,
        export_price_per_mwh=up.export_price_per_mwh if up else 0.0,
        record_tables=cfg.record_tables,
    )
    attrs = {
        "consensus": cfg.consensus, "validators": n, "faulty": cfg.faulty, "behaviour": cfg.behaviour,
        "permissioned": cfg.is_permissioned, "nakamoto_coefficient": nakamoto_coefficient(power),
        "late_rule": cfg.late_rule, "gate_closure_s": gate_s, "power_w": engine.power_w,
        "network": cfg.network_preset,
    }  # fmt: skip
    return model, attrs


def _ledger_contract(
    ledger: LedgerModel | None, groups: Sequence[str]
) -> tuple[list[Series], list[Table], dict[tuple[str, str], str]]:
    """Series, tables and routes of the /ledger group."""
    if ledger is None or "ledger" not in groups:
        return [], [], {}
    units = {"throughput_tps": "1/s", "energy_kwh": "kWh", "n_late": "1", "late_cost": "$"}
    descriptions = {
        "throughput_tps": "transactions made final in the step per second",
        "latency_p50_s": "median submit -> inclusion of the transactions made final in the step",
        "latency_p95_s": "95th percentile submit -> inclusion",
        "finality_p50_s": "median submit -> finality of the transactions made final in the step",
        "finality_p95_s": "95th percentile submit -> finality",
        "energy_kwh": "electricity used by the validators (miners) in the step",
        "n_late": "trades not final by their deadline (start of delivery), counted at the deadline",
        "late_cost": "imbalance cost of the cancelled late trades (late_rule cancel)",
    }
    series = [
        Series(
            f"ledger/{a}", units.get(a, "s"), np.int64 if a == "n_late" else np.float64, None, descriptions[a]
        )
        for a in LEDGER_SERIES
    ]
    routes = {("Ledger-0.ledger", a): f"ledger/{a}" for a in (*LEDGER_SERIES, "tx", "blocks", "votes")}
    tables = [
        Table(
            "ledger/tx", TX_COLUMNS, "every transaction once its fate is known (final, rejected, or run end)"
        ),
        Table(
            "ledger/blocks", BLOCK_COLUMNS, "decided blocks: the hash chain (from genesis) and stale forks"
        ),
        Table(
            "ledger/votes",
            VOTE_COLUMNS,
            "signed votes: BFT commit certificates, PoS checkpoint attestations, the end-of-run head",
        ),
    ]
    if not ledger.record_tables:
        tables, routes = [], {k: v for k, v in routes.items() if k[1] not in ("tx", "blocks", "votes")}
    return series, tables, routes


def _emissions_contract(
    accounting: Accounting, groups: Sequence[str], n_bus: int
) -> tuple[list[Series], list[Table], dict[tuple[str, str], str]]:
    """Series, tables and routes of the /emissions group."""
    if accounting.emissions is None or "emissions" not in groups:
        return [], [], {}
    declared = [
        (
            "total_kg",
            "kg",
            None,
            "CO2 emitted by the dispatch of the interval (imports at the upstream factor)",
        ),
        ("average_kg_per_mwh", "kg/MWh", None, "total_kg per MWh of cleared demand"),
        ("upstream_kg", "kg", None, "CO2 of the energy imported from the upstream grid"),
        ("marginal_kg_per_mwh", "kg/MWh", n_bus, "nodal marginal emission factor, losses included"),
        ("marginal_lossless_kg_per_mwh", "kg/MWh", n_bus, "nodal marginal emission factor of the DC-OPF"),
    ]
    series = [
        Series(f"emissions/{a}", u, np.float64, w, d, "grid/bus/name" if w else "") for a, u, w, d in declared
    ]
    routes = {("Accounting-0.accounting", a): f"emissions/{a}" for a, *_ in declared}
    routes[("Accounting-0.accounting", "trades")] = "emissions/trades"
    table = Table(
        "emissions/trades",
        (("step", np.int64, "1"), ("kg", np.float64, "kg, CO2: + = a carbon cost, - = a credit")),
        "emissions impact of each trade; row i belongs to row i of /market/trades",
    )
    return series, [table], routes


# datasets labelling a dimension -> its name (a series whose `columns` names one runs along it)
LABELS = {
    "grid/bus/name": "bus",
    "grid/line/name": "line",
    "grid/trafo/name": "trafo",
    "agents/name": "agent",
    "agents/storage_name": "battery",
    "agents/household_name": "household",
    "privacy/series_name": "series",
    "equity/month_start": "month",
    "equity/unit_name": "unit",
}


def dimensions(paths: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Dimension names of the datasets written whole that no labels of their group name by length."""
    out: dict[str, tuple[str, ...]] = {}
    for path in paths:
        group, _, name = path.rpartition("/")
        if group == "events":
            out[path] = ("event",)
        elif path == "ledger/genesis":
            out[path] = ("registry",)
        elif group == "equity" and name == "lorenz":
            out[path] = ("lorenz_point", "lorenz_axis")
        elif group == "equity" and path not in LABELS:
            out[path] = ("month",) if name in ("gini", "gini_bill") else ("unit",)
    return out


def _series_and_static(
    scenario: Scenario, net: Any, fleet: Fleet, market: Market | None, events: EventSchedule | None = None
) -> tuple[list[Series], list[Table], dict[str, tuple[np.ndarray, str]], dict[tuple[str, str], str]]:
    """Declare the HDF5 contract for this run: series, tables, static datasets and routes from mosaik."""
    groups = [g for g in scenario.output.groups if g != "market" or market is not None]
    tables: list[Table] = []
    series = [Series("time", "Unix s", np.int64, None, "start of each step (UTC)")]
    static: dict[str, tuple[np.ndarray, str]] = {}
    routes: dict[tuple[str, str], str] = {}
    n_bus, n_agent, n_battery = len(net.bus), len(fleet.table), len(fleet.table.where("battery"))
    if "grid" in groups:
        n_line, n_trafo = len(net.line), len(net.trafo)
        for attr, path, units, width, description in [
            ("vm_pu", "grid/bus/vm_pu", "pu", n_bus, "voltage magnitude"),
            ("va_degree", "grid/bus/va_degree", "degree", n_bus, "voltage angle"),
            ("line_loading_percent", "grid/line/loading_percent", "percent", n_line, "current loading"),
            ("trafo_loading_percent", "grid/trafo/loading_percent", "percent", n_trafo, "loading"),
            ("losses_mw", "grid/losses_mw", "MW", None, "line and transformer losses"),
            ("import_mw", "grid/import_mw", "MW", None, "power from the external grid"),
            ("converged", "grid/converged", "1", None, "power flow converged"),
            ("n_voltage_violations", "grid/n_voltage_violations", "1", None, "buses outside min/max_vm_pu"),
            ("n_overloads", "grid/n_overloads", "1", None, "lines and trafos above max_loading_percent"),
        ]:
            dtype = {"converged": np.bool_, "n_voltage_violations": np.int64, "n_overloads": np.int64}.get(
                attr, np.float64
            )
            columns = path.rsplit("/", 1)[0] + "/name" if width is not None else ""
            series.append(Series(path, units, dtype, width, description, columns))
            routes[("Grid-0.grid", attr)] = path
        static |= {
            "grid/bus/index": (net.bus.index.to_numpy(), "pandapower index"),
            "grid/bus/vn_kv": (net.bus.vn_kv.to_numpy(dtype=float), "kV"),
            "grid/line/name": (np.array(element_names(net.line, "line"), dtype=str), ""),
            "grid/line/from_bus": (net.line.from_bus.to_numpy(), "pandapower index"),
            "grid/line/to_bus": (net.line.to_bus.to_numpy(), "pandapower index"),
            "grid/trafo/name": (np.array(element_names(net.trafo, "trafo"), dtype=str), ""),
            "grid/trafo/hv_bus": (net.trafo.hv_bus.to_numpy(), "pandapower index"),
            "grid/trafo/lv_bus": (net.trafo.lv_bus.to_numpy(), "pandapower index"),
        }
    if market is not None and "market" in groups:
        m = "Market-0.market"
        n_supplier = len(market.suppliers)
        for attr, units, width, description in [
            ("price_per_mwh", "$/MWh", n_bus, "marginal price of energy per bus (uniform: one value)"),
            ("price_q_per_mvarh", "$/Mvarh", n_bus, "marginal price of reactive power per bus"),
            ("cleared_mwh", "MWh", None, "energy cleared in the interval"),
            ("welfare", "$", None, "bids served minus generation cost, per interval"),
            (
                "cost",
                "$",
                None,
                "generation cost as MATPOWER reports it: variable cost plus the constant terms of the "
                "committed units, per interval",
            ),
            ("variable_cost", "$", None, "generation cost without the constant terms, per interval"),
            ("vm_pu", "pu", n_bus, "acopf: voltage magnitude of the OPF's solution (the grid's set-points)"),
            ("q_mvar", "Mvar", n_bus, "acopf: reactive power the OPF dispatches at each bus, + = injection"),
            ("congestion_rent", "$", None, "sum over buses of price * net withdrawal, per interval"),
            ("unserved_mwh", "MWh", None, "inelastic demand shed at the value of lost load"),
            ("ok", "1", None, "the clearing succeeded (else: NaN, agents followed their forecast)"),
            ("security_cost", "$", None, "welfare given up for N-1 security against the same bids' DC-OPF"),
            ("balancing_cost", "$", None, "deviations from the day-ahead schedule settled in real time"),
            ("admm_iterations", "1", None, "ADMM iterations to the stopping rule"),
            (
                "admm_messages",
                "1",
                None,
                "messages exchanged: price out and quantity back per agent and iteration",
            ),
            ("award_mw", "MW", n_agent, "cleared power, + = consumption"),
            ("scheduled_mw", "MW", n_agent, "day-ahead schedule, + = consumption"),
            ("storage_profit", "$", n_battery, "revenue minus cost of every battery in the market"),
            (
                "agent_unserved_mwh",
                "MWh",
                n_agent,
                "inelastic demand shed (and all demand an outage cut off)",
            ),
            ("agent_curtailed_mwh", "MWh", n_agent, "elastic demand not bought at the price"),
            ("payment", "$", n_agent, "paid in the interval, + = pays"),
            ("hhi", "1", None, "Herfindahl-Hirschman index of cleared supply by supplier, 0..10000"),
            ("rsi", "1", n_supplier, "residual supply index: (capacity - supplier's) / cleared demand"),
            ("rsi_min", "1", None, "smallest residual supply index of the interval"),
            ("pivotal", "1", n_supplier, "supplier is pivotal: its residual supply index is below 1"),
            ("strategic_offer_per_mwh", "$/MWh", None, "the strategic player's offer (its MPEC's)"),
            (
                "strategic_optimal",
                "1",
                None,
                "the MPEC solved to optimality (else the player offered its cost)",
            ),
            ("strategic_profit", "$", None, "strategic player's profit: LMP x dispatch - true cost"),
            ("competitive_profit", "$", None, "its profit in the same interval offering its true cost"),
            ("lerner_index", "1", None, "(LMP - marginal cost) / LMP at the strategic player's bus"),
            ("welfare_loss", "$", None, "competitive minus strategic welfare, both at true costs"),
        ]:
            if attr in ("price_q_per_mvarh", "vm_pu", "q_mvar") and market.design != "acopf":
                continue
            if attr == "security_cost" and market.design != "scopf":
                continue
            if attr in ("balancing_cost", "scheduled_mw") and market.design != "stochastic":
                continue
            if attr in ("admm_iterations", "admm_messages") and market.design != "admm":
                continue
            if attr in SCREENS and not market.screens:
                continue
            if attr in STRATEGIC and market.strategic is None:
                continue
            columns = "grid/bus/name" if width == n_bus else ("agents/name" if width else "")
            columns = "agents/storage_name" if attr == "storage_profit" else columns
            columns = "market/supplier_name" if width == n_supplier and attr in SCREENS else columns
            dtype = (
                np.bool_ if attr in ("ok", "pivotal") else np.int64 if attr.startswith("admm") else np.float64
            )
            path = f"market/{attr}"
            if attr in ("storage_profit", "agent_unserved_mwh", "agent_curtailed_mwh"):
                path = "agents/" + attr.removeprefix("agent_")
            series.append(Series(path, units, dtype, width, description, columns))
            routes[(m, attr)] = path
        tables.append(
            Table(
                "market/trades",
                (
                    ("step", np.int64, "1"),
                    ("buyer", np.int64, "agent position, -1 = upstream grid"),
                    ("seller", np.int64, "agent position, -1 = upstream grid"),
                    ("mwh", np.float64, "MWh"),
                    ("price", np.float64, "$/MWh"),
                    ("seller_price", np.float64, "$/MWh"),
                ),
                "bilateral trades by merit-order matching; buyer pays price, seller gets seller_price",
            )
        )
        routes[(m, "trades")] = "market/trades"
        if market.screens:
            names = [str(n) for n in fleet.table.name]
            suppliers = [names[a] if a >= 0 else "upstream" for a in market.suppliers]
            static["market/supplier_name"] = (
                np.array(suppliers),
                "owner of supply steps; upstream = ext_grid",
            )
        if market.design == "stochastic":
            day_columns = (("day_step", np.int64, "1"), *((c, np.float64, "$") for c in DAY_COLUMNS))
            day = Table(
                "market/day", day_columns, "one row per day cleared ahead", dim="day", step_column="day_step"
            )
            tables.append(day)
            routes[(m, "day")] = "market/day"
        if market.design == "admm":
            tables.append(
                Table(
                    "market/admm_residual",
                    (
                        ("step", np.int64, "1"),
                        ("iteration", np.int64, "1"),
                        ("primal_residual", np.float64, "MW"),
                        ("dual_residual", np.float64, "$/MWh"),
                        ("rho", np.float64, "$/MWh per MW"),
                        ("price", np.float64, "$/MWh"),
                    ),
                    "ADMM residual traces: one row per iteration of every interval",
                    dim="row",
                )
            )
            routes[(m, "admm_residual")] = "market/admm_residual"
    if events is not None:
        static |= {
            "events/kind": (np.array([e.kind for e in events.events]), ""),
            "events/element": (np.array([e.element for e in events.events]), ""),
            "events/start": (np.array([e.start_s for e in events.events], dtype=np.int64), "Unix s"),
            "events/end": (np.array([e.end_s for e in events.events], dtype=np.int64), "Unix s"),
        }
        if "grid" in groups:
            series += [
                Series("grid/islanded", "1", np.int8, None, "the microgrid runs without the upstream grid"),
                Series("grid/grid_forming_mw", "MW", np.float64, None, "islanded: the slack unit's output"),
            ]
            routes |= {("Grid-0.grid", "islanded"): "grid/islanded"}
            routes |= {("Grid-0.grid", "grid_forming_mw"): "grid/grid_forming_mw"}
    if "grid" in groups or "market" in groups:
        static["grid/bus/name"] = (np.array(element_names(net.bus, "bus"), dtype=str), "")
    if "agents" in groups or "market" in groups:
        table, n = fleet.table, len(fleet.table)
        batteries = table.where("battery")
        static |= {
            "agents/name": (table.name.astype(str), ""),
            "agents/bus": (table.bus, "pandapower index"),
            "agents/kind": (table.kind.astype(str), ""),
            "agents/storage_name": (table.name[batteries].astype(str), ""),
        }
        if table.household is not None and table.household_name is not None:
            static["agents/household"] = (table.household, "1, row of /agents/household_name (-1: none)")
            static["agents/household_name"] = (table.household_name.astype(str), "")
        if market is not None:
            critical = np.asarray(market.bidder.critical, dtype=bool)
            static["agents/critical"] = (critical, "critical load: served first, shed last")
            c1, c2 = market.bidder.producer_cost(n)
            static["agents/cost_per_mwh"] = (c1, "$/MWh, producer's linear cost (cp1), NaN: no producer")
            static["agents/cost_per_mw2h"] = (
                c2,
                "$/MWh per MW, producer's quadratic cost (cp2), NaN: no producer",
            )
    if "agents" in groups:
        series += [
            Series("agents/p_mw", "MW", np.float64, n, "active power, + = consumption", "agents/name"),
            Series("agents/q_mvar", "Mvar", np.float64, n, "reactive power, + = consumption", "agents/name"),
            Series(
                "agents/soc_mwh",
                "MWh",
                np.float64,
                len(batteries),
                "energy at step end",
                "agents/storage_name",
            ),
        ]
        routes |= {
            ("Agents-0.fleet", "p_mw"): "agents/p_mw",
            ("Agents-0.fleet", "q_mvar"): "agents/q_mvar",
            ("Agents-0.fleet", "soc_mwh"): "agents/soc_mwh",
        }
    return series, tables, static, routes


def _versions() -> str:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return json.dumps(found, sort_keys=True)


def code_version() -> str:
    """``git describe`` of the source tree when available, else the package version."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return metadata.version("cosim-te")


def run(
    scenario: Scenario | str | Path,
    *,
    steps: int | None = None,
    days: float | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    resume: bool = False,
) -> RunSummary:
    """Run a scenario to its end and write its HDF5 file.

    Parameters
    ----------
    scenario : a validated Scenario or the path of a YAML file
    steps, days : shorten (or lengthen) the run to this many steps or days
    seed : override the scenario seed
    out : override ``output.path``
    progress : show a progress bar (simulated time, steps/s, ETA) on stderr
    resume : continue from the checkpoint ``<output>.ckpt`` of an interrupted run of the same scenario

    Returns
    -------
    RunSummary
        the file written, wall time, time inside the power-flow solver, failed power flows.

    Raises
    ------
    ScenarioError
        when the scenario is invalid; CosimError when the run stops (the partial file is kept).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = effective(scenario, steps=steps, days=days, seed=seed, out=out)
    with claim_output(scenario.output_path, "--out" if out is not None else "output.path"):
        return _run(scenario, progress, resume)


def _run(scenario: Scenario, progress: bool, resume: bool = False) -> RunSummary:
    """Build and run an effective scenario whose output path this process holds."""
    t0 = wallclock.perf_counter()
    step_s, n_steps = scenario.time.step_s, scenario.time.n_steps
    if scenario.grid is None:  # the ledger alone on its workload
        assert scenario.ledger is not None and scenario.ledger.workload is not None
        net = fleet = power_flow = market = events = None
        times_s = int(scenario.time.start.timestamp()) + step_s * np.arange(n_steps, dtype=np.int64)
        series: list[Series] = [Series("time", "Unix s", np.int64, None, "start of each step (UTC)")]
        tables: list[Table] = []
        static: dict[str, tuple[np.ndarray, str]] = {}
        routes: dict[tuple[str, str], str] = {}
        n_accounts = scenario.ledger.workload.accounts
    else:
        net, fleet, power_flow, times_s, events = build_models(scenario)
        market = build_market(scenario, net, fleet, events)
        series, tables, static, routes = _series_and_static(scenario, net, fleet, market, events)
        n_accounts = len(fleet.table)
    ledger, ledger_attrs = build_ledger(scenario, n_accounts) or (None, {})
    more_series, more_tables, more_routes = _ledger_contract(ledger, scenario.output.groups)
    series, tables, routes = series + more_series, tables + more_tables, routes | more_routes
    attrs = {f"ledger/{k}": v for k, v in ledger_attrs.items()} if more_routes else {}
    if ledger is not None and more_tables:  # the registry the stored chain is checked against
        static = static | {
            "ledger/genesis": (np.array([ledger.genesis_json], dtype=object), "canonical JSON")
        }
    if market is not None and market.design == "scopf":
        attrs |= {
            "market/secured_outages": json.dumps(list(market.model.contingency_names)),
            "market/islanding_outages": json.dumps(list(market.model.islanding_names)),
        }
    accounting = build_accounting(scenario, net, fleet, market) if fleet is not None else Accounting()
    em_series, em_tables, em_routes = _emissions_contract(
        accounting, scenario.output.groups, len(net.bus) if net is not None else 0
    )
    series, tables, routes = series + em_series, tables + em_tables, routes | em_routes
    release, names = (build_privacy(scenario, net, fleet) if fleet is not None else None) or (None, None)
    dp_series, dp_static, dp_routes, dp_attrs = _privacy_contract(scenario, names)
    series, static, routes = series + dp_series, static | dp_static, routes | dp_routes
    attrs |= dp_attrs
    evaluate = scenario.privacy is not None and scenario.privacy.evaluate
    dp_errors: list[tuple[float, float, float, float]] | None = [] if evaluate else None
    attrs |= {k: v for k, v in (accounting.attrs or {}).items() if k.split("/")[0] in scenario.output.groups}
    attrs |= {
        "scenario_yaml": scenario.to_yaml(),
        "seed": scenario.seed,
        "versions": _versions(),
        "code_version": code_version(),
        "name": scenario.name,
        "step_s": step_s,
    }
    strategic: list[Any] = []
    if fleet is not None and scenario.agents.strategic:  # learning bidders: bids from trained policies
        from cosim.learn import build_strategic, policy_attrs

        strategic = list(build_strategic(scenario, net, fleet, market))
        attrs["agents/strategic"] = json.dumps({s.agent: str(s.policy) for s in scenario.agents.strategic})
        files = [s.policy for s in scenario.agents.strategic]
        attrs["agents/strategic_policies"] = policy_attrs(strategic, files)
    out_cfg = scenario.output
    ckpt_path = checkpoint_path(scenario.output_path)
    every = checkpoint_every(scenario)
    identity = {"scenario": scenario.to_yaml(), "seed": scenario.seed, "code version": attrs["code_version"]}
    saved = load_checkpoint(ckpt_path, identity) if resume else None
    planner = build_planner(scenario, net, fleet) if fleet is not None else None
    stats, market_stats, ledger_stats = SolverStats(), SolverStats(), SolverStats()
    cores: dict[str, Any] = {
        "fleet": fleet, "power_flow": power_flow, "market": market, "events": events, "planner": planner,
        "strategic": strategic, "emissions": accounting.emissions, "equity": accounting.equity,
        "release": release, "dp_errors": dp_errors, "stats": (stats, market_stats, ledger_stats),
    }  # fmt: skip
    carry: dict[str, Any] = {}
    ledger_log: list[tuple[int, Any, Any]] = []
    workload = scenario.ledger.workload if scenario.ledger else None
    tx_per_s = workload.tx_per_s if workload else 0.0
    k0 = 0
    if saved is not None:
        k0, carry, ledger_log = saved["step"], saved["carry"], saved["ledger_log"]
        cores = {k: restore_state(cores[k], tree) for k, tree in saved["cores"].items()}
        fleet, power_flow, market, events = (cores[k] for k in ("fleet", "power_flow", "market", "events"))
        planner, strategic = cores["planner"], cores["strategic"]
        release, dp_errors = cores["release"], cores["dp_errors"]
        accounting.emissions, accounting.equity = cores["emissions"], cores["equity"]
        stats, market_stats, ledger_stats = cores["stats"]
        if ledger is not None:
            ledger_replay(ledger, ledger_log, tx_per_s, step_s, n_steps)
    try:
        if saved is not None:
            recorder = H5Recorder.reopen(
                scenario.output_path, series, min(out_cfg.chunk_steps, n_steps), tables,
                saved["recorder"]["n_steps"], saved["recorder"]["table_rows"], LABELS, dimensions(static),
            )  # fmt: skip
        else:
            recorder = H5Recorder(
                scenario.output_path,
                series,
                static,
                attrs,
                min(out_cfg.chunk_steps, n_steps),
                out_cfg.compression,
                tables,
                labels=LABELS,
                dims=dimensions(static),
            )
    except (OSError, RuntimeError) as exc:  # the disk full or gone before the first step
        raise write_failure(
            scenario.output_path.with_name(scenario.output_path.name + ".partial"), exc
        ) from None
    bar = _progress_bar(n_steps, times_s, step_s, k0) if progress else None
    world: Any = None
    checkpoint_s = 0.0  # wall-clock seconds spent writing checkpoints

    def segment(k_from: int, k_to: int) -> None:
        """Run steps ``k_from`` .. ``k_to - 1`` in a new mosaik World whose time 0 is step ``k_from``."""
        nonlocal world
        offset = k_from * step_s
        world = mosaik.World(SIM_CONFIG, skip_greetings=True, configure_logging=False)
        rec_sim = world.start(
            "Recorder",
            recorder=recorder,
            routes=routes,
            start_unix_s=int(times_s[0]),
            step_s=step_s,
            on_step=bar,
            time_offset_s=offset,
        )
        rec_e = rec_sim.Recorder()
        sources: dict[str, Any] = {}
        if fleet is not None:
            agents_sim = world.start(
                "Agents",
                fleet=fleet,
                bidder=market.bidder if market else None,
                planner=planner,
                events=events,
                strategic=strategic,
                time_offset_s=offset,
                carry=carry,
            )
            grid_sim = world.start(
                "Grid", power_flow=power_flow, step_s=step_s, stats=stats, events=events,
                time_offset_s=offset, carry=carry,
            )  # fmt: skip
            fleet_e, grid_e = agents_sim.Fleet(), grid_sim.Grid()
            world.connect(fleet_e, grid_e, "p_mw", "q_mvar")
            if events is not None:
                world.connect(
                    grid_e,
                    fleet_e,
                    "grid_forming_mw",
                    time_shifted=True,
                    initial_data={"grid_forming_mw": carry.get("grid_forming_mw", np.nan)},
                )
            sources |= {"Agents": fleet_e, "Grid": grid_e}
        if market is not None:
            market_e = world.start(
                "Market", market=market, step_s=step_s, stats=market_stats, time_offset_s=offset
            ).Market()
            if k_from == 0:
                first = next_bids(fleet, market.bidder, 0, planner, events, strategic)
            else:  # what the agents sent at the end of the previous step
                first = {key: carry["agents"][key] for key in ("bids", "forecast_mw", "grid_forming_mwh")}
            world.connect(
                fleet_e,
                market_e,
                "bids",
                "forecast_mw",
                "grid_forming_mwh",
                time_shifted=True,
                initial_data=first,
            )
            world.connect(market_e, fleet_e, "award_mw", "price_per_mwh")
            if market.design == "acopf":  # the OPF's state is the grid's: its voltages and reactive dispatch
                world.connect(market_e, grid_e, ("vm_pu", "vm_set_pu"), ("q_mvar", "q_set_mvar"))
            sources["Market"] = market_e
        if net is not None and (accounting.emissions is not None or accounting.equity is not None):
            acc_e = world.start(
                "Accounting",
                step_s=step_s,
                n_bus=len(net.bus),
                emissions=accounting.emissions,
                equity=accounting.equity,
                baseline_price_per_mwh=accounting.baseline_price_per_mwh,
                baseline_export_per_mwh=accounting.baseline_export_per_mwh,
                time_offset_s=offset,
            ).Accounting()
            world.connect(market_e, acc_e, "detail", ("trades", "market_trades"), "payment", "award_mw")
            world.connect(grid_e, acc_e, "vm_pu", "va_degree")
            sources["Accounting"] = acc_e
        if release is not None:
            per_release = _steps_per_release(scenario)
            dp_e = world.start(
                "Privacy",
                release=release,
                step_s=step_s,
                errors=dp_errors,
                steps_per_release=per_release,
                time_offset_s=offset,
                carry=carry,
            ).Privacy()
            world.connect(fleet_e, dp_e, "p_mw")
            sources["Privacy"] = dp_e
        if ledger is not None:
            ledger_e = world.start(
                "Ledger",
                model=ledger,
                step_s=step_s,
                n_steps=n_steps,
                tx_per_s=tx_per_s,
                stats=ledger_stats,
                time_offset_s=offset,
                log=ledger_log if every else None,
            ).Ledger()
            if market is not None:
                world.connect(market_e, ledger_e, "trades")
                world.connect(fleet_e, ledger_e, "p_mw")
            sources["Ledger"] = ledger_e
        for src, attr in routes:
            world.connect(sources[src.split("-")[0]], rec_e, attr)
        world.run(until=(k_to - k_from) * step_s, print_progress=False)
        done, world = world, None
        done.shutdown()

    try:
        with sigterm_as_interrupt():
            for k_from, k_to in segments(k0, n_steps, every):
                segment(k_from, k_to)
                if k_to < n_steps:
                    t_ckpt = wallclock.perf_counter()
                    recorder.flush()
                    save_checkpoint(ckpt_path, {
                        "identity": identity, "step": k_to, "carry": carry, "ledger_log": ledger_log,
                        "cores": {k: capture_state(v) for k, v in cores.items()},
                        "recorder": {"n_steps": recorder.n_steps, "table_rows": recorder.table_rows()},
                    })  # fmt: skip
                    checkpoint_s += wallclock.perf_counter() - t_ckpt
    except BaseException as exc:
        if world is not None:
            with contextlib.suppress(BaseException):  # a second signal while stopping: stop all the same
                world.shutdown()
        partial = recorder.close(complete=False)
        if bar is not None:
            bar.close()
        if recorder.failed is not None:
            reason = str(recorder.failed)
        elif isinstance(exc, CosimError):
            reason = str(exc)
        elif isinstance(exc, KeyboardInterrupt):
            reason = f"interrupted by {exc.args[0]}" if exc.args else "interrupted"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        stopped = CosimError(
            f"run stopped after {recorder.n_steps} of {n_steps} steps ({reason}); "
            f"the steps recorded so far are in {partial}"
            + (f"; `cosim run ... --resume` continues from {ckpt_path}" if ckpt_path.exists() else "")
        )
        stopped.exit_now = recorder.failed is not None and recorder.failed.exit_now  # type: ignore[attr-defined]
        raise stopped from exc
    if bar is not None:
        bar.close()
    equity_data, equity_attrs = (
        _equity_datasets(scenario, accounting, times_s) if "equity" in scenario.output.groups else ({}, {})
    )
    recorder.dims |= dimensions(equity_data)
    path = recorder.close(
        complete=True,
        datasets=equity_data,
        attrs={
            "n_not_converged": stats.n_not_converged,
            "power_flow_s": stats.solver_s,
            "n_market_failed": market_stats.n_not_converged,
            "market_s": market_stats.solver_s,
            "ledger_s": ledger_stats.solver_s,
            "checkpoint_s": checkpoint_s,
        }
        | (
            {"ledger/notes": ledger.engine.notes, "ledger/n_rejected": ledger.n_rejected}
            if ledger is not None and more_routes
            else {}
        )
        | equity_attrs
        | (_privacy_summary(release, dp_errors) if release is not None and dp_routes else {}),
    )
    ckpt_path.unlink(missing_ok=True)  # the run is whole: nothing to resume
    wall_s = wallclock.perf_counter() - t0
    notes = run_warnings(ledger, release)
    return RunSummary(
        path,
        n_steps,
        wall_s,
        stats.solver_s,
        stats.n_not_converged,
        market_stats.solver_s,
        market_stats.n_not_converged,
        ledger_stats.solver_s,
        notes,
    )


def checkpoint_every(scenario: Scenario) -> int:
    """Steps between checkpoints (``output.checkpoint_steps``; ``week``: a week of steps); 0 for none."""
    every = scenario.output.checkpoint_steps
    if every == "week":
        return max(1, 7 * 86400 // scenario.time.step_s)
    return int(every or 0)


def segments(k0: int, n_steps: int, every: int) -> list[tuple[int, int]]:
    """Runs of steps from ``k0`` to ``n_steps``, each ending at a multiple of ``every`` (a checkpoint)."""
    if not every:
        return [(k0, n_steps)] if k0 < n_steps else []
    ends = [*range((k0 // every + 1) * every, n_steps, every), n_steps]
    return list(zip([k0, *ends[:-1]], ends, strict=True))


def run_warnings(ledger: Any, release: Any) -> tuple[str, ...]:
    """Warnings of a finished run: the ledger lost safety, halted or finalised nothing; releases refused."""
    notes: list[str] = []
    engine = getattr(ledger, "engine", None)
    if engine is not None:
        text = str(getattr(engine, "notes", ""))
        if "SAFETY LOST" in text:
            notes.append(f"the ledger lost safety: {text}")
        elif getattr(engine, "halted", False):
            notes.append(f"the ledger halted: {text}")
        elif getattr(engine, "justifies", True) is False:
            notes.append(f"the ledger finalised nothing: {text}")
    n_refused = int(getattr(release, "n_refused", 0) or 0)
    if n_refused:
        notes.append(f"{n_refused} private release(s) refused: the privacy budget was spent")
    return tuple(notes)


def _progress_bar(n_steps: int, times_s: np.ndarray, step_s: int, k0: int = 0) -> Any:
    """A tqdm bar advanced by the recorder; shows simulated date, steps/s and ETA."""
    from tqdm import tqdm

    bar = tqdm(total=n_steps, initial=k0, unit="step", dynamic_ncols=True, mininterval=0.25)
    every = max(1, 86400 // step_s)

    def on_step(k: int) -> None:
        if k % every == 0:
            stamp = np.datetime64(int(times_s[k]), "s")
            bar.set_postfix_str(f"sim {str(stamp).replace('T', ' ')[:16]}", refresh=False)
        bar.update(1)

    on_step.close = bar.close  # type: ignore[attr-defined]
    return on_step
