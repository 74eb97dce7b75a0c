"""The market component: bidding rules, the design's clearing model built once, and its HDF5 contract."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from cosim.component import Component, Contract, Dataset, Link, dataset, rng_for
from cosim.errors import ScenarioError
from cosim.models.adapter import SolverStats
from cosim.models.market.bidding import Bidder, BidRules
from cosim.models.market.carbon import DEMAND_KINDS, EmissionFactors, StepFactors, UpstreamGrid
from cosim.models.market.designs import design
from cosim.models.market.market import Market
from cosim.models.market.sim import DAY_COLUMNS
from cosim.models.market.tariff import posted_price, utc_seconds
from cosim.scenario import Scenario, StochasticConfig

_NAMES = "agents or market group"
DATASETS: tuple[Dataset, ...] = (
    Dataset("agents/critical", "critical load: served first, shed last", "agent", "the critical loads",
            np.bool_, _NAMES, "static", note="`market.critical_loads`"),
    Dataset("agents/cost_per_mwh", "$/MWh, producer's linear cost (cp1), NaN: no producer", "agent",
            "every producer's linear cost", when=_NAMES, kind="static",
            note="gen, sgen, pv: `poly_cost` cp1, else `market.sgen_price_per_mwh`; the report's profit of a "
            "producer is `-payment - (cp1 p + cp2 p²) x step`"),
    Dataset("agents/cost_per_mw2h", "$/MWh per MW, producer's quadratic cost (cp2), NaN: no producer",
            "agent", "every producer's quadratic cost", when=_NAMES, kind="static"),
    Dataset("market/price_per_mwh", "$/MWh", "bus", "marginal price of energy per bus (uniform: one value)",
            attr="price_per_mwh",
            note="uniform, tou, dr: one value at every bus; dcopf, central: LMP; acopf: `lam_p`"),
    Dataset("market/price_q_per_mvarh", "$/Mvarh", "bus", "marginal price of reactive power per bus",
            when="design reactive", attr="price_q_per_mvarh"),
    Dataset("market/cleared_mwh", "MWh", None, "energy cleared in the interval", attr="cleared_mwh"),
    Dataset("market/welfare", "$", None, "bids served minus generation cost, per interval", attr="welfare"),
    Dataset("market/cost", "$", None, "generation cost as MATPOWER reports it: variable cost plus the "
            "constant terms of the committed units, per interval", attr="cost",
            note="the constant terms (`cp0_eur`) of every generator or upstream grid offered in the "
            "interval, whatever its dispatch; every design"),
    Dataset("market/variable_cost", "$", None, "generation cost without the constant terms, per interval",
            attr="variable_cost", note="what the designs minimise"),
    Dataset("market/vm_pu", "pu", "bus", "acopf: voltage magnitude of the OPF's solution (the grid's "
            "set-points)", when="design reactive", attr="vm_pu"),
    Dataset("market/q_mvar", "Mvar", "bus", "acopf: reactive power the OPF dispatches at each bus, + = "
            "injection", when="design reactive", attr="q_mvar",
            note="the summed capability of the bus's generators, sgens and external grid; 0 where it has "
            "none"),
    Dataset("market/congestion_rent", "$", None, "sum over buses of price * net withdrawal, per interval",
            attr="congestion_rent",
            note="the merchandising surplus of locational prices (in acopf it includes the loss rent)"),
    Dataset("market/unserved_mwh", "MWh", None, "inelastic demand shed at the value of lost load",
            attr="unserved_mwh"),
    Dataset("market/ok", "1", None, "the clearing succeeded (else: NaN, agents followed their forecast)",
            np.bool_, attr="ok", note="batteries idle when it failed"),
    Dataset("market/security_cost", "$", None, "welfare given up for N-1 security against the same bids' "
            "DC-OPF", when="design security", attr="security_cost",
            note="root attributes `market/secured_outages` and `market/islanding_outages` list the outages "
            "secured and those left out because they island part of the grid"),
    Dataset("market/balancing_cost", "$", None, "deviations from the day-ahead schedule settled in real "
            "time", when="design day_ahead", attr="balancing_cost"),
    Dataset("market/admm_iterations", "1", None, "ADMM iterations to the stopping rule", np.int64,
            "design distributed", attr="admm_iterations"),
    Dataset("market/admm_messages", "1", None, "messages exchanged: price out and quantity back per agent "
            "and iteration", np.int64, "design distributed", attr="admm_messages",
            note="plus the polishing round"),
    Dataset("market/award_mw", "MW", "agent", "cleared power, + = consumption", attr="award_mw",
            note="equals `/agents/p_mw` when the clearing succeeded"),
    Dataset("market/scheduled_mw", "MW", "agent", "day-ahead schedule, + = consumption",
            when="design day_ahead", attr="scheduled_mw"),
    Dataset("agents/storage_profit", "$", "battery", "revenue minus cost of every battery in the market",
            attr="storage_profit", note="recorded with the market group (`-payment`)"),
    Dataset("agents/unserved_mwh", "MWh", "agent", "inelastic demand shed (and all demand an outage cut "
            "off)", attr="agent_unserved_mwh", note="recorded with the market group"),
    Dataset("agents/curtailed_mwh", "MWh", "agent", "elastic demand not bought at the price",
            attr="agent_curtailed_mwh", note="recorded with the market group"),
    Dataset("market/payment", "$", "agent", "paid in the interval, + = pays", attr="payment",
            note="at the price of the agent's bus"),
    Dataset("market/hhi", "1", None, "Herfindahl-Hirschman index of cleared supply by supplier, 0..10000",
            when="screens", attr="hhi",
            note="`sum_i (100 q_i / sum_j q_j)^2`, NaN when nothing is cleared; screens: dcopf, scopf"),
    Dataset("market/rsi", "1", "supplier", "residual supply index: (capacity - supplier's) / cleared "
            "demand", when="screens", attr="rsi",
            note="`RSI_i = (C - C_i) / D`: C the supply capacity offered in the interval, D the total "
            "cleared demand (NaN when D = 0)"),
    Dataset("market/rsi_min", "1", None, "smallest residual supply index of the interval", when="screens",
            attr="rsi_min"),
    Dataset("market/pivotal", "1", "supplier", "supplier is pivotal: its residual supply index is below 1",
            np.bool_, "screens", attr="pivotal"),
    Dataset("market/strategic_offer_per_mwh", "$/MWh", None, "the strategic player's offer (its MPEC's)",
            when="strategic", attr="strategic_offer_per_mwh",
            note="less 0.01 $/MWh where the clearing broke a tie against it"),
    Dataset("market/strategic_optimal", "1", None, "the MPEC solved to optimality (else the player offered "
            "its cost)", when="strategic", attr="strategic_optimal"),
    Dataset("market/strategic_profit", "$", None, "strategic player's profit: LMP x dispatch - true cost",
            when="strategic", attr="strategic_profit"),
    Dataset("market/competitive_profit", "$", None, "its profit in the same interval offering its true "
            "cost", when="strategic", attr="competitive_profit"),
    Dataset("market/lerner_index", "1", None, "(LMP - marginal cost) / LMP at the strategic player's bus",
            when="strategic", attr="lerner_index", note="NaN where the LMP is 0"),
    Dataset("market/welfare_loss", "$", None, "competitive minus strategic welfare, both at true costs",
            when="strategic", attr="welfare_loss",
            note="`/market/welfare` and `/market/cost` themselves are at the offers as bid"),
    Dataset("market/supplier_name", "owner of supply steps; upstream = ext_grid", "supplier",
            "the suppliers of the screens", str, "screens", "static",
            note="every agent that owns a supply step, by its agent name, and `upstream` (the external "
            "grid's import steps)"),
    Dataset("market/trades", "", "trade", "bilateral trades by merit-order matching; buyer pays price, "
            "seller gets seller_price", when="", kind="table", attr="trades",
            note="buyer/seller are agent positions (column of the agent datasets); price and seller_price "
            "differ across a congested line",
            columns=(
                ("step", np.int64, "1"),
                ("buyer", np.int64, "agent position, -1 = upstream grid"),
                ("seller", np.int64, "agent position, -1 = upstream grid"),
                ("mwh", np.float64, "MWh"),
                ("price", np.float64, "$/MWh"),
                ("seller_price", np.float64, "$/MWh"),
            )),
    Dataset("market/day", "", "day", "one row per day cleared ahead", when="design day_ahead", kind="table",
            attr="day",
            note="labelled by each day's start time; `day_step`: its first step; value of the stochastic "
            "solution, expected value of perfect information, the recourse problem's expected cost, "
            "wait-and-see, expected cost of the expected-value schedule, expected balancing cost (files "
            "written before this group have them in `/market`; the report reads both)",
            columns=(("day_step", np.int64, "1"), *((c, np.float64, "$") for c in DAY_COLUMNS))),
    Dataset("market/admm_residual", "", "row", "ADMM residual traces: one row per iteration of every "
            "interval", when="design distributed", kind="table", attr="admm_residual",
            columns=(
                ("step", np.int64, "1"),
                ("iteration", np.int64, "1"),
                ("primal_residual", np.float64, "MW"),
                ("dual_residual", np.float64, "$/MWh"),
                ("rho", np.float64, "$/MWh per MW"),
                ("price", np.float64, "$/MWh"),
            )),
)  # fmt: skip


def emission_factors(scenario: Scenario) -> EmissionFactors:
    """The per-kind emission factors and the upstream grid of ``emissions``."""
    em = scenario.emissions
    assert em is not None
    return EmissionFactors(
        em.pv_kg_per_mwh,
        em.sgen_kg_per_mwh,
        em.gen_kg_per_mwh,
        em.battery_kg_per_mwh,
        upstream_emissions(scenario),
    )


def upstream_emissions(scenario: Scenario) -> UpstreamGrid:
    """The upstream grid's emission factor: a merit-order stack, a series from CSV, or a constant."""
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


def element_factors(scenario: Scenario, net: Any, fleet: Any, factors: EmissionFactors) -> np.ndarray:
    """(n_agent,) emission factor of every agent: its kind's, or its own from ``emissions.elements``.

    Raises
    ------
    ScenarioError
        for a name that is no generating agent of the grid (with the nearest valid names), before the run.
    """
    from cosim.models.grid.network import element_names

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


def carbon_price(
    scenario: Scenario, net: Any, fleet: Any, bidder: Bidder
) -> tuple[StepFactors, float] | None:
    """``(factors of the offers, $/t)`` when ``emissions.carbon_price_per_t`` puts a price on the offers."""
    em = scenario.emissions
    if em is None:
        return None
    factors = emission_factors(scenario)
    agent_kg_per_mwh = element_factors(scenario, net, fleet, factors)  # checked with or without a price
    if em.carbon_price_per_t <= 0:
        return None
    return StepFactors.from_bidder(bidder, fleet.table.kind, factors, agent_kg_per_mwh), em.carbon_price_per_t


def build_market(scenario: Scenario, net: Any, fleet: Any, events: Any = None) -> Market | None:
    """The scenario's market (bidding rules, design model built once), or None without a market section."""
    m = scenario.market
    if m is None:
        return None
    caps = design(m.design).capabilities
    rules = BidRules(
        voll_per_mwh=m.voll_per_mwh,
        inelastic_share=1.0 if caps.fixed_demand else m.inelastic_share,
        utility_per_mwh=() if caps.fixed_demand else tuple(m.utility_per_mwh),
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
        net,
        table.kind,
        table.bus,
        table.elements,
        rules,
        batteries_bid=caps.batteries_bid,
        critical=np.isin(table.name.astype(str), m.critical_loads),
    )
    p0, q0 = fleet.baseline(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        q_ratio = np.nan_to_num(q0 / p0)[np.maximum(bidder.demand_owner, 0)] * (bidder.demand_owner >= 0)
    posted = None
    if caps.posted_price:
        dr = [(utc_seconds(e.start), utc_seconds(e.end), e.price_adder_per_mwh) for e in m.dr_events]
        tariff = [(p.from_hour, p.price_per_mwh) for p in m.tariff]
        posted = posted_price(fleet.times_s, tariff, dr)
    day_ahead = None
    if caps.day_ahead:
        from cosim.models.market.day_ahead import DayAheadMarket

        st, step_s = m.stochastic or StochasticConfig(), scenario.time.step_s
        day_ahead = DayAheadMarket(
            bidder,
            lambda k: fleet.baseline(k)[0],
            table.kind,
            86400 // step_s,
            step_s / 3600.0,
            len(fleet.times_s),
            st.n_scenarios,
            st.pv_error_sd,
            st.load_error_sd,
            st.error_rho,
            st.up_price_per_mwh,
            st.down_price_per_mwh,
            rng_for(scenario.seed, "forecast"),
            time_limit_s=m.time_limit_s,
        )
    strategic = None if m.strategic is None else strategic_player(m.strategic, table, bidder, fleet)
    try:
        return Market(
            net,
            m.design,
            bidder,
            scenario.time.step_s / 3600.0,
            m.on_failure,
            q_ratio,
            posted,
            contingencies=m.contingencies,
            contingency_limit_factor=m.contingency_limit_factor,
            day_ahead=day_ahead,
            events=events,
            carbon=carbon_price(scenario, net, fleet, bidder),
            branch_limit=m.branch_limit,
            strategic=strategic,
            time_limit_s=m.time_limit_s,
        )
    except ValueError as exc:  # e.g. an unknown branch name in contingencies
        raise ScenarioError([("market.contingencies", str(exc))]) from None


def strategic_player(cfg: Any, table: Any, bidder: Bidder, fleet: Any) -> tuple[np.ndarray, float, float]:
    """(supply steps, cap, time limit) of ``market.strategic``'s player, checked against the grid.

    Raises
    ------
    ScenarioError
        for a name that is no generator agent (with the nearest names), or offers the MPEC cannot take.
    """
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
        raise ScenarioError(
            [
                (
                    "market.strategic.player",
                    f"{why}: the player must be a generator agent (gen, sgen, pv); nearest: {nearest} "
                    "(as in /agents/name)",
                )
            ]
        )
    steps = np.flatnonzero(bidder.supply_owner == names.index(cfg.player))
    zeros = np.zeros(len(bidder.battery_agents))
    bids = bidder.bids(fleet.baseline(0)[0], zeros, zeros)
    if np.any(np.asarray(bids.supply_c2) != 0):
        raise ScenarioError(
            [
                (
                    "market.strategic",
                    "the player's MPEC needs linear offers, but the grid's cost data (poly_cost cp2) has "
                    "quadratic terms: set them to 0 or remove market.strategic",
                )
            ]
        )
    return steps, cfg.offer_price_max_per_mwh, cfg.time_limit_s


class MarketComponent(Component):
    """Clears the agents' bids every step under the scenario's market design."""

    name, sim, sim_name, entity = "market", "cosim.models.market.sim:MarketSim", "Market", "Market"
    state_attrs = ("market", "stats")

    def __init__(self, scenario: Scenario, built: dict[str, Any], market: Market) -> None:
        self.scenario, self.built, self.market = scenario, built, market
        self.caps = design(market.design).capabilities
        self.step_s = scenario.time.step_s
        self.stats = SolverStats()

    def _shown(self, when: str) -> bool:
        """A dataset written under ``when`` (a row of DATASETS) is written for this market."""
        if when in ("screens", "strategic"):
            return bool(getattr(self.market, when))
        return not when or bool(getattr(self.caps, when.removeprefix("design ")))

    def contract(self, groups: Iterable[str]) -> Contract:
        groups, out, market = set(groups), Contract(), self.market
        table = self.built["agents"].fleet.table
        if groups & {"agents", "market"}:
            c1, c2 = market.bidder.producer_cost(len(table))
            static = {
                "agents/critical": np.asarray(market.bidder.critical, dtype=bool),
                "agents/cost_per_mwh": c1,
                "agents/cost_per_mw2h": c2,
            }
            out.add_static(DATASETS, static)
        if "market" not in groups:
            return out
        width: dict[str | None, int | None] = {
            "bus": len(self.built["agents"].net.bus),
            "agent": len(table),
            "battery": len(table.where("battery")),
            "supplier": len(market.suppliers),
            None: None,
        }
        for row in DATASETS:
            if row.kind == "series" and self._shown(row.when):
                out.record(DATASETS, row.path, width[row.along])
        out.record(DATASETS, "market/trades")
        if market.screens:
            names = [str(n) for n in table.name]
            suppliers = [names[a] if a >= 0 else "upstream" for a in market.suppliers]
            out.add_static(DATASETS, {"market/supplier_name": np.array(suppliers)})
        for path, step_column in (("market/day", "day_step"), ("market/admm_residual", "")):
            if self._shown(dataset(DATASETS, path).when):
                out.record(DATASETS, path, step_column=step_column)
        if self.caps.security:
            out.attrs |= {
                "market/secured_outages": json.dumps(list(market.model.contingency_names)),
                "market/islanding_outages": json.dumps(list(market.model.islanding_names)),
            }
        return out

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        return {"market": self.market, "step_s": self.step_s, "stats": self.stats, "time_offset_s": offset_s}

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        first = self.built["agents"].first_bids(k_from, carry)  # the bids cleared at the segment's first step
        bids = ("bids", "forecast_mw", "grid_forming_mwh")
        return [Link("agents", bids, time_shifted=True, initial_data=first)]

    def finish(self, groups: Iterable[str]) -> Contract:
        return Contract(
            attrs={"n_market_failed": self.stats.n_not_converged, "market_s": self.stats.solver_s}
        )


def build(scenario: Scenario, built: dict[str, Any]) -> MarketComponent | None:
    """The scenario's market, or None without a market section or a grid."""
    if "grid" not in built:
        return None
    agents, grid = built["agents"], built["grid"]
    market = build_market(scenario, agents.net, agents.fleet, grid.events)
    return None if market is None else MarketComponent(scenario, built, market)
