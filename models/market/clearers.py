"""The clearing model of each market design behind one small protocol, `Clearer`.

A `Clearer` is built once per run from a `Setup` (by `designs.Design.build`) and cleared every interval:
``clear(bids, k) -> Clearing``. It also says where each bid step and each bus of the net sit in the
clearing's price vector (``step_pos``, ``bus_pos``), takes the topology of an interval
(``use_topology``, a no-op on a copper plate) and adds the design's own measures to the interval's result
(``extra``: security cost, the ADMM trace). The design ``stochastic`` clears whole days ahead: its
`DayAheadClearer` gives intervals of the day's schedule instead (``interval(k, realised_mw)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cosim.models.market.bidding import UPSTREAM, Bidder
from cosim.models.market.clearing import Bids, Clearing

Branches = frozenset[tuple[str, int]]
Parts = tuple[Any, np.ndarray, np.ndarray, Any]


@dataclass(frozen=True)
class Setup:
    """What a design's clearing model is built from (the keys a design does not use are ignored).

    Parameters
    ----------
    net : pandapower net (its buses index the price vectors)
    bidder : the run's step layout
    demand_q_ratio : (n_demand,) q/p of each demand step (reactive designs)
    posted_price_per_mwh : (T,) the tariff of every step (posted-price designs)
    contingencies, contingency_limit_factor : the secured branch outages (names, default all) and the
        post-contingency limit as a multiple of the rating (security-constrained designs)
    day_ahead : the `DayAheadMarket` that clears the days (day-ahead designs)
    branch_limit : ``mva`` or ``current`` (reactive designs)
    time_limit_s : wall-clock limit of every solve of a clearing [s] (None: `solver.DEFAULT_TIME_LIMIT_S`;
        a day-ahead design's `DayAheadMarket` has its own)
    """

    net: Any
    bidder: Bidder
    demand_q_ratio: np.ndarray | None = None
    posted_price_per_mwh: np.ndarray | None = None
    contingencies: list[str] | None = None
    contingency_limit_factor: float = 1.0
    day_ahead: Any = None
    branch_limit: str = "mva"
    time_limit_s: float | None = None


class Clearer:
    """Protocol and copper-plate default: one model of one price, cleared per interval.

    ``model`` is the optimisation model (its ``clear(bids)`` is the interval's clearing), ``step_pos``
    (n_demand + n_supply,) the position of each bid step in the clearing's price vector, ``bus_pos``
    (n_bus,) that of each net.bus row.
    """

    checkpoint_drop: tuple[str, ...] = ()  # holds solver models: captured attribute by attribute

    def __init__(self, setup: Setup) -> None:
        n_steps = len(setup.bidder.demand_bus) + len(setup.bidder.supply_bus)
        zeros = np.zeros(n_steps, dtype=np.int64), np.zeros(len(setup.net.bus), dtype=np.int64)
        self._parts: Parts = (self._model(setup), *zeros, None)

    def _model(self, setup: Setup) -> Any:
        raise NotImplementedError

    def _current(self) -> Parts:
        """(model, step positions, bus positions, reference model or None) cleared now."""
        return self._parts

    @property
    def model(self) -> Any:
        """The optimisation model cleared now."""
        return self._current()[0]

    @property
    def step_pos(self) -> np.ndarray:
        """Position of each demand, then supply step in the clearing's price vector (-1: none)."""
        return self._current()[1]

    @property
    def bus_pos(self) -> np.ndarray:
        """Position of each net.bus row in the clearing's per-node vectors (-1: none)."""
        return self._current()[2]

    def use_topology(self, out_branches: Branches) -> None:
        """Clear with these branches out of service; a copper plate has no branches."""

    def clear(self, bids: Bids, k: int) -> Clearing:
        """The clearing of interval ``k``."""
        return self.model.clear(bids)

    def extra(self, bids: Bids, clearing: Clearing, dt_h: float) -> dict[str, Any]:
        """The design's own `MarketResult` fields of a successful interval."""
        return {}


class UniformClearer(Clearer):
    """Copper-plate double auction (`auction.UniformAuction`)."""

    def _model(self, setup: Setup) -> Any:
        from cosim.models.market.auction import UniformAuction

        b = setup.bidder
        return UniformAuction(len(b.demand_bus), len(b.supply_bus), time_limit_s=setup.time_limit_s)


class ADMMClearer(Clearer):
    """The uniform auction cleared decentrally (`admm.ADMMClearing`, warm-started); adds its trace."""

    def _model(self, setup: Setup) -> Any:
        from cosim.models.market.admm import ADMMClearing

        b = setup.bidder
        return ADMMClearing(b.demand_owner, b.supply_owner, warm_start=True, time_limit_s=setup.time_limit_s)

    def extra(self, bids: Bids, clearing: Clearing, dt_h: float) -> dict[str, Any]:
        """The interval's `admm.ADMMResult`: iterations, residual traces, messages."""
        return {"admm": self.model.last_result}


class PostedPriceClearer(Clearer):
    """Agents respond to the posted price of the interval (`tariff.PostedPrice`); one price per bus."""

    def __init__(self, setup: Setup) -> None:
        assert setup.posted_price_per_mwh is not None
        self.posted_price_per_mwh, self.n_bus = setup.posted_price_per_mwh, len(setup.net.bus)
        steps = np.r_[setup.bidder.demand_bus, setup.bidder.supply_bus]
        self._parts = (
            self._model(setup),
            setup.net.bus.index.get_indexer(steps),
            np.arange(self.n_bus),
            None,
        )

    def _model(self, setup: Setup) -> Any:
        from cosim.models.market.tariff import PostedPrice

        b = setup.bidder
        return PostedPrice(b.demand_owner == UPSTREAM, b.supply_owner == UPSTREAM)

    def clear(self, bids: Bids, k: int) -> Clearing:
        """The response to step ``k``'s posted price."""
        return self.model.clear(bids, float(self.posted_price_per_mwh[k]), self.n_bus)


class NetworkClearer(Clearer):
    """A clearing on the network: one model per topology an interval meets, built when first met.

    An island keeps the network model: lossless DC flows of a balanced dispatch do not depend on which bus
    is the slack.
    """

    checkpoint_drop = ("_net", "_bidder")  # built from the scenario: a checkpoint leaves them out

    def __init__(self, setup: Setup) -> None:
        self._net, self._bidder, self._setup_keys = setup.net, setup.bidder, self._keys(setup)
        self._time_limit_s = setup.time_limit_s
        self._state: Branches = frozenset()
        self._states = {self._state: self._build(setup.net, self._state)}

    def _keys(self, setup: Setup) -> tuple[Any, ...]:
        """The parts of the setup the models need besides the net and the bidder (small, checkpointed)."""
        return ()

    def _build(self, net: Any, out_branches: Branches) -> Parts:
        """(model, step positions, bus positions, reference model or None) of the design on ``net``."""
        raise NotImplementedError

    def _dc(self, net: Any) -> tuple[Any, np.ndarray, np.ndarray]:
        """(DC network, step positions, bus positions) of ``net``."""
        from cosim.models.market.network_dc import dc_network

        network = dc_network(net)
        b = self._bidder
        return (
            network,
            network.position_of(np.r_[b.demand_bus, b.supply_bus]),
            network.position_of(net.bus.index.to_numpy()),
        )

    def _current(self) -> Parts:
        return self._states[self._state]

    def use_topology(self, out_branches: Branches) -> None:
        """Clear with these branches out of service (a model built once per set)."""
        if out_branches not in self._states:
            from cosim.models.grid.switching import state_net

            self._states[out_branches] = self._build(state_net(self._net, out_branches, None), out_branches)
        self._state = out_branches

    def before_restore(self, fields: dict[str, Any]) -> None:
        """Build the topologies a checkpoint holds; their models are restored through ``_states``."""
        if fields.get("_states", ("",))[0] != "items":
            return
        current = self._state
        for key in fields["_states"][1]:
            self.use_topology(key)
        self._state = current


class DCOPFClearer(NetworkClearer):
    """DC-OPF with LMPs (`dcopf.DCOPF`); also the central dispatch of fixed demand."""

    def _build(self, net: Any, out_branches: Branches) -> Parts:
        from cosim.models.market.dcopf import DCOPF

        network, step_pos, bus_pos = self._dc(net)
        b, limit = self._bidder, self._time_limit_s
        return DCOPF(network, b.demand_bus, b.supply_bus, time_limit_s=limit), step_pos, bus_pos, None


class ACOPFClearer(NetworkClearer):
    """AC-OPF with active and reactive prices (`acopf.ACOPF`) on the net's own buses."""

    def _keys(self, setup: Setup) -> tuple[Any, ...]:
        return setup.demand_q_ratio, setup.branch_limit

    def _build(self, net: Any, out_branches: Branches) -> Parts:
        from cosim.models.market.acopf import ACOPF

        q_ratio, branch_limit = self._setup_keys
        b = self._bidder
        model = ACOPF(
            net, b.demand_bus, b.supply_bus, demand_q_ratio=q_ratio, branch_limit=branch_limit,
            time_limit_s=self._time_limit_s,
        )  # fmt: skip
        steps = np.r_[b.demand_bus, b.supply_bus]
        return model, net.bus.index.get_indexer(steps), np.arange(len(net.bus)), None


class SCOPFClearer(NetworkClearer):
    """Preventive N-1 secure DC-OPF (`scopf.SCOPF`); adds the security cost against the unsecured DC-OPF."""

    def _keys(self, setup: Setup) -> tuple[Any, ...]:
        return setup.contingencies, setup.contingency_limit_factor

    def _build(self, net: Any, out_branches: Branches) -> Parts:
        from cosim.models.market.dcopf import DCOPF
        from cosim.models.market.scopf import SCOPF

        contingencies, limit_factor = self._setup_keys
        if contingencies is not None:  # a branch already out is not secured again
            out = {f"{table} {index}" for table, index in out_branches}
            contingencies = [c for c in contingencies if c not in out]
        network, step_pos, bus_pos = self._dc(net)
        d_bus, s_bus = self._bidder.demand_bus, self._bidder.supply_bus
        limit = self._time_limit_s
        model = SCOPF(
            network, d_bus, s_bus, contingencies=contingencies, contingency_limit_factor=limit_factor,
            time_limit_s=limit,
        )  # fmt: skip
        unsecured = DCOPF(network, d_bus, s_bus, time_limit_s=limit)  # the security cost
        return model, step_pos, bus_pos, unsecured

    def extra(self, bids: Bids, clearing: Clearing, dt_h: float) -> dict[str, Any]:
        """``security_cost``: $ of welfare given up for N-1 security in the interval."""
        from cosim.models.market.scopf import security_cost

        return {"security_cost": security_cost(clearing, self._current()[3].clear(bids)) * dt_h}


class DayAheadClearer(Clearer):
    """Each day cleared ahead against scenarios (`day_ahead.DayAheadMarket`), settled per interval."""

    def _model(self, setup: Setup) -> Any:
        assert setup.day_ahead is not None
        return setup.day_ahead

    def clear(self, bids: Bids, k: int) -> Clearing:
        raise TypeError("a day-ahead design settles intervals of its day's schedule: call interval(k, mw)")

    def interval(self, k: int, realised_mw: np.ndarray) -> Any:
        """Interval ``k`` of its day's schedule (`day_ahead.Interval`), deviations at ``realised_mw``."""
        return self.model.interval(k, realised_mw)
