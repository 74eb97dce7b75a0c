"""Society section of the run report and of run comparisons: emissions, equity and privacy.

Reads the optional ``/emissions``, ``/equity`` and ``/privacy`` groups of a run file (h5py only), each on its
own. A run without any of them gets no society section. Everything is vectorised (bincount, masks, chunked
matrix products): a year of hourly steps, ~100 buses and ~1.5 million trades read in seconds.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .common import Arr, Fig, findings, fmt, money, num, render_section, save
from .common import attr as _attr
from .common import chunks as _chunks
from .common import dates as _dates
from .common import fit as _fit
from .common import note as _note
from .common import sig as _sig
from .common import strs as _strs

_f = fmt

EMISSIONS_FIGS = ("emissions.png", "emissions_marginal_map.png", "emissions_trades.png")
BASELINE_FIG = "equity_baseline.png"
EQUITY_FIGS = ("equity_lorenz_gini.png", BASELINE_FIG)
PRIVACY_ERROR_FIG = "privacy_error_epsilon.png"
PRIVACY_FIGS = ("privacy_release.png", "privacy_budget.png", PRIVACY_ERROR_FIG)
FLAG_RELATIVE_ERROR = 1.0  # a release whose error exceeds its true value (100 %) is flagged
SOCIETY_FIGS = EMISSIONS_FIGS + EQUITY_FIGS + PRIVACY_FIGS
COMPARE_FIGS = ("comparison_dp_error.png", "comparison_emissions_gini.png")
DAILY_AFTER_DAYS = 7  # time series as daily values beyond this run length, as the price heat map
HIST_BINS = 60
HIST_TAILS = (0.5, 99.5)  # percentiles bounding the histogram range; the tails go into the edge bins
HOURS = np.arange(24)
EMISSIONS_LABELS = (
    "Total emissions",
    "Average emission factor",
    "Mean marginal emission factor",
    "Carbon price",
    "Carbon impact of P2P trades",
)
EQUITY_LABELS = (
    "Gini of surplus (study)",
    "Gini of bills (study)",
    "Absolute Gini of surplus",
    "Fairness rule and levy",
    "Mean surplus low-income / other agents",
)
PRIVACY_LABELS = ("DP epsilon spent / budget", "Refused DP releases", "DP error")
LABELS = EMISSIONS_LABELS + EQUITY_LABELS + PRIVACY_LABELS
COMPARE_LABELS = ("Society data", *LABELS, "Total welfare")


@dataclass
class Emissions:
    """One run's ``/emissions`` reduced to what the report draws and summarises (kg CO2, MWh)."""

    carbon_price_per_t: float
    upstream: str
    total_kg: Arr  # (T,)
    average_kg_per_mwh: Arr  # (T,)
    upstream_kg: Arr  # (T,)
    served_mwh: Arr  # (T,) total / average; 0 where nothing is served (average NaN), NaN where unknown
    marginal_by_hour: Arr  # (n_bus, 24) mean nodal marginal factor per bus and UTC hour, NaN without data
    marginal_mean: float  # over buses and steps (finite values)
    lossless_mean: float
    bus_names: list[str]
    n_trades: int  # rows of /emissions/trades
    trade_note: str  # why the trades could not be matched to /market/trades ('' when they were)
    p2p_kg_per_mwh: Arr  # per P2P trade with energy (buyer and seller agents)
    grid_kg_per_mwh: Arr  # per trade with the upstream grid (-1 on a side)
    p2p_kg: float
    p2p_mwh: float
    grid_kg: float
    grid_mwh: float


@dataclass
class Equity:
    """One run's ``/equity`` reduced to what the report draws and summarises ($)."""

    rule: str
    levy_per_mwh: float
    gini_surplus: float
    gini_bill: float
    absolute_gini_surplus: float
    surplus: Arr  # (n_agent,)
    transfer: Arr  # (n_agent,)
    low_income: Arr  # (n_agent,) bool
    month_start: Arr  # (n_month,) Unix s
    gini_month: Arr  # (n_month,)
    gini_bill_month: Arr  # (n_month,)
    lorenz: Arr  # (n_agent + 1, 2) population share, cumulative surplus share
    lorenz_shifted: bool  # optional attr: the curve is of surplus - min (total surplus <= 0)
    net_cost: Arr  # (n_agent,) $ paid in the study (after transfers), NaN where missing
    baseline_cost: Arr  # (n_agent,) $ the same energy would have cost under the retail tariff
    group: list[str]  # (n_agent,) household (when the file has one) or agent kind of each account
    group_by: str  # 'household' or 'agent kind' ('' when the accounts cannot be matched to agents)
    unit: str = "device"  # optional attr: whose accounts (household or device)


@dataclass
class Privacy:
    """One run's ``/privacy`` reduced to what the report draws and summarises."""

    epsilon: float
    budget: float
    mechanism: str
    delta: float
    n_refused: int
    mae_consumption_mwh: float
    mae_count: float
    relative_error_consumption: float
    epsilon_spent: Arr  # (T,) cumulative
    refused: Arr  # (T,) bool
    evaluated: bool  # /privacy/true exists
    series: str  # name of the series drawn (largest consumption series)
    released_series: Arr  # (T,)
    true_series: Arr  # (T,) NaN without /privacy/true
    abs_err_consumption: Arr  # finite |released - true| of every consumption series and step
    abs_err_count: Arr  # same for the count series
    rel_err_step: Arr  # (T,) per release: sum |released - true| / sum |true| over consumption series, NaN


@dataclass
class Society:
    """The society groups of one run; each None when the run does not have it."""

    time_s: Arr  # (T,) step starts, Unix s
    step_s: float
    emissions: Emissions | None
    equity: Equity | None
    privacy: Privacy | None
    welfare_usd: float  # sum of /market/welfare, NaN without it


# ------------------------------------------------------------------------------------------------ reading


def _col(g: Any, key: str, n: int | None = None, fill: float = np.nan) -> Arr:
    """A 1-D dataset of a group as float (fitted to n when given); empty (or fill) when missing."""
    ds = None if g is None else g.get(key)
    if not isinstance(ds, h5py.Dataset):
        return np.zeros(0) if n is None else np.full(n, fill)
    a = np.asarray(ds[()], dtype=float).ravel()
    return a if n is None else _fit(a, n, fill)


def _float_attr(g: Any, key: str) -> float:
    """A numeric attribute as float, NaN when missing or not a number."""
    try:
        return float(_attr(g, key, np.nan))
    except (TypeError, ValueError):
        return np.nan


def _hourly_2d(ds: Any, hour: Arr) -> tuple[Arr, Arr, float, int]:
    """Per UTC hour and column: sum and count of the finite values of a (T, n) dataset; also their totals."""
    n = ds.shape[1] if isinstance(ds, h5py.Dataset) and ds.ndim == 2 else 0
    tot, cnt, i = np.zeros((24, n)), np.zeros((24, n)), 0
    for blk in _chunks(ds if n else None):
        blk = blk[: max(hour.size - i, 0)]
        if not len(blk):
            break
        one_hot = (hour[i : i + len(blk), None] == HOURS).astype(float)  # (rows, 24)
        fin = np.isfinite(blk)
        tot += one_hot.T @ np.where(fin, blk, 0.0)
        cnt += one_hot.T @ fin
        i += len(blk)
    return tot, cnt, float(tot.sum()), int(cnt.sum())


def _bus_names(f: h5py.File, ds: Any, n: int) -> list[str]:
    """Column names of a (T, n_bus) dataset from its 'columns' attribute (a dataset path), else grid buses."""
    path = str(_attr(ds, "columns", "grid/bus/name")) if isinstance(ds, h5py.Dataset) else "grid/bus/name"
    target = f.get(path)
    names = _strs(target) if isinstance(target, h5py.Dataset) else []
    return names if len(names) == n else [str(i) for i in range(n)]


def _load_emissions(f: h5py.File, hour: Arr) -> Emissions | None:
    """Read and reduce ``/emissions`` (None without it)."""
    g = f.get("emissions")
    if not isinstance(g, h5py.Group):
        return None
    t = hour.size
    total, avg = _col(g, "total_kg", t), _col(g, "average_kg_per_mwh", t)
    with np.errstate(invalid="ignore", divide="ignore"):
        served = np.where(np.isfinite(avg) & (avg != 0), total / avg, np.nan)
    served[np.isnan(avg) & np.isfinite(total)] = 0.0  # the producer's NaN average: nothing served
    mds = g.get("marginal_kg_per_mwh")
    tot, cnt, s, c = _hourly_2d(mds, hour)
    with np.errstate(invalid="ignore", divide="ignore"):
        by_hour = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan).T
    _, _, s0, c0 = _hourly_2d(g.get("marginal_lossless_kg_per_mwh"), hour)
    # trades: row i of /emissions/trades belongs to row i of /market/trades
    et, mt = g.get("trades"), f.get("market/trades")
    kg = _col(et, "kg")
    n_rows = kg.size
    mwh, buyer, seller = _col(mt, "mwh"), _col(mt, "buyer"), _col(mt, "seller")
    note = ""
    if not isinstance(et, h5py.Group) or not kg.size:
        note = "no trade in /emissions/trades"
    elif not isinstance(mt, h5py.Group):
        note = "no /market/trades to match"
    elif not kg.size == mwh.size == buyer.size == seller.size:
        note = f"{kg.size} emission rows for {mwh.size} trades: not matched"
    if note:
        kg = mwh = buyer = seller = np.zeros(0)
    p2p = (buyer >= 0) & (seller >= 0)
    ok = np.isfinite(kg) & np.isfinite(mwh)
    with np.errstate(invalid="ignore", divide="ignore"):
        factor = kg / mwh
    has_e = ok & (mwh > 0)
    return Emissions(
        carbon_price_per_t=_float_attr(g, "carbon_price_per_t"),
        upstream=str(_attr(g, "upstream", "")),
        total_kg=total,
        average_kg_per_mwh=avg,
        upstream_kg=_col(g, "upstream_kg", t),
        served_mwh=served,
        marginal_by_hour=by_hour,
        marginal_mean=s / c if c else np.nan,
        lossless_mean=s0 / c0 if c0 else np.nan,
        bus_names=_bus_names(f, mds, by_hour.shape[0]),
        n_trades=n_rows,
        trade_note=note,
        p2p_kg_per_mwh=factor[has_e & p2p],
        grid_kg_per_mwh=factor[has_e & ~p2p],
        p2p_kg=float(kg[ok & p2p].sum()),
        p2p_mwh=float(mwh[ok & p2p].sum()),
        grid_kg=float(kg[ok & ~p2p].sum()),
        grid_mwh=float(mwh[ok & ~p2p].sum()),
    )


def _load_equity(f: h5py.File) -> Equity | None:
    """Read and reduce ``/equity`` (None without it)."""
    g = f.get("equity")
    if not isinstance(g, h5py.Group):
        return None
    surplus = _col(g, "surplus")
    n = surplus.size
    li = g.get("low_income")
    low = np.zeros(n, dtype=bool) if li is None else _fit(np.asarray(li[()], dtype=bool), n, False)
    months = g.get("month_start")
    start = np.zeros(0, dtype=np.int64) if months is None else np.asarray(months[()], dtype=np.int64).ravel()
    group, group_by = _groups(f, n)
    lz = g.get("lorenz")
    lorenz = np.asarray(lz[()], dtype=float) if lz is not None and lz.ndim == 2 and lz.shape[1] == 2 else None
    return Equity(
        rule=str(_attr(g, "rule", "none")),
        levy_per_mwh=_float_attr(g, "levy_per_mwh"),
        gini_surplus=_float_attr(g, "gini_surplus"),
        gini_bill=_float_attr(g, "gini_bill"),
        absolute_gini_surplus=_float_attr(g, "absolute_gini_surplus"),
        surplus=surplus,
        transfer=_col(g, "transfer", n, 0.0),
        low_income=low,
        month_start=start,
        gini_month=_col(g, "gini", start.size),
        gini_bill_month=_col(g, "gini_bill", start.size),
        lorenz=np.zeros((0, 2)) if lorenz is None else lorenz,
        lorenz_shifted=bool(_attr(g, "lorenz_shifted", False)),
        net_cost=_col(g, "net_cost", n),
        baseline_cost=_col(g, "baseline_cost", n),
        group=group,
        group_by=group_by,
        unit=str(_attr(g, "unit", "device")),
    )


def _groups(f: h5py.File, n: int) -> tuple[list[str], str]:
    """Who each of the n equity accounts is: its household when /agents/household names one, else its kind."""
    units = f.get("equity/unit_name")
    if str(_attr(f["equity"], "unit", "")) == "household" and isinstance(units, h5py.Dataset):
        names = _strs(units)
        if len(names) == n:  # accounts per household: each is its own group
            return names, "household"
    hh, hh_name, kind = f.get("agents/household"), f.get("agents/household_name"), f.get("agents/kind")
    if all(isinstance(d, h5py.Dataset) for d in (hh, hh_name, kind)) and len(hh) == n:  # per device
        index, homes, kinds = np.asarray(hh[()]).ravel(), _strs(hh_name), _strs(kind)
        if index.dtype.kind in "iu" and len(kinds) == n and any(index >= 0):
            return [homes[i] if 0 <= i < len(homes) else kinds[a] for a, i in enumerate(index)], "household"
    for key, what in (("agents/household", "household"), ("agents/kind", "agent kind")):
        ds = f.get(key)
        names = _strs(ds) if isinstance(ds, h5py.Dataset) else []
        if len(names) == n and any(names):
            return names, what
    hh = f.get("equity/name")
    names = _strs(hh) if isinstance(hh, h5py.Dataset) else []
    return (names, "household") if len(names) == n else ([""] * n, "")


def _is_count(names: list[str]) -> Arr:
    """Which released series are counts (name mentions 'count'); the others are consumption (MWh)."""
    return np.array(["count" in s.lower() for s in names], dtype=bool)


def _load_privacy(f: h5py.File, t: int) -> Privacy | None:
    """Read and reduce ``/privacy`` (None without it)."""
    g = f.get("privacy")
    if not isinstance(g, h5py.Group):
        return None
    rds, tds = g.get("released"), g.get("true")
    released = np.asarray(rds[()], dtype=float) if rds is not None and rds.ndim == 2 else np.zeros((t, 0))
    released = released[:t]
    n_s = released.shape[1]
    names = _strs(g.get("series_name"))
    names = names if len(names) == n_s else [f"series {i}" for i in range(n_s)]
    true = None
    if tds is not None and tds.ndim == 2 and tds.shape[1] == n_s:
        true = np.asarray(tds[()], dtype=float)[: released.shape[0]]
        released = released[: true.shape[0]]
    count = _is_count(names)
    ref = released if true is None else true
    with np.errstate(invalid="ignore"):
        fin = np.isfinite(ref)
        level = np.where(fin.any(axis=0), np.where(fin, np.abs(ref), 0.0).sum(axis=0), -np.inf)
    cand = np.flatnonzero(~count) if (~count).any() else np.arange(n_s)  # consumption series first
    j = int(cand[np.argmax(level[cand])]) if n_s else -1
    err = np.abs(released - true) if true is not None else np.zeros((0, n_s))
    fin_e = np.isfinite(err)
    rel = np.full(t, np.nan)
    if true is not None and (~count).any():
        with np.errstate(invalid="ignore", divide="ignore"):
            den = np.nansum(np.abs(true[:, ~count]), axis=1)
            num_ = np.nansum(np.where(fin_e[:, ~count], err[:, ~count], 0.0), axis=1)
            r = np.where(den > 0, num_ / den, np.nan)
        rel[: r.size] = r[:t]
    refused = _col(g, "refused", t, 0.0).astype(bool)
    n_ref = _attr(g, "n_refused", None)
    return Privacy(
        epsilon=_float_attr(g, "epsilon"),
        budget=_float_attr(g, "budget"),
        mechanism=str(_attr(g, "mechanism", "")),
        delta=_float_attr(g, "delta"),
        n_refused=int(np.count_nonzero(refused)) if n_ref is None else int(n_ref),
        mae_consumption_mwh=_float_attr(g, "mae_consumption_mwh"),
        mae_count=_float_attr(g, "mae_count"),
        relative_error_consumption=_float_attr(g, "relative_error_consumption"),
        epsilon_spent=_col(g, "epsilon_spent", t),
        refused=refused,
        evaluated=true is not None,
        series=names[j] if n_s else "",
        released_series=_fit(released[:, j], t, np.nan) if n_s else np.full(t, np.nan),
        true_series=_fit(true[:, j], t, np.nan) if n_s and true is not None else np.full(t, np.nan),
        abs_err_consumption=err[:, ~count][fin_e[:, ~count]],
        abs_err_count=err[:, count][fin_e[:, count]],
        rel_err_step=rel,
    )


def load_society(f: h5py.File) -> Society | None:
    """Read and reduce the society groups of an open run file; None when it has none of them."""
    if not any(isinstance(f.get(k), h5py.Group) for k in ("emissions", "equity", "privacy")):
        return None
    time_s = np.asarray(f["time"][()], dtype=np.int64).ravel()
    t = time_s.size
    step_s = float(_attr(f, "step_s", 0) or (time_s[1] - time_s[0] if t > 1 else 3600))
    hour = (time_s // 3600) % 24
    welfare = f.get("market/welfare")
    return Society(
        time_s=time_s,
        step_s=step_s,
        emissions=_load_emissions(f, hour),
        equity=_load_equity(f),
        privacy=_load_privacy(f, t),
        welfare_usd=float(np.nansum(welfare[()])) if isinstance(welfare, h5py.Dataset) else np.nan,
    )


# ------------------------------------------------------------------------------------------------ metrics


def total_emissions_t(em: Emissions) -> float:
    """Emissions of the run (t CO2): sum of the per-step totals."""
    return float(np.nansum(em.total_kg)) / 1000


def served_total_mwh(em: Emissions) -> float:
    """Energy served over the run (MWh): sum of total / average over the steps where it is known."""
    return float(np.nansum(em.served_mwh))


def average_factor_kg_per_mwh(em: Emissions) -> float:
    """Energy-weighted average emission factor of the run (kg/MWh): all emissions over all energy served."""
    served = served_total_mwh(em)
    return 1000 * total_emissions_t(em) / served if served > 0 else np.nan


def p2p_carbon_t(em: Emissions) -> float:
    """Carbon impact of the trades between two agents (t CO2; negative = a net credit)."""
    return em.p2p_kg / 1000


def carbon_cost_usd(em: Emissions) -> float:
    """The run's emissions at its carbon price ($)."""
    return total_emissions_t(em) * em.carbon_price_per_t


def final_epsilon(pv: Privacy) -> float:
    """Privacy budget spent by the end of the run (last finite cumulative value; NaN without any)."""
    e = pv.epsilon_spent[np.isfinite(pv.epsilon_spent)]
    return float(e[-1]) if e.size else np.nan


# ------------------------------------------------------------------------------------------------ rows


def emissions_rows(em: Emissions) -> list[tuple[str, str]]:
    """Summary rows of the emissions, labels as in ``EMISSIONS_LABELS``."""
    total = total_emissions_t(em)
    up = float(np.nansum(em.upstream_kg)) / 1000
    served = served_total_mwh(em)
    avg = average_factor_kg_per_mwh(em)
    average = f"{_f(avg, '.2f')} kg/MWh (over {_f(served, '.3f')} MWh served)" if np.isfinite(avg) else "n/a"
    marginal = (
        f"{_f(em.marginal_mean, '.2f')} kg/MWh (lossless {_f(em.lossless_mean, '.2f', ' kg/MWh')})"
        if np.isfinite(em.marginal_mean)
        else "n/a (no nodal marginal factor)"
    )
    upstream = f" (upstream {html.escape(em.upstream)})" if em.upstream else ""
    price = f"{_f(em.carbon_price_per_t, '.2f', ' $/t')}{upstream}; " + (
        f"{_f(carbon_cost_usd(em), '.2f')} $ on the run's emissions"
        if np.isfinite(em.carbon_price_per_t)
        else ""
    )
    n_p2p, n_grid = em.p2p_kg_per_mwh.size, em.grid_kg_per_mwh.size
    trades = (
        f"n/a ({html.escape(em.trade_note)})"
        if em.trade_note
        else f"{_f(p2p_carbon_t(em), '.3f')} t over {_f(em.p2p_mwh, '.3f')} MWh ({n_p2p} trades); "
        f"trades with the grid {_f(em.grid_kg / 1000, '.3f')} t over {_f(em.grid_mwh, '.3f')} MWh "
        f"({n_grid} trades)"
    )
    cells = (
        f"{_f(total, '.3f')} t (upstream {_f(up, '.3f')} t)",
        average,
        marginal,
        price.rstrip("; "),
        trades,
    )
    return list(zip(EMISSIONS_LABELS, cells, strict=True))


def _month_range(x: Arr) -> str:
    """' (monthly lo–hi over n months)' of the finite monthly values, '' without any."""
    v = x[np.isfinite(x)]
    return f" (monthly {_f(v.min(), '.4f')}–{_f(v.max(), '.4f')} over {v.size} months)" if v.size else ""


def _units(eq: Equity) -> str:
    """What the equity accounts compare, in words."""
    return "households" if eq.unit == "household" else "agents"


def equity_rows(eq: Equity) -> list[tuple[str, str]]:
    """Summary rows of the equity accounts, labels as in ``EQUITY_LABELS``."""
    tr = eq.transfer[np.isfinite(eq.transfer)]
    to_low = float(np.nansum(eq.transfer[eq.low_income]))
    rule = (
        f"{html.escape(eq.rule)}, levy {_f(eq.levy_per_mwh, '.2f', ' $/MWh')}; transfers "
        f"+{_f(tr.clip(0, None).sum(), '.2f')} / {_f(tr.clip(None, 0).sum(), '.2f')} $ (net "
        f"{_f(to_low, '.2f')} $ to low-income "
        f"{_units(eq)})"
    )
    s = eq.surplus
    lo, other = s[eq.low_income & np.isfinite(s)], s[~eq.low_income & np.isfinite(s)]

    def mean(x: Arr) -> str:
        return f"{_f(x.mean(), '.2f')}" if x.size else "n/a"

    surplus = f"{mean(lo)} / {mean(other)} $ ({lo.size} / {other.size} {_units(eq)})"
    cells = (
        _f(eq.gini_surplus, ".4f") + _month_range(eq.gini_month),
        _f(eq.gini_bill, ".4f") + _month_range(eq.gini_bill_month),
        _f(eq.absolute_gini_surplus, ".2f", " $"),
        rule,
        surplus,
    )
    return list(zip(EQUITY_LABELS, cells, strict=True))


def privacy_rows(pv: Privacy, t: int) -> list[tuple[str, str]]:
    """Summary rows of the private release, labels as in ``PRIVACY_LABELS``."""
    spent, budget = final_epsilon(pv), pv.budget
    known = np.isfinite(spent) and np.isfinite(budget) and budget
    share = f" ({_f(100 * spent / budget, '.1f')} %)" if known else ""
    delta = f", delta {_sig(pv.delta)}" if np.isfinite(pv.delta) and pv.delta else ""
    spend = (
        f"{_sig(spent)} / {_sig(budget) if np.isfinite(budget) else 'none'}{share}; epsilon "
        f"{_sig(pv.epsilon)} per release, {html.escape(pv.mechanism or 'unknown')}{delta}"
    )
    err = (
        f"MAE {_sig(pv.mae_consumption_mwh)} MWh (consumption), {_sig(pv.mae_count)} (count); relative "
        f"{_f(100 * pv.relative_error_consumption, '.2f', ' %')} (consumption)"
        if any(np.isfinite([pv.mae_consumption_mwh, pv.mae_count, pv.relative_error_consumption]))
        else "n/a (not evaluated)"
    )
    return list(zip(PRIVACY_LABELS, (spend, f"{pv.n_refused} of {t}", err), strict=True))


def society_rows(soc: Society) -> list[tuple[str, str]]:
    """Summary rows (label, HTML cell) of the groups the run has, labels as in ``LABELS``."""
    rows: list[tuple[str, str]] = []
    if soc.emissions is not None:
        rows += emissions_rows(soc.emissions)
    if soc.equity is not None:
        rows += equity_rows(soc.equity)
    if soc.privacy is not None:
        rows += privacy_rows(soc.privacy, soc.time_s.size)
    return rows


def parts(soc: Society) -> list[str]:
    """Names of the society groups the run has, in contract order."""
    present = (soc.emissions, soc.equity, soc.privacy)
    return [k for k, v in zip(("emissions", "equity", "privacy"), present, strict=True) if v is not None]


# ------------------------------------------------------------------------------------------------ figures


def _long(soc: Society) -> bool:
    """The run spans more than DAILY_AFTER_DAYS days (time series drawn per UTC day)."""
    t = soc.time_s
    return bool(t.size > 1 and t[-1] - t[0] > DAILY_AFTER_DAYS * 86400)


def _by_hour(hour: Arr, y: Arr) -> Arr:
    """Mean of the finite values of a (T,) series per UTC hour (24,), NaN for hours without any."""
    fin = np.isfinite(y)
    s = np.bincount(hour[fin], weights=y[fin], minlength=24)
    c = np.bincount(hour[fin], minlength=24)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _period(ax: Axes, soc: Society) -> None:
    """Date axis over the run's period, also when every value is NaN."""
    if soc.time_s.size:
        ax.set_xlim(*(soc.time_s[[0, -1]] + np.array([0, int(soc.step_s)])).astype("datetime64[s]"))
    _dates(ax)


def _hour_axis(ax: Axes) -> None:
    ax.set_xlim(-0.5, 23.5)
    ax.set_xticks(np.arange(0, 24, 3))
    ax.set_xlabel("hour of day (UTC)")


def plot_emissions(soc: Society, em: Emissions) -> Figure:
    """Emissions over the run (per step, daily totals beyond a week) and by UTC hour of day."""
    fig = Figure(figsize=(10, 7.5), layout="tight")
    ax, axh = fig.subplots(2, 1)
    index = pd.DatetimeIndex(soc.time_s.astype("datetime64[s]"))
    daily = _long(soc)
    for y, label, colour in ((em.total_kg, "total", "tab:red"), (em.upstream_kg, "upstream", "tab:grey")):
        s = pd.Series(y, index=index)
        if daily:
            s = s.resample("D").sum(min_count=1) / 1000
        ax.plot(
            s.index,
            s.to_numpy(dtype=float),
            lw=1,
            color=colour,
            label=label,
            marker="." if len(s) < 50 else None,
        )
    if not np.isfinite(em.total_kg).any():
        _note(ax, "no data (no emissions recorded)")
    ax.set(
        title=f"Emissions ({'daily totals' if daily else 'per step'}; run total "
        f"{_f(total_emissions_t(em), '.3f')} t CO2)",
        xlabel="time (UTC)",
        ylabel="emissions (t CO2/day)" if daily else "emissions (kg CO2/step)",
    )
    ax.set_ylim(bottom=min(0.0, float(np.nanmin(em.total_kg))) if np.isfinite(em.total_kg).any() else 0.0)
    _period(ax, soc)
    ax.legend(loc="best", fontsize=8)
    hour = (soc.time_s // 3600) % 24
    tot = _by_hour(hour, em.total_kg)
    has = np.isfinite(tot)
    axh.bar(HOURS[has], tot[has], color="tab:red", alpha=0.6, label="mean emissions per step")
    axh.set_ylabel("emissions (kg CO2/step)")
    _hour_axis(axh)
    axf = axh.twinx()
    avg = _by_hour(hour, em.average_kg_per_mwh)
    fin = np.isfinite(em.marginal_by_hour)  # mean over the buses with data (nanmean without its warning)
    with np.errstate(invalid="ignore", divide="ignore"):
        marg = np.where(fin, em.marginal_by_hour, 0.0).sum(axis=0) / fin.sum(axis=0)
    axf.plot(HOURS, avg, "o-", color="black", ms=3, label="mean average factor")
    if np.isfinite(marg).any():
        axf.plot(HOURS, marg, "s--", color="tab:purple", ms=3, label="mean marginal factor (over buses)")
    axf.set_ylabel("emission factor (kg CO2/MWh)")
    factors = np.concatenate([avg, marg])
    axf.set_ylim(bottom=min(0.0, float(np.nanmin(factors))) if np.isfinite(factors).any() else 0.0)
    if not has.any() and not np.isfinite(avg).any():
        _note(axh, "no data")
    lines = [*axh.get_legend_handles_labels()[0], *axf.get_legend_handles_labels()[0]]
    below = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.16), "ncol": 3}  # bars and lines fill the plot
    axf.legend(lines, [str(h.get_label()) for h in lines], fontsize=8, **below)
    axh.set_title("Emissions and emission factors by hour of day (means over the run's steps)")
    return fig


def plot_marginal_map(em: Emissions) -> Figure:
    """Bus by UTC hour of day heat map of the mean nodal marginal emission factor (losses included)."""
    z = em.marginal_by_hour
    n_bus = z.shape[0]
    fig = Figure(figsize=(9, max(3.5, min(9.0, 1.5 + 0.22 * n_bus))), layout="tight")
    ax = fig.add_subplot()
    fin = z[np.isfinite(z)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    extend = "neither"
    if fin.size >= 50:  # a robust colour range: one outlying hour must not flatten every other cell
        p_lo, p_hi = (float(v) for v in np.percentile(fin, (2, 98)))
        if p_hi - p_lo > 1e-9 and (p_lo > lo or p_hi < hi):
            extend = {(True, True): "both", (True, False): "min", (False, True): "max"}[
                (p_lo > lo, p_hi < hi)
            ]
            lo, hi = p_lo, p_hi
    if hi - lo < 1e-9:  # one value everywhere: widen so the colour bar is readable
        lo, hi = lo - 1.0, hi + 1.0
    cmap = colormaps["magma_r"].with_extremes(bad="lightgrey")
    im = ax.imshow(
        z if n_bus else np.full((1, 24), np.nan),
        aspect="auto",
        cmap=cmap,
        vmin=lo,
        vmax=hi,
        interpolation="nearest",
        extent=(-0.5, 23.5, max(n_bus, 1) - 0.5, -0.5),
    )
    fig.colorbar(im, ax=ax, extend=extend, label="marginal emission factor (kg CO2/MWh; 2-98 % range)")
    if not fin.size:
        _note(ax, "no nodal marginal factor (all NaN: market design without a network model?)")
    if 0 < n_bus <= 40:
        ax.set_yticks(np.arange(n_bus), em.bus_names, fontsize=7 if n_bus > 15 else 8)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _hour_axis(ax)
    grey = "; grey = no data" if fin.size and not np.isfinite(z).all() else ""
    ax.set_title(f"Nodal marginal emission factor, losses included (mean per bus and hour{grey})")
    ax.set_ylabel("bus" if n_bus <= 40 else "bus (position in the file)")
    return fig


def plot_trades(em: Emissions) -> Figure:
    """Histograms of the carbon impact per MWh traded: P2P trades (top), trades with the upstream grid."""
    fig = Figure(figsize=(9, 6.5), layout="tight")
    axes = fig.subplots(2, 1, sharex=True)
    both = np.concatenate([em.p2p_kg_per_mwh, em.grid_kg_per_mwh])
    edges = None
    if both.size:
        lo, hi = np.percentile(both, HIST_TAILS)
        edges = np.histogram_bin_edges(both, bins=HIST_BINS, range=(float(lo), float(hi)))
    spec = (
        (axes[0], em.p2p_kg_per_mwh, em.p2p_kg, em.p2p_mwh, "P2P trades (agent to agent)", "tab:green"),
        (axes[1], em.grid_kg_per_mwh, em.grid_kg, em.grid_mwh, "trades with the upstream grid", "tab:blue"),
    )
    for ax, x, kg, mwh, title, colour in spec:
        if edges is not None and x.size:
            clipped = np.clip(x, edges[0], edges[-1])  # tails in the edge bins
            mean = f"{_f(kg / mwh, '.1f')} kg/MWh" if mwh > 0 else "n/a"
            ax.hist(
                clipped,
                bins=edges,
                color=colour,
                alpha=0.7,
                label=f"n={x.size}, energy-weighted mean {mean}, total {_f(kg / 1000, '.3f')} t",
            )
            ax.legend(loc="best", fontsize=8)
        else:
            _note(ax, f"no data ({em.trade_note or 'no such trade with energy'})")
        ax.axvline(0, color="black", lw=0.6)
        ax.set(title=f"{title}: carbon impact per MWh (+ = cost, - = credit)", ylabel="trades (-)")
    pct = f"{HIST_TAILS[0]:g}-{HIST_TAILS[1]:g} %"
    axes[1].set_xlabel(f"carbon impact (kg CO2/MWh traded; range {pct} of all trades, tails in edge bins)")
    return fig


def _month_labels(start: Arr) -> list[str]:
    return [str(m) for m in np.asarray(start, dtype=np.int64).astype("datetime64[s]").astype("datetime64[M]")]


def curve_gini(lorenz: Arr) -> float:
    """Gini of a drawn Lorenz curve: 1 - 2 x (area under it), trapezoids (NaN without a curve)."""
    ok = np.isfinite(lorenz).all(axis=1) if lorenz.size else np.zeros(0, dtype=bool)
    if ok.sum() < 2:
        return np.nan
    x, y = lorenz[ok, 0], lorenz[ok, 1]
    return float(1 - np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])))


def plot_equity(eq: Equity) -> Figure:
    """Lorenz curve drawn with the Gini of that very curve (left); Gini of surplus and bills per month."""
    fig = Figure(figsize=(11, 4.5), layout="tight")
    ax, axm = fig.subplots(1, 2, width_ratios=(1, 1.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="equality")
    lz = eq.lorenz
    ok = np.isfinite(lz).all(axis=1) if lz.size else np.zeros(0, dtype=bool)
    if ok.any():
        what = "surplus - min (total surplus <= 0)" if eq.lorenz_shifted else "surplus"
        label = f"{what}; Gini of this curve {_f(curve_gini(lz), '.3f')}"
        ax.plot(lz[ok, 0], lz[ok, 1], color="tab:blue", marker="." if ok.sum() < 50 else None, label=label)
        ax.fill_between(lz[ok, 0], lz[ok, 1], lz[ok, 0], color="tab:blue", alpha=0.15)
    else:
        _note(ax, "no Lorenz curve (no agent, or total surplus <= 0)")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title("Lorenz curve of the study surplus")
    ax.set(xlabel="population share, lowest surplus first (-)", ylabel="cumulative share (-)", xlim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    n = eq.month_start.size
    x = np.arange(n)
    for dx, y, label, colour in (
        (-0.2, eq.gini_month, "surplus", "tab:blue"),
        (0.2, eq.gini_bill_month, "bills", "tab:orange"),
    ):
        axm.bar(x + dx, np.nan_to_num(y), width=0.4, color=colour, label=label)
        for k in np.flatnonzero(~np.isfinite(y)):
            axm.text(x[k] + dx, 0.01, "n/a", ha="center", va="bottom", rotation=90, fontsize=7, color="grey")
    if not (np.isfinite(eq.gini_month).any() or np.isfinite(eq.gini_bill_month).any()):
        _note(axm, "no data (no month, or every monthly Gini undefined)")
    tilt = {"rotation": 45, "ha": "right"} if n > 6 else {}
    axm.set_xticks(x, _month_labels(eq.month_start), fontsize=8, **tilt)
    axm.set_ylim(bottom=0)
    axm.set(title="Gini per month", xlabel="month (UTC)", ylabel="Gini (-)")
    axm.legend(loc="best", fontsize=8)
    return fig


def plot_release(soc: Society, pv: Privacy) -> Figure:
    """Released against true values of the largest consumption series (top), absolute error distributions."""
    fig = Figure(figsize=(10, 7.5), layout="tight")
    gs = fig.add_gridspec(2, 2)
    ax = fig.add_subplot(gs[0, :])
    daily = _long(soc)
    index = pd.DatetimeIndex(soc.time_s.astype("datetime64[s]"))
    for y, label, colour, lw in (
        (pv.true_series, "true", "black", 1.4),
        (pv.released_series, "released (noisy)", "tab:orange", 0.9),
    ):
        s = pd.Series(y, index=index)
        if daily:
            s = s.resample("D").mean()
        s = s.dropna()  # refused releases, and the hours between releases with release_every: day
        if np.isfinite(s.to_numpy(dtype=float)).any():
            ax.plot(
                s.index,
                s.to_numpy(dtype=float),
                lw=lw,
                color=colour,
                label=label,
                marker="." if len(s) < 50 else None,
            )
    bad = flagged(pv)
    if bad.any():
        ax.plot(
            soc.time_s[bad].astype("datetime64[s]"),
            np.full(int(bad.sum()), 0.02),
            "|",
            color="tab:red",
            ms=10,
            transform=ax.get_xaxis_transform(),
            label=f"relative error > 100 % ({int(bad.sum()):,})",
        )
    if ax.get_lines():
        ax.legend(loc="best", fontsize=8)
    if not np.isfinite(pv.released_series).any():
        _note(ax, "no data (no released value)")
    elif not pv.evaluated:
        _note(ax, "no true values (the scenario did not ask for evaluation)")
    what = "daily means" if daily else "per step"
    ax.set(
        title=f"DP release of '{pv.series or 'n/a'}' ({what}; largest consumption series)",
        xlabel="time (UTC)",
        ylabel="released value",
    )
    _period(ax, soc)
    for k, (err, mae, unit) in enumerate(
        ((pv.abs_err_consumption, pv.mae_consumption_mwh, "MWh"), (pv.abs_err_count, pv.mae_count, "count"))
    ):
        axe = fig.add_subplot(gs[1, k])
        if err.size:
            hi = float(np.percentile(err, 99.5))
            axe.hist(
                np.clip(err, 0, hi),
                bins=HIST_BINS,
                range=(0, hi or 1.0),
                color="tab:orange",
                alpha=0.7,
                label=f"n={err.size}, mean {_sig(float(err.mean()))}",
            )
            if np.isfinite(mae):
                axe.axvline(mae, color="black", ls="--", lw=1, label=f"MAE (file) {_sig(mae)}")
            axe.legend(loc="best", fontsize=8)
        else:
            _note(axe, "no data" if pv.evaluated else "not evaluated")
        what = "consumption" if unit == "MWh" else "active count"
        axe.set(
            title=f"Absolute error, {what} series",
            ylabel="releases (-)",
            xlabel=f"|released - true| ({unit}; 99.5 % tail in last bin)",
        )
    return fig


def plot_budget(soc: Society, pv: Privacy) -> Figure:
    """Cumulative epsilon spent over the run against the budget, refused releases marked."""
    fig = Figure(figsize=(10, 4), layout="tight")
    ax = fig.add_subplot()
    dt = soc.time_s.astype("datetime64[s]")
    e = pv.epsilon_spent
    if np.isfinite(e).any():
        label = f"epsilon spent (final {_sig(final_epsilon(pv))})"
        ax.step(dt, e, where="post", color="tab:blue", label=label)
    else:
        _note(ax, "no data (no spend recorded)")
    if np.isfinite(pv.budget):
        ax.axhline(pv.budget, color="tab:red", ls="--", lw=1, label=f"budget {_sig(pv.budget)}")
    bad = pv.refused
    if bad.any():
        y = np.where(np.isfinite(e[bad]), e[bad], pv.budget if np.isfinite(pv.budget) else 0.0)
        ax.plot(dt[bad], y, "x", color="tab:red", ms=5, label=f"refused release ({int(bad.sum())})")
    ax.set_ylim(bottom=0)
    ax.set(
        title=f"Privacy budget ({pv.mechanism or 'unknown'} mechanism, epsilon {_sig(pv.epsilon)} per "
        "release)",
        xlabel="time (UTC)",
        ylabel="cumulative epsilon (-)",
    )
    _period(ax, soc)
    ax.legend(loc="best", fontsize=8)
    return fig


def flagged(pv: Privacy) -> Arr:
    """Releases (steps) with a relative error above FLAG_RELATIVE_ERROR: noise larger than the value."""
    with np.errstate(invalid="ignore"):
        return np.asarray(pv.rel_err_step > FLAG_RELATIVE_ERROR, dtype=bool)


def plot_error_epsilon(pv: Privacy) -> Figure:
    """Relative error of the release against epsilon: the run's point and the 1/epsilon law through it."""
    fig = Figure(figsize=(8, 4.5), layout="tight")
    ax = fig.add_subplot()
    rel = pv.rel_err_step[np.isfinite(pv.rel_err_step)]
    eps = pv.epsilon
    if rel.size and np.isfinite(eps) and eps > 0 and np.median(rel) > 0:
        med, p95 = float(np.median(rel)) * 100, float(np.percentile(rel, 95)) * 100
        need = eps * med / 100  # the epsilon where the median error is 100 %
        lo, hi = min(eps / 100, need / 10), max(eps * 1000, need * 10)
        grid = np.logspace(np.log10(lo), np.log10(hi), 200)
        # Laplace and Gaussian noise scale as 1/epsilon at fixed sensitivity: error(e) = error(run) * run / e
        ax.loglog(
            grid, med * eps / grid, color="tab:blue", label="median relative error, scaled as 1/epsilon"
        )
        ax.loglog(
            grid, p95 * eps / grid, color="tab:blue", ls=":", label="95th percentile, scaled as 1/epsilon"
        )
        ax.plot(
            [eps],
            [med],
            "o",
            color="black",
            label=f"this run: epsilon {_sig(eps)}, median {num(med, 1, ' %')}",
        )
        ax.axhline(100, color="tab:red", ls="--", lw=1, label="100 %: noise as large as the value")
        ax.axvline(need, color="grey", ls=":", lw=1)
        ax.annotate(
            f"median error 100 % at epsilon {_sig(need)}",
            (need, 100),
            xytext=(6, 8),
            textcoords="offset points",
            fontsize=8,
        )
        ax.legend(loc="upper right", fontsize=8)
    elif rel.size:  # every release exact (or epsilon unknown): nothing on a log scale
        ax.text(
            0.5,
            0.6,
            "median relative error 0 (or epsilon unknown): no error to scale",
            ha="center",
            transform=ax.transAxes,
            color="grey",
        )
    else:
        _note(ax, "no evaluated release (privacy.evaluate off, or no consumption series)")
    ax.set_title("Error of the private release against the privacy parameter epsilon")
    ax.set(
        xlabel="epsilon per release (-, log; smaller = more private)",
        ylabel="relative error of a release (%, log)",
    )
    return fig


def _caption_equity(eq: Equity) -> str:
    """Caption of the Lorenz figure: how to read it and why its Gini can differ from the table's."""
    gc = curve_gini(eq.lorenz)
    text = (
        "Left: Lorenz curve, the cumulative share of the study surplus (savings against the retail "
        "tariff) held "
        "by the poorest share of accounts; the further it sags below the dashed equality line, the "
        "more unequal. "
        f"The legend's Gini ({_f(gc, '.3f')}) is the Gini of the curve drawn. "
    )
    if eq.lorenz_shifted:
        text += (
            "The total surplus is not positive, so the curve is of surplus minus its minimum "
            "(everyone's surplus "
            "shifted so the worst-off has 0); the table's Gini of surplus "
            f"({_f(eq.gini_surplus, '.3f')}) is the Raffinetti-Siletti-Vernizzi Gini, which keeps "
            "the negative "
            "surpluses (losers) and is therefore higher. "
        )
    elif np.isfinite(eq.surplus).any() and (eq.surplus < 0).any():
        text += (
            "Some surpluses are negative (accounts that lose against the tariff), so the curve dips "
            "below 0 first; "
            "the table's Gini of surplus uses the Raffinetti-Siletti-Vernizzi form for negatives. "
        )
    return text + "Right: Gini of surplus and of bills per month (0 = equal, 1 = one account has all)."


def gains(eq: Equity) -> list[tuple[str, int, int, float, float, float]]:
    """Per group: (name, accounts gaining, accounts losing, study cost $, tariff cost $, surplus $)."""
    out = []
    names = np.array(eq.group if len(eq.group) == eq.surplus.size else [""] * eq.surplus.size, dtype=str)
    for g in sorted(set(names.tolist())):
        k = names == g
        s = eq.surplus[k]
        out.append(
            (
                g or "all",
                int((s > 0.005).sum()),
                int((s < -0.005).sum()),
                float(np.nansum(eq.net_cost[k])),
                float(np.nansum(eq.baseline_cost[k])),
                float(np.nansum(s)),
            )
        )
    return out


def plot_baseline(eq: Equity) -> Figure:
    """Surplus against the retail tariff per group (costs on the bars) and of every account, sorted."""
    fig = Figure(figsize=(11, 4.5), layout="tight")
    ax, axs = fig.subplots(1, 2, width_ratios=(1, 1.3))
    rows = gains(eq)
    x = np.arange(len(rows))
    surplus = np.array([r[5] for r in rows])
    ax.bar(x, surplus, color=np.where(surplus >= 0, "tab:green", "tab:red"))
    for xi, r in zip(x, rows, strict=True):
        ax.annotate(
            f"tariff {money(r[4])}\nrun {money(r[3])}",
            (xi, r[5]),
            ha="center",
            fontsize=7,
            xytext=(0, 4 if r[5] >= 0 else -24),
            textcoords="offset points",
        )
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(x, [f"{r[0]}\n+{r[1]} / -{r[2]}" for r in rows], fontsize=8)
    ax.margins(y=0.25)
    ax.set_title(f"Surplus against the retail tariff by {eq.group_by or 'account'}")
    ax.set(ylabel="tariff cost - run cost ($; + = gains)", xlabel="group (accounts gaining + / losing -)")
    s = eq.surplus[np.isfinite(eq.surplus)]
    order = np.sort(s)
    axs.bar(np.arange(order.size), order, width=1.0, color=np.where(order >= 0, "tab:green", "tab:red"))
    axs.axhline(0, color="black", lw=0.5)
    axs.set_title(
        f"Surplus of every account, sorted ({int((s > 0.005).sum())} gain, {int((s < -0.005).sum())} lose)"
    )
    axs.set(xlabel="accounts, worst off first (-)", ylabel="surplus against the tariff ($)")
    return fig


@dataclass
class SocietySection:
    """The society part of a run report (the :class:`~analysis.common.Section` protocol)."""

    soc: Society

    @property
    def title(self) -> str:
        """Section heading naming the groups present."""
        return f"Society ({', '.join(parts(self.soc))})"

    def rows(self) -> list[tuple[str, str]]:
        """Summary rows (``LABELS``)."""
        return society_rows(self.soc)

    def findings(self) -> list[str]:
        """Emissions, who gains against the tariff, how usable the private release is."""
        out: list[str] = []
        em, eq, pv = self.soc.emissions, self.soc.equity, self.soc.privacy
        if em is not None:
            out.append(
                f"The run emitted {_f(total_emissions_t(em), '.3f')} t CO2 at an average "
                f"{_f(average_factor_kg_per_mwh(em), '.1f')} kg/MWh served"
                + (
                    f"; P2P trades changed emissions by {_f(p2p_carbon_t(em), '.3f')} t."
                    if not em.trade_note
                    else "."
                )
            )
        if eq is not None and eq.surplus.size:
            s = eq.surplus[np.isfinite(eq.surplus)]
            tot_b, tot_s = float(np.nansum(eq.baseline_cost)), float(np.nansum(eq.net_cost))
            costs = (
                f"; together they pay {money(tot_s)} instead of {money(tot_b)}"
                if np.isfinite(eq.baseline_cost).any() and np.isfinite(eq.net_cost).any()
                else ""
            )
            out.append(
                f"Against the retail tariff, {int((s > 0.005).sum())} of {s.size} accounts gain and "
                f"{int((s < -0.005).sum())} lose{costs} (surplus {money(float(s.sum()))})."
            )
            rows = gains(eq)
            if len(rows) > 1:
                best, worst = max(rows, key=lambda r: r[5]), min(rows, key=lambda r: r[5])
                out.append(
                    f"By {eq.group_by}: {html.escape(best[0])} gains most ({money(best[5])}), "
                    f"{html.escape(worst[0])} least ({money(worst[5])})."
                )
        if pv is not None:
            flag = flagged(pv)
            rel = pv.rel_err_step[np.isfinite(pv.rel_err_step)]
            if rel.size:
                cls = " class='flag'" if flag.any() else ""
                out.append(
                    f"<span{cls}>{int(flag.sum()):,} of {rel.size:,} releases have a relative error above "
                    f"{FLAG_RELATIVE_ERROR:.0%}</span> (median {num(100 * float(np.median(rel)), 1, ' %')}) "
                    "at "
                    f"epsilon {_sig(pv.epsilon)} per release"
                    + (": the noise swamps the data there." if flag.any() else ".")
                )
            else:
                out.append(
                    "The private release was not evaluated (privacy.evaluate off): its error is unknown."
                )
        return out

    def figures(self) -> list[Fig]:
        """The figures of the groups the run has, captioned."""
        soc, figs = self.soc, []
        em, eq, pv = soc.emissions, soc.equity, soc.privacy
        if em is not None:
            figs += [
                Fig(
                    EMISSIONS_FIGS[0],
                    plot_emissions(soc, em),
                    "Top: emissions over the run (total and the part imported from upstream). Bottom: mean "
                    "emissions per step by hour of day (bars, left axis) with the average and "
                    "marginal emission "
                    "factors (lines, right axis); a marginal factor above the average means extra "
                    "demand at that "
                    "hour is dirtier than the mix.",
                ),
                Fig(
                    EMISSIONS_FIGS[1],
                    plot_marginal_map(em),
                    "Mean nodal marginal emission factor per bus (rows) and hour of day (columns): "
                    "the emissions "
                    "of one more MWh consumed at that bus and hour, losses included. Darker = "
                    "dirtier; rows that "
                    "differ show where the network separates the marginal unit.",
                ),
                Fig(
                    EMISSIONS_FIGS[2],
                    plot_trades(em),
                    "Carbon impact per MWh of every trade: agent-to-agent trades (top) and trades "
                    "with the upstream "
                    "grid (bottom). Positive = the trade adds emissions, negative = it avoids them.",
                ),
            ]
        if eq is not None:
            n_gain = int((eq.surplus > 0.005).sum())
            figs += [
                Fig(EQUITY_FIGS[0], plot_equity(eq), _caption_equity(eq)),
                Fig(
                    BASELINE_FIG,
                    plot_baseline(eq),
                    "Baseline comparison: the same accounts with the same energy under the retail "
                    "tariff. Left: "
                    f"net cost by {eq.group_by or 'account'} under the tariff (grey) and in this "
                    "run (blue); below "
                    "each group, how many accounts gain (+) and lose (-). Right: every account's "
                    "surplus (tariff "
                    f"cost minus study cost), green = gains; {n_gain} of {eq.surplus.size} gain.",
                ),
            ]
        if pv is not None:
            n_flag = int(flagged(pv).sum())
            figs += [
                Fig(
                    PRIVACY_FIGS[0],
                    plot_release(soc, pv),
                    "Top: the released (noisy) and true values of the largest consumption series; "
                    "red ticks at the "
                    f"bottom mark the {n_flag:,} releases whose relative error exceeds 100 %. "
                    "Bottom: the absolute "
                    "errors of all consumption and count series, with their mean absolute error (MAE).",
                ),
                Fig(
                    PRIVACY_FIGS[1],
                    plot_budget(soc, pv),
                    "Privacy budget spent over the run (cumulative epsilon) against the budget "
                    "(dashed); releases "
                    "refused once the budget is spent are marked x.",
                ),
                Fig(
                    PRIVACY_ERROR_FIG,
                    plot_error_epsilon(pv),
                    "Relative error of a release against epsilon: the dot is this run, the lines "
                    "extend it with the "
                    "1/epsilon law of the Laplace and Gaussian mechanisms at fixed sensitivity. "
                    "Above the red line "
                    "the noise is larger than the value released; read off the epsilon an analyst "
                    "needs for a "
                    "given error (or aggregate over more households, which lowers the relative "
                    "error instead).",
                ),
            ]
        return figs


def society_figures(soc: Society, out: Path) -> list[str]:
    """Write the figures of the groups the run has (of ``SOCIETY_FIGS``) into out; return their file names."""
    figs = SocietySection(soc).figures()
    save(figs, out)
    return [f.name for f in figs]


# ------------------------------------------------------------------------------------------------ comparison


def _scatter(ax: Axes, pts: list[tuple[str, float, float]], log: bool) -> None:
    """One labelled point per run; log axes (if log) where all values are positive and span over a decade."""
    x, y = np.array([p[1] for p in pts]), np.array([p[2] for p in pts])
    ax.plot(x, y, "o", color="tab:blue")
    for name, xi, yi in pts:
        ax.annotate(name, (xi, yi), xytext=(5, 4), textcoords="offset points", fontsize=8)
    for v, setter in ((x, ax.set_xscale), (y, ax.set_yscale)):
        if log and v.size > 1 and (v > 0).all() and v.max() > 10 * v.min():
            setter("log")
    ax.margins(0.15)


def plot_dp_error(runs: list[tuple[str, Society]]) -> Figure:
    """DP error (MAE of the consumption series) against epsilon per release, one point per run."""
    fig = Figure(figsize=(7, 4.5), layout="tight")
    ax = fig.add_subplot()
    priv = [(n, s.privacy) for n, s in runs if s.privacy is not None]
    pts = [
        (n, p.epsilon, p.mae_consumption_mwh)
        for n, p in priv
        if np.isfinite(p.epsilon) and np.isfinite(p.mae_consumption_mwh)
    ]
    if pts:
        _scatter(ax, pts, log=True)  # the error scales as 1 / epsilon: straight on log-log axes
    notes = []
    if len(priv) < 2:
        notes.append(f"{len(priv)} run(s) with a DP release: no comparison")
    if len(pts) < len(priv):
        notes.append(f"{len(priv) - len(pts)} DP run(s) without evaluated error")
    if notes:
        _note(ax, "\n".join(notes))
    ax.set(
        title="DP error versus epsilon",
        xlabel="epsilon per release (-)",
        ylabel="MAE of released consumption (MWh)",
    )
    return fig


def plot_emissions_gini(runs: list[tuple[str, Society]]) -> Figure:
    """Total emissions against the Gini of surplus, one labelled point per run: carbon versus fairness."""
    fig = Figure(figsize=(7, 4.5), layout="tight")
    ax = fig.add_subplot()
    pts = [
        (n, s.equity.gini_surplus, total_emissions_t(s.emissions))
        for n, s in runs
        if s.equity is not None and s.emissions is not None and np.isfinite(s.equity.gini_surplus)
    ]
    if pts:
        _scatter(ax, pts, log=False)
    if len(pts) < 2:
        _note(ax, f"{len(pts)} run(s) with both emissions and a Gini of surplus: no trade-off to read")
    ax.set(
        title="Emissions versus Gini of surplus (carbon versus fairness)",
        xlabel="Gini of surplus, study (-)",
        ylabel="total emissions (t CO2)",
    )
    return fig


def society_comparison(runs: list[tuple[str, Path]], out: Path) -> str:
    """HTML society section of a comparison: table (``COMPARE_LABELS``) and figures; '' if no run has one."""
    socs: list[tuple[str, Society | None]] = []
    for name, path in runs:
        with h5py.File(path, "r") as f:
            socs.append((name, load_society(f)))
    present = [(n, s) for n, s in socs if s is not None]
    if not present:
        return ""
    figs = save(
        [
            Fig(
                COMPARE_FIGS[0],
                plot_dp_error(present),
                "Mean absolute error of the released consumption against epsilon per release, one "
                "point per run "
                "(log axes: the Laplace and Gaussian errors fall as 1/epsilon, a straight line of slope -1). "
                "Lower-left is private and accurate at once only if the aggregation level differs.",
            ),
            Fig(
                COMPARE_FIGS[1],
                plot_emissions_gini(present),
                "Total emissions against the Gini of household or agent surplus, one point per run: the "
                "carbon-fairness trade-off. Runs towards the lower left are cleaner and fairer.",
            ),
        ],
        out,
    )
    found = []
    for n, s_ in present:
        pv = s_.privacy
        if pv is not None and np.isfinite(pv.rel_err_step).any():
            k = int(flagged(pv).sum())
            found.append(
                f"{html.escape(n)}: {k:,} of {int(np.isfinite(pv.rel_err_step).sum()):,} releases "
                "with a relative "
                f"error above 100 % at epsilon {_sig(pv.epsilon)}."
            )
        if s_.emissions is not None:
            found.append(f"{html.escape(n)}: {_f(total_emissions_t(s_.emissions), '.3f')} t CO2.")
    cols = [
        {}
        if s is None
        else {
            "Society data": ", ".join(parts(s)),
            **dict(society_rows(s)),
            "Total welfare": _f(s.welfare_usd, ".2f", " $"),
        }
        for _, s in socs
    ]
    head = "<tr><th>Run</th>" + "".join(f"<th>{html.escape(n)}</th>" for n, _ in socs) + "</tr>"
    body = [
        f"<tr><th>{k}</th>"
        + "".join(f"<td>{c.get(k, 'none' if k == COMPARE_LABELS[0] else '–')}</td>" for c in cols)
        + "</tr>"
        for k in COMPARE_LABELS
    ]
    table = "\n".join([head, *body])
    return (
        f"\n<h2>Society</h2>\n{findings(found)}\n<table id='society_comparison'>\n{table}\n</table>\n{figs}"
    )


def society_section(soc: Society, out: Path) -> str:
    """HTML section of one run's report: heading naming the groups present, findings and captioned figures."""
    return render_section(SocietySection(soc), out)
