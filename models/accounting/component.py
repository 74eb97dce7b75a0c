"""The accounting component: emissions of the dispatch and the equity of bills, from the market's results."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np

from cosim.component import Component, Contract, Dataset, Link, dataset, rng_for
from cosim.models.agents.fleet import household_rows
from cosim.models.market.component import element_factors, emission_factors
from cosim.models.market.tariff import posted_price
from cosim.scenario import Scenario

_MONEY = "over the study, per unit"
DATASETS: tuple[Dataset, ...] = (
    Dataset("emissions/total_kg", "kg", None, "CO2 emitted by the dispatch of the interval (imports at the "
            "upstream factor)", when="emissions", attr="total_kg",
            note="each supply step x its factor; imports at the upstream's attributed factor"),
    Dataset("emissions/average_kg_per_mwh", "kg/MWh", None, "total_kg per MWh of cleared demand",
            when="emissions", attr="average_kg_per_mwh",
            note="cleared demand: end use, battery charging and export"),
    Dataset("emissions/upstream_kg", "kg", None, "CO2 of the energy imported from the upstream grid",
            when="emissions", attr="upstream_kg"),
    Dataset("emissions/marginal_kg_per_mwh", "kg/MWh", "bus", "nodal marginal emission factor, losses "
            "included", when="emissions", attr="marginal_kg_per_mwh",
            note="CO2 caused by one more MWh of demand at the bus; NaN: no market step in the bus's island, "
            "or a degenerate clearing not re-solved (counted in the run's warnings)"),
    Dataset("emissions/marginal_lossless_kg_per_mwh", "kg/MWh", "bus", "nodal marginal emission factor of "
            "the DC-OPF", when="emissions", attr="marginal_lossless_kg_per_mwh"),
    Dataset("emissions/trades", "", "trade", "emissions impact of each trade; row i belongs to row i of "
            "/market/trades", when="emissions", kind="table", attr="trades",
            columns=(("step", np.int64, "1"),
                     ("kg", np.float64, "kg, CO2: + = a carbon cost, - = a credit"))),
    Dataset("equity/surplus", "$", "unit", "baseline_cost - net_cost", when="equity", kind="final",
            note=_MONEY),
    Dataset("equity/bill", "$", "unit", "paid", when="equity", kind="final", note=_MONEY),
    Dataset("equity/revenue", "$", "unit", "received", when="equity", kind="final", note=_MONEY),
    Dataset("equity/net_cost", "$", "unit", "paid net, after the rule", when="equity", kind="final",
            note=_MONEY),
    Dataset("equity/baseline_cost", "$", "unit", "what the same energy profile costs under the baseline "
            "tariff", when="equity", kind="final", note=_MONEY),
    Dataset("equity/transfer", "$", "unit", "the rule's net transfer", when="equity", kind="final",
            note=_MONEY),
    Dataset("equity/energy_bought_mwh", "MWh", "unit", "energy bought", when="equity", kind="final"),
    Dataset("equity/energy_sold_mwh", "MWh", "unit", "energy sold", when="equity", kind="final"),
    Dataset("equity/gini", "1", "month", "Gini of each month's surplus", when="equity", kind="final"),
    Dataset("equity/gini_bill", "1", "month", "Gini of each month's bills", when="equity", kind="final"),
    Dataset("equity/lorenz", "1", "lorenz_point x lorenz_axis", "Lorenz curve of surplus: population "
            "share, cumulative share", when="equity", kind="final",
            note="of surplus - min when the total surplus is not positive: attribute `lorenz_shifted`"),
    Dataset("equity/low_income", "1", "unit", "the beneficiaries of the rule", np.bool_, "equity", "final",
            note="a household whose load is flagged"),
    Dataset("equity/unit_name", "", "unit", "the units compared", str, "equity", "final",
            note="the households (`equity.unit: household`, default) or every agent (`device`)"),
    Dataset("equity/month_start", "Unix s", "month", "start of each month of the study", np.int64, "equity",
            "final"),
)  # fmt: skip


def emissions_network(market_component: Any, net: Any, losses: bool) -> tuple[Any, Any, bool]:
    """(network, reference DC-OPF or None, losses) the marginal emission factors of a design are taken on.

    ``nodal`` designs (dcopf, central, scopf): the design's own DC network and clearing (losses as asked);
    ``dc_reference`` (acopf): the DC network of the net and a DC-OPF re-clearing the same bids (nodal
    factors of the DC approximation); ``system`` (copper plate): one node, the system marginal factor at
    every bus, no loss adjustment (the clearing has no network to carry losses).
    """
    from cosim.models.market.dcopf import DCOPF
    from cosim.models.market.network_dc import copper_plate, dc_network

    market, kind = market_component.market, market_component.caps.emissions
    if kind == "nodal":
        return market.model.network, None, losses
    if kind == "dc_reference":
        network = dc_network(net)
        return network, DCOPF(network, market.bidder.demand_bus, market.bidder.supply_bus), losses
    return copper_plate(net), None, False


class Accounting(Component):
    """Emissions of every interval's dispatch and trades; the equity of what each household pays."""

    name, sim, sim_name, entity = (
        "accounting",
        "cosim.models.accounting.sim:AccountingSim",
        "Accounting",
        "Accounting",
    )
    state_attrs = ("emissions", "equity")

    def __init__(self, scenario: Scenario, built: dict[str, Any]) -> None:
        from cosim.models.accounting.emissions import EmissionAccounting
        from cosim.models.accounting.equity import EquityAccumulator, study_month_of_step

        agents, market = built["agents"], built["market"]
        net, fleet = agents.net, agents.fleet
        self.scenario, self.step_s, self.n_bus, self.times_s = (
            scenario,
            scenario.time.step_s,
            len(net.bus),
            fleet.times_s,
        )
        self.emissions: Any = None
        self.equity: Any = None
        self.baseline_price_per_mwh = self.baseline_export_per_mwh = None
        self.attrs: dict[str, Any] = {}
        table = fleet.table
        if scenario.emissions is not None:
            em = scenario.emissions
            factors = emission_factors(scenario)
            network, reference, losses = emissions_network(market, net, em.losses)
            self.emissions = EmissionAccounting(
                net, network, market.market.bidder, table.kind, table.bus, factors,
                element_factors(scenario, net, fleet, factors), losses=losses, reference=reference,
            )  # fmt: skip
            self.attrs = {
                "emissions/carbon_price_per_t": em.carbon_price_per_t,
                "emissions/upstream": factors.upstream.kind,
                "emissions/elements": json.dumps(em.elements),
            }
        if scenario.equity is not None:
            eq, m = scenario.equity, scenario.market
            assert m is not None
            periods = [(p.from_hour, p.price_per_mwh) for p in (eq.baseline_tariff or m.tariff)]
            flat = [(0.0, m.upstream.import_price_per_mwh)]  # no tariff given: a flat one at the import price
            self.baseline_price_per_mwh = posted_price(fleet.times_s, periods or flat)
            if eq.baseline_export_price_per_mwh is not None:
                self.baseline_export_per_mwh = np.full(len(fleet.times_s), eq.baseline_export_price_per_mwh)
            self.equity = EquityAccumulator(len(table), study_month_of_step(fleet.times_s))
            homes = set(household_rows(net, scenario.agents.household_profiles).tolist())
            loads = [a for a in table.where("load") if net.load.index.get_loc(table.elements[a][1]) in homes]
            self.beneficiary = np.zeros(len(table), dtype=bool)
            if loads:
                chosen = rng_for(scenario.seed, "equity").choice(
                    loads, size=round(eq.low_income_share * len(loads)), replace=False
                )
                self.beneficiary[chosen] = True
            self.unit_of, self.unit_name = None, table.name
            if eq.unit == "household" and table.household is not None:
                self.unit_of, self.unit_name = table.household, table.household_name
            self.attrs |= {
                "equity/rule": eq.rule,
                "equity/levy_per_mwh": eq.levy_per_mwh,
                "equity/unit": eq.unit,
            }

    def contract(self, groups: Iterable[str]) -> Contract:
        groups = set(groups)
        out = Contract(attrs={k: v for k, v in self.attrs.items() if k.split("/")[0] in groups})
        if self.emissions is not None and "emissions" in groups:
            for row in DATASETS:
                if row.path.startswith("emissions/"):
                    out.record(DATASETS, row.path, self.n_bus if row.along == "bus" else None)
        return out

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        return {
            "step_s": self.step_s, "n_bus": self.n_bus, "emissions": self.emissions, "equity": self.equity,
            "baseline_price_per_mwh": self.baseline_price_per_mwh,
            "baseline_export_per_mwh": self.baseline_export_per_mwh, "time_offset_s": offset_s,
        }  # fmt: skip

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        return [
            Link("market", ("detail", ("trades", "market_trades"), "payment", "award_mw")),
            Link("grid", ("vm_pu", "va_degree")),
        ]

    def warnings(self) -> list[str]:
        from cosim.models.accounting.emissions import RESOLVE_MAX_BUSES

        n = self.emissions.n_without_factors if self.emissions is not None else 0
        return [
            f"{n} interval(s) without nodal marginal emission factors (NaN): the clearing was degenerate and "
            f"not re-solved (the re-solve, one DC-OPF per bus, is skipped above {RESOLVE_MAX_BUSES:,} buses)"
        ] if n else []  # fmt: skip

    def finish(self, groups: Iterable[str]) -> Contract:
        """The /equity datasets of the whole run (monthly Gini, Lorenz curves, bills per unit)."""
        from cosim.models.accounting.equity import study_month_of_step, study_outputs

        eq = self.scenario.equity
        if self.equity is None or eq is None or "equity" not in set(groups):
            return Contract()
        owner, names = self.unit_of, self.unit_name
        n_unit = len(names)
        res = study_outputs(self.equity, self.beneficiary, eq.rule, eq.levy_per_mwh, owner, n_unit)
        month = study_month_of_step(self.times_s)
        starts = self.times_s[np.searchsorted(month, np.arange(self.equity.n_month))]
        low = np.asarray(self.beneficiary)
        if owner is not None:
            low = np.bincount(owner[owner >= 0], low[owner >= 0], minlength=n_unit) > 0
        data = {f"equity/{k}": np.asarray(v) for k, v in res.items() if np.ndim(v)} | {
            "equity/low_income": low,
            "equity/unit_name": np.asarray(names, dtype=str),
            "equity/month_start": starts,
        }
        labels = {"equity/month_start": "month", "equity/unit_name": "unit"}
        dims = {
            path: tuple(str(dataset(DATASETS, path).along).split(" x "))
            for path in data
            if path not in labels
        }
        attrs = {
            "equity/gini_surplus": res["gini_surplus"], "equity/gini_bill": res["gini_bill_study"],
            "equity/absolute_gini_surplus": res["absolute_gini_surplus"],
            "equity/lorenz_shifted": bool(res["lorenz_shifted"]),
        }  # fmt: skip
        out = Contract(attrs=attrs, labels=labels, dims=dims)
        out.add_static(DATASETS, data)
        return out


def build(scenario: Scenario, built: dict[str, Any]) -> Accounting | None:
    """The emissions and equity accounts, or None when the scenario keeps neither (both need a market)."""
    if "market" not in built or (scenario.emissions is None and scenario.equity is None):
        return None
    return Accounting(scenario, built)
