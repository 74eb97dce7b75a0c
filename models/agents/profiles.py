"""Year-long time series behind the agents: SimBench profiles, constant case values, clear-sky PV.

A :class:`ProfileTable` holds 15-minute (or constant) rows and answers, for a simulation step, the
mean of the rows inside that step. Rows are indexed by time elapsed since 1 January of the step's
year, wrapping at the table's end (SimBench's profiles are for 2016, a leap year of 35,136 rows).
Sign convention: all powers in load convention (positive = consumption), as pandapower loads.

Memory is in proportion to the run, not to the year of every element: a SimBench table holds each
distinct relative profile once (a few dozen columns, whatever the number of elements) with a factor per
element, and `ProfileTable.sliced` keeps only the rows the run's steps read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SIMBENCH_ROW_S = 900


def cycle_rows(times_s: np.ndarray, step_s: int, row_s: int, n_rows: int) -> np.ndarray:
    """Rows (n_steps, rows_per_step) of a table of ``n_rows`` rows of ``row_s`` seconds that each step reads.

    A step starting at ``times_s`` (Unix s) reads the rows from its time since 1 January of its year on,
    wrapping at ``n_rows``.
    """
    times_s = np.asarray(times_s, dtype=np.int64)
    years = pd.to_datetime(times_s, unit="s", utc=True).year.to_numpy()
    year_start = np.array(
        [dt.datetime(y, 1, 1, tzinfo=dt.UTC).timestamp() for y in np.unique(years)], dtype=np.int64
    )[np.searchsorted(np.unique(years), years)]
    first = (times_s - year_start) // row_s
    per_step = max(1, round(step_s / row_s))
    return (first[:, None] + np.arange(per_step)[None, :]) % n_rows


@dataclass(frozen=True)
class ProfileTable:
    """Rows of values per element; ``row_s=0`` marks a constant table of one row.

    Element ``j`` at row ``r`` is ``base[r, column[j]] * factor[j]`` (``factor[j]`` itself where that
    product is NaN), times ``scaling[j]``; without ``column``, ``factor`` and ``scaling`` it is
    ``base[r, j]``.

    Attributes
    ----------
    base : (n_stored, n_columns) array, e.g. MW, or per unit when ``factor`` is given
    row_s : seconds each row covers (900 for SimBench), 0 when constant
    column : (n_elements,) int, the base column of each element; None: column j is element j
    factor : (n_elements,) multiplier of each element's column (e.g. its MW), or None
    scaling : (n_elements,) multiplier applied last (pandapower's ``scaling``), or None
    stored : sorted full-table rows that ``base`` holds (see `sliced`); None: every row
    n_rows : rows of the full table, where row indices wrap (0: ``len(base)``)
    """

    base: np.ndarray
    row_s: int
    column: np.ndarray | None = None
    factor: np.ndarray | None = None
    scaling: np.ndarray | None = None
    stored: np.ndarray | None = None
    n_rows: int = 0

    @property
    def cycle(self) -> int:
        """Rows of the full table (the wrap-around length)."""
        return self.n_rows or len(self.base)

    @property
    def values(self) -> np.ndarray:
        """The stored rows per element, dense (n_stored, n_elements): for tests and small tables."""
        return self.at(np.arange(len(self.base)))

    def rows_for(self, times_s: np.ndarray, step_s: int) -> np.ndarray:
        """Row positions (n_steps, rows_per_step) covering each step that starts at ``times_s`` (Unix s)."""
        times_s = np.asarray(times_s, dtype=np.int64)
        if self.row_s == 0:
            return np.zeros((len(times_s), 1), dtype=np.int64)
        rows = cycle_rows(times_s, step_s, self.row_s, self.cycle)
        if self.stored is None:
            return rows
        pos = np.minimum(np.searchsorted(self.stored, rows), len(self.stored) - 1)
        if len(self.stored) == 0 or not np.array_equal(self.stored[pos], rows):
            raise ValueError("a step reads profile rows outside the period this table was sliced to")
        return pos

    def sliced(self, times_s: np.ndarray, step_s: int) -> ProfileTable:
        """The same table holding only the rows that the steps starting at ``times_s`` read."""
        if self.row_s == 0:
            return self
        full = self if self.stored is None else None
        if full is None:
            raise ValueError("slice a table once, from its full rows")
        keep = np.unique(cycle_rows(times_s, step_s, self.row_s, self.cycle))
        return ProfileTable(
            np.ascontiguousarray(self.base[keep]), self.row_s, self.column, self.factor, self.scaling, keep,
            self.cycle,
        )  # fmt: skip

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The elements' values at the stored row positions ``rows`` -> (len(rows), n_elements)."""
        v = self.base[rows]
        if self.column is not None:
            v = v[:, self.column]
        if self.factor is not None:
            v = v * self.factor
            v = np.where(np.isnan(v), self.factor, v)
        if self.scaling is not None:
            v = v * self.scaling
        return v

    def mean(self, rows: np.ndarray) -> np.ndarray:
        """Mean over the rows of one step -> (n_elements,)."""
        return self.at(rows).mean(axis=0)


def constant(values: np.ndarray) -> ProfileTable:
    """A table that returns ``values`` at every step."""
    return ProfileTable(np.asarray(values, dtype=float).reshape(1, -1), 0)


def constant_tables(net: Any) -> dict[str, ProfileTable]:
    """The net's own load and sgen values at every step (grids without profiles), scaling applied."""
    tables = {
        f"{table}_{col}": constant(net[table][col] * net[table]["scaling"])
        for table in ("load", "sgen")
        for col in ("p_mw", "q_mvar")
    }
    return tables | {"gen_p_mw": constant(net.gen.p_mw * net.gen.scaling)}


def _relative(
    net: Any, element: str, relative: list[pd.DataFrame], suffix: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct relative profile of ``net[element]`` once, and the column of each element.

    Each element's profile is the column ``profile + suffix`` of the first of ``relative`` that has it
    (simbench merges powerplants before renewables, keeping the first); an element without a profile
    reads the last column, all ones.

    Returns
    -------
    base : (n_rows, n_profiles + 1) relative values; column : (n_elements,) int
    """
    elements = net[element]
    n_rows = max(len(f) for f in relative)
    columns: list[np.ndarray] = []
    column = np.full(len(elements), -1, dtype=np.int64)  # -1: no profile, the ones column
    if "profile" in elements.columns:
        names = (elements["profile"] + suffix).to_numpy(dtype=object)
        todo = np.array([isinstance(n, str) for n in names], dtype=bool)  # NaN: no profile
        for frame in relative:
            here = todo & np.isin(names, frame.columns.to_numpy(dtype=object))
            if here.any():
                if len(frame) != n_rows:
                    raise ValueError(f"{element} profiles have {len(frame)} rows, expected {n_rows}")
                distinct, inverse = np.unique(names[here].astype(str), return_inverse=True)
                column[here] = len(columns) + inverse
                columns += [frame[name].to_numpy(dtype=float) for name in distinct]
                todo &= ~here
        if todo.any():
            missing = sorted(set(names[todo]))
            raise ValueError(f"{element} profiles {missing} are not in the grid's profiles")
    base = np.column_stack([*columns, np.ones(n_rows)])
    column[column < 0] = len(columns)
    return base, column


def simbench_tables(net: Any) -> dict[str, ProfileTable]:
    """SimBench absolute profiles of loads (p, q) and sgens (p) in MW/Mvar, element scaling applied.

    The same arithmetic as ``simbench.get_absolute_profiles_from_relative_profiles`` (an element without a
    profile gets a relative profile of 1; a NaN value is the element's own), without importing simbench
    and without the dense year of every element: each table holds the distinct relative profiles.

    Returns
    -------
    dict with keys ``load_p_mw``, ``load_q_mvar``, ``sgen_p_mw``, ``sgen_q_mvar`` and ``gen_p_mw`` (the last
    two constant at the net's values); columns in the net's row order.
    """
    profiles = net.profiles
    sources = {
        ("load", "p_mw"): ("load_p_mw", [profiles["load"]], "_pload"),
        ("load", "q_mvar"): ("load_q_mvar", [profiles["load"]], "_qload"),
        ("sgen", "p_mw"): ("sgen_p_mw", [profiles["powerplants"], profiles["renewables"]], ""),
    }
    out = {}
    for (table, col), (key, relative, suffix) in sources.items():
        elements = net[table]
        base, column = _relative(net, table, relative, suffix)
        factor = elements[col].to_numpy(dtype=float)
        out[key] = ProfileTable(
            base, SIMBENCH_ROW_S, column, factor, elements["scaling"].to_numpy(dtype=float)
        )
    out["sgen_q_mvar"] = constant(net.sgen.q_mvar * net.sgen.scaling)
    out["gen_p_mw"] = constant(net.gen.p_mw * net.gen.scaling)
    return out


def sliced(tables: dict[str, ProfileTable], times_s: np.ndarray, step_s: int) -> dict[str, ProfileTable]:
    """Every table holding only the rows that the steps starting at ``times_s`` read."""
    return {key: table.sliced(times_s, step_s) for key, table in tables.items()}


def simbench_pv_pu(net: object, name: str | None) -> ProfileTable | None:
    """A normalised SimBench renewables profile (per unit of installed power), or None if absent."""
    profiles = getattr(net, "profiles", None)
    if not isinstance(profiles, dict) or "renewables" not in profiles:
        return None
    table = profiles["renewables"]
    if name is None:
        pv_cols = [c for c in table.columns if str(c).startswith("PV")]
        if not pv_cols:
            return None
        name = pv_cols[0]
    if name not in table.columns:
        choices = [c for c in table.columns if c != "time"]
        raise ValueError(f"no renewables profile {name!r} in this SimBench grid; it has {choices}")
    return ProfileTable(table[name].to_numpy(dtype=float).reshape(-1, 1), SIMBENCH_ROW_S)


def clear_sky_pv_pu(year: int, latitude_deg: float, performance_ratio: float = 0.75) -> ProfileTable:
    """Clear-sky PV output per unit of peak power, 15-min rows over one year (solar time = UTC).

    ``p = performance_ratio * max(0, sin(solar elevation))``: Cooper's declination and the hour angle,
    no clouds; an upper envelope for grids that ship no PV profile.
    """
    start = dt.datetime(year, 1, 1, tzinfo=dt.UTC)
    n_rows = int((dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC) - start).total_seconds()) // SIMBENCH_ROW_S
    t_h = (np.arange(n_rows) + 0.5) * SIMBENCH_ROW_S / 3600.0
    day = np.floor(t_h / 24.0) + 1
    declination = np.deg2rad(23.45) * np.sin(2 * np.pi * (284 + day) / 365.0)
    hour_angle = np.deg2rad(15.0 * (t_h % 24.0 - 12.0))
    lat = np.deg2rad(latitude_deg)
    sin_elev = np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(hour_angle)
    return ProfileTable((performance_ratio * np.clip(sin_elev, 0.0, None)).reshape(-1, 1), SIMBENCH_ROW_S)
