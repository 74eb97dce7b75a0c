"""Bids and offers of the agents and the upstream grid, and what a clearing means for each agent.

Every participant has a fixed set of steps for the whole run (so each design's model is built once):
- loads and EVs (consumers): one inelastic demand step at the value of lost load for
  ``inelastic_share`` of their forecast, and equal elastic steps at ``utility_per_mwh`` for the rest;
- sgens and rooftop PV: one supply step for their forecast output (curtailable), at their cost data
  (``poly_cost``) or ``sgen_price_per_mwh``;
- generators (``gen``): one supply step between their min and max power at their cost data (its
  constant term ``cp0_eur`` too, counted in the cost while the generator is committed);
- batteries: a demand step (charging) and a supply step (discharging) within their power and
  state-of-charge limits, at the configured prices;
- the upstream grid at each external grid: a supply step (import) and a demand step (export), or
  one supply step at its own cost data when the net has it.
Sign convention: awards are in load convention (positive = consumption), as every agent dataset.
Payments are $ per interval, positive = the agent pays.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cosim.models.market.clearing import Bids, Clearing

UPSTREAM = -1  # owner of the upstream grid's steps


@dataclass(frozen=True)
class BidRules:
    """Prices and shares of the bidding behaviour (the scenario's ``market`` section)."""

    voll_per_mwh: float
    inelastic_share: float
    utility_per_mwh: tuple[float, ...]
    sgen_price_per_mwh: float
    battery_charge_price_per_mwh: float
    battery_discharge_price_per_mwh: float
    import_price_per_mwh: float
    export_price_per_mwh: float
    max_import_mw: float
    max_export_mw: float
    critical_voll_per_mwh: float = np.inf


def _costs(net: Any, et: str, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(has cost, cp1, cp2, cp0) of elements of type ``et`` from the net's ``poly_cost`` table."""
    pc = net.poly_cost[net.poly_cost.et == et].set_index("element") if len(net.poly_cost) else None
    has = np.zeros(len(index), dtype=bool)
    c1, c2, c0 = np.zeros(len(index)), np.zeros(len(index)), np.zeros(len(index))
    if pc is not None:
        has = np.isin(index, pc.index.to_numpy())
        rows = pc.reindex(index)
        c1 = np.nan_to_num(rows["cp1_eur_per_mw"].to_numpy(dtype=float))
        c2 = np.nan_to_num(rows["cp2_eur_per_mw2"].to_numpy(dtype=float))
        c0 = np.nan_to_num(rows["cp0_eur"].to_numpy(dtype=float)) if "cp0_eur" in rows else c0
    return has, c1, c2, c0


class Bidder:
    """Fixed step layout of a run: ``bids`` each interval, then ``awards`` and ``payments`` of a clearing.

    Parameters
    ----------
    net : pandapower net with the agents' elements
    kind, bus : (n_agent,) agent kinds and pandapower buses
    elements : (table, index) of each agent
    rules : bidding prices and shares
    batteries_bid : False keeps batteries out (zero quantities): they stay idle
    critical : (n_agent,) bool, critical loads: all their demand is one step at ``critical_voll_per_mwh``
    """

    def __init__(
        self,
        net: Any,
        kind: np.ndarray,
        bus: np.ndarray,
        elements: list[tuple[str, int]],
        rules: BidRules,
        batteries_bid: bool = True,
        critical: np.ndarray | None = None,
    ) -> None:
        self.rules, self.n_agent, self.batteries_bid = rules, len(kind), batteries_bid
        kind = np.asarray(kind).astype(str)
        consumers = np.flatnonzero(np.isin(kind, ("load", "ev")))
        producers = np.flatnonzero(np.isin(kind, ("sgen", "pv", "gen")))
        batteries = np.flatnonzero(kind == "battery")
        n_util = len(rules.utility_per_mwh)
        self._consumers, self._producers, self._batteries = consumers, producers, batteries

        # supply cost data of producers (sgen, pv and gen rows of poly_cost)
        c1 = np.full(len(producers), rules.sgen_price_per_mwh)
        c2, c0 = np.zeros(len(producers)), np.zeros(len(producers))
        pmin, pmax = np.zeros(len(producers)), np.full(len(producers), np.nan)
        for table in ("sgen", "gen"):
            sel = np.flatnonzero([elements[a][0] == table for a in producers])
            idx = np.array([elements[a][1] for a in producers[sel]], dtype=np.int64)
            has, k1, k2, k0 = _costs(net, table, idx)
            c1[sel[has]], c2[sel[has]], c0[sel[has]] = k1[has], k2[has], k0[has]
            if table == "gen" and len(idx):
                gen = net.gen.loc[idx]
                pmin[sel] = np.nan_to_num(gen.get("min_p_mw", 0.0 * gen.p_mw).to_numpy(dtype=float))
                pmax[sel] = gen.get("max_p_mw", np.nan * gen.p_mw).to_numpy(dtype=float)
        self._prod_c1, self._prod_c2, self._prod_min, self._prod_max = c1, c2, np.clip(pmin, 0, None), pmax
        self._prod_c0 = c0

        # the upstream grid at every in-service external grid
        ext = net.ext_grid[net.ext_grid.in_service]
        has, e1, e2, e0 = _costs(net, "ext_grid", ext.index.to_numpy())
        self._ext_bus = ext.bus.to_numpy(dtype=np.int64)
        self._ext_has_cost, self._ext_c1, self._ext_c2, self._ext_c0 = has, e1, e2, e0
        ext_max = ext.get("max_p_mw", np.nan * ext.bus).to_numpy(dtype=float)
        self._ext_max = np.where(has, np.nan_to_num(ext_max, nan=rules.max_import_mw), rules.max_import_mw)
        export = ~has

        # fixed layout: owners and buses of every step
        d_owner = [np.repeat(consumers, 1 + n_util), batteries, np.full(int(export.sum()), UPSTREAM)]
        d_bus = [np.repeat(bus[consumers], 1 + n_util), bus[batteries], self._ext_bus[export]]
        s_owner = [producers, batteries, np.full(len(ext), UPSTREAM)]
        s_bus = [bus[producers], bus[batteries], self._ext_bus]
        self.demand_owner, self.supply_owner = np.concatenate(d_owner), np.concatenate(s_owner)
        self.demand_bus = np.concatenate(d_bus).astype(np.int64)
        self.supply_bus = np.concatenate(s_bus).astype(np.int64)
        self._n_export = int(export.sum())
        share = (1.0 - rules.inelastic_share) / max(n_util, 1)
        shares = np.tile(np.r_[rules.inelastic_share, np.full(n_util, share)], (len(consumers), 1))
        prices = np.tile(np.r_[rules.voll_per_mwh, rules.utility_per_mwh], (len(consumers), 1))
        self.critical = (
            np.zeros(len(kind), dtype=bool) if critical is None else np.asarray(critical, dtype=bool)
        )
        vital = self.critical[consumers]
        shares[vital], prices[vital, 0] = np.r_[1.0, np.zeros(n_util)], rules.critical_voll_per_mwh
        self._consumer_share, self._consumer_price = shares.ravel(), prices.ravel()
        self.inelastic_step = np.zeros(len(self.demand_owner), dtype=bool)
        self.inelastic_step[: len(consumers) * (1 + n_util) : 1 + n_util] = True
        self.consumer_step = np.zeros(len(self.demand_owner), dtype=bool)
        self.consumer_step[: len(consumers) * (1 + n_util)] = True
        self.upstream_demand, self.upstream_supply = (
            self.demand_owner == UPSTREAM,
            self.supply_owner == UPSTREAM,
        )

    def bids(
        self,
        forecast_mw: np.ndarray,
        charge_max_mw: np.ndarray,
        discharge_max_mw: np.ndarray,
        charge_price_per_mwh: np.ndarray | None = None,
        discharge_price_per_mwh: np.ndarray | None = None,
        forecast_q_mvar: np.ndarray | None = None,
    ) -> Bids:
        """This interval's bids from each agent's forecast (load convention) and battery quantities.

        Batteries bid the configured prices unless given their own (n_battery,), e.g. an arbitrage plan's.
        With ``forecast_q_mvar`` the demand steps carry their consumer's power factor of the interval
        (``demand_q_ratio``, q/p; 0 for batteries, export and a consumer forecasting no power).
        """
        r, n_util = self.rules, len(self.rules.utility_per_mwh)
        n_bat = len(self._batteries)
        if charge_price_per_mwh is None or discharge_price_per_mwh is None:
            charge_price_per_mwh = np.full(n_bat, r.battery_charge_price_per_mwh)
            discharge_price_per_mwh = np.full(n_bat, r.battery_discharge_price_per_mwh)
        if not self.batteries_bid:
            charge_max_mw, discharge_max_mw = 0.0 * charge_max_mw, 0.0 * discharge_max_mw
        consumer_mw = np.clip(forecast_mw[self._consumers], 0.0, None)
        available_mw = np.clip(-forecast_mw[self._producers], 0.0, None)
        prod_max = np.where(np.isnan(self._prod_max), available_mw, self._prod_max)
        prod_max = np.where(np.isnan(self._prod_max), prod_max, np.maximum(prod_max, self._prod_min))
        q_ratio = None
        if forecast_q_mvar is not None:
            p_c, q_c = forecast_mw[self._consumers], np.asarray(forecast_q_mvar, dtype=float)[self._consumers]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(p_c != 0.0, q_c / p_c, 0.0)
            q_ratio = np.r_[np.repeat(ratio, 1 + n_util), np.zeros(n_bat + self._n_export)]
        return Bids(
            demand_q_ratio=q_ratio,
            demand_bus=self.demand_bus,
            demand_mw=np.r_[
                np.repeat(consumer_mw, 1 + n_util) * self._consumer_share,
                charge_max_mw,
                np.full(self._n_export, r.max_export_mw),
            ],
            demand_price=np.r_[
                self._consumer_price,
                charge_price_per_mwh,
                np.full(self._n_export, r.export_price_per_mwh),
            ],
            supply_bus=self.supply_bus,
            supply_max_mw=np.r_[prod_max, discharge_max_mw, self._ext_max],
            supply_price=np.r_[
                self._prod_c1,
                discharge_price_per_mwh,
                np.where(self._ext_has_cost, self._ext_c1, r.import_price_per_mwh),
            ],
            supply_min_mw=np.r_[self._prod_min, np.zeros(len(self._batteries) + len(self._ext_bus))],
            supply_c2=np.r_[self._prod_c2, np.zeros(len(self._batteries)), self._ext_c2],
            supply_c0=np.r_[self._prod_c0, np.zeros(len(self._batteries)), self._ext_c0],
        )

    @property
    def battery_agents(self) -> np.ndarray:
        """Agent positions of the batteries, in the order of their steps."""
        return self._batteries

    def producer_cost(self, n_agent: int) -> tuple[np.ndarray, np.ndarray]:
        """(linear $/MWh, quadratic $/MW^2h) cost data of every agent, NaN for agents that are no producer."""
        c1, c2 = np.full(n_agent, np.nan), np.full(n_agent, np.nan)
        c1[self._producers], c2[self._producers] = self._prod_c1, self._prod_c2
        return c1, c2

    def _by_owner(self, demand: np.ndarray, supply: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_agent)
        d_ok, s_ok = self.demand_owner >= 0, self.supply_owner >= 0
        np.add.at(out, self.demand_owner[d_ok], demand[d_ok])
        np.subtract.at(out, self.supply_owner[s_ok], supply[s_ok])
        return out

    def awards(self, clearing: Clearing) -> np.ndarray:
        """Cleared power of every agent (load convention) [MW]."""
        return self._by_owner(clearing.demand_mw, clearing.supply_mw)

    def payments(self, clearing: Clearing, price_at: np.ndarray, dt_h: float) -> np.ndarray:
        """What every agent pays for the interval [$] at the price of its bus (negative: is paid).

        ``price_at`` : (n_demand + n_supply,) price at the bus of every demand step, then every supply step.
        """
        n_d = len(self.demand_owner)
        return self._by_owner(clearing.demand_mw * price_at[:n_d], clearing.supply_mw * price_at[n_d:]) * dt_h

    def shortfall_mw(self, bids: Bids, clearing: Clearing) -> tuple[np.ndarray, np.ndarray]:
        """(n_agent,) inelastic demand not served (shed) and elastic demand not bought (curtailed) [MW]."""
        short, owner = bids.demand_mw - clearing.demand_mw, self.demand_owner
        unserved, curtailed = np.zeros(self.n_agent), np.zeros(self.n_agent)
        np.add.at(unserved, owner[self.inelastic_step], short[self.inelastic_step])
        elastic = self.consumer_step & ~self.inelastic_step
        np.add.at(curtailed, owner[elastic], short[elastic])
        return unserved, curtailed

    def restricted(self, bids: Bids, connected: np.ndarray, islanded: bool) -> Bids:
        """``bids`` with the steps of unconnected agents (and, islanded, of the upstream grid) at zero."""
        d_on = np.where(self.demand_owner >= 0, connected[np.maximum(self.demand_owner, 0)], not islanded)
        s_on = np.where(self.supply_owner >= 0, connected[np.maximum(self.supply_owner, 0)], not islanded)
        return replace(
            bids,
            demand_mw=np.where(d_on, bids.demand_mw, 0.0),
            supply_max_mw=np.where(s_on, bids.supply_max_mw, 0.0),
            supply_min_mw=np.where(s_on, bids.supply_min_mw, 0.0),
        )


def merit_order_trades(
    demand_mw: np.ndarray, demand_price: np.ndarray, supply_mw: np.ndarray, supply_price: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilateral trades of a clearing by merit-order matching.

    Cleared demand steps sorted by bid (highest first) are filled from cleared supply steps sorted by
    offer (cheapest first), as an order book fills; ties keep step order. Gives at most
    ``n_demand + n_supply - 1`` trades per interval; every MW cleared appears in exactly one trade
    (up to the smaller of cleared demand and supply, which are equal in a balanced clearing).

    Returns
    -------
    demand_step, supply_step : the steps of each trade; mw : traded power [MW]
    """
    d = np.flatnonzero(demand_mw > 1e-9)
    s = np.flatnonzero(supply_mw > 1e-9)
    if len(d) == 0 or len(s) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    d = d[np.argsort(-demand_price[d], kind="stable")]
    s = s[np.argsort(supply_price[s], kind="stable")]
    cum_d, cum_s = np.cumsum(demand_mw[d]), np.cumsum(supply_mw[s])
    total = min(cum_d[-1], cum_s[-1])
    edges = np.unique(np.r_[0.0, cum_d[cum_d < total], cum_s[cum_s < total], total])
    mid = (edges[:-1] + edges[1:]) / 2
    mw = np.diff(edges)
    keep = mw > 1e-9
    return d[np.searchsorted(cum_d, mid)][keep], s[np.searchsorted(cum_s, mid)][keep], mw[keep]
