"""The registry of market designs: what each can do (`Capabilities`) and how its clearing is built.

Scenario validation, the world, the report and the RL loop read a design's capabilities instead of
comparing its name; this module is the only place a design's name decides anything. ``python -m
cosim.docs`` renders the registry into ``docs/market-designs.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from cosim.models.market.clearers import (
    ACOPFClearer,
    ADMMClearer,
    Clearer,
    DayAheadClearer,
    DCOPFClearer,
    PostedPriceClearer,
    SCOPFClearer,
    Setup,
    UniformClearer,
)

DesignName = Literal["uniform", "dcopf", "acopf", "central", "tou", "dr", "scopf", "admm", "stochastic"]
Emissions = Literal["nodal", "dc_reference", "system"]

DESIGN_KEYS: dict[str, Any] = {
    "dr_events": [],
    "branch_limit": "mva",
    "contingencies": None,
    "contingency_limit_factor": 1.0,
    "stochastic": None,
    "strategic": None,
}  # market keys only some designs use, with their defaults: another value under another design is refused


def _cap(doc: str, default: bool = False) -> bool:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Capabilities:
    """What a market design models, can clear and needs (a field's ``doc`` metadata says what it means)."""

    network: bool = _cap("nodal prices from a network model")
    dc_network: bool = _cap("clears on its own DC network model (emissions take nodal factors on it)")
    reactive: bool = _cap("reactive prices, OPF voltages and reactive dispatch (price_q, vm_pu, q_mvar)")
    losses: bool = _cap("the clearing models grid losses")
    day_ahead: bool = _cap("whole days cleared ahead against scenarios, settled in real time")
    security: bool = _cap("secure against single branch outages (N-1), reports the security cost")
    distributed: bool = _cap("cleared decentrally by ADMM (iterations, messages, residuals)")
    posted_price: bool = _cap("agents respond to a posted tariff instead of a clearing")
    fixed_demand: bool = _cap("all demand inelastic, dispatched at least cost")
    batteries_bid: bool = _cap("batteries take part in the market", True)
    islanding: bool = _cap("clears an island alone (island events)")
    outages: bool = _cap("clears branch outages and cut-off agents (events)", True)
    screens: bool = _cap("market-power screens every interval (HHI, RSI, pivotal suppliers)")
    strategic: bool = _cap("takes a strategic player (market.strategic)")
    carbon_price: bool = _cap("offers carry a carbon price (emissions.carbon_price_per_t)", True)
    emissions: Emissions = field(
        default="system",
        metadata={"doc": "marginal emission factors: nodal (own network), dc_reference (a DC-OPF beside "
                  "it) or system (one factor for every bus)"},
    )  # fmt: skip
    accepts: frozenset[str] = field(
        default=frozenset(), metadata={"doc": "design-specific market keys it uses"}
    )
    requires: frozenset[str] = field(default=frozenset(), metadata={"doc": "market keys it needs"})


@dataclass(frozen=True)
class Design:
    """One market design: its name, what it is, what its physics leave out, its capabilities and its
    clearing model's class (`clearers.Clearer`)."""

    name: str
    summary: str
    physics: str
    capabilities: Capabilities
    clearer: type[Clearer]

    def build(self, setup: Setup) -> Clearer:
        """The design's clearing model, built once for the run."""
        return self.clearer(setup)


_COPPER = "approximate physics: copper plate, no network, no losses, no voltage or line limits"
_DC = "approximate physics: linearised lossless DC flows, line limits, no voltage or reactive power"
_NETWORK: dict[str, Any] = dict(network=True, dc_network=True, islanding=True, emissions="nodal")
_TARIFF = frozenset({"tariff"})

DESIGNS: dict[str, Design] = {
    d.name: d
    for d in (
        Design("uniform", "copper-plate double auction", _COPPER,
               Capabilities(islanding=True), UniformClearer),
        Design("dcopf", "DC-OPF with LMPs", _DC,
               Capabilities(**_NETWORK, screens=True, strategic=True, accepts=frozenset({"strategic"})),
               DCOPFClearer),
        Design("acopf", "AC-OPF with active and reactive prices",
               "AC physics in the market too, but cleared on forecasts: gaps show forecast and model "
               "mismatch",
               Capabilities(network=True, reactive=True, losses=True, emissions="dc_reference",
                            accepts=frozenset({"branch_limit"})),
               ACOPFClearer),
        Design("central", "cost-minimising dispatch of fixed demand (DC-OPF, batteries idle)",
               _DC + "; demand fixed, batteries idle",
               Capabilities(**_NETWORK, fixed_demand=True, batteries_bid=False), DCOPFClearer),
        Design("tou", "agents respond to a posted time-of-use tariff",
               "no physics in the price: a posted tariff, the upstream grid balances whatever agents do",
               Capabilities(posted_price=True, accepts=_TARIFF, requires=_TARIFF), PostedPriceClearer),
        Design("dr", "tou plus demand-response events",
               "no physics in the price: a posted tariff with event adders, the upstream grid balances",
               Capabilities(posted_price=True, accepts=_TARIFF | {"dr_events"},
                            requires=_TARIFF | {"dr_events"}),
               PostedPriceClearer),
        Design("scopf", "DC-OPF secure against every single branch outage (preventive N-1)",
               _DC + "; secure against single branch outages",
               Capabilities(**_NETWORK, security=True, screens=True, strategic=True,
                            accepts=frozenset({"contingencies", "contingency_limit_factor", "strategic"})),
               SCOPFClearer),
        Design("admm", "the uniform double auction cleared decentrally (agents solve their own problems, a "
               "coordinator sets the price)", _COPPER,
               Capabilities(distributed=True, islanding=True), ADMMClearer),
        Design("stochastic", "each day cleared ahead against PV and load scenarios (copper plate, batteries "
               "out), deviations settled in real time at balancing prices",
               _COPPER + "; scheduled a day ahead on forecasts",
               Capabilities(day_ahead=True, batteries_bid=False, outages=False, carbon_price=False,
                            accepts=frozenset({"stochastic"})),
               DayAheadClearer),
    )
}  # fmt: skip
DESIGN_HELP = "; ".join(f"{d.name}: {d.summary}" for d in DESIGNS.values())  # the schema's description


def design(name: str) -> Design:
    """The registered design called ``name``.

    Raises
    ------
    ValueError
        for a name the registry does not hold (the list of names in the message).
    """
    if name not in DESIGNS:
        raise ValueError(f"market design {name!r} is not built: one of {', '.join(DESIGNS)}")
    return DESIGNS[name]


def designs_with(capability: str) -> list[str]:
    """Names of the designs that have a boolean capability, or accept a market key of `DESIGN_KEYS`."""
    if capability in DESIGN_KEYS or capability == "tariff":
        return [n for n, d in DESIGNS.items() if capability in d.capabilities.accepts]
    return [n for n, d in DESIGNS.items() if getattr(d.capabilities, capability) is True]


def capability_docs() -> dict[str, str]:
    """Each capability field's meaning, in field order (the columns of the generated table)."""
    return {f.name: str(f.metadata["doc"]) for f in fields(Capabilities)}
