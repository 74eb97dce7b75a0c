"""Prosumer agents: every load and generator of the grid, plus rooftop PV, home batteries and EVs.

Placement is seeded; the baseline behaviour follows profiles, batteries run for self-consumption
(charge from the household's surplus, discharge into its deficit, within power and state-of-charge
limits) and EVs charge at full power from plug-in until their daily energy is in.
Sign convention: load convention throughout, ``p_mw > 0`` is consumption, ``p_mw < 0`` injection
(pandapower loads); a battery's ``p_mw > 0`` is charging. ``soc_mwh`` is at the end of the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandapower as pp
import pandas as pd

from cosim.models.agents.profiles import ProfileTable
from cosim.models.grid.network import element_names

KINDS = ("load", "sgen", "gen", "pv", "battery", "ev")


@dataclass(frozen=True)
class AgentTable:
    """Who the agents are: one entry per agent, in column order of every agent dataset."""

    name: np.ndarray  # (n,) str
    bus: np.ndarray  # (n,) int, pandapower bus index
    kind: np.ndarray  # (n,) str, one of KINDS
    elements: list[tuple[str, int]]  # pandapower (table, index) carrying the agent's power
    # (n,) int: the household behind whose meter the agent is (its load, PV, battery, EV), -1: none
    household: np.ndarray | None = None
    household_name: np.ndarray | None = None  # (n_household,) str: the name of each household's load

    def __len__(self) -> int:
        return len(self.name)

    def where(self, kind: str) -> np.ndarray:
        """Agent positions of one kind."""
        return np.flatnonzero(self.kind == kind)


@dataclass(frozen=True)
class Setpoints:
    """One step's agent outputs."""

    p_mw: np.ndarray
    q_mvar: np.ndarray
    soc_mwh: np.ndarray  # (n_battery,)


@dataclass
class Batteries:
    """Home batteries; arrays over batteries. ``household`` etc. are agent positions (-1: none)."""

    capacity_mwh: np.ndarray
    power_mw: np.ndarray
    eta_charge: float
    eta_discharge: float
    soc_min_mwh: np.ndarray
    soc_max_mwh: np.ndarray
    soc_mwh: np.ndarray
    household: np.ndarray  # agent positions whose net load the battery follows
    pv: np.ndarray
    ev: np.ndarray

    def dispatch(self, p_mw: np.ndarray, dt_h: float) -> np.ndarray:
        """Self-consumption: battery power (load convention) for this step; updates ``soc_mwh``."""
        net_mw = p_mw[self.household] + _take(p_mw, self.pv) + _take(p_mw, self.ev)
        charge_max, discharge_max = self.limits(dt_h)
        charge = np.clip(np.minimum(-net_mw, charge_max), 0.0, None)
        discharge = np.clip(np.minimum(net_mw, discharge_max), 0.0, None)
        return self.apply(charge - discharge, dt_h)

    def limits(self, dt_h: float) -> tuple[np.ndarray, np.ndarray]:
        """Largest charge and discharge power [MW] for the next step from the present state of charge."""
        charge_mw = np.minimum(self.power_mw, (self.soc_max_mwh - self.soc_mwh) / (self.eta_charge * dt_h))
        discharge_mw = np.minimum(
            self.power_mw, (self.soc_mwh - self.soc_min_mwh) * self.eta_discharge / dt_h
        )
        return np.clip(charge_mw, 0.0, None), np.clip(discharge_mw, 0.0, None)

    def debit(self, i: int, extra_mw: float, dt_h: float) -> None:
        """Battery ``i`` delivered ``extra_mw`` more than its set-point for a step (negative: took more)."""
        eta = 1.0 / self.eta_discharge if extra_mw > 0 else self.eta_charge
        soc = self.soc_mwh[i] - extra_mw * eta * dt_h
        self.soc_mwh[i] = np.clip(soc, self.soc_min_mwh[i], self.soc_max_mwh[i])

    def apply(self, p_mw: np.ndarray, dt_h: float) -> np.ndarray:
        """Run the batteries at ``p_mw`` (load convention) for one step, within limits; return that power."""
        charge_max, discharge_max = self.limits(dt_h)
        p_mw = np.clip(p_mw, -discharge_max, charge_max)
        charge, discharge = np.clip(p_mw, 0.0, None), np.clip(-p_mw, 0.0, None)
        self.soc_mwh = self.soc_mwh + (charge * self.eta_charge - discharge / self.eta_discharge) * dt_h
        self.soc_mwh = np.clip(self.soc_mwh, self.soc_min_mwh, self.soc_max_mwh)
        return p_mw


@dataclass(frozen=True)
class EVs:
    """Home-charged EVs; arrays over EVs. Plugged from ``arrival_h`` to ``departure_h`` (time of day).

    Charging is uncontrolled: full power from the first step that starts plugged in until the daily
    energy is in or the EV leaves. That makes the power a function of the time of day alone, so a
    forecast of any step is exact.
    """

    charger_mw: np.ndarray
    daily_mwh: np.ndarray
    arrival_h: np.ndarray
    departure_h: np.ndarray

    def charge(self, hour_of_day: float, dt_h: float) -> np.ndarray:
        """Charging power [MW] during a step of ``dt_h`` hours starting at ``hour_of_day``."""
        start_h = np.ceil(self.arrival_h / dt_h - 1e-9) * dt_h % 24.0  # first step start plugged in
        window_h = (self.departure_h - start_h) % 24.0
        elapsed_h = (hour_of_day - start_h) % 24.0
        delivered_mwh = np.minimum(self.daily_mwh, self.charger_mw * elapsed_h)
        p_mw = np.clip((self.daily_mwh - delivered_mwh) / dt_h, 0.0, self.charger_mw)
        return np.where(elapsed_h < window_h, p_mw, 0.0)


def _take(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    return np.where(positions >= 0, values[np.maximum(positions, 0)], 0.0)


class Fleet:
    """All agents of a run: their table, profiles and device state; ``step`` gives set-points.

    Parameters
    ----------
    table : the agents
    tables : profile tables ``load_p_mw``, ``load_q_mvar``, ``sgen_p_mw``, ``sgen_q_mvar``, ``gen_p_mw``
        (net row order, generator convention for sgens and gens as in pandapower)
    pv_pu : PV profile per unit of peak power (one column)
    pv_kwp : (n_pv,) installed peak power of the rooftop PV agents
    batteries, evs : device models
    times_s : (T,) Unix start time of every step; step_s : step length [s]
    """

    checkpoint_drop = ("_tables", "_pv_pu")  # profiles, built from the scenario: a checkpoint leaves them out

    def __init__(
        self,
        table: AgentTable,
        tables: dict[str, ProfileTable],
        pv_pu: ProfileTable | None,
        pv_kwp: np.ndarray,
        batteries: Batteries,
        evs: EVs,
        times_s: np.ndarray,
        step_s: int,
    ) -> None:
        self.table = table
        self.step_s = step_s
        self.times_s = np.asarray(times_s, dtype=np.int64)
        self._dt_h = step_s / 3600.0
        self._load, self._sgen, self._gen = table.where("load"), table.where("sgen"), table.where("gen")
        self._pv, self._battery, self._ev = table.where("pv"), table.where("battery"), table.where("ev")
        self._tables = tables
        self._rows = {k: t.rows_for(self.times_s, step_s) for k, t in tables.items()}
        self._pv_pu = pv_pu
        self._pv_rows = pv_pu.rows_for(self.times_s, step_s) if pv_pu is not None else None
        self._pv_mw = np.asarray(pv_kwp, dtype=float) / 1000.0
        self.batteries = batteries
        self.evs = evs
        self._hour_of_day = (self.times_s % 86400) / 3600.0

    def baseline(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """What every agent would do in step ``k`` following its profile; batteries idle. No state changes."""
        p = np.zeros(len(self.table))
        q = np.zeros(len(self.table))
        tables, rows = self._tables, self._rows
        p[self._load] = tables["load_p_mw"].mean(rows["load_p_mw"][k])
        q[self._load] = tables["load_q_mvar"].mean(rows["load_q_mvar"][k])
        p[self._sgen] = -tables["sgen_p_mw"].mean(rows["sgen_p_mw"][k])
        q[self._sgen] = -tables["sgen_q_mvar"].mean(rows["sgen_q_mvar"][k])
        p[self._gen] = -tables["gen_p_mw"].mean(rows["gen_p_mw"][k])
        if len(self._pv):
            assert self._pv_pu is not None and self._pv_rows is not None
            p[self._pv] = -self._pv_mw * self._pv_pu.mean(self._pv_rows[k])[0]
        if len(self._ev):
            p[self._ev] = self.evs.charge(self._hour_of_day[k], self._dt_h)
        return p, q

    def step(self, k: int) -> Setpoints:
        """Set-points for step ``k`` without a market: profiles, batteries for self-consumption."""
        p, q = self.baseline(k)
        if len(self._battery):
            p[self._battery] = self.batteries.dispatch(p, self._dt_h)
        return Setpoints(p, q, self.batteries.soc_mwh.copy())

    def step_awarded(self, k: int, award_mw: np.ndarray) -> Setpoints:
        """Set-points for step ``k`` when a market awarded ``award_mw`` (load convention) to every agent.

        Loads keep their power factor; batteries run at their award within their limits.
        """
        p0, q0 = self.baseline(k)
        p = np.asarray(award_mw, dtype=float).copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(p0 != 0.0, p / p0, 0.0)
        q = q0 * ratio
        if len(self._battery):
            p[self._battery] = self.batteries.apply(p[self._battery], self._dt_h)
        return Setpoints(p, q, self.batteries.soc_mwh.copy())


def household_rows(net: Any, prefixes: list[str]) -> np.ndarray:
    """Positions (in net.load row order) of loads that are households."""
    if "profile" not in net.load or net.load["profile"].isna().all():
        return np.arange(len(net.load))
    profile = net.load["profile"].fillna("").astype(str)
    return np.flatnonzero(profile.str.startswith(tuple(prefixes)).to_numpy())


def build_fleet(
    net: Any,
    cfg: Any,
    rng: np.random.Generator,
    tables: dict[str, ProfileTable],
    pv_pu: ProfileTable | None,
    times_s: np.ndarray,
    step_s: int,
) -> Fleet:
    """Make every load, sgen and gen an agent, place PV, batteries and EVs, and add their elements to ``net``.

    Parameters
    ----------
    net : pandapower net; gains one sgen per PV, one storage per battery, one load per EV,
        and every agent element gets ``scaling = 1`` (profiles carry the scaling).
    cfg : the scenario's ``agents`` section
    rng : the agents' random generator (placement, sizes, EV habits)

    Raises
    ------
    ValueError
        when the requested shares cannot be placed (message names the YAML key).
    """
    loads, sgens, gens = net.load.index.to_numpy(), net.sgen.index.to_numpy(), net.gen.index.to_numpy()
    # The grid's own storage units (SimBench's future scenarios ship some, with a static p_mw of a full
    # discharge) are not agents: left in, they would inject that power in every interval, unseen by the
    # market. They are set idle; batteries come from agents.battery.
    if "storage" in net and len(net.storage):
        net.storage["p_mw"] = 0.0
        net.storage["q_mvar"] = 0.0
    net.load["scaling"] = 1.0
    net.sgen["scaling"] = 1.0
    net.gen["scaling"] = 1.0
    homes = household_rows(net, cfg.household_profiles)
    n_home = len(homes)

    n_pv = round(cfg.pv.share * n_home)
    pv_homes = np.sort(rng.choice(homes, size=n_pv, replace=False)) if n_pv else homes[:0]
    if n_pv and pv_pu is None:
        raise ValueError("agents.pv: no PV profile available for this grid")
    pv_kwp = rng.uniform(cfg.pv.kwp_min, cfg.pv.kwp_max, size=n_pv)
    n_bat = round(cfg.battery.share * n_home)
    pool = pv_homes if cfg.battery.only_with_pv else homes
    if n_bat > len(pool):
        raise ValueError(
            f"agents.battery.share: {n_bat} batteries requested but only {len(pool)} households "
            "have PV; lower the share or set only_with_pv: false"
        )
    bat_homes = np.sort(rng.choice(pool, size=n_bat, replace=False)) if n_bat else homes[:0]
    n_ev = round(cfg.ev.share * n_home)
    ev_homes = np.sort(rng.choice(homes, size=n_ev, replace=False)) if n_ev else homes[:0]

    load_names, sgen_names = element_names(net.load, "load"), element_names(net.sgen, "sgen")
    home_bus = net.load["bus"].to_numpy()
    pv_idx = add_elements(
        net, "sgen", home_bus[pv_homes], [f"{load_names[h]} PV" for h in pv_homes], p_mw=pv_kwp / 1000.0,
        type="PV",
    )  # fmt: skip
    cap_mwh = cfg.battery.capacity_kwh / 1000.0
    bat_idx = add_elements(
        net, "storage", home_bus[bat_homes], [f"{load_names[h]} battery" for h in bat_homes],
        p_mw=np.zeros(n_bat), max_e_mwh=cap_mwh, type="battery",
    )  # fmt: skip
    ev_idx = add_elements(net, "load", home_bus[ev_homes], [f"{load_names[h]} EV" for h in ev_homes],
                          p_mw=np.zeros(n_ev))  # fmt: skip

    elements = (
        [("load", int(i)) for i in loads]
        + [("sgen", int(i)) for i in sgens]
        + [("gen", int(i)) for i in gens]
        + [("sgen", int(i)) for i in pv_idx]
        + [("storage", int(i)) for i in bat_idx]
        + [("load", int(i)) for i in ev_idx]
    )
    kinds = (
        ["load"] * len(loads)
        + ["sgen"] * len(sgens)
        + ["gen"] * len(gens)
        + ["pv"] * n_pv
        + ["battery"] * n_bat
        + ["ev"] * n_ev
    )
    names = (
        load_names
        + sgen_names
        + element_names(net.gen, "gen")
        + [f"{load_names[h]} PV" for h in pv_homes]
        + [f"{load_names[h]} battery" for h in bat_homes]
        + [f"{load_names[h]} EV" for h in ev_homes]
    )
    names = _unique(names)
    buses = np.concatenate(
        [net[t].bus.to_numpy(dtype=np.int64)[net[t].index.get_indexer(i)] for t, i in
         (("load", loads), ("sgen", sgens), ("gen", gens), ("sgen", pv_idx), ("storage", bat_idx),
          ("load", ev_idx))]
    )  # fmt: skip
    home_of_row = {int(r): k for k, r in enumerate(homes)}  # net.load row -> household number
    # the grid's own loads (heat pumps, EV chargers) and generators at a bus with exactly one household
    # are behind that household's meter (a SimBench bus is a house connection)
    bus_homes = np.bincount(home_bus[homes], minlength=int(home_bus.max(initial=0)) + 1) if n_home else None
    home_at_bus = {int(home_bus[r]): k for k, r in enumerate(homes)}

    def at_bus(bus: int) -> int:
        alone = bus_homes is not None and bus < len(bus_homes) and bus_homes[bus] == 1
        return home_at_bus[bus] if alone else -1

    household = np.array(
        [home_of_row.get(i, at_bus(int(home_bus[i]))) for i in range(len(loads))]
        + [at_bus(int(b)) for b in net.sgen.bus.to_numpy()[: len(sgens)]]
        + [at_bus(int(b)) for b in net.gen.bus.to_numpy()]
        + [home_of_row[int(h)] for h in np.r_[pv_homes, bat_homes, ev_homes]],
        dtype=np.int64,
    )
    household_name = np.array([names[int(r)] for r in homes], dtype=object)
    table = AgentTable(
        np.array(names, dtype=object),
        buses,
        np.array(kinds, dtype=object),
        elements,
        household,
        household_name,
    )

    n_fixed = len(loads) + len(sgens) + len(gens)
    pv_of_home = {int(h): n_fixed + j for j, h in enumerate(pv_homes)}
    ev_of_home = {int(h): n_fixed + n_pv + n_bat + j for j, h in enumerate(ev_homes)}
    b = cfg.battery
    batteries = Batteries(
        capacity_mwh=np.full(n_bat, cap_mwh),
        power_mw=np.full(n_bat, b.power_kw / 1000.0),
        eta_charge=b.eta_charge,
        eta_discharge=b.eta_discharge,
        soc_min_mwh=np.full(n_bat, b.soc_min * cap_mwh),
        soc_max_mwh=np.full(n_bat, b.soc_max * cap_mwh),
        soc_mwh=np.full(n_bat, b.soc_initial * cap_mwh),
        household=bat_homes.astype(np.int64),
        pv=np.array([pv_of_home.get(int(h), -1) for h in bat_homes], dtype=np.int64),
        ev=np.array([ev_of_home.get(int(h), -1) for h in bat_homes], dtype=np.int64),
    )
    e = cfg.ev
    evs = EVs(
        charger_mw=np.full(n_ev, e.charger_kw / 1000.0),
        daily_mwh=np.clip(rng.normal(e.daily_kwh_mean, e.daily_kwh_sd, n_ev), 0.0, None) / 1000.0,
        arrival_h=rng.normal(e.arrival_hour_mean, e.arrival_hour_sd, n_ev) % 24.0,
        departure_h=rng.normal(e.departure_hour_mean, e.departure_hour_sd, n_ev) % 24.0,
    )
    return Fleet(table, tables, pv_pu, pv_kwp, batteries, evs, times_s, step_s)


_CREATE = {"sgen": pp.create_sgen, "storage": pp.create_storage, "load": pp.create_load}


def add_elements(
    net: Any, table: str, buses: np.ndarray, names: list[str], p_mw: np.ndarray, **fixed: Any
) -> np.ndarray:
    """Add one ``table`` element per bus to ``net``, as many ``pandapower.create_<table>`` calls would.

    The first is created by pandapower; the others copy its row with their own ``bus``, ``name`` and
    ``p_mw`` (pandapower's own vectorised ``create_sgens`` etc. store some columns as objects, and one call
    per element takes seconds for thousands). ``fixed`` are the keyword arguments shared by all.
    Returns the new elements' indices.
    """
    if not len(buses):
        return np.array([], dtype=np.int64)
    first = int(_CREATE[table](net, int(buses[0]), p_mw=float(p_mw[0]), name=names[0], **fixed))
    frame = net[table]
    rest = frame.loc[[first] * (len(buses) - 1)].copy()
    rest.index = pd.Index(first + 1 + np.arange(len(buses) - 1), dtype=frame.index.dtype)
    rest["bus"], rest["name"], rest["p_mw"] = buses[1:], names[1:], np.asarray(p_mw[1:], dtype=float)
    net[table] = pd.concat([frame, rest.astype(frame.dtypes.to_dict())])
    return net[table].index.to_numpy()[-len(buses) :].astype(np.int64)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(name if count == 0 else f"{name} #{count}")
    return out
