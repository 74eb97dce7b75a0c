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

from .report import Arr, _attr, _chunks, _dates, _imgs, _note, _save, _strs

EMISSIONS_FIGS = ("emissions.png", "emissions_marginal_map.png", "emissions_trades.png")
EQUITY_FIGS = ("equity_lorenz_gini.png",)
PRIVACY_FIGS = ("privacy_release.png", "privacy_budget.png")
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


def _fit(a: Arr, n: int, fill: Any) -> Arr:
    """Cut or pad a 1-D array to length n."""
    a = a.ravel()[:n]
    return a if a.size == n else np.concatenate([a, np.full(n - a.size, fill, dtype=a.dtype)])


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
    )


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


def _sig(x: float) -> str:
    """A number with about four significant digits, 'n/a' when not finite."""
    if not np.isfinite(x):
        return "n/a"
    if x == 0 or 1e-3 <= abs(x) < 1e3:
        return f"{x:.4g}"
    return f"{x:.0f}" if abs(x) >= 1e3 else f"{x:.3e}"


def _f(x: float, fmt: str, unit: str = "") -> str:
    """Format a number with unit, 'n/a' when not finite."""
    return f"{x:{fmt}}{unit}" if np.isfinite(x) else "n/a"


def emissions_rows(em: Emissions) -> list[tuple[str, str]]:
    """Summary rows of the emissions, labels as in ``EMISSIONS_LABELS``."""
    total = total_emissions_t(em)
    up = float(np.nansum(em.upstream_kg)) / 1000
    served = served_total_mwh(em)
    avg = average_factor_kg_per_mwh(em)
    average = f"{avg:.2f} kg/MWh (over {served:.3f} MWh served)" if np.isfinite(avg) else "n/a"
    marginal = (
        f"{em.marginal_mean:.2f} kg/MWh (lossless {_f(em.lossless_mean, '.2f', ' kg/MWh')})"
        if np.isfinite(em.marginal_mean)
        else "n/a (no nodal marginal factor)"
    )
    upstream = f" (upstream {html.escape(em.upstream)})" if em.upstream else ""
    price = f"{_f(em.carbon_price_per_t, '.2f', ' $/t')}{upstream}; " + (
        f"{carbon_cost_usd(em):.2f} $ on the run's emissions" if np.isfinite(em.carbon_price_per_t) else ""
    )
    n_p2p, n_grid = em.p2p_kg_per_mwh.size, em.grid_kg_per_mwh.size
    trades = (
        f"n/a ({html.escape(em.trade_note)})"
        if em.trade_note
        else f"{p2p_carbon_t(em):.3f} t over {em.p2p_mwh:.3f} MWh ({n_p2p} trades); "
        f"trades with the grid {em.grid_kg / 1000:.3f} t over {em.grid_mwh:.3f} MWh ({n_grid} trades)"
    )
    cells = (f"{total:.3f} t (upstream {up:.3f} t)", average, marginal, price.rstrip("; "), trades)
    return list(zip(EMISSIONS_LABELS, cells, strict=True))


def _month_range(x: Arr) -> str:
    """' (monthly lo–hi over n months)' of the finite monthly values, '' without any."""
    v = x[np.isfinite(x)]
    return f" (monthly {v.min():.4f}–{v.max():.4f} over {v.size} months)" if v.size else ""


def equity_rows(eq: Equity) -> list[tuple[str, str]]:
    """Summary rows of the equity accounts, labels as in ``EQUITY_LABELS``."""
    tr = eq.transfer[np.isfinite(eq.transfer)]
    to_low = float(np.nansum(eq.transfer[eq.low_income]))
    rule = (
        f"{html.escape(eq.rule)}, levy {_f(eq.levy_per_mwh, '.2f', ' $/MWh')}; transfers "
        f"+{tr.clip(0, None).sum():.2f} / {tr.clip(None, 0).sum():.2f} $ (net {to_low:.2f} $ to low-income "
        "agents)"
    )
    s = eq.surplus
    lo, other = s[eq.low_income & np.isfinite(s)], s[~eq.low_income & np.isfinite(s)]

    def mean(x: Arr) -> str:
        return f"{x.mean():.2f}" if x.size else "n/a"

    surplus = f"{mean(lo)} / {mean(other)} $ ({lo.size} / {other.size} agents)"
    cells = (_f(eq.gini_surplus, ".4f") + _month_range(eq.gini_month),
             _f(eq.gini_bill, ".4f") + _month_range(eq.gini_bill_month),
             _f(eq.absolute_gini_surplus, ".2f", " $"), rule, surplus)  # fmt: skip
    return list(zip(EQUITY_LABELS, cells, strict=True))


def privacy_rows(pv: Privacy, t: int) -> list[tuple[str, str]]:
    """Summary rows of the private release, labels as in ``PRIVACY_LABELS``."""
    spent, budget = final_epsilon(pv), pv.budget
    known = np.isfinite(spent) and np.isfinite(budget) and budget
    share = f" ({100 * spent / budget:.1f} %)" if known else ""
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


def _fig_emissions(soc: Society, em: Emissions, out: Path) -> str:
    """Emissions over the run (per step, daily totals beyond a week) and by UTC hour of day."""
    fig = Figure(figsize=(10, 7.5), layout="tight")
    ax, axh = fig.subplots(2, 1)
    index = pd.DatetimeIndex(soc.time_s.astype("datetime64[s]"))
    daily = _long(soc)
    for y, label, colour in ((em.total_kg, "total", "tab:red"), (em.upstream_kg, "upstream", "tab:grey")):
        s = pd.Series(y, index=index)
        if daily:
            s = s.resample("D").sum(min_count=1) / 1000
        ax.plot(s.index, s.to_numpy(dtype=float), lw=1, color=colour, label=label,
                marker="." if len(s) < 50 else None)  # fmt: skip
    if not np.isfinite(em.total_kg).any():
        _note(ax, "no data (no emissions recorded)")
    ax.set(title=f"Emissions ({'daily totals' if daily else 'per step'}; run total "
           f"{total_emissions_t(em):.3f} t CO2)", xlabel="time (UTC)",
           ylabel="emissions (t CO2/day)" if daily else "emissions (kg CO2/step)")  # fmt: skip
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
    return _save(fig, out / EMISSIONS_FIGS[0])


def _fig_marginal_map(em: Emissions, out: Path) -> str:
    """Bus by UTC hour of day heat map of the mean nodal marginal emission factor (losses included)."""
    z = em.marginal_by_hour
    n_bus = z.shape[0]
    fig = Figure(figsize=(9, max(3.5, min(9.0, 1.5 + 0.22 * n_bus))), layout="tight")
    ax = fig.add_subplot()
    fin = z[np.isfinite(z)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    if hi - lo < 1e-9:  # one value everywhere: widen so the colour bar is readable
        lo, hi = lo - 1.0, hi + 1.0
    cmap = colormaps["magma_r"].with_extremes(bad="lightgrey")
    im = ax.imshow(z if n_bus else np.full((1, 24), np.nan), aspect="auto", cmap=cmap, vmin=lo, vmax=hi,
                   interpolation="nearest", extent=(-0.5, 23.5, max(n_bus, 1) - 0.5, -0.5))  # fmt: skip
    fig.colorbar(im, ax=ax, label="marginal emission factor (kg CO2/MWh)")
    if not fin.size:
        _note(ax, "no nodal marginal factor (all NaN: market design without a network model?)")
    if 0 < n_bus <= 40:
        ax.set_yticks(np.arange(n_bus), em.bus_names, fontsize=7 if n_bus > 15 else 8)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _hour_axis(ax)
    ax.set(title="Nodal marginal emission factor, losses included (mean per bus and hour; grey = no data)",
           ylabel="bus" if n_bus <= 40 else "bus (position in the file)")  # fmt: skip
    return _save(fig, out / EMISSIONS_FIGS[1])


def _fig_trades(em: Emissions, out: Path) -> str:
    """Histograms of the carbon impact per MWh traded: P2P trades (top), trades with the upstream grid."""
    fig = Figure(figsize=(9, 6.5), layout="tight")
    axes = fig.subplots(2, 1, sharex=True)
    both = np.concatenate([em.p2p_kg_per_mwh, em.grid_kg_per_mwh])
    edges = None
    if both.size:
        lo, hi = np.percentile(both, HIST_TAILS)
        edges = np.histogram_bin_edges(both, bins=HIST_BINS, range=(float(lo), float(hi)))
    spec = ((axes[0], em.p2p_kg_per_mwh, em.p2p_kg, em.p2p_mwh, "P2P trades (agent to agent)", "tab:green"),
            (axes[1], em.grid_kg_per_mwh, em.grid_kg, em.grid_mwh, "trades with the upstream grid",
             "tab:blue"))  # fmt: skip
    for ax, x, kg, mwh, title, colour in spec:
        if edges is not None and x.size:
            clipped = np.clip(x, edges[0], edges[-1])  # tails in the edge bins
            mean = f"{kg / mwh:.1f} kg/MWh" if mwh > 0 else "n/a"
            ax.hist(clipped, bins=edges, color=colour, alpha=0.7,
                    label=f"n={x.size}, energy-weighted mean {mean}, total {kg / 1000:.3f} t")  # fmt: skip
            ax.legend(loc="best", fontsize=8)
        else:
            _note(ax, f"no data ({em.trade_note or 'no such trade with energy'})")
        ax.axvline(0, color="black", lw=0.6)
        ax.set(title=f"{title}: carbon impact per MWh (+ = cost, - = credit)", ylabel="trades (-)")
    pct = f"{HIST_TAILS[0]:g}-{HIST_TAILS[1]:g} %"
    axes[1].set_xlabel(f"carbon impact (kg CO2/MWh traded; range {pct} of all trades, tails in edge bins)")
    return _save(fig, out / EMISSIONS_FIGS[2])


def _month_labels(start: Arr) -> list[str]:
    return [str(m) for m in np.asarray(start, dtype=np.int64).astype("datetime64[s]").astype("datetime64[M]")]


def _fig_equity(eq: Equity, out: Path) -> str:
    """Lorenz curve of the study surplus and equality line (left); Gini of surplus and bills per month."""
    fig = Figure(figsize=(11, 4.5), layout="tight")
    ax, axm = fig.subplots(1, 2, width_ratios=(1, 1.4))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="equality")
    lz = eq.lorenz
    ok = np.isfinite(lz).all(axis=1) if lz.size else np.zeros(0, dtype=bool)
    if ok.any():
        what = "surplus - min (total surplus <= 0)" if eq.lorenz_shifted else "surplus"
        ax.plot(lz[ok, 0], lz[ok, 1], color="tab:blue", marker="." if ok.sum() < 50 else None,
                label=f"{what}; Gini of surplus {_f(eq.gini_surplus, '.3f')}")  # fmt: skip
        ax.fill_between(lz[ok, 0], lz[ok, 1], lz[ok, 0], color="tab:blue", alpha=0.15)
    else:
        _note(ax, "no Lorenz curve (no agent, or total surplus <= 0)")
    ax.axhline(0, color="black", lw=0.5)
    ax.set(title="Lorenz curve of the study surplus", xlabel="population share, lowest surplus first (-)",
           ylabel="cumulative share of surplus (-)", xlim=(0, 1))  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    n = eq.month_start.size
    x = np.arange(n)
    for dx, y, label, colour in ((-0.2, eq.gini_month, "surplus", "tab:blue"),
                                 (0.2, eq.gini_bill_month, "bills", "tab:orange")):  # fmt: skip
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
    return _save(fig, out / EQUITY_FIGS[0])


def _fig_release(soc: Society, pv: Privacy, out: Path) -> str:
    """Released against true values of the largest consumption series (top), absolute error distributions."""
    fig = Figure(figsize=(10, 7.5), layout="tight")
    gs = fig.add_gridspec(2, 2)
    ax = fig.add_subplot(gs[0, :])
    daily = _long(soc)
    index = pd.DatetimeIndex(soc.time_s.astype("datetime64[s]"))
    for y, label, colour, lw in ((pv.true_series, "true", "black", 1.4),
                                 (pv.released_series, "released (noisy)", "tab:orange", 0.9)):  # fmt: skip
        s = pd.Series(y, index=index)
        if daily:
            s = s.resample("D").mean()
        if np.isfinite(s.to_numpy(dtype=float)).any():
            ax.plot(s.index, s.to_numpy(dtype=float), lw=lw, color=colour, label=label,
                    marker="." if len(s) < 50 else None)  # fmt: skip
    if ax.get_lines():
        ax.legend(loc="best", fontsize=8)
    if not np.isfinite(pv.released_series).any():
        _note(ax, "no data (no released value)")
    elif not pv.evaluated:
        _note(ax, "no true values (the scenario did not ask for evaluation)")
    what = "daily means" if daily else "per step"
    ax.set(title=f"DP release of '{pv.series or 'n/a'}' ({what}; largest consumption series)",
           xlabel="time (UTC)", ylabel="released value")  # fmt: skip
    _period(ax, soc)
    for k, (err, mae, unit) in enumerate(((pv.abs_err_consumption, pv.mae_consumption_mwh, "MWh"),
                                          (pv.abs_err_count, pv.mae_count, "count"))):  # fmt: skip
        axe = fig.add_subplot(gs[1, k])
        if err.size:
            hi = float(np.percentile(err, 99.5))
            axe.hist(np.clip(err, 0, hi), bins=HIST_BINS, range=(0, hi or 1.0), color="tab:orange", alpha=0.7,
                     label=f"n={err.size}, mean {_sig(float(err.mean()))}")  # fmt: skip
            if np.isfinite(mae):
                axe.axvline(mae, color="black", ls="--", lw=1, label=f"MAE (file) {_sig(mae)}")
            axe.legend(loc="best", fontsize=8)
        else:
            _note(axe, "no data" if pv.evaluated else "not evaluated")
        what = "consumption" if unit == "MWh" else "active count"
        axe.set(title=f"Absolute error, {what} series", ylabel="releases (-)",
                xlabel=f"|released - true| ({unit}; 99.5 % tail in last bin)")  # fmt: skip
    return _save(fig, out / PRIVACY_FIGS[0])


def _fig_budget(soc: Society, pv: Privacy, out: Path) -> str:
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
    ax.set(title=f"Privacy budget ({pv.mechanism or 'unknown'} mechanism, epsilon {_sig(pv.epsilon)} per "
           "release)", xlabel="time (UTC)", ylabel="cumulative epsilon (-)")  # fmt: skip
    _period(ax, soc)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out / PRIVACY_FIGS[1])


def society_figures(soc: Society, out: Path) -> list[str]:
    """Write the figures of the groups the run has (of ``SOCIETY_FIGS``) into out; return their file names."""
    figs: list[str] = []
    if soc.emissions is not None:
        em = soc.emissions
        figs += [_fig_emissions(soc, em, out), _fig_marginal_map(em, out), _fig_trades(em, out)]
    if soc.equity is not None:
        figs.append(_fig_equity(soc.equity, out))
    if soc.privacy is not None:
        figs += [_fig_release(soc, soc.privacy, out), _fig_budget(soc, soc.privacy, out)]
    return figs


def society_section(soc: Society, out: Path) -> str:
    """HTML section of one run's report: heading naming the groups present, and their figures."""
    return f"<h2>Society ({', '.join(parts(soc))})</h2>\n{_imgs(society_figures(soc, out))}\n"


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


def _fig_dp_error(runs: list[tuple[str, Society]], out: Path) -> str:
    """DP error (MAE of the consumption series) against epsilon per release, one point per run."""
    fig = Figure(figsize=(7, 4.5), layout="tight")
    ax = fig.add_subplot()
    priv = [(n, s.privacy) for n, s in runs if s.privacy is not None]
    pts = [(n, p.epsilon, p.mae_consumption_mwh) for n, p in priv
           if np.isfinite(p.epsilon) and np.isfinite(p.mae_consumption_mwh)]  # fmt: skip
    if pts:
        _scatter(ax, pts, log=True)  # the error scales as 1 / epsilon: straight on log-log axes
    notes = []
    if len(priv) < 2:
        notes.append(f"{len(priv)} run(s) with a DP release: no comparison")
    if len(pts) < len(priv):
        notes.append(f"{len(priv) - len(pts)} DP run(s) without evaluated error")
    if notes:
        _note(ax, "\n".join(notes))
    ax.set(title="DP error versus epsilon", xlabel="epsilon per release (-)",
           ylabel="MAE of released consumption (MWh)")  # fmt: skip
    return _save(fig, out / COMPARE_FIGS[0])


def _fig_emissions_gini(runs: list[tuple[str, Society]], out: Path) -> str:
    """Total emissions against the Gini of surplus, one labelled point per run: carbon versus fairness."""
    fig = Figure(figsize=(7, 4.5), layout="tight")
    ax = fig.add_subplot()
    pts = [(n, s.equity.gini_surplus, total_emissions_t(s.emissions)) for n, s in runs
           if s.equity is not None and s.emissions is not None
           and np.isfinite(s.equity.gini_surplus)]  # fmt: skip
    if pts:
        _scatter(ax, pts, log=False)
    if len(pts) < 2:
        _note(ax, f"{len(pts)} run(s) with both emissions and a Gini of surplus: no trade-off to read")
    ax.set(title="Emissions versus Gini of surplus (carbon versus fairness)",
           xlabel="Gini of surplus, study (-)", ylabel="total emissions (t CO2)")  # fmt: skip
    return _save(fig, out / COMPARE_FIGS[1])


def society_comparison(runs: list[tuple[str, Path]], out: Path) -> str:
    """HTML society section of a comparison: table (``COMPARE_LABELS``) and figures; '' if no run has one."""
    socs: list[tuple[str, Society | None]] = []
    for name, path in runs:
        with h5py.File(path, "r") as f:
            socs.append((name, load_society(f)))
    present = [(n, s) for n, s in socs if s is not None]
    if not present:
        return ""
    figs = [_fig_dp_error(present, out), _fig_emissions_gini(present, out)]
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
    return f"\n<h2>Society</h2>\n<table id='society_comparison'>\n{table}\n</table>\n{_imgs(figs)}"
