"""One market design of a run, from bids to what every agent gets: prices, awards, payments, trades.

The design's optimisation model is built once (fixed step layout) and updated every interval.
Money is $ per interval (``$/h * dt_h``), energy MWh per interval; awards MW, load convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cosim.errors import ModelNotConverged
from cosim.models.market import designs
from cosim.models.market.bidding import UPSTREAM, Bidder, merit_order_trades
from cosim.models.market.clearers import DayAheadClearer, Setup
from cosim.models.market.clearing import Bids, Clearing, fixed_cost


@dataclass(frozen=True)
class MarketResult:
    """One interval's market outcome, per bus of the net (net.bus row order) and per agent."""

    ok: bool
    price_per_mwh: np.ndarray  # (n_bus,)
    price_q_per_mvarh: np.ndarray  # (n_bus,), NaN unless acopf
    award_mw: np.ndarray  # (n_agent,)
    payment: np.ndarray  # (n_agent,) $, positive = pays
    cleared_mwh: float
    welfare: float  # $, bids served minus cost
    cost: float  # $, generation cost as MATPOWER states it: variable cost + constant terms of committed units
    congestion_rent: float  # $
    unserved_mwh: float
    trades: dict[str, np.ndarray]  # buyer, seller (agent position, -1 upstream), mwh, price, seller_price
    security_cost: float = np.nan  # $, welfare given up for N-1 security (scopf only)
    agent_unserved_mwh: Any = None  # (n_agent,) inelastic demand shed, incl. agents an outage cut off
    agent_curtailed_mwh: Any = None  # (n_agent,) elastic demand not bought at the price
    admm: Any = None  # ADMMResult of the interval (admm only): iterations, residual traces, messages
    balancing_cost: float = np.nan  # $, deviations from the day-ahead schedule settled (stochastic only)
    scheduled_mw: Any = None  # (n_agent,) day-ahead schedule of the interval (stochastic only)
    day: Any = None  # DayClearing of the day this interval starts (stochastic only): VSS, EVPI
    variable_cost: float = np.nan  # $, the cost without the constant terms (what the designs minimise)
    vm_pu: Any = None  # (n_bus,) the OPF's voltage magnitudes (acopf only)
    q_mvar: Any = None  # (n_bus,) reactive power the OPF dispatches per bus, + = injection (acopf only)
    hhi: float = np.nan  # HHI of cleared supply by supplier, 0..10000 (network designs)
    rsi: Any = None  # (n_supplier,) residual supply index of every supplier (network designs)
    rsi_min: float = np.nan  # its minimum
    pivotal: Any = None  # (n_supplier,) bool, rsi < 1
    strategic_offer_per_mwh: float = np.nan  # the strategic player's offer (market.strategic)
    strategic_optimal: bool = False  # its MPEC solved to optimality (else it offered its cost)
    strategic_profit: float = np.nan  # $, its profit in the interval
    competitive_profit: float = np.nan  # $, its profit had it offered its true cost
    lerner_index: float = np.nan  # (LMP - marginal cost) / LMP at its bus
    welfare_loss: float = np.nan  # $, competitive minus strategic welfare at true costs


class Market:
    """Clear one design every interval; on a failed clearing continue (agents follow their forecast) or stop.

    Parameters
    ----------
    net : pandapower net (its buses index the price vectors)
    design : a name of `designs.DESIGNS` (its `designs.Capabilities` decide what the market does; its
        clearing model is built by the design, `clearers.Clearer`)
    bidder : the run's step layout
    dt_h : interval length [h]
    on_failure : ``continue`` or ``stop``
    demand_q_ratio : (n_demand,) q/p of each demand step (reactive designs)
    posted_price_per_mwh : (T,) the tariff of every step (posted-price designs)
    carbon : ``(StepFactors, carbon_price_per_t)``: offers carry their marginal emissions at that price
    contingencies, contingency_limit_factor : security-constrained designs: the secured branch outages
        (names, default all) and the post-contingency limit as a multiple of the rating
    day_ahead : day-ahead designs: the `DayAheadMarket` that clears the days
    branch_limit : reactive designs: ``mva`` (apparent power, MATPOWER's default) or ``current`` limits
    events : `EventSchedule` of the run's outages: unconnected agents (and, islanded, the upstream grid)
        do not trade, and network designs clear the topology of the step
    strategic : designs that take a strategic player: ``(player's supply steps, offer cap $/MWh, time
        limit s)``: each interval the player's offer is replaced by its MPEC's (`strategic.StrategicPlayer`)
    time_limit_s : wall-clock limit of every solve of a clearing [s] (HiGHS, the AC-OPF's PIPS, ADMM;
        stochastic: give it to ``day_ahead``); default `solver.DEFAULT_TIME_LIMIT_S`. A clearing that
        reaches it has failed (status ``time limit``, or HiGHS's ``maxTimeLimit``)

    Designs with ``screens`` also screen market power every interval: HHI, RSI, pivotal suppliers
    (`strategic.supply_screens`) over ``suppliers`` (agent positions of the owners of supply steps, -1 the
    upstream grid).

    After ``clear``, ``last_bids`` and ``last_clearing`` hold what was cleared (bids with the carbon adder;
    clearing None when it failed) for the accounting of the interval.
    """

    checkpoint_drop = ("net",)  # the network, built from the scenario: a checkpoint leaves them out

    def __init__(
        self,
        net: Any,
        design: str,
        bidder: Bidder,
        dt_h: float,
        on_failure: str = "continue",
        demand_q_ratio: np.ndarray | None = None,
        posted_price_per_mwh: np.ndarray | None = None,
        carbon: tuple[Any, float] | None = None,
        contingencies: list[str] | None = None,
        contingency_limit_factor: float = 1.0,
        day_ahead: Any = None,
        events: Any = None,
        branch_limit: str = "mva",
        strategic: tuple[np.ndarray, float, float] | None = None,
        time_limit_s: float | None = None,
    ) -> None:
        from cosim.models.market.solver import DEFAULT_TIME_LIMIT_S

        self.time_limit_s = DEFAULT_TIME_LIMIT_S if time_limit_s is None else float(time_limit_s)
        if not self.time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
        self.design, self.bidder, self.dt_h, self.on_failure = design, bidder, dt_h, on_failure
        self.capabilities = caps = designs.design(design).capabilities
        self.carbon, self._import_mw, self.events = carbon, 0.0, events
        self.last_bids: Bids | None = None
        self.last_clearing: Clearing | None = None
        self.n_bus, self.net = len(net.bus), net
        self.posted_price_per_mwh = posted_price_per_mwh if caps.posted_price else None
        setup = Setup(
            net, bidder, demand_q_ratio, posted_price_per_mwh, contingencies, contingency_limit_factor,
            day_ahead, branch_limit, self.time_limit_s,
        )  # fmt: skip
        self.clearer = designs.design(design).build(setup)
        self.screens = caps.screens
        owners = bidder.supply_owner
        self.suppliers = np.r_[np.unique(owners[owners >= 0]), [UPSTREAM] * bool(np.any(owners == UPSTREAM))]
        self._supplier_of_step = np.searchsorted(np.r_[self.suppliers[self.suppliers >= 0], np.inf], owners)
        self._supplier_of_step[owners == UPSTREAM] = len(self.suppliers) - 1
        self.strategic: Any = None
        if strategic is not None:
            if not caps.strategic:
                users = " or ".join(designs.designs_with("strategic"))
                raise ValueError(f"a strategic player needs design {users}, not {design!r}")
            from cosim.models.market.strategic import StrategicMPEC, StrategicPlayer, limit_rows

            steps, cap, time_limit_s = strategic
            network = self.model.network
            rows = limit_rows(network, self.model if caps.security else None)
            mpec = StrategicMPEC(
                network, bidder.demand_bus, bidder.supply_bus, steps, cap, rows, time_limit_s
            )
            self.strategic = StrategicPlayer(mpec)

    @property
    def model(self) -> Any:
        """The design's optimisation model of the current topology (the day-ahead market of stochastic)."""
        return self.clearer.model

    def _per_bus(self, values: np.ndarray | None) -> np.ndarray:
        """A clearing's per-bus state (acopf) in net.bus order; NaN for designs without one."""
        return np.full(self.n_bus, np.nan) if values is None else self._per(values, self.clearer.bus_pos)

    def _per(self, price: np.ndarray, pos: np.ndarray) -> np.ndarray:
        out = np.full(len(pos), np.nan)
        ok = (pos >= 0) & (pos < len(price))
        out[ok] = price[pos[ok]]
        return out

    def clear(
        self, bids: Bids, forecast_mw: np.ndarray, step: int, grid_forming_mwh: float = np.inf
    ) -> MarketResult:
        """Clear one interval; ``forecast_mw`` is what agents do if the clearing fails.

        Islanded, ``grid_forming_mwh`` is the energy the grid-forming battery has left: none, and the
        island is blacked out (nobody trades, every load is unserved).

        Raises
        ------
        ModelNotConverged
            when the clearing fails and ``on_failure`` is ``stop``.
        """
        if self.carbon is not None:
            from cosim.models.market.carbon import carbon_priced

            steps, price_per_t = self.carbon
            fac = steps.at(step, self._import_mw)  # the last interval's import sets a stack's margin
            bids = carbon_priced(
                bids, fac.supply_marginal_kg_per_mwh, price_per_t, fac.demand_marginal_kg_per_mwh
            )
        offered = bids
        if self.events is not None:
            state = self.events.state(step)
            self.clearer.use_topology(state.out_branches)
            blackout = state.islanded and grid_forming_mwh <= 1e-12
            connected = np.zeros_like(state.connected) if blackout else state.connected
            bids = self.bidder.restricted(bids, connected, state.islanded)
        if self.capabilities.day_ahead:
            assert isinstance(self.clearer, DayAheadClearer)
            return self._settle(self.clearer.interval(step, forecast_mw), forecast_mw, step)
        if self.strategic is not None:
            bids, clearing, play = self.strategic.play(bids, lambda b: self.clearer.clear(b, step))
        else:
            clearing = self.clearer.clear(bids, step)
        self.last_bids, self.last_clearing = bids, clearing if clearing.status == "optimal" else None
        if self.carbon is not None and self.last_clearing is not None:
            self._import_mw = self.carbon[0].import_mw(clearing.supply_mw, clearing.demand_mw)
        if clearing.status != "optimal":
            if self.on_failure == "stop":
                raise ModelNotConverged(
                    f"market design {self.design!r} failed at step {step}: {clearing.status} "
                    "(set market.on_failure: continue to go on with the agents' own behaviour)"
                )
            return self._failed(forecast_mw)
        dt = self.dt_h
        price_at = self._per(clearing.price_per_mwh, self.clearer.step_pos)
        n_d = len(bids.demand_bus)
        d_step, s_step, mw = merit_order_trades(
            clearing.demand_mw, bids.demand_price, clearing.supply_mw, bids.supply_price
        )
        b = self.bidder
        q_price = clearing.price_q_per_mvarh
        unserved, curtailed = b.shortfall_mw(offered, clearing)
        fixed = fixed_cost(bids)
        extra = self.clearer.extra(bids, clearing, dt)
        if self.screens:
            from cosim.models.market.strategic import supply_screens

            hhi, rsi, pivotal = supply_screens(
                self._supplier_of_step, len(self.suppliers), bids.supply_max_mw, clearing.supply_mw,
                float(np.sum(clearing.demand_mw)),
            )  # fmt: skip
            extra |= {
                "hhi": hhi,
                "rsi": rsi,
                "rsi_min": float(np.min(rsi, initial=np.inf)),
                "pivotal": pivotal,
            }
        if self.strategic is not None:
            extra |= {
                "strategic_offer_per_mwh": play.offer_per_mwh,
                "strategic_optimal": play.status == "optimal",
                "lerner_index": play.lerner_index,
                **{
                    k: getattr(play, k) * dt
                    for k in ("strategic_profit", "competitive_profit", "welfare_loss")
                },
            }
        return MarketResult(
            ok=True,
            price_per_mwh=self._per(clearing.price_per_mwh, self.clearer.bus_pos),
            price_q_per_mvarh=np.full(self.n_bus, np.nan)
            if q_price is None
            else self._per(q_price, self.clearer.bus_pos),
            award_mw=b.awards(clearing),
            payment=b.payments(clearing, price_at, dt),
            cleared_mwh=float(np.sum(clearing.demand_mw)) * dt,
            welfare=(clearing.welfare - fixed) * dt,
            cost=(clearing.cost + fixed) * dt,
            variable_cost=clearing.cost * dt,
            congestion_rent=clearing.congestion_rent * dt,
            unserved_mwh=float(unserved.sum()) * dt,
            agent_unserved_mwh=unserved * dt,
            agent_curtailed_mwh=curtailed * dt,
            trades={
                "buyer": b.demand_owner[d_step],
                "seller": b.supply_owner[s_step],
                "mwh": mw * dt,
                "price": price_at[d_step],
                "seller_price": price_at[n_d + s_step],
            },
            vm_pu=self._per_bus(clearing.vm_pu),
            q_mvar=self._per_bus(clearing.q_mvar),
            **extra,
        )

    def _settle(self, iv: Any, forecast_mw: np.ndarray, step: int) -> MarketResult:
        """A stochastic interval: day-ahead schedule and price, real-time deviations at balancing prices."""
        day, h, dt, bids = iv.day_ahead, iv.hour, self.dt_h, iv.bids
        self.last_bids, self.last_clearing = bids, None
        if not day.status.startswith("optimal"):  # "optimal; EEV: ...": the schedule stands, a measure failed
            if self.on_failure == "stop":
                raise ModelNotConverged(
                    f"market design {self.design!r} failed for the day of step {step}: {day.status} "
                    "(set market.on_failure: continue to go on with the agents' own behaviour)"
                )
            return self._failed(forecast_mw)
        d_mw, s_mw, price = day.demand_mw[h], day.supply_mw[h], float(day.price_per_mwh[h])
        cost, fixed = float(bids.supply_price @ s_mw), fixed_cost(bids)
        welfare = float(bids.demand_price @ d_mw) - cost
        # the hour of the day-ahead schedule as a copper-plate clearing, for the accounting
        self.last_clearing = Clearing(
            np.full(self.n_bus, price), d_mw, s_mw, welfare, cost, 0.0, np.zeros(0), "optimal"
        )
        d_step, s_step, mw = merit_order_trades(d_mw, bids.demand_price, s_mw, bids.supply_price)
        b = self.bidder
        return MarketResult(
            ok=True,
            price_per_mwh=np.full(self.n_bus, price),
            price_q_per_mvarh=np.full(self.n_bus, np.nan),
            award_mw=iv.award_mw,
            payment=iv.day_ahead_payment + iv.balancing_payment,
            cleared_mwh=float(d_mw.sum()) * dt,
            welfare=(welfare - fixed) * dt,
            cost=(cost + fixed) * dt,
            variable_cost=cost * dt,
            congestion_rent=0.0,
            unserved_mwh=0.0,  # consumers take their profile; balancing covers any shortfall
            agent_unserved_mwh=np.zeros(b.n_agent),
            agent_curtailed_mwh=np.zeros(b.n_agent),
            trades={
                "buyer": b.demand_owner[d_step],
                "seller": b.supply_owner[s_step],
                "mwh": mw * dt,
                "price": np.full(len(mw), price),
                "seller_price": np.full(len(mw), price),
            },
            balancing_cost=float(iv.balancing_payment.sum()),
            scheduled_mw=iv.scheduled_mw,
            day=day if h == 0 else None,
        )

    def _failed(self, forecast_mw: np.ndarray) -> MarketResult:
        nan_bus = np.full(self.n_bus, np.nan)
        empty = {k: np.zeros(0) for k in ("mwh", "price", "seller_price")}
        return MarketResult(
            ok=False,
            price_per_mwh=nan_bus,
            price_q_per_mvarh=nan_bus.copy(),
            award_mw=np.asarray(forecast_mw, dtype=float),
            payment=np.zeros(len(forecast_mw)),
            cleared_mwh=np.nan,
            welfare=np.nan,
            cost=np.nan,
            vm_pu=nan_bus.copy(),
            q_mvar=nan_bus.copy(),
            congestion_rent=np.nan,
            unserved_mwh=np.nan,
            trades={"buyer": np.zeros(0, np.int64), "seller": np.zeros(0, np.int64), **empty},
            scheduled_mw=np.full(len(forecast_mw), np.nan),
            agent_unserved_mwh=np.full(len(forecast_mw), np.nan),
            agent_curtailed_mwh=np.full(len(forecast_mw), np.nan),
            rsi=np.full(len(self.suppliers), np.nan),
            pivotal=np.zeros(len(self.suppliers), dtype=bool),
        )
