"""Scenario schema: the YAML a study is written in, validated by pydantic.

Every field carries a description and, where it has one, a unit (``json_schema_extra["unit"]``).
Unknown keys are refused; all problems are reported at once as dotted paths.
Sections that later issues build (``market``, ``ledger``, ...) are refused with "not implemented yet".
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined

from cosim.errors import ScenarioError
from cosim.models.ledger.presets import BITCOIN
from cosim.models.market.designs import DESIGN_HELP, DESIGN_KEYS, DesignName, design, designs_with
from cosim.runguard import path_problem
from cosim.scenario_io import read_yaml

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h|d|w)\s*$")
_YEARS_RE = re.compile(r"^\s*(\d+)\s*y\s*$")
_UNIT_S = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# times are stored and read as pandas nanosecond timestamps: the period must lie inside their range
FIRST_START = dt.datetime(1678, 1, 1, tzinfo=dt.UTC)
LAST_END = dt.datetime(2262, 1, 1, tzinfo=dt.UTC)
INT64_MAX = 2**63 - 1


def parse_duration_s(text: str | int) -> int:
    """Parse ``"15min"``, ``"1h"``, ``"365d"``, ``"2w"`` or integer seconds into whole seconds."""
    if isinstance(text, int) and not isinstance(text, bool):
        seconds = float(text)
    else:
        if _YEARS_RE.match(str(text)):
            raise ValueError(f"{text!r}: years (calendar years) are only a unit of time.duration")
        match = _DURATION_RE.match(str(text))
        if match is None:
            raise ValueError(
                f"{text!r} is not a duration; write a number and a unit, e.g. 900s, 15min, 1h, 365d"
            )
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0 or seconds != int(seconds):
        raise ValueError(f"{text!r} must be a positive whole number of seconds")
    if seconds > INT64_MAX:
        raise ValueError(f"{text!r} is too long (more than 2**63 s)")
    return int(seconds)


def calendar_years(text: str | None) -> int | None:
    """The number of calendar years of a duration written ``"1y"``, ``"2y"``; None for other durations."""
    match = _YEARS_RE.match(text) if isinstance(text, str) else None
    return int(match.group(1)) if match else None


def add_years(start: dt.datetime, years: int) -> dt.datetime:
    """``start`` moved by whole calendar years (29 February to 1 March in a year without it)."""
    try:
        return start.replace(year=start.year + years)
    except ValueError:  # 29 February, or beyond year 9999
        if start.year + years > dt.MAXYEAR:
            raise
        return start.replace(year=start.year + years, month=3, day=1)


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type admits a boolean anywhere (bool, bool | None, list[bool], ...)."""
    return annotation is bool or any(_takes_bool(a) for a in typing.get_args(annotation))


def _takes_number(annotation: Any) -> bool:
    return annotation in (int, float) or any(_takes_number(a) for a in typing.get_args(annotation))


def _booleans(value: Any, depth: int = 2) -> bool:
    """A boolean in ``value`` or its lists (two levels: numbers, lists of them, matrices)."""
    if isinstance(value, bool):
        return True
    return depth > 0 and isinstance(value, list) and any(_booleans(v, depth - 1) for v in value)


def _huge_int(value: Any, depth: int = 2) -> bool:
    """An integer beyond 64 bits in ``value`` or its lists (two levels)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > INT64_MAX
    return depth > 0 and isinstance(value, list) and any(_huge_int(v, depth - 1) for v in value)


def _raw_problems(models: list[Any], data: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[str, str]]:
    """Numbers pydantic would coerce silently: booleans where numbers are meant, integers beyond 64 bits.

    Walks the raw YAML data alongside the schema classes ``models`` (all members of a union).
    """
    if not models:  # below the schema's sections: nothing more to walk
        return []
    if isinstance(data, list):
        items = [(i, item) for i, item in enumerate(data) if isinstance(item, dict)]
        return [p for i, item in items for p in _raw_problems(models, item, (*loc, i))]
    if not isinstance(data, dict):
        return []
    found: list[tuple[str, str]] = []
    for key, value in data.items():
        fields = [m.model_fields[key] for m in models if isinstance(key, str) and key in m.model_fields]
        if not fields:
            continue
        annotation, where = fields[0].annotation, _dotted((*loc, key))
        if _takes_number(annotation) and not _takes_bool(annotation) and _booleans(value):
            found.append((where, "true/false where a number is meant; write a number"))
        elif _huge_int(value):
            found.append((where, f"too large: numbers here must lie within +-{INT64_MAX} (64 bits)"))
        else:
            found += _raw_problems([m for f in fields for m in _models_in(f.annotation)], value, (*loc, key))
    return found


def _field(description: str, default: Any = PydanticUndefined, *, unit: str | None = None, **kw: Any) -> Any:
    extra: dict[str, Any] | None = {"unit": unit} if unit else None
    return Field(default, description=description, json_schema_extra=extra, **kw)


class _Section(BaseModel):
    """Base of every section: unknown keys refused, numbers finite (booleans, 64 bits: ``_raw_problems``).

    ``allow_inf_nan=False`` refuses ``.inf`` and ``.nan`` in every float field; a key that means to
    accept them must say so in its own type (``Annotated[float, AllowInfNan(True)]``) and description.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TimeConfig(_Section):
    """Simulated period and step."""

    start: dt.datetime = _field("Start of the first step, ISO 8601; naive times are UTC")
    end: dt.datetime | None = _field("End of the period (exclusive); give end or duration", None)
    duration: str | None = _field(
        "Length of the period, e.g. '365d', '48h', or '1y' (a calendar year: 366 days in a leap year)", None
    )
    step: str = _field("Length of one step, e.g. '15min', '1h'", default="1h")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        if value is not None and not FIRST_START <= value <= LAST_END:
            raise ValueError(
                f"{value:%Y-%m-%d} is outside {FIRST_START:%Y-%m-%d} to {LAST_END:%Y-%m-%d} "
                "(the range of the nanosecond timestamps results are read with)"
            )
        return value

    @field_validator("duration", "step")
    @classmethod
    def _duration(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not (info.field_name == "duration" and calendar_years(value)):
            parse_duration_s(value)
        return value

    @model_validator(mode="after")
    def _period(self) -> TimeConfig:
        if (self.end is None) == (self.duration is None):
            raise ValueError("give exactly one of 'end' or 'duration'")
        years = calendar_years(self.duration)
        if (years or 0) > LAST_END.year - self.start.year or (
            self.period_s > (LAST_END - self.start).total_seconds()
        ):
            raise ValueError(f"the period must end by {LAST_END:%Y-%m-%d}; shorten duration or end")
        if self.period_s < self.step_s:
            raise ValueError(f"the period ({self.period_s} s) is shorter than one step")
        return self

    @property
    def step_s(self) -> int:
        """Step length [s]."""
        return parse_duration_s(self.step)

    @property
    def period_s(self) -> int:
        """Length of the period [s]."""
        years = calendar_years(self.duration)
        if years is not None:
            return int((add_years(self.start, years) - self.start).total_seconds())
        if self.duration is not None:
            return parse_duration_s(self.duration)
        assert self.end is not None
        return int((self.end - self.start).total_seconds())

    @property
    def n_steps(self) -> int:
        """Number of whole steps in the period."""
        return self.period_s // self.step_s


class PowerFlowConfig(_Section):
    """Newton-Raphson settings of the AC power flow."""

    tolerance_mva: float = _field("Largest bus power mismatch accepted", unit="MVA", default=1e-8, gt=0)
    max_iteration: int = _field("Iterations before a step is declared not converged", default=10, ge=1)


class SimbenchGrid(_Section):
    """A SimBench grid with its own year-long load, PV and wind profiles (2016, 15 min)."""

    source: Literal["simbench"] = _field("Grid source")
    code: str = _field("SimBench code, e.g. '1-LV-semiurb4--0-sw', '1-MV-rural--0-sw'")
    power_flow: PowerFlowConfig = _field("Power flow settings", default_factory=PowerFlowConfig)

    @field_validator("code")
    @classmethod
    def _known(cls, code: str) -> str:
        from cosim.models.grid import netcache

        if netcache.enabled() and netcache.has(code):
            return code  # SimBench parsed it before (under the installed versions): no need to import it
        import simbench

        codes = simbench.collect_all_simbench_codes()
        if code not in codes:
            examples = ", ".join(c for c in codes if c.endswith("--0-sw"))[:300]
            raise ValueError(f"unknown SimBench code {code!r}; valid codes include {examples}, ...")
        return code


class PandapowerGrid(_Section):
    """A test case from ``pandapower.networks`` with its own loads and generator costs."""

    source: Literal["pandapower"] = _field("Grid source")
    case: str = _field("Case name in pandapower.networks, e.g. 'case5', 'case9', 'case118'")
    power_flow: PowerFlowConfig = _field("Power flow settings", default_factory=PowerFlowConfig)

    @field_validator("case")
    @classmethod
    def _known(cls, case: str) -> str:
        import pandapower.networks as pn

        if not (case.startswith("case") and callable(getattr(pn, case, None))):
            valid = sorted(n for n in dir(pn) if n.startswith("case") and n[4:5].isdigit())
            raise ValueError(f"unknown pandapower case {case!r}; valid: {', '.join(valid)}")
        return case


class FileGrid(_Section):
    """A pandapower network saved as JSON (``pandapower.to_json``)."""

    source: Literal["file"] = _field("Grid source")
    path: Path = _field("Path to the JSON file, relative to the scenario file")
    power_flow: PowerFlowConfig = _field("Power flow settings", default_factory=PowerFlowConfig)


GridConfig = Annotated[SimbenchGrid | PandapowerGrid | FileGrid, Field(discriminator="source")]


class PVConfig(_Section):
    """Rooftop PV added to a seeded share of households."""

    share: float = _field("Share of households that get PV", default=0.0, ge=0, le=1)
    kwp_min: float = _field("Smallest installed peak power", unit="kWp", default=3.0, gt=0)
    kwp_max: float = _field("Largest installed peak power (uniform draw)", unit="kWp", default=10.0, gt=0)
    profile: str | None = _field(
        "SimBench renewables profile (e.g. 'PV5'); default: the grid's first PV profile, or a "
        "clear-sky profile at `latitude_deg` for grids without profiles",
        None,
    )
    latitude_deg: float = _field(
        "Latitude of the clear-sky profile", unit="degree", default=51.0, ge=-90, le=90
    )

    @model_validator(mode="after")
    def _range(self) -> PVConfig:
        if self.kwp_max < self.kwp_min:
            raise ValueError("kwp_max must be >= kwp_min")
        return self


class BatteryConfig(_Section):
    """Home batteries, run for self-consumption, added to a seeded share of households."""

    share: float = _field("Share of households that get a battery", default=0.0, ge=0, le=1)
    capacity_kwh: float = _field("Usable energy capacity", unit="kWh", default=10.0, gt=0)
    power_kw: float = _field("Charge and discharge power limit", unit="kW", default=5.0, gt=0)
    eta_charge: float = _field("Charging efficiency", default=0.95, gt=0, le=1)
    eta_discharge: float = _field("Discharging efficiency", default=0.95, gt=0, le=1)
    soc_min: float = _field("Lowest state of charge, share of capacity", default=0.05, ge=0, lt=1)
    soc_max: float = _field("Highest state of charge, share of capacity", default=0.95, gt=0, le=1)
    soc_initial: float = _field("State of charge at the start, share of capacity", default=0.5)
    only_with_pv: bool = _field("Place batteries only in households that have PV", default=True)

    @model_validator(mode="after")
    def _soc(self) -> BatteryConfig:
        if not self.soc_min <= self.soc_initial <= self.soc_max:
            raise ValueError("need soc_min <= soc_initial <= soc_max")
        return self


class EVConfig(_Section):
    """Electric vehicles charged at home, uncontrolled (full power from arrival until charged)."""

    share: float = _field("Share of households that own an EV", default=0.0, ge=0, le=1)
    charger_kw: float = _field("Home charger power", unit="kW", default=11.0, gt=0)
    daily_kwh_mean: float = _field("Mean energy charged per day", unit="kWh", default=8.0, gt=0)
    daily_kwh_sd: float = _field(
        "Standard deviation of daily energy between EVs", unit="kWh", default=3.0, ge=0
    )
    arrival_hour_mean: float = _field("Mean plug-in hour (local = UTC)", unit="h", default=18.0, ge=0, lt=24)
    arrival_hour_sd: float = _field("Standard deviation of plug-in hour", unit="h", default=1.5, ge=0)
    departure_hour_mean: float = _field("Mean plug-out hour", unit="h", default=7.5, ge=0, lt=24)
    departure_hour_sd: float = _field("Standard deviation of plug-out hour", unit="h", default=1.0, ge=0)


class StrategicAgent(_Section):
    """One agent whose bids come from a trained policy (``cosim train``) instead of its ordinary rule."""

    agent: str = _field(
        "Name of the agent (as in /agents/name): a battery, a household load with a battery, an EV, a gen, "
        "an sgen or a PV"
    )
    policy: Path = _field("Policy file written by `cosim train` (JSON); relative to the scenario file")


class AgentsConfig(_Section):
    """Every load and static generator of the grid becomes an agent; these add devices."""

    household_profiles: list[str] = _field(
        "SimBench load-profile prefixes that mark a load as a household (others are businesses, heat pumps "
        "and EV chargers: SimBench's H0-* are households, its HLS_* home chargers also start with H); loads "
        "without a profile are all households. A household is its load and what is behind its meter: the "
        "PV, battery and EV placed there, and the grid's own loads and generators at its bus if alone there",
        default_factory=lambda: ["H0"],
    )
    pv: PVConfig = _field("Rooftop PV", default_factory=PVConfig)
    battery: BatteryConfig = _field("Home batteries", default_factory=BatteryConfig)
    ev: EVConfig = _field("Electric vehicles", default_factory=EVConfig)
    strategic: list[StrategicAgent] = _field(
        "Agents that bid by a trained policy (a learning bidder); everyone else bids as usual",
        default_factory=list,
    )

    @model_validator(mode="after")
    def _one_policy_each(self) -> AgentsConfig:
        names = [s.agent for s in self.strategic]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"strategic: agents named more than once: {twice}")
        return self


class UpstreamConfig(_Section):
    """The upstream grid behind the external-grid connection, as a market participant.

    Used where the external grid has no cost data (``poly_cost``) of its own.
    """

    import_price_per_mwh: float = _field("Price of energy bought from upstream", unit="$/MWh", default=80.0)
    export_price_per_mwh: float = _field(
        "Price upstream pays for exported energy", unit="$/MWh", default=30.0
    )
    max_import_mw: float = _field("Largest import offered", unit="MW", default=1000.0, ge=0)
    max_export_mw: float = _field("Largest export bought", unit="MW", default=1000.0, ge=0)

    @model_validator(mode="after")
    def _spread(self) -> UpstreamConfig:
        if self.export_price_per_mwh > self.import_price_per_mwh:
            raise ValueError(
                "export_price_per_mwh above import_price_per_mwh would let the grid arbitrage itself"
            )
        return self


class TariffPeriod(_Section):
    """One period of a daily time-of-use tariff: its price holds until the next period starts."""

    from_hour: float = _field("Start of the period, hour of day (UTC)", unit="h", ge=0, lt=24)
    price_per_mwh: float = _field("Retail price in the period", unit="$/MWh")


class DREvent(_Section):
    """A demand-response event: a critical-peak price adder on top of the tariff."""

    start: dt.datetime = _field("Start of the event, ISO 8601 (naive = UTC)")
    end: dt.datetime = _field("End of the event (exclusive)")
    price_adder_per_mwh: float = _field("Added to the tariff during the event", unit="$/MWh", gt=0)

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    @model_validator(mode="after")
    def _order(self) -> DREvent:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class StochasticConfig(_Section):
    """Design stochastic: the day-ahead forecast scenarios and the real-time balancing prices."""

    n_scenarios: int = _field("Scenarios of the next day's PV and load", default=10, ge=1, le=200)
    pv_error_sd: float = _field(
        "Standard deviation of the relative PV forecast error (one for all PV, per interval)",
        default=0.25,
        ge=0,
    )
    load_error_sd: float = _field("Standard deviation of the relative load forecast error", default=0.1, ge=0)
    error_rho: float = _field(
        "AR(1) coefficient of the errors from one interval to the next", default=0.8, ge=0, lt=1
    )
    up_price_per_mwh: float = _field(
        "Price of real-time energy bought upstream when short (>= the import price)",
        unit="$/MWh",
        default=160.0,
    )
    down_price_per_mwh: float = _field(
        "Price paid for real-time energy sold upstream when long (<= the export price)",
        unit="$/MWh",
        default=0.0,
    )


class StrategicConfig(_Section):
    """A strategic player (dcopf, scopf): each interval its offer is the solution of its bilevel problem."""

    player: str = _field("Agent name of the player: a generator of the grid (gen, sgen or pv agent)")
    offer_price_max_per_mwh: float = _field(
        "Cap on the player's offer price (its offer lies between its true cost and this)",
        unit="$/MWh",
        gt=0,
    )
    time_limit_s: float = _field("HiGHS time limit of the MPEC per interval", unit="s", default=30.0, gt=0)


class MarketConfig(_Section):
    """Market clearing every step: bids and offers from the agents, a design, awards as set-points."""

    design: DesignName = _field(DESIGN_HELP)
    voll_per_mwh: float = _field(
        "Value of lost load: the bid of inelastic demand, the price of shedding it",
        unit="$/MWh",
        default=3000.0,
        gt=0,
    )
    inelastic_share: float = _field(
        "Share of each load's demand bid at voll_per_mwh", default=0.7, ge=0, le=1
    )
    utility_per_mwh: list[float] = _field(
        "Bids of the elastic rest of each load, in equal steps",
        unit="$/MWh",
        default_factory=lambda: [250.0, 150.0, 90.0],
    )
    sgen_price_per_mwh: float = _field(
        "Offer of PV, wind and other static generators without cost data", unit="$/MWh", default=0.0
    )
    battery_charge_price_per_mwh: float = _field(
        "Batteries buy at up to this price", unit="$/MWh", default=40.0
    )
    battery_discharge_price_per_mwh: float = _field(
        "Batteries sell at this price or more", unit="$/MWh", default=70.0
    )
    battery_bidding: Literal["fixed", "arbitrage"] = _field(
        "fixed: batteries bid the two prices above for all they can take or give; arbitrage: each battery "
        "plans charge and discharge against yesterday's prices at its bus (a daily LP) and bids its plan",
        default="fixed",
    )
    arbitrage_horizon_h: float = _field("arbitrage: planning horizon", unit="h", default=24.0, gt=0, le=168)
    upstream: UpstreamConfig = _field("The upstream grid as a participant", default_factory=UpstreamConfig)
    tariff: list[TariffPeriod] = _field(
        "Daily time-of-use tariff (tou, dr), periods in order from hour 0", default_factory=list
    )
    dr_events: list[DREvent] = _field("Demand-response events (dr)", default_factory=list)
    contingency_limit_factor: float = _field(
        "scopf: post-contingency limit = rating x this factor", default=1.0, gt=0
    )
    contingencies: list[str] | None = _field(
        "scopf: branches whose outage is secured, as 'line N' / 'trafo N' (pandapower index); default all "
        "(outages that would island part of the grid are excluded and reported)",
        None,
    )
    stochastic: StochasticConfig | None = _field(
        "stochastic: scenarios and balancing prices (default: the defaults of each key)", None
    )
    critical_loads: list[str] = _field(
        "Agent names of critical loads (e.g. a hospital): all their demand is bid at critical_voll_per_mwh, "
        "so they are served first and shed last",
        default_factory=list,
    )
    critical_voll_per_mwh: float = _field(
        "Value of lost load of the critical loads", unit="$/MWh", default=10000.0, gt=0
    )
    strategic: StrategicConfig | None = _field(
        "A strategic player anticipating the clearing (dcopf, scopf; an MPEC solved each interval); "
        "none: every agent offers its cost",
        None,
    )
    on_failure: Literal["continue", "stop"] = _field(
        "When clearing fails: continue (agents follow their profiles that step, flagged) or stop",
        default="continue",
    )
    time_limit_s: float = _field(
        "Wall-clock limit of every solve of a clearing, whatever the design (HiGHS, the AC-OPF's interior "
        "point, ADMM's iterations; the strategic player's MPEC has its own strategic.time_limit_s); a "
        "clearing that reaches it has failed (on_failure applies)",
        unit="s",
        default=60.0,
        gt=0,
    )
    branch_limit: Literal["mva", "current"] = _field(
        "acopf: what a branch rating limits: mva = apparent power at both ends (MATPOWER's default, "
        "opf.flow_lim 'S'), current = current magnitude (pandapower's default; looser above 1 pu). The DC "
        "designs limit active power to the same rating (MVA at 1 pu)",
        default="mva",
    )

    @model_validator(mode="after")
    def _battery_spread(self) -> MarketConfig:
        if self.battery_discharge_price_per_mwh <= self.battery_charge_price_per_mwh:
            raise ValueError("battery_discharge_price_per_mwh must be above battery_charge_price_per_mwh")
        if not self.utility_per_mwh and self.inelastic_share < 1:
            raise ValueError("utility_per_mwh needs at least one step unless inelastic_share is 1")
        caps = design(self.design).capabilities
        if "tariff" in caps.requires:
            hours = [p.from_hour for p in self.tariff]
            if not hours or hours[0] != 0 or hours != sorted(set(hours)):
                raise ValueError(
                    f"design {self.design} needs a tariff whose periods start at hour 0, in order"
                )
        if "dr_events" in caps.requires and not self.dr_events:
            raise ValueError(f"design {self.design} needs at least one entry in dr_events")
        for key, default in DESIGN_KEYS.items():
            if getattr(self, key) != default and key not in caps.accepts:
                users = " or ".join(designs_with(key))
                raise ValueError(
                    f"{key} is only used by design {users}, not {self.design}: set market.design to "
                    f"{users}, or remove market.{key}"
                )
        if self.critical_voll_per_mwh < self.voll_per_mwh:
            raise ValueError(
                "critical_voll_per_mwh must be at least voll_per_mwh: critical loads are shed last"
            )
        if self.battery_bidding == "arbitrage" and not caps.batteries_bid:
            raise ValueError(
                f"battery_bidding: arbitrage needs a design where batteries bid, not {self.design}"
            )
        if caps.day_ahead:
            st = self.stochastic or StochasticConfig()
            if st.up_price_per_mwh < self.upstream.import_price_per_mwh:
                raise ValueError("stochastic.up_price_per_mwh must be at least upstream.import_price_per_mwh")
            if st.down_price_per_mwh > self.upstream.export_price_per_mwh:
                raise ValueError(
                    "stochastic.down_price_per_mwh must be at most upstream.export_price_per_mwh"
                )
        return self


class NetworkConfig(_Section):
    """The validators' network: a preset (gossip model), regions and their one-way delays, and overrides.

    ``direct``: every message goes straight to every validator (region delay + jitter + size/bandwidth).
    ``bitcoin``: gossip over a seeded random peer graph, calibrated to measured Bitcoin block propagation
    (Decker & Wattenhofer 2013). The keys left out take the preset's values (see docs/models.md).
    """

    preset: Literal["bitcoin", "direct"] | None = _field(
        "Network model: bitcoin (gossip over a random peer graph, calibrated to Decker & Wattenhofer 2013) "
        "or direct (straight to every validator). Default: bitcoin for pow, direct for pos and bft",
        None,
    )
    regions: list[str] | None = _field(
        "Region names; validators (bitcoin: all graph nodes) are placed round-robin. Default: us-east, "
        "us-west, eu-west, ap-northeast, ap-southeast (delays from WonderNetwork ping medians, see "
        "docs/models.md)",
        None,
        min_length=1,
    )
    one_way_delay_ms: list[list[float]] | None = _field(
        "Region-to-region one-way delay matrix (R x R), default the five-region table",
        None,
        unit="ms",
        min_length=1,
    )
    jitter_sd_s: float | None = _field(
        "Standard deviation of the normal jitter whose absolute value is added to each message (bitcoin: to "
        "each hop). "
        f"Default: direct 0.005, bitcoin {BITCOIN.jitter_sd_s}",
        None,
        unit="s",
        ge=0,
        allow_inf_nan=False,
    )
    bandwidth_mbps: float | None = _field(
        "direct: link bandwidth; bitcoin: median over nodes of the effective block throughput of a link "
        "(a hop runs at the slower end's). "
        f"Default: direct 100, bitcoin {BITCOIN.bandwidth_mbps}",
        None,
        unit="Mbit/s",
        gt=0,
        allow_inf_nan=False,
    )
    nodes: int | None = _field(
        "bitcoin: nodes of the peer graph, validators included (the others only relay). "
        f"Default: {BITCOIN.nodes}",
        None,
        ge=2,
    )
    peers: int | None = _field(
        "bitcoin: links each node opens to random others (Bitcoin Core: 8 outbound). "
        f"Default: {BITCOIN.peers}",
        None,
        ge=1,
    )
    bandwidth_sigma: float | None = _field(
        "bitcoin: lognormal sigma of the per-node throughput across nodes. "
        f"Default: {BITCOIN.bandwidth_sigma}",
        None,
        ge=0,
        allow_inf_nan=False,
    )
    validation_s: float | None = _field(
        "bitcoin: fixed time a node takes to validate a message before relaying it. "
        f"Default: {BITCOIN.validation_s}",
        None,
        unit="s",
        gt=0,
        allow_inf_nan=False,
    )
    validation_s_per_mb: float | None = _field(
        "bitcoin: validation time per MB of message (signature checks). "
        f"Default: {BITCOIN.validation_s_per_mb}",
        None,
        unit="s/MB",
        gt=0,
        allow_inf_nan=False,
    )

    @model_validator(mode="after")
    def _matrix(self) -> NetworkConfig:
        if (self.regions is None) != (self.one_way_delay_ms is None):
            raise ValueError("give both regions and one_way_delay_ms, or neither")
        if self.regions is not None and self.one_way_delay_ms is not None:
            r = len(self.regions)
            if len(self.one_way_delay_ms) != r or any(len(row) != r for row in self.one_way_delay_ms):
                raise ValueError(f"one_way_delay_ms must be {r} x {r} (one row and column per region)")
            if len(set(self.regions)) != len(self.regions):
                raise ValueError("regions: each region name once")
            if any(not (0 <= d < float("inf")) for row in self.one_way_delay_ms for d in row):
                raise ValueError("delays must be finite and >= 0")
        if self.preset == "direct":
            gossip_only = [k for k in _GOSSIP_KEYS if getattr(self, k) is not None]
            if gossip_only:
                raise ValueError(
                    f"{', '.join(gossip_only)}: only used by preset bitcoin (gossip); remove them"
                )
        return self


_GOSSIP_KEYS = ("nodes", "peers", "bandwidth_sigma", "validation_s", "validation_s_per_mb")


class WorkloadConfig(_Section):
    """Synthetic workload of the standalone mode: Poisson arrivals of signed transfers."""

    tx_per_s: float = _field("Mean arrival rate of transactions", unit="1/s", gt=0)
    accounts: int = _field("Accounts sending and receiving", default=100, ge=2)


class LedgerConfig(_Section):
    """The blockchain ledger: network, consensus, contracts, and how market trades reach it."""

    consensus: Literal["pow", "pos", "bft"] = _field(
        "pow: Nakamoto proof of work; pos: Ethereum-like proof of stake (Casper FFG finality); "
        "bft: Tendermint/CometBFT rounds with 2/3 quorums"
    )
    validators: int = _field("Number of validators (miners for pow)", default=16, ge=1)
    faulty: int = _field("Byzantine validators among them", default=0, ge=0)
    behaviour: Literal["silent", "equivocating"] = _field(
        "What faulty validators do: silent (crashed or withholding) or equivocating (bft only)",
        default="silent",
    )
    permissioned: bool | None = _field(
        "true: an admission list of validators with equal voting power; false: an open set whose "
        "stake (hash power for pow) is lognormal with sigma power_sigma. Default: true for bft, else false",
        None,
    )
    power_sigma: float = _field(
        "Lognormal sigma of stake or hash-power shares in an open set (0: equal)", default=1.0, ge=0
    )
    block_interval_s: float = _field("pow: mean block interval", unit="s", default=600.0, gt=0)
    confirmations: int = _field("pow: blocks deep for finality", default=6, ge=1)
    hash_rate_hps: float | None = _field(
        "pow: network hash rate; default validators x miner_hash_rate_hps (the simulated miners); e.g. 1e20 "
        "for Bitcoin's network of 2021-22 as a what-if",
        None,
        unit="H/s",
        gt=0,
    )
    miner_hash_rate_hps: float = _field(
        "pow: hash rate of one miner (one Bitmain Antminer S19 Pro: 110 TH/s at 3,250 W)",
        unit="H/s",
        default=1.1e14,
        gt=0,
    )
    j_per_hash: float = _field(
        "pow: miner efficiency (Antminer S19 Pro: 29.5 J/TH)", unit="J/H", default=2.95e-11, gt=0
    )
    slot_s: float = _field("pos: slot length", unit="s", default=12.0, gt=0)
    slots_per_epoch: int = _field("pos: slots per epoch", default=32, ge=1)
    timeout_commit_s: float = _field("bft: pause after a commit", unit="s", default=1.0, ge=0)
    timeout_propose_s: float = _field("bft: propose timeout of round 0", unit="s", default=3.0, gt=0)
    create_empty_blocks: bool = _field(
        "bft: make blocks without transactions (CometBFT option; false keeps a quiet year cheap)",
        default=False,
    )
    node_power_w: float = _field(
        "pos, bft: electric power per validator node (a home staking machine with its beacon and execution "
        "clients, or a small permissioned server: ~100 W all in, Ethereum Foundation 2021)",
        unit="W",
        default=100.0,
        gt=0,
    )
    network: NetworkConfig = _field("The validators' network", default_factory=NetworkConfig)
    gate_closure_s: float = _field(
        "Trades are submitted this long before their delivery interval starts; the start is their deadline",
        unit="s",
        default=900.0,
        ge=0,
    )
    late_rule: Literal["cancel", "settle_late"] = _field(
        "A trade not final by its deadline: cancel (settled with the upstream grid at import/export prices, "
        "the imbalance cost recorded) or settle_late (delivered and settled when final)",
        default="cancel",
    )
    meter_delay_s: float = _field(
        "A seller's signed meter reading is submitted this long after its interval ends",
        unit="s",
        default=60.0,
        ge=0,
    )
    initial_balance: float = _field("Genesis balance of every account", unit="$", default=1000.0, ge=0)
    gas_limit: int = _field(
        "Gas limit of each transaction; a meter reading settles its seller's promises of the interval in one "
        "transaction (~47,000 gas each: the default fits ~100), and one out of gas settles none (warned)",
        default=5_000_000,
        ge=21_000,
    )
    record_tables: bool = _field(
        "Write the /ledger/tx, /ledger/blocks and /ledger/votes tables and /ledger/genesis (needed by cosim "
        "verify-ledger; without them no block or vote is signed)",
        default=True,
    )
    workload: WorkloadConfig | None = _field(
        "Standalone mode: the ledger alone on a synthetic workload (no grid, agents or market sections)", None
    )

    @model_validator(mode="after")
    def _consistent(self) -> LedgerConfig:
        if self.faulty >= self.validators:
            raise ValueError(
                f"faulty ({self.faulty}) cannot exceed validators - 1 ({self.validators - 1}): "
                "at least one validator must be honest"
            )
        if self.consensus == "pow" and self.permissioned:
            raise ValueError("pow is open by construction: permissioned must be false")
        if self.behaviour == "equivocating" and self.consensus != "bft":
            raise ValueError("equivocating validators are modelled for bft only; use behaviour: silent")
        if self.network_preset == "direct":
            gossip_only = [f"network.{k}" for k in _GOSSIP_KEYS if getattr(self.network, k) is not None]
            if gossip_only:
                raise ValueError(
                    f"{', '.join(gossip_only)}: only used by network.preset bitcoin (the default for pow "
                    f"only; {self.consensus} uses direct): set network.preset: bitcoin or remove them"
                )
        else:
            nodes = BITCOIN.nodes if self.network.nodes is None else self.network.nodes
            peers = BITCOIN.peers if self.network.peers is None else self.network.peers
            if nodes < self.validators:
                raise ValueError(f"network.nodes ({nodes}) must be at least validators ({self.validators})")
            if peers >= nodes:
                raise ValueError(f"network.peers ({peers}) must be below network.nodes ({nodes})")
        return self

    @property
    def network_preset(self) -> Literal["bitcoin", "direct"]:
        """The effective network preset: the one given, else bitcoin for pow and direct otherwise."""
        if self.network.preset is not None:
            return self.network.preset
        return "bitcoin" if self.consensus == "pow" else "direct"

    @property
    def is_permissioned(self) -> bool:
        """The effective admission mode."""
        return self.consensus == "bft" if self.permissioned is None else self.permissioned


class StackUnit(_Section):
    """One unit of the upstream merit-order stack."""

    capacity_mw: float = _field("Capacity", unit="MW", gt=0)
    cost_per_mwh: float = _field("Marginal cost (sets the merit order)", unit="$/MWh")
    kg_per_mwh: float = _field("Emission factor", unit="kg/MWh", ge=0)


class UpstreamEmissionsConfig(_Section):
    """Emissions of energy imported from the upstream grid: give one of the three forms."""

    kg_per_mwh: float | None = _field(
        "A constant factor (default 527: German mix 2016, Umweltbundesamt)", None, unit="kg/MWh", ge=0
    )
    series_csv: Path | None = _field(
        "CSV file with a column kg_per_mwh, one row per step (relative to the scenario file)", None
    )
    stack: list[StackUnit] | None = _field(
        "Merit-order stack dispatched to base_mw plus the import; its marginal unit sets the marginal factor",
        None,
    )
    base_mw: float = _field("The upstream system's own demand under the stack", unit="MW", default=0.0, ge=0)

    @model_validator(mode="after")
    def _one(self) -> UpstreamEmissionsConfig:
        given = [k for k in ("kg_per_mwh", "series_csv", "stack") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of kg_per_mwh, series_csv or stack, not {' and '.join(given)}")
        if self.stack is not None and not self.stack:
            raise ValueError("stack needs at least one unit")
        return self


class EmissionsConfig(_Section):
    """Emissions accounting: factors, the upstream grid, nodal marginal factors, a carbon price."""

    pv_kg_per_mwh: float = _field(
        "Rooftop PV (IPCC AR5 life-cycle median)", unit="kg/MWh", default=41.0, ge=0
    )
    sgen_kg_per_mwh: float = _field(
        "Other static generators (IPCC AR5 utility PV median)", unit="kg/MWh", default=48.0, ge=0
    )
    gen_kg_per_mwh: float = _field(
        "Generators (IPCC AR5 gas combined cycle)", unit="kg/MWh", default=490.0, ge=0
    )
    battery_kg_per_mwh: float = _field(
        "Battery discharge (its charging is counted where it happens)", unit="kg/MWh", default=0.0, ge=0
    )
    elements: dict[str, Annotated[float, Field(ge=0)]] = _field(
        "Factors of single generating elements by name (as in /agents/name), overriding their kind's factor; "
        "an unknown name is refused before the run",
        unit="kg/MWh",
        default_factory=dict,
    )
    upstream: UpstreamEmissionsConfig = _field("The upstream grid", default_factory=UpstreamEmissionsConfig)
    carbon_price_per_t: float = _field(
        "Carbon price added to every offer (factor x price) and deducted from export bids, so prices and "
        "dispatch respond",
        unit="$/t",
        default=0.0,
        ge=0,
    )
    losses: bool = _field(
        "Adjust the nodal marginal factors for losses (AC power flow sensitivities)", default=True
    )


class EquityConfig(_Section):
    """Equity accounting: each agent's bill, revenue and surplus against a tariff baseline; Gini; a rule."""

    baseline_tariff: list[TariffPeriod] = _field(
        "The tou baseline each agent's surplus is measured against; default: the market's tariff if it has "
        "one, else a flat tariff at the upstream import price",
        default_factory=list,
    )
    baseline_export_price_per_mwh: float | None = _field(
        "Price of injections under the baseline; default: the baseline tariff (net metering)",
        None,
        unit="$/MWh",
    )
    low_income_share: float = _field(
        "Share of household loads flagged low-income (seeded draw), the beneficiaries of the rule",
        default=0.3,
        ge=0,
        le=1,
    )
    rule: Literal["none", "level_up", "proportional"] = _field(
        "Fairness rule in settlement: a levy on consumption redistributed each month to low-income agents, "
        "levelling up the lowest surpluses (level_up) or in equal shares (proportional)",
        default="none",
    )
    levy_per_mwh: float = _field(
        "Levy on every MWh consumed that funds the rule", unit="$/MWh", default=0.0, ge=0
    )
    unit: Literal["household", "device"] = _field(
        "Whose accounts are compared: household (a household's load and the PV, battery and EV behind its "
        "meter summed; agents behind no household meter, e.g. businesses and the grid's own generators, "
        "left out) or device (every agent on its own)",
        default="household",
    )

    @model_validator(mode="after")
    def _levy(self) -> EquityConfig:
        if (self.rule == "none") != (self.levy_per_mwh == 0):
            raise ValueError("a rule needs levy_per_mwh > 0 to fund it, and a levy needs a rule")
        hours = [p.from_hour for p in self.baseline_tariff]
        if hours and (hours[0] != 0 or hours != sorted(set(hours))):
            raise ValueError("baseline_tariff periods must start at hour 0, in order")
        return self


MAX_NOISE_SCALE_KW = 1e9
"""Largest noise scale of a private release (declared_max_kw / epsilon of the sums)."""


class PrivacyConfig(_Section):
    """Differentially private release of metered aggregates per bus and interval (OpenDP)."""

    epsilon: float = _field("Privacy loss of one interval's release (all buses, both series)", gt=0)
    budget: float = _field("Total epsilon of the run; a release that would exceed it is refused", gt=0)
    mechanism: Literal["laplace", "gaussian"] = _field(
        "Noise: laplace (pure DP) or gaussian", default="laplace"
    )
    delta: float = _field("gaussian: delta of one release", default=0.0, ge=0, lt=1)
    budget_delta: float = _field("gaussian: total delta of the run", default=0.0, ge=0, lt=1)
    composition: Literal["basic", "zcdp"] = _field(
        "How releases add up: basic (epsilons and deltas add) or zcdp (gaussian: rho adds, then converted)",
        default="basic",
    )
    declared_max_kw: float = _field(
        "Each agent's declared maximum consumption: the sensitivity (never taken from the data)",
        unit="kW",
        gt=0,
    )
    active_threshold_kw: float = _field(
        "An agent consuming more than this is counted as active", unit="kW", default=0.0, ge=0
    )
    sum_share: float = _field(
        "Share of epsilon spent on the consumption sums (the rest on the counts)", default=0.5, gt=0, lt=1
    )
    sum_method: Literal["vector", "per_group"] = _field(
        "vector: exact integer sums per bus in numpy, one OpenDP noise call for all buses (fast); per_group: "
        "one OpenDP clamp-sum-noise chain per bus",
        default="vector",
    )
    group_by: Literal["bus", "grid"] = _field(
        "Aggregate per bus, or over the whole grid (one group: more agents per release, less relative noise)",
        default="bus",
    )
    release_every: Literal["step", "day"] = _field(
        "How often a release is made: every step, or once a day of the day's consumption (its last step; the "
        "others NaN); declared_max_kw and active_threshold_kw are then mean powers over the day",
        default="step",
    )
    evaluate: bool = _field("Also record the true aggregates and the errors of the release", default=False)
    noise: Literal["seeded", "secure"] = _field(
        "Who draws the noise at OpenDP's calibrated scales: seeded (the study's generator, reproducible, "
        "not a secure sampler: simulated data only) or secure (OpenDP's own sampler: use it for real data)",
        default="seeded",
    )

    @model_validator(mode="after")
    def _delta(self) -> PrivacyConfig:
        if self.mechanism == "gaussian" and not (0 < self.delta <= self.budget_delta):
            raise ValueError("gaussian needs 0 < delta <= budget_delta")
        if self.mechanism == "laplace" and (self.delta or self.budget_delta or self.composition == "zcdp"):
            raise ValueError("laplace is pure epsilon-DP: leave delta, budget_delta and composition zcdp out")
        if self.epsilon > self.budget:
            raise ValueError("epsilon of one release exceeds the budget: nothing could be released")
        if self.declared_max_kw / (self.epsilon * self.sum_share) > MAX_NOISE_SCALE_KW:
            scale = self.declared_max_kw / (self.epsilon * self.sum_share)
            raise ValueError(
                f"epsilon: declared_max_kw / (epsilon x sum_share) = noise scale {scale:.3g} kW above "
                f"{MAX_NOISE_SCALE_KW:.0e} kW: the release would be saturated noise; raise epsilon"
            )
        return self


class _Event(_Section):
    start: dt.datetime = _field("Start of the outage, ISO 8601; naive times are UTC")
    duration: str = _field("Length of the outage, e.g. '6h'")

    @field_validator("start")
    @classmethod
    def _utc(cls, value: dt.datetime) -> dt.datetime:
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration_s(value)
        return value


class IslandEvent(_Event):
    """The upstream grid is lost: the microgrid runs alone around a grid-forming unit (the slack)."""

    kind: Literal["island"] = _field("Event kind")
    grid_forming: str | None = _field(
        "Agent name of the grid-forming battery or generator; default the battery with the most energy", None
    )
    reserve_share: float = _field(
        "Share of the grid-forming battery's energy and power held back for voltage and frequency "
        "(blackstart reserve): not offered to the local market",
        default=0.2,
        ge=0,
        lt=1,
    )


class OutageEvent(_Event):
    """A branch is out of service (a contingency that really happens)."""

    kind: Literal["line_outage"] = _field("Event kind")
    element: str = _field("The branch: 'line N' or 'trafo N' (pandapower index)")


class OutputConfig(_Section):
    """Where and what the recorder writes."""

    path: Path | None = _field("HDF5 file; default results/<name>.h5", None)
    groups: list[Literal["grid", "agents", "market", "ledger", "emissions", "equity", "privacy"]] = _field(
        "Groups to record (the optional ones only when the scenario has them); at least one",
        default_factory=lambda: ["grid", "agents", "market", "ledger", "emissions", "equity", "privacy"],
        min_length=1,
    )
    chunk_steps: int = _field("Steps buffered and written per HDF5 chunk", default=256, ge=1)
    compression: Literal["gzip", "lzf", "none"] = _field("HDF5 compression filter", default="gzip")
    checkpoint_steps: int | Literal["week"] | None = _field(
        "Steps between checkpoints of every model's state in <output>.ckpt, for `cosim run --resume`: "
        "'week' (a week of steps, at least 1), a number of steps >= 1, or 0 / null for none",
        default="week",
    )

    @field_validator("checkpoint_steps", mode="before")
    @classmethod
    def _checkpoint_steps(cls, value: Any) -> Any:
        if isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise ValueError(f"{value!r}: give 'week', a number of steps >= 1, or 0 or null for none")
        return value

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        problem = path_problem(str(value)) if isinstance(value, str | Path) else None
        if problem is not None:
            raise ValueError(problem)
        return value


class OrchestrationConfig(_Section):
    """Where the simulators run: all in the world's process (default), some in processes of their own."""

    out_of_process: list[str] = _field(
        "Components started as their own process with mosaik's cmd starter (ledger, privacy); the data "
        "between them and the world crosses as JSON, and the results are identical",
        default_factory=list,
    )
    connect: dict[str, str] = _field(
        "Components already running elsewhere, reached with mosaik's connect starter: {name: 'host:port'}; "
        "start each there with `python -m cosim.remote NAME host:port --remote`",
        default_factory=dict,
    )

    ledger_worker: bool | Literal["auto"] = _field(
        "The ledger in a worker process of its own, a step behind the world: its signatures, consensus and "
        "contracts of a step overlap the next step's grid and market on a second core; the results are "
        "identical. auto: on with a market, two cores or more and a run of at least a week of hourly steps "
        "(168 steps), but not in a sweep's Dask worker (the sweep's runs already share the cores)",
        default="auto",
    )

    @model_validator(mode="after")
    def _worker_in_process(self) -> OrchestrationConfig:
        if self.ledger_worker is True and "ledger" in self.remote:
            raise ValueError(
                "ledger_worker: true runs the ledger in a worker of the world's process, but the ledger is "
                "in out_of_process or connect; choose one"
            )
        return self

    @field_validator("out_of_process", "connect")
    @classmethod
    def _leaving(cls, value: Any) -> Any:
        from cosim.component import REGISTRY

        leaving = [n for n, e in REGISTRY.items() if e.leaves]
        for name in value:
            if name not in REGISTRY:
                raise ValueError(f"{name!r} is no component; the components are {', '.join(REGISTRY)}")
            if not REGISTRY[name].leaves:
                raise ValueError(
                    f"{name!r} shares live model objects with the world (its adapter takes them by "
                    f"reference) and cannot leave the process yet; those that can: {', '.join(leaving)}"
                )
        if isinstance(value, dict):
            for name, addr in value.items():
                host, _, port = addr.rpartition(":")
                if not host or not port.isdigit() or not 0 < int(port) < 65536:
                    raise ValueError(f"{name}: {addr!r} is not host:port (e.g. '10.0.0.5:5678')")
        return value

    @property
    def remote(self) -> set[str]:
        """Names of the components that run outside the world's process."""
        return set(self.out_of_process) | set(self.connect)


class Scenario(_Section):
    """One study: a grid, its agents, a period, and what to record."""

    name: str = _field(
        "Study name; names the default output file", pattern=r"^[A-Za-z0-9_.-]+$", max_length=200
    )
    seed: int = _field(
        "Seed of every random draw (stored as a 64-bit integer)", default=0, ge=0, le=INT64_MAX
    )
    time: TimeConfig = _field("Simulated period and step")
    grid: GridConfig | None = _field(
        "The electrical network (required unless the ledger runs alone on a workload)", None
    )
    agents: AgentsConfig = _field("Prosumer agents", default_factory=AgentsConfig)
    output: OutputConfig = _field("Recorder settings", default_factory=OutputConfig)
    market: MarketConfig | None = _field("Market clearing; none: agents follow their profiles", None)
    ledger: LedgerConfig | None = _field("Blockchain ledger recording and settling the trades", None)
    privacy: PrivacyConfig | None = _field("Differentially private release of metered aggregates", None)
    emissions: EmissionsConfig | None = _field(
        "Emissions accounting and carbon price (any market design)", None
    )
    equity: EquityConfig | None = _field(
        "Equity accounting: bills, surplus, Gini, a fairness rule (needs a market)", None
    )
    events: list[Annotated[IslandEvent | OutageEvent, Field(discriminator="kind")]] = _field(
        "Outages that happen during the study: islanding from the upstream grid, branch outages",
        default_factory=list,
    )
    orchestration: OrchestrationConfig = _field(
        "Which simulators run outside the world's process", default_factory=OrchestrationConfig
    )

    @model_validator(mode="after")
    def _standalone(self) -> Scenario:
        workload = self.ledger is not None and self.ledger.workload is not None
        if workload and (self.grid is not None or self.market is not None):
            raise ValueError(
                "ledger.workload is the standalone mode: remove it, or remove the grid and market sections"
            )
        if self.grid is None and not workload:
            raise ValueError(
                "grid: required key is missing (only a ledger with a workload runs without a grid)"
            )
        if self.ledger is not None and not workload and self.market is None:
            raise ValueError("ledger records market trades: add a market section, or give ledger.workload")
        if self.emissions is not None and self.market is None:
            raise ValueError("emissions accounts what the market dispatches: add a market section")
        name = None if self.market is None else self.market.design
        caps = None if name is None else design(name).capabilities
        if (
            self.emissions is not None
            and self.emissions.carbon_price_per_t > 0
            and caps
            and not caps.carbon_price
        ):
            raise ValueError(
                f"emissions.carbon_price_per_t is not built for design {name} (it clears on "
                f"offers of its own, not the agents' bids; designs that take it: "
                f"{', '.join(designs_with('carbon_price'))}): set it to 0 or use another design"
            )
        if self.privacy is not None and self.grid is None:
            raise ValueError("privacy releases metered data of the agents: it needs a grid")
        if self.equity is not None and self.market is None:
            raise ValueError("equity accounts the market's payments: add a market section")
        if self.events and self.market is not None and self.market.strategic is not None:
            raise ValueError(
                "events with market.strategic are not built: the player's MPEC is built for the intact "
                "network; remove the events or market.strategic"
            )
        if self.events and caps is not None and not caps.outages:
            raise ValueError(
                f"events with design {name} are not built: it clears on the intact grid "
                f"(designs that clear outages: {', '.join(designs_with('outages'))})"
            )
        islands = [e for e in self.events if e.kind == "island"]
        if islands and (caps is None or not caps.islanding):
            raise ValueError(
                f"an island event needs a market that can balance the microgrid alone "
                f"({', '.join(designs_with('islanding'))}): the local price decides who is served"
            )
        if self.privacy is not None and self.privacy.release_every == "day" and 86400 % self.time.step_s:
            raise ValueError("privacy.release_every day needs a time.step that divides a day")
        if caps is not None and caps.day_ahead and 86400 % self.time.step_s:
            raise ValueError(f"design {name} clears whole days ahead: time.step must divide a day")
        both = set(self.orchestration.out_of_process) & set(self.orchestration.connect)
        if both:
            raise ValueError(f"orchestration: {sorted(both)} both started here and connected to elsewhere")
        explicit = "checkpoint_steps" in self.output.model_fields_set and self.output.checkpoint_steps
        if self.orchestration.remote and explicit:
            raise ValueError(
                "output.checkpoint_steps with orchestration: a simulator outside the process keeps its state "
                "there, where checkpoints do not reach; set output.checkpoint_steps: 0 (the default with "
                "orchestration) or run every simulator in the process"
            )
        return self

    @property
    def output_path(self) -> Path:
        """The HDF5 file this study writes."""
        return self.output.path or Path("results") / f"{self.name}.h5"

    def to_yaml(self) -> str:
        """The effective scenario (defaults filled in) as YAML."""
        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)


_TAGS = {"simbench", "pandapower", "file"}


def _dotted(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as a dotted YAML path, without the grid's source tag."""
    parts = [str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "grid" and p in _TAGS)]
    return ".".join(parts) or "(top level)"


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The schema classes a field's type holds (through Optional, list, Annotated and unions)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _keys_at(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the schema allows in the mapping at ``loc`` (for "did you mean")."""
    models: list[type[BaseModel]] = [Scenario]
    for part in loc:
        fields = [m.model_fields[part] for m in models if isinstance(part, str) and part in m.model_fields]
        if fields:
            models = [m for f in fields for m in _models_in(f.annotation)]
    return sorted({name for m in models for name in m.model_fields})


def _message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        near = difflib.get_close_matches(key, _keys_at(tuple(err["loc"][:-1])), n=1, cutoff=0.6)
        hint = f"did you mean `{near[0]}`?" if near else "check spelling, see `cosim schema`"
        return f"unknown key (not part of the schema; {hint})"
    if kind in ("missing", "union_tag_not_found"):
        return "required key is missing"
    if kind == "union_tag_invalid":
        expected = str(ctx.get("expected_tags", "")).replace(" or ", ", ")
        if tuple(err["loc"]) == ("grid",):  # named grid.source by _loc
            expected = expected.replace("'", "")
        return f"{ctx.get('tag')!r} is not one of {expected}"
    if kind == "literal_error":
        return f"{err['input']!r} is not one of {ctx.get('expected')}"
    if kind == "finite_number":
        return f"{err['input']} is not a finite number (.inf and .nan are refused here)"
    return msg


def _loc(err: Any) -> tuple[int | str, ...]:
    loc = tuple(err["loc"])
    if loc == ("grid",) and err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc += (err.get("ctx", {}).get("discriminator", "").strip("'"),)
    return loc


def problems_of(error: ValidationError) -> list[tuple[str, str]]:
    """Turn a pydantic error into ``(dotted.path, message)`` pairs."""
    return [(_dotted(_loc(e)), _message(e)) for e in error.errors()]


def _size(n_bytes: int) -> str:
    if n_bytes >= 2**80:
        return f"about 10^{len(str(n_bytes)) - 1} bytes"
    return f"{n_bytes / 2**30:.1f} GiB"


def memory_bytes() -> int:
    """Physical memory of this machine [bytes] (the limit of the size checks)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**40


def memory_problems(scenario: Scenario) -> list[tuple[str, str]]:
    """Sizes whose arrays would not fit in this machine's memory, with how much they would need.

    Estimates (lower bounds): the time axis and one profile column (2 x 8 bytes a step); the validators'
    node-to-node delay matrices (3 x 8 bytes a validator pair).
    """
    limit = memory_bytes()
    needs: list[tuple[str, int, str]] = [
        ("time", 16 * scenario.time.n_steps, f"{scenario.time.n_steps} steps"),
    ]
    if scenario.ledger is not None:
        v = scenario.ledger.validators
        needs.append(("ledger.validators", 24 * v * v, f"{v} x {v} delay matrices"))
    return [
        (key, f"{what} need at least {_size(n)}; this machine has {_size(limit)}")
        for key, n, what in needs
        if n > limit
    ]


def validate_scenario(data: Any, source: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """Validate a parsed YAML mapping; raise ScenarioError with every problem at once.

    Parameters
    ----------
    data : mapping parsed from YAML
    source : name of the file, used in messages
    base_dir : directory that relative grid file paths are resolved against
    """
    if not isinstance(data, dict):
        raise ScenarioError([("(top level)", "the scenario must be a YAML mapping")], source)
    raw = _raw_problems([Scenario], data)
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        seen = {where for where, _ in raw}
        raise ScenarioError(raw + [p for p in problems_of(exc) if p[0] not in seen], source) from None
    if raw:
        raise ScenarioError(raw, source)
    too_big = memory_problems(scenario)
    if too_big:
        raise ScenarioError(too_big, source)
    grid = scenario.grid
    if isinstance(grid, FileGrid):
        path = grid.path if grid.path.is_absolute() or base_dir is None else base_dir / grid.path
        if not path.is_file():
            raise ScenarioError([("grid.path", f"no such file: {path}")], source)
        scenario = scenario.model_copy(update={"grid": grid.model_copy(update={"path": path})})
    em = scenario.emissions
    if em is not None and em.upstream.series_csv is not None:
        csv = em.upstream.series_csv
        csv = csv if csv.is_absolute() or base_dir is None else base_dir / csv
        if not csv.is_file():
            raise ScenarioError([("emissions.upstream.series_csv", f"no such file: {csv}")], source)
        upstream = em.upstream.model_copy(update={"series_csv": csv})
        scenario = scenario.model_copy(update={"emissions": em.model_copy(update={"upstream": upstream})})
    strategic, problems = [], []
    for i, s in enumerate(scenario.agents.strategic):
        path = s.policy if s.policy.is_absolute() or base_dir is None else base_dir / s.policy
        if not path.is_file():
            problems.append((f"agents.strategic.{i}.policy", f"no such file: {path}"))
        strategic.append(s.model_copy(update={"policy": path}))
    if problems:
        raise ScenarioError(problems, source)
    if strategic:
        agents = scenario.agents.model_copy(update={"strategic": strategic})
        scenario = scenario.model_copy(update={"agents": agents})
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Raises
    ------
    ScenarioError
        naming every problem with its dotted path.
    """
    path = Path(path)
    return validate_scenario(read_yaml(path), str(path), path.parent)
