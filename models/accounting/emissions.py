"""Emissions accounting of a market interval: totals, nodal marginal factors, losses, trades, carbon price.

Pure core (numpy, the grid's AC power flow for the loss factors, and the market's own DC-OPF for the
degenerate fall-back); built once per run and updated every interval. Units are in the names: power
MW, energy MWh, emissions kg CO2, emission factors kg CO2/MWh, carbon price $/t CO2, money $/MWh.

Emission factors per kind of supply step (:class:`EmissionFactors`, defaults and sources)
----------------------------------------------------------------------------------------------
============  ===========  ===========================================================================
kind          kg CO2/MWh   basis and source
============  ===========  ===========================================================================
``pv``        41           life cycle, median of rooftop PV: IPCC AR5 WGIII (2014) Annex III, Table A.III.2
                           (Schlomer et al.; utility-scale PV median 48, range 18-180)
``sgen``      48           life cycle, median of utility-scale PV (the SimBench LV sgens are PV plants),
                           same table
``gen``       490          life cycle, median of natural-gas combined cycle, same table (direct only: 370)
``battery``   0            a discharge re-delivers energy whose emissions were counted when it was generated
                           (charging is demand, served by the mix); manufacturing is not counted
upstream      527          constant: direct CO2 per kWh consumed of the German electricity mix 2016
                           (Umweltbundesamt estimate, press release of 30 May 2017; 2015: 534, 2017: 485)
``load, ev``  0            demand
============  ===========  ===========================================================================

Other values of the same IPCC table for stacks of one's own (life-cycle medians; direct in brackets):
coal (pulverised) 820 (760), biomass dedicated 230, geothermal 38, hydro 24, nuclear 12, wind onshore
11, offshore 12. The defaults mix bases (local technologies life cycle, upstream direct CO2); for a
direct-only account set ``pv_kg_per_mwh = sgen_kg_per_mwh = 0`` and ``gen_kg_per_mwh = 370``.

The upstream grid (:class:`UpstreamGrid`) is one of: a constant factor; an hourly series (one value per
interval); or a merit-order stack of units (capacity MW, cost $/MWh, factor kg/MWh) dispatched in order of
cost to ``base_mw`` (the rest of the upstream system's demand, constant or per interval) plus the net
import: the *marginal* factor is that of the unit serving the next MWh at that level, the *attributed*
factor of the import is the stack's emissions between ``base`` and ``base + import`` per MWh imported
(the incremental average; the marginal factor as the import goes to zero). Beyond the stack's capacity
the last unit is taken to stretch; below zero, nothing is emitted.

Per interval (:func:`interval_emissions`)
-----------------------------------------
``total_kg = dt_h * sum_j s_j * f_j`` over the cleared supply steps ``s_j`` (local production and imports,
imports at the attributed upstream factor); ``average_kg_per_mwh = total_kg / served_mwh`` with
``served_mwh = dt_h * sum`` of the cleared demand steps (by default all of them: end use, battery
charging and export, so that the average is the intensity of the energy supplied in the interval).

Nodal marginal emission factors (:class:`MarginalEmissions`)
-------------------------------------------------------------
``MEF_b`` [kg/MWh] = emissions caused by one more MWh of inelastic demand at bus ``b`` in the DC-OPF
clearing, ``MEF_b = sum_u f_u dx_u/dd_b`` over the steps that respond. A step's factor per MWh of its
own quantity: supply ``f_s`` (imports: the *marginal* upstream factor); demand ``g_d``, zero except the
export step, ``g = -`` marginal upstream factor (one MWh less exported is one MWh more generated upstream).
With the active set of the optimum fixed (steps strictly between their bounds respond, the others stay;
binding branch limits stay binding), the response ``X = dx_M/dd`` solves the equality-constrained QP::

    [ H   A^T ] [ X ]   [ 0 ]          A = [ sigma_j [island(n_j) == i]          ]  one row per island
    [ A   0   ] [ L ] = [ R ],             [ sigma_j PTDF[l, n_j]   (l binding)  ]  one row per line
                                       R = [ [island(b) == i] ;  PTDF[l, b] ]      one column per bus b

with ``sigma = +1`` for supply and ``-1`` for demand steps, ``n_j`` a step's bus, ``H = diag(2 c2)`` (zero
for linear costs: then ``X = A^-1 R``, square when the number of marginal steps is one per island plus
one per binding line). For an LP this is the sensitivity of the optimal basis: the perturbed solution
``x + eps X`` keeps every multiplier, so it is optimal for small ``eps`` (exact, not first-order).
Degenerate cases: (a) the reduced system is singular, e.g. no marginal step (a unit exactly at a bound sets
the price) or more marginal LP steps than rows (two marginal units at the same cost): the factors are then
computed by re-solving (``status="resolved"``): a DC-OPF built once with one extra inelastic demand step per
bus is re-cleared with ``eps_mw`` at each bus in turn, ``MEF_b = f . (x_b - x_0) / eps`` (one-sided: the
*next* MWh). That is one DC-OPF per bus, so on a grid of more than ``RESOLVE_MAX_BUSES`` buses (15 min a step
on SimBench's 5,479-bus MVLV grid) the step's factors are left NaN (``status="unresolved"``) and the run's
warnings count such steps. (b) Ties: a step at a bound with zero reduced cost could take the place of a
marginal one (dual degeneracy, e.g. ten batteries offering at the same price). When every marginal and tied
step of an island has the same factor per MWh injected (``sigma_j f_j``) the factor is unique and the result
is kept (``status="sensitivity"``); otherwise the optimum, hence the MEF, is not unique: the value returned is
that of the solver's vertex, flagged ``status="tie"`` (a re-solve is just as arbitrary). Buses of islands
without any step get NaN. The factor is within the interval: a battery at the margin gives its own factor (0),
not that of the energy it will later recharge.

Losses (:func:`loss_adjusted`)
------------------------------
The DC model is lossless. Loss sensitivity factors at the AC operating point: ``dloss_ddemand[b]`` =
``dP_loss/dD_b``, MW of extra losses per MW of extra active *withdrawal* at bus ``b`` (load convention,
as every agent dataset; reactive power held), balanced by the reference (slack) bus, so it is 0 at the
slack; ``P_loss = sum_i P_i`` over all buses (branch and shunt losses). Positive where more demand
raises losses (a load at the end of a feeder), negative where it lowers them (a bus with reverse power
flow towards the slack). The grid's physics lives in the power flow: ``dloss_ddemand = -dloss_dp`` of
:meth:`ACPowerFlow.loss_sensitivities <cosim.models.grid.powerflow.ACPowerFlow.loss_sensitivities>`
(the adjoint of the Newton Jacobian, ``J^T lambda = dP_loss/dx``, one sparse LU and one transposed solve
per interval), taken at the voltages the grid solved. The loss-adjusted marginal factor serves the
change of losses at the reference bus, from the marginal units that respond there::

    dL_b = l_b - sum_j sigma_j X[j, b] l_{n_j}          (losses of the demand and of the response)
    MEF_loss_b = MEF_b + MEF_ref * dL_b / (1 - dL_ref)  (the geometric series of losses of losses)

which is ``MEF_b * (1 + l_b)`` in the usual case of an uncongested grid with its marginal supply at the
slack (the upstream grid), since then ``MEF_b = MEF_ref`` and ``dL_b = l_b``.

Trades (:func:`trade_impacts`)
------------------------------
A trade of ``E`` MWh from a seller at bus ``s`` (factor ``f_s``) to a buyer at bus ``b``; ``mu`` is the
loss-adjusted marginal factor (``MEF`` if losses are left out)::

    seller_kg     =  E f_s                          the seller's production the trade calls for
    displaced_kg  = -E mu_b                         grid supply to the buyer it replaces (losses included)
    congestion_kg =  E (MEF_b - MEF_s)              redispatch for moving E from s to b (DC)
    loss_kg       =  E ((mu_b - MEF_b) - (mu_s - MEF_s))   emissions of the losses moving E from s to b
    total_kg      = sum of the four = E (f_s - mu_s)

(``displaces=False`` for a buyer whose consumption exists only because of the trade: no displaced term,
``total = E (f_s + mu_b - mu_s)``). Positive is a carbon cost, negative a credit. PV sold to a buyer
whose grid supply comes from a dirty marginal unit earns ``E (41 - mu_s) < 0``, a credit: without the trade
the PV output is curtailed (not produced) and the buyer is served by the grid. A trade whose delivery
raises losses (``l_s < 0``: injecting at the seller's bus raises losses, e.g. at the far end of a feeder
with reverse flow) makes the dirty marginal unit serve ``-E l_s`` more losses: a seller almost as clean
as that unit then carries a net carbon cost. ``total`` does not depend on the buyer's bus: the buyer
consumes in both cases, so only where the energy enters the grid changes; the buyer's terms show how
it is split between replacing grid supply and delivering across the network.

Carbon price (:func:`~cosim.models.market.carbon.carbon_priced`, the market's; re-exported here)
-----------------------------------------------------------------------------------------------
A cost adder on the bids: ``supply_price + f * carbon_price_per_t / 1000`` and
``demand_price - g * carbon_price_per_t / 1000`` ($/t -> $/kg), so the clearing responds to it; the
factors ``f``, ``g`` are this module's (:meth:`StepFactors.at`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosim.models.grid.powerflow import ACPowerFlow
from cosim.models.market.bidding import UPSTREAM
from cosim.models.market.carbon import (  # the market prices the offers' emissions; re-exported here
    EmissionFactors,
    IntervalFactors,
    StepFactors,
    UpstreamGrid,
    carbon_priced,
)
from cosim.models.market.clearing import Bids, Clearing
from cosim.models.market.network_dc import DCNetwork

__all__ = [
    "EmissionAccounting",
    "EmissionFactors",
    "IntervalAccount",
    "IntervalEmissions",
    "IntervalFactors",
    "MarginalEmissions",
    "NodalFactors",
    "StepFactors",
    "TradeImpacts",
    "UpstreamGrid",
    "carbon_priced",
    "interval_emissions",
    "loss_adjusted",
    "trade_impacts",
]


# ------------------------------------------------------------------------------------------ per interval
@dataclass(frozen=True)
class IntervalEmissions:
    """Emissions of one interval."""

    total_kg: float
    served_mwh: float
    average_kg_per_mwh: float  # total_kg / served_mwh, NaN when nothing is served
    supply_kg: np.ndarray  # (n_s,) per supply step


def interval_emissions(
    supply_mw: np.ndarray,
    demand_mw: np.ndarray,
    supply_kg_per_mwh: np.ndarray,
    dt_h: float,
    served: np.ndarray | None = None,
) -> IntervalEmissions:
    """Total emissions of a clearing and the average factor per MWh of demand served.

    Parameters
    ----------
    supply_mw, demand_mw : (n_s,), (n_d,) cleared quantities
    supply_kg_per_mwh : (n_s,) factors (``IntervalFactors.supply_kg_per_mwh``)
    dt_h : interval length [h]
    served : (n_d,) bool, the demand steps counted as served (default all)
    """
    supply_kg = np.asarray(supply_mw, dtype=float) * np.asarray(supply_kg_per_mwh, dtype=float) * dt_h
    d = np.asarray(demand_mw, dtype=float)
    served_mwh = float(np.sum(d if served is None else d[served])) * dt_h
    total = float(np.sum(supply_kg))
    return IntervalEmissions(
        total, served_mwh, total / served_mwh if served_mwh > 0 else float("nan"), supply_kg
    )


# ------------------------------------------------------------------------------ nodal marginal factors
RESOLVE_MAX_BUSES = 1_000  # above it a singular sensitivity system leaves the step's factors NaN


@dataclass(frozen=True)
class NodalFactors:
    """Nodal marginal emission factors of one clearing (DC network positions)."""

    kg_per_mwh: np.ndarray  # (n_bus,) emissions per extra MWh of inelastic demand at each bus
    status: str  # "sensitivity", "tie", "resolved", "unresolved" or "failed" (see the module notes)
    step: np.ndarray  # (m,) responding steps, positions in [demand steps..., supply steps...]
    step_node: np.ndarray  # (m,) their bus positions
    step_sign: np.ndarray  # (m,) +1 supply, -1 demand
    response: np.ndarray  # (m, n_bus) d(step quantity)/d(demand at each bus) [MW/MW]
    binding_branch: np.ndarray  # branches at their limit


class MarginalEmissions:
    """Nodal marginal emission factors of a DC-OPF clearing from its sensitivities (built once per run).

    Parameters
    ----------
    network : the market's ``DCNetwork``
    demand_bus, supply_bus : pandapower bus of every demand and supply step (fixed for the run)
    tol_mw : a step is marginal when more than ``tol_mw`` inside both bounds; a branch binds within it
    tol_price : a step at a bound with ``|reduced cost|`` below it ($/MWh) is tied with the marginal ones
    """

    def __init__(
        self,
        network: DCNetwork,
        demand_bus: np.ndarray,
        supply_bus: np.ndarray,
        *,
        tol_mw: float = 1e-9,
        tol_price: float = 1e-6,
    ) -> None:
        self.network = network
        self.demand_bus = np.asarray(demand_bus, dtype=np.int64)
        self.supply_bus = np.asarray(supply_bus, dtype=np.int64)
        self.n_d, self.n_s = len(self.demand_bus), len(self.supply_bus)
        d_node = network.position_of(self.demand_bus) if self.n_d else np.zeros(0, np.int64)
        s_node = network.position_of(self.supply_bus) if self.n_s else np.zeros(0, np.int64)
        self.node = np.r_[d_node, s_node].astype(np.int64)
        self.sign = np.r_[-np.ones(self.n_d), np.ones(self.n_s)]
        self.tol_mw, self.tol_price = float(tol_mw), float(tol_price)
        n_bus = network.n_bus
        island = np.asarray(network.island, dtype=np.int64)
        self.island = island
        self.n_island = int(island.max()) + 1 if n_bus else 0
        has_step = np.zeros(self.n_island, dtype=bool)
        has_step[island[self.node]] = True
        self._served_bus = has_step[island] if n_bus else np.zeros(0, dtype=bool)
        # one balance row per island that has steps (buses of the others get NaN)
        self._island_rows = (island[None, :] == np.flatnonzero(has_step)[:, None]).astype(float)
        self._probe: Any = None

    # ------------------------------------------------------------------ sensitivity
    def nodal(
        self,
        bids: Bids,
        clearing: Clearing,
        supply_kg_per_mwh: np.ndarray,
        demand_kg_per_mwh: np.ndarray | None = None,
        *,
        resolve: bool = True,
    ) -> NodalFactors:
        """Marginal emission factor of every bus of an optimal clearing.

        Parameters
        ----------
        bids, clearing : the interval's bids and their DC-OPF clearing (``status == "optimal"``)
        supply_kg_per_mwh : (n_s,) factors (``IntervalFactors.supply_marginal_kg_per_mwh``)
        demand_kg_per_mwh : (n_d,) factors of demand steps (default 0;
            ``IntervalFactors.demand_marginal_kg_per_mwh`` counts exports)
        resolve : re-solve when the sensitivity system is singular (else ``status="failed"``, NaN)
        """
        n_bus = self.network.n_bus
        f = self._factors(supply_kg_per_mwh, demand_kg_per_mwh)
        if clearing.status != "optimal":
            return self._nan("failed")
        smin = np.asarray(bids.supply_min_mw, dtype=float)
        x = np.r_[clearing.demand_mw, clearing.supply_mw]
        lo = np.r_[np.zeros(self.n_d), smin]
        hi = np.r_[bids.demand_mw, bids.supply_max_mw].astype(float)
        c2 = np.asarray(bids.supply_c2, dtype=float)
        h = np.r_[np.zeros(self.n_d), 2.0 * c2]
        price = np.r_[-np.asarray(bids.demand_price, dtype=float), bids.supply_price]
        tol = self.tol_mw * np.maximum(1.0, np.abs(hi))
        interior = (x - lo > tol) & (hi - x > tol)
        flow, rate = clearing.line_flow_mw, self.network.rate_mw
        finite = np.isfinite(rate)
        limit = np.where(finite, rate, 0.0)
        binding = np.flatnonzero(finite & (np.abs(flow) >= limit - self.tol_mw * np.maximum(1.0, limit)))
        m = np.flatnonzero(interior)
        node_m, sign_m = self.node[m], self.sign[m]

        # ties: steps at a bound (with room to move) whose reduced cost is zero
        lmp = np.asarray(clearing.price_per_mwh, dtype=float)
        rc = price + h * x - self.sign * lmp[self.node]
        tied = (
            (~interior)
            & (hi - lo > tol)
            & (np.abs(rc) <= self.tol_price * np.maximum(1.0, np.abs(lmp[self.node])))
        )
        status = "sensitivity"
        if tied.any():
            cand = interior | tied
            per_inj = self.sign * f
            isl = self.island[self.node]
            for i in np.unique(isl[tied]):
                vals = per_inj[cand & (isl == i)]
                if np.ptp(vals) > 1e-9 * max(1.0, float(np.max(np.abs(vals)))):
                    status = "tie"
                    break

        rows_island = self._island_rows
        ptdf = self.network.ptdf_rows(binding)  # solved once per branch, on demand: no dense PTDF
        a = np.vstack([rows_island[:, node_m] * sign_m, ptdf[:, node_m] * sign_m])
        r = np.vstack([rows_island, ptdf])
        nm, nr = len(m), len(r)
        x_resp: np.ndarray | None = None
        if nm and nr and (np.any(h[m] > 0) or nm == nr):
            kkt = np.zeros((nm + nr, nm + nr))
            kkt[:nm, :nm] = np.diag(h[m])
            kkt[:nm, nm:] = a.T
            kkt[nm:, :nm] = a
            rhs = np.vstack([np.zeros((nm, n_bus)), r])
            if np.linalg.cond(kkt) < 1e12:
                x_resp = np.linalg.solve(kkt, rhs)[:nm]
        if x_resp is None:
            if not resolve:
                return self._nan("failed")
            if n_bus > RESOLVE_MAX_BUSES:
                return self._nan("unresolved")
            return self.resolved(bids, supply_kg_per_mwh, demand_kg_per_mwh)
        mef = f[m] @ x_resp
        mef = np.where(self._served_bus, mef, np.nan)
        return NodalFactors(mef, status, m, node_m, sign_m, x_resp, binding)

    def _factors(self, supply_kg_per_mwh: np.ndarray, demand_kg_per_mwh: np.ndarray | None) -> np.ndarray:
        g = np.zeros(self.n_d) if demand_kg_per_mwh is None else np.asarray(demand_kg_per_mwh, dtype=float)
        return np.r_[g, np.asarray(supply_kg_per_mwh, dtype=float)]

    def _nan(self, status: str) -> NodalFactors:
        n_bus = self.network.n_bus
        empty = np.zeros(0, dtype=np.int64)
        return NodalFactors(
            np.full(n_bus, np.nan), status, empty, empty, np.zeros(0), np.zeros((0, n_bus)), empty
        )

    # ------------------------------------------------------------------ re-solve
    def resolved(
        self,
        bids: Bids,
        supply_kg_per_mwh: np.ndarray,
        demand_kg_per_mwh: np.ndarray | None = None,
        eps_mw: float | None = None,
    ) -> NodalFactors:
        """Marginal factors by re-solving: ``eps_mw`` more inelastic demand at each bus in turn.

        Uses a DC-OPF built once (at the first call) with one extra demand step per bus, warm-started
        between the ``n_bus + 1`` solves. ``eps_mw`` defaults to ``1e-6 * max(1, total demand bid)``.
        """
        from cosim.models.market.dcopf import DCOPF

        net, n_bus = self.network, self.network.n_bus
        if self._probe is None:
            self._probe = DCOPF(net, np.r_[self.demand_bus, net.bus], self.supply_bus)
        f = self._factors(supply_kg_per_mwh, demand_kg_per_mwh)
        if eps_mw is None:
            eps_mw = 1e-6 * max(1.0, float(np.sum(bids.demand_mw)))
        prices = np.abs(np.r_[bids.demand_price, bids.supply_price])
        high = max(1e4, 10.0 * float(np.max(prices, initial=0.0)))
        extra = np.zeros(n_bus)

        def solve(extra_mw: np.ndarray) -> np.ndarray | None:
            probe = dataclasses.replace(
                bids,
                demand_bus=np.r_[self.demand_bus, net.bus],
                demand_mw=np.r_[bids.demand_mw, extra_mw],
                demand_price=np.r_[bids.demand_price, np.full(n_bus, high)],
            )
            res = self._probe.clear(probe)
            if res.status != "optimal":
                return None
            return np.r_[res.demand_mw[: self.n_d], res.supply_mw]

        x0 = solve(extra)
        if x0 is None:
            return self._nan("failed")
        resp = np.full((self.n_d + self.n_s, n_bus), np.nan)
        for b in np.flatnonzero(self._served_bus):
            extra[b] = eps_mw
            xb = solve(extra)
            extra[b] = 0.0
            if xb is not None:
                resp[:, b] = (xb - x0) / eps_mw
        ok = np.all(np.isfinite(resp), axis=0)
        resp = np.nan_to_num(resp, copy=False)  # in place, and no float temporaries: (steps, buses) is big
        mef = np.where(ok, f @ resp, np.nan)
        moved = np.flatnonzero(np.any((resp > 1e-9) | (resp < -1e-9), axis=1))
        status = "resolved" if ok[self._served_bus].all() else "failed"
        return NodalFactors(
            mef, status, moved, self.node[moved], self.sign[moved], resp[moved], np.zeros(0, np.int64)
        )


# ---------------------------------------------------------------------------------------------- losses
def loss_adjusted(nodal: NodalFactors, dloss_ddemand: np.ndarray, slack: int) -> np.ndarray:
    """(n_bus,) loss-adjusted marginal factors ``MEF_b + MEF_ref dL_b / (1 - dL_ref)`` (module notes).

    Parameters
    ----------
    nodal : the clearing's nodal factors
    dloss_ddemand : (n_bus,) loss factors at the DC network's positions (0 at the slack)
    slack : position of the reference bus (``DCNetwork.slack``)
    """
    ell = np.nan_to_num(np.asarray(dloss_ddemand, dtype=float))
    inj_loss = (nodal.step_sign * ell[nodal.step_node]) @ nodal.response if len(nodal.step) else 0.0
    dl = ell - inj_loss
    mef = nodal.kg_per_mwh
    return np.asarray(mef + mef[slack] * dl / (1.0 - dl[slack]))


# ---------------------------------------------------------------------------------------------- trades
@dataclass(frozen=True)
class TradeImpacts:
    """Emissions impact of trades [kg]; positive = carbon cost, negative = credit (module notes)."""

    seller_kg: np.ndarray
    displaced_kg: np.ndarray
    congestion_kg: np.ndarray
    loss_kg: np.ndarray
    total_kg: np.ndarray


def trade_impacts(
    seller_node: np.ndarray,
    buyer_node: np.ndarray,
    mwh: np.ndarray,
    seller_kg_per_mwh: np.ndarray,
    mef_kg_per_mwh: np.ndarray,
    mef_loss_kg_per_mwh: np.ndarray | None = None,
    displaces: bool | np.ndarray = True,
) -> TradeImpacts:
    """Emissions impact of each trade: seller + displaced + congestion + loss terms (module notes).

    Parameters
    ----------
    seller_node, buyer_node : (n_trade,) bus positions of seller and buyer (the upstream grid: the slack)
    mwh : (n_trade,) traded energy
    seller_kg_per_mwh : (n_trade,) the seller's factor (``StepFactors.seller_kg_per_mwh``)
    mef_kg_per_mwh : (n_bus,) nodal marginal factors (lossless DC)
    mef_loss_kg_per_mwh : (n_bus,) loss-adjusted ones (default: the lossless ones)
    displaces : whether the buyer's energy would otherwise come from the grid (scalar or per trade)
    """
    s, b = np.asarray(seller_node, dtype=np.int64), np.asarray(buyer_node, dtype=np.int64)
    e = np.asarray(mwh, dtype=float)
    mef = np.asarray(mef_kg_per_mwh, dtype=float)
    mu = mef if mef_loss_kg_per_mwh is None else np.asarray(mef_loss_kg_per_mwh, dtype=float)
    seller = e * np.asarray(seller_kg_per_mwh, dtype=float)
    displaced = -e * mu[b] * np.asarray(displaces, dtype=float)
    congestion = e * (mef[b] - mef[s])
    loss = e * ((mu[b] - mef[b]) - (mu[s] - mef[s]))
    return TradeImpacts(seller, displaced, congestion, loss, seller + displaced + congestion + loss)


# ------------------------------------------------------------------------------------------ one account
@dataclass(frozen=True)
class IntervalAccount:
    """Everything the emissions account gives for one interval (buses in net.bus row order)."""

    total_kg: float
    served_mwh: float
    average_kg_per_mwh: float
    agent_kg: np.ndarray  # (n_agent,) emissions of each agent's supply
    upstream_kg: float  # emissions attributed to the import
    upstream_marginal_kg_per_mwh: float
    mef_kg_per_mwh: np.ndarray  # (n_bus,)
    mef_loss_kg_per_mwh: np.ndarray  # (n_bus,), equal to mef_kg_per_mwh without a power flow
    dloss_ddemand: np.ndarray  # (n_bus,), NaN without a power flow
    mef_status: str
    trades: TradeImpacts


class EmissionAccounting:
    """The emissions account of a DC-OPF market run: build once, :meth:`update` every interval.

    Parameters
    ----------
    net : the pandapower net of the run (with the agents' elements)
    network : the market's ``DCNetwork`` (``Market.model.network``)
    bidder : the run's ``Bidder`` (step owners and buses)
    agent_kind, agent_bus : (n_agent,) ``AgentTable.kind`` and ``AgentTable.bus``
    factors : per-kind factors and the upstream grid
    agent_kg_per_mwh : (n_agent,) per-agent factors overriding the per-kind ones
    losses : take the loss factors from an AC power flow of ``net`` (:class:`ACPowerFlow`, built here
        once; needs the voltages the grid solved in :meth:`update`)
    reference : a DC-OPF on ``network`` that re-clears each interval's bids for the marginal factors, for a
        design whose own clearing is not a DC-OPF on it (acopf: the DC approximation of its dispatch);
        default None: the factors are the sensitivities of the design's own clearing

    A copper-plate design (uniform, admm, tou, dr, stochastic) passes
    :func:`~cosim.models.market.network_dc.copper_plate`: one node, no branch, so the marginal factor is
    the system's, that of the marginal offer (or bid) at every bus.
    """

    def __init__(
        self,
        net: Any,
        network: DCNetwork,
        bidder: Any,
        agent_kind: np.ndarray,
        agent_bus: np.ndarray,
        factors: EmissionFactors | None = None,
        agent_kg_per_mwh: np.ndarray | None = None,
        losses: bool = True,
        reference: Any = None,
    ) -> None:
        self.network, self.reference = network, reference
        self.steps = StepFactors.from_bidder(bidder, agent_kind, factors, agent_kg_per_mwh)
        self.marginal = MarginalEmissions(network, bidder.demand_bus, bidder.supply_bus)
        # outages: the marginal factors on the network of each topology the market cleared on
        self._topologies: dict[int, tuple[DCNetwork, MarginalEmissions]] = {}
        self.losses = ACPowerFlow(net, ()) if losses else None
        self.n_agent = len(agent_kind)
        self._bus_pos = network.position_of(net.bus.index.to_numpy())  # net.bus row -> DC position
        # DC position -> a net.bus row (the representative bus of each position)
        self._pos_row = net.bus.index.get_indexer(network.bus)
        self.agent_node = network.position_of(agent_bus) if len(agent_bus) else np.zeros(0, np.int64)
        self._owner = self.steps.supply_owner
        self._own = self._owner >= 0
        self.n_without_factors = 0  # intervals whose nodal factors are NaN ("failed", "unresolved")

    def _marginal_on(self, network: DCNetwork | None) -> MarginalEmissions:
        """The marginal factors of the topology the clearing ran on (built once per topology)."""
        if network is None or network is self.network or self.reference is not None:
            return self.marginal
        if not np.array_equal(network.bus, self.network.bus):
            raise ValueError("the market's network of an outage has other buses than the intact one")
        if id(network) not in self._topologies:
            marginal = MarginalEmissions(network, self.marginal.demand_bus, self.marginal.supply_bus)
            self._topologies[id(network)] = (network, marginal)  # the network kept: its id stays its own
        return self._topologies[id(network)][1]

    def update(
        self,
        step: int,
        bids: Bids,
        clearing: Clearing,
        dt_h: float,
        vm_pu: np.ndarray | None = None,
        va_degree: np.ndarray | None = None,
        trades: dict[str, np.ndarray] | None = None,
        network: DCNetwork | None = None,
    ) -> IntervalAccount:
        """Account one interval.

        Parameters
        ----------
        step : interval index (for series and per-interval stack bases)
        bids, clearing : what the market cleared (DC-OPF)
        dt_h : interval length [h]
        vm_pu, va_degree : the AC power flow's voltages at the interval's operating point (net.bus rows)
        trades : ``MarketResult.trades`` (``buyer``, ``seller``: agent positions or ``UPSTREAM``; ``mwh``)
        network : the DC network the market cleared on when it is not the intact one (an outage): the
            marginal factors are taken on it (the same buses, other branches)
        """
        st = self.steps
        fac = st.at(step, st.import_mw(clearing.supply_mw, clearing.demand_mw))
        em = interval_emissions(clearing.supply_mw, clearing.demand_mw, fac.supply_kg_per_mwh, dt_h)
        agent_kg = np.bincount(self._owner[self._own], em.supply_kg[self._own], self.n_agent)
        upstream_kg = float(np.sum(em.supply_kg[st.upstream_supply]))
        margin = clearing if self.reference is None else self.reference.clear(bids)
        nodal = self._marginal_on(network).nodal(
            bids, margin, fac.supply_marginal_kg_per_mwh, fac.demand_marginal_kg_per_mwh
        )
        self.n_without_factors += nodal.status in ("failed", "unresolved")
        n_pos = self.network.n_bus
        dloss_pos = np.full(n_pos, np.nan)
        dloss_rows = np.full(len(self._bus_pos), np.nan)
        mu = nodal.kg_per_mwh
        if self.losses is not None and vm_pu is not None and va_degree is not None:
            sens = self.losses.loss_sensitivities(vm_pu, va_degree)
            dloss_rows = 0.0 - sens.dloss_dp  # per MW withdrawn (0.0 - : +0.0 at the slack)
            dloss_pos = dloss_rows[self._pos_row]
            mu = loss_adjusted(nodal, dloss_pos, self.network.slack)
        if trades is not None and len(trades["mwh"]):
            seller, buyer = np.asarray(trades["seller"]), np.asarray(trades["buyer"])
            slack = self.network.slack
            s_node = np.where(seller == UPSTREAM, slack, self.agent_node[np.maximum(seller, 0)])
            b_node = np.where(buyer == UPSTREAM, slack, self.agent_node[np.maximum(buyer, 0)])
            impacts = trade_impacts(
                s_node, b_node, trades["mwh"], st.seller_kg_per_mwh(seller, fac), nodal.kg_per_mwh, mu
            )
        else:
            z = np.zeros(0)
            impacts = TradeImpacts(z, z, z, z, z)
        return IntervalAccount(
            total_kg=em.total_kg,
            served_mwh=em.served_mwh,
            average_kg_per_mwh=em.average_kg_per_mwh,
            agent_kg=agent_kg,
            upstream_kg=upstream_kg,
            upstream_marginal_kg_per_mwh=fac.upstream_marginal_kg_per_mwh,
            mef_kg_per_mwh=nodal.kg_per_mwh[self._bus_pos],
            mef_loss_kg_per_mwh=mu[self._bus_pos],
            dloss_ddemand=dloss_rows,
            mef_status=nodal.status,
            trades=impacts,
        )
