"""Uncertainty section of the run report: N-1 security cost, stochastic clearing, ADMM, outages, storage.

Reads the optional datasets of markets under uncertainty, contingencies and outages (h5py only), each part
on its own: ``/market/security_cost`` (scopf), ``/market/day/vss`` and ``/market/day/evpi`` (stochastic),
``/market/admm_*`` (admm), ``/events``, ``/grid/islanded`` and ``/agents/unserved_mwh`` (outages) and
``/agents/storage_profit``. A run without any of them gets no uncertainty section. The (T, n) datasets are
read in time chunks, the ADMM residual table only for the few intervals drawn.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from .common import Arr, Fig, fmt, money, render_section, save
from .common import attr as _attr
from .common import chunks as _chunks
from .common import dates as _dates
from .common import fit as _fit
from .common import note as _note
from .common import reduce as _reduce
from .common import strs as _strs

_f = fmt
_num = fmt

SECURITY_FIG = "security_cost.png"
STOCHASTIC_FIG = "stochastic_value.png"
ADMM_FIG = "admm_convergence.png"
ISLANDING_FIG = "islanding_timeline.png"
STORAGE_FIG = "storage_profit.png"
UNCERTAINTY_FIGS = (SECURITY_FIG, STOCHASTIC_FIG, ADMM_FIG, ISLANDING_FIG, STORAGE_FIG)
PARTS = ("security", "stochastic", "admm", "outages", "storage")
DAILY_AFTER_DAYS = 7  # time series as daily values beyond this run length, as the other sections
CONSUMER_KINDS = ("load", "ev")  # agent kinds whose positive power is served demand
EVENT_PAD_STEPS = 3  # steps drawn before and after an event
MAX_EVENT_PANELS = 4  # events drawn in detail (most unserved energy first)
TRACE_RANDOM = 3  # random ADMM intervals traced beside the longest and the median one
TRACE_SEED = 0
MAX_NAMES = 5  # outage names listed in a cell or annotation
HIST_BINS = 40
MONEY_TOL_USD = 0.005  # amounts below half a cent are solver noise, drawn and written as 0
SECURITY_LABELS = ("Security cost (N-1)", "Secured / islanding outages")
STOCHASTIC_LABELS = ("VSS / EVPI (stochastic)", "Expected cost (stochastic)")
ADMM_LABELS = ("ADMM iterations mean / p95 / max", "ADMM messages")
OUTAGE_LABELS = (
    "Unserved energy of agents (critical loads)",
    "Curtailed flexible demand",
    "Island events / islanded hours",
)
STORAGE_LABELS = ("Storage profit total (min / median / max per battery)",)
LABELS = SECURITY_LABELS + STOCHASTIC_LABELS + ADMM_LABELS + OUTAGE_LABELS + STORAGE_LABELS


@dataclass
class Security:
    """N-1 security of a scopf run."""

    cost: Arr  # (T,) $ per interval, NaN where not computed
    secured: list[str] | None  # names of the secured outages, None without the attribute
    islanding: list[str] | None  # requested outages that split an island (not secured)


@dataclass
class Stochastic:
    """Per-day measures of the stochastic day-ahead clearing ($ per day, NaN when a day's measure failed)."""

    day_s: Arr  # (n_days,) Unix s of each day's first interval
    vss: Arr
    evpi: Arr
    expected_cost: Arr


@dataclass
class Admm:
    """Convergence of the decentralised clearing."""

    iterations: Arr  # (T,) iterations per interval (0: not cleared by ADMM)
    messages: Arr | None  # (T,) messages per interval, None without the dataset
    n_rows: int  # rows of /market/admm_residual
    traces: dict[int, tuple[Arr, Arr, Arr]]  # step -> (iteration, primal, dual) of the intervals drawn
    why: dict[int, str]  # step -> why it is drawn ('most iterations', 'median', 'random')


@dataclass
class Outages:
    """Outage events, islanded operation and the energy not served."""

    kind: list[str]  # (n_event,) 'island', 'line_outage', ...
    element: list[str]
    start: Arr  # (n_event,) Unix s
    end: Arr
    has_events: bool  # /events exists
    has_islanded: bool  # /grid/islanded exists
    islanded: Arr  # (T,) bool, from /grid/islanded, else steps starting inside an island event
    price_mean: Arr  # (T,) bus mean price, NaN without a market
    served_critical: Arr  # (T,) MWh consumed by critical loads; NaN without /agents/p_mw
    served_other: Arr  # (T,) MWh consumed by the other loads (kinds CONSUMER_KINDS)
    unserved_critical: Arr  # (T,) MWh shed; NaN without /agents/unserved_mwh
    unserved_other: Arr
    curtailed: Arr  # (T,) MWh; NaN without /agents/curtailed_mwh
    has_critical: bool  # /agents/critical exists


@dataclass
class Storage:
    """Profit of the batteries in the market."""

    names: list[str]
    total: Arr  # (n_battery,) $ over the run
    per_step: Arr  # (T,) $ of all batteries


@dataclass
class Uncertainty:
    """The uncertainty parts of one run; each None when the run does not have it."""

    time_s: Arr  # (T,) step starts, Unix s
    step_s: float
    security: Security | None
    stochastic: Stochastic | None
    admm: Admm | None
    outages: Outages | None
    storage: Storage | None


# ------------------------------------------------------------------------------------------------ reading


def _ds(f: h5py.File, path: str, ndim: int = 1) -> h5py.Dataset | None:
    """A dataset of that rank, None when missing (or another kind of object)."""
    ds = f.get(path)
    return ds if isinstance(ds, h5py.Dataset) and ds.ndim == ndim else None


def _col(f: h5py.File, path: str, n: int | None = None, fill: float = np.nan) -> Arr:
    """A 1-D dataset as float (fitted to n when given); empty (or fill) when missing."""
    ds = _ds(f, path)
    if ds is None:
        return np.zeros(0) if n is None else np.full(n, fill)
    a = np.asarray(ds[()], dtype=float).ravel()
    return a if n is None else _fit(a, n, fill)


def _names(f: h5py.File, key: str) -> list[str] | None:
    """A JSON list of names from a /market attribute (or the root attribute 'market/<key>')."""
    g = f.get("market")
    raw = g.attrs.get(key) if isinstance(g, h5py.Group) else None
    raw = f.attrs.get(f"market/{key}") if raw is None else raw
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return [raw]
    items = raw.tolist() if isinstance(raw, np.ndarray) else raw
    items = items if isinstance(items, list) else [items]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in items]


def _load_security(f: h5py.File, t: int) -> Security | None:
    """``/market/security_cost`` and the outage lists; None when scopf did not run."""
    raw = _col(f, "market/security_cost", t)
    cost = np.where(np.abs(raw) < MONEY_TOL_USD, 0.0, raw)  # solver noise (1e-11 $) is no cost; NaN stays
    secured, islanding = _names(f, "secured_outages"), _names(f, "islanding_outages")
    if not np.isfinite(cost).any() and secured is None and islanding is None:
        return None
    return Security(cost, secured, islanding)


def _load_stochastic(f: h5py.File, time_s: Arr, step_s: float) -> Stochastic | None:
    """The per-day VSS, EVPI and expected cost; None without any day."""
    g = "market/day" if "market/day" in f else "market"  # files written before the day group: /market
    day = _ds(f, f"{g}/day_step")
    vss, evpi, exp = (_col(f, f"{g}/{k}") for k in ("vss", "evpi", "expected_cost"))
    n = max(0 if day is None else day.shape[0], vss.size, evpi.size, exp.size)
    if n == 0:
        return None
    if day is not None and day.shape[0] == n:
        k = np.asarray(day[()], dtype=np.int64).ravel()
    else:  # no (or a short) day index: consecutive days from the start
        k = np.arange(n, dtype=np.int64) * max(int(round(86400 / step_s)), 1)
    day_s = (int(time_s[0]) if time_s.size else 0) + k * int(step_s)  # steps beyond the run: extrapolated
    inside = (k >= 0) & (k < time_s.size)
    day_s[inside] = time_s[k[inside]]
    return Stochastic(day_s, _fit(vss, n, np.nan), _fit(evpi, n, np.nan), _fit(exp, n, np.nan))


def _pick_traces(cand: Arr, it: Arr) -> dict[int, str]:
    """Intervals to trace among cand (steps, ascending): most iterations, median, a few random (seeded)."""
    if not cand.size:
        return {}
    order = cand[np.argsort(it[cand], kind="stable")]
    why = {int(order[-1]): "most iterations"}
    why.setdefault(int(order[(order.size - 1) // 2]), "median")
    rest = np.setdiff1d(cand, list(why))
    rng = np.random.default_rng(TRACE_SEED)
    for s in rng.choice(rest, size=min(TRACE_RANDOM, rest.size), replace=False) if rest.size else []:
        why[int(s)] = "random"
    return why


def _load_admm(f: h5py.File, t: int) -> Admm | None:
    """ADMM iterations, messages and the residual traces of a few intervals; None without any iteration."""
    g = f.get("market/admm_residual")
    g = g if isinstance(g, h5py.Group) else None
    sds = None if g is None else g.get("step")
    step = np.asarray(sds[()], dtype=np.int64).ravel() if isinstance(sds, h5py.Dataset) else np.zeros(0, int)
    it_ds = _ds(f, "market/admm_iterations")
    if it_ds is not None:
        it = np.nan_to_num(_fit(np.asarray(it_ds[()], dtype=float), t, 0.0))
    else:  # rows of the residual table per interval
        ok = (step >= 0) & (step < t)
        it = np.bincount(step[ok], minlength=t)[:t].astype(float)
    if not (it > 0).any() and not step.size:
        return None
    msg = _ds(f, "market/admm_messages")
    messages = None if msg is None else np.nan_to_num(_fit(np.asarray(msg[()], dtype=float), t, 0.0))
    cand = np.unique(step[(step >= 0) & (step < t)])
    why = _pick_traces(cand, it)
    traces: dict[int, tuple[Arr, Arr, Arr]] = {}
    for s in sorted(why):
        idx = np.flatnonzero(step == s)
        sl = slice(int(idx[0]), int(idx[-1]) + 1)  # the rows of an interval are contiguous when appended
        keep = step[sl] == s

        def part(key: str, sl: slice = sl, keep: Arr = keep) -> Arr:
            ds = None if g is None else g.get(key)
            if not isinstance(ds, h5py.Dataset):
                return np.full(int(keep.sum()), np.nan)
            return _fit(np.asarray(ds[sl], dtype=float), keep.size, np.nan)[keep]

        iteration = part("iteration")
        if not np.isfinite(iteration).all():
            iteration = np.arange(1, keep.sum() + 1, dtype=float)
        traces[s] = (iteration, part("primal_residual"), part("dual_residual"))
    return Admm(it, messages, int(step.size), traces, why)


def _split(ds: h5py.Dataset | None, t: int, crit: Arr, scale: float, positive: bool) -> tuple[Arr, Arr]:
    """Per step, sum over the critical and the other selected columns (NaN ignored) of a (T, n) dataset."""
    a, b, i = np.full(t, np.nan), np.full(t, np.nan), 0
    if ds is None:
        return a, b
    a[:], b[:] = 0.0, 0.0
    n = ds.shape[1]
    sel = _fit(np.asarray(crit, dtype=float), n, 0.0)  # 1 critical, 0 other, -1 left out
    for blk in _chunks(ds):
        blk = blk[: max(t - i, 0)]
        if not len(blk):
            break
        x = np.where(np.isfinite(blk), blk, 0.0)
        if positive:
            x = x.clip(0, None)
        k = slice(i, i + len(blk))
        a[k], b[k] = x @ (sel == 1).astype(float) * scale, x @ (sel == 0).astype(float) * scale
        i += len(blk)
    return a, b


def _nonzero(ds: h5py.Dataset | None) -> bool:
    """The dataset has a finite non-zero value."""
    if ds is None:
        return False
    return any(bool((np.nan_to_num(blk) != 0).any()) for blk in _chunks(ds)) if ds.ndim == 2 else False


def _load_outages(f: h5py.File, time_s: Arr, step_s: float) -> Outages | None:
    """Events, islanded steps, shed, curtailed and served energy; None when nothing of it has content."""
    t = time_s.size
    ev = f.get("events")
    ev = ev if isinstance(ev, h5py.Group) else None
    n_ev = 0
    if ev is not None:
        n_ev = max(
            (int(d.shape[0]) for d in ev.values() if isinstance(d, h5py.Dataset) and d.ndim), default=0
        )

    def strs(key: str) -> list[str]:
        ds = None if ev is None else ev.get(key)
        v = _strs(ds) if isinstance(ds, h5py.Dataset) else []
        return (v + [""] * n_ev)[:n_ev]

    kind, element = strs("kind"), strs("element")
    start = np.asarray(_fit(_col(f, "events/start"), n_ev, np.nan), dtype=float)
    end = np.asarray(_fit(_col(f, "events/end"), n_ev, np.nan), dtype=float)
    isl_ds = _ds(f, "grid/islanded")
    un_ds, cu_ds = _ds(f, "agents/unserved_mwh", 2), _ds(f, "agents/curtailed_mwh", 2)
    islanded = np.nan_to_num(_col(f, "grid/islanded", t, 0.0)) != 0
    if not (n_ev or islanded.any() or _nonzero(un_ds) or _nonzero(cu_ds)):
        return None
    if isl_ds is None:  # steps starting inside an island event
        is_island = np.array([k == "island" for k in kind], dtype=bool)
        for s, e in zip(start[is_island], end[is_island], strict=True):
            islanded |= (time_s >= s) & (time_s < e)
    n = max((d.shape[1] for d in (un_ds, cu_ds, _ds(f, "agents/p_mw", 2)) if d is not None), default=0)
    crit_ds = _ds(f, "agents/critical")
    critical = np.zeros(n, dtype=bool)
    if crit_ds is not None:
        critical = _fit(np.asarray(crit_ds[()], dtype=bool), n, False)
    kinds = _strs(_ds(f, "agents/kind"))
    consumer = np.isin(kinds, CONSUMER_KINDS) if len(kinds) == n else np.ones(n, dtype=bool)
    sel = np.where(critical, 1, np.where(consumer, 0, -1))
    every = np.where(critical, 1, 0)  # shed and curtailed energy count for every agent
    un_c, un_o = _split(un_ds, t, every, 1.0, positive=False)
    cu_c, cu_o = _split(cu_ds, t, every, 1.0, positive=False)
    sv_c, sv_o = _split(_ds(f, "agents/p_mw", 2), t, sel, step_s / 3600, positive=True)
    return Outages(
        kind=kind,
        element=element,
        start=start,
        end=end,
        has_events=ev is not None,
        has_islanded=isl_ds is not None,
        islanded=islanded,
        price_mean=_reduce(_ds(f, "market/price_per_mwh", 2), t).row_mean,
        served_critical=sv_c,
        served_other=sv_o,
        unserved_critical=un_c,
        unserved_other=un_o,
        curtailed=cu_c + cu_o,
        has_critical=crit_ds is not None,
    )


def _load_storage(f: h5py.File, t: int) -> Storage | None:
    """Total profit per battery and the profit of all batteries per step; None when no battery traded."""
    ds = _ds(f, "agents/storage_profit", 2)
    if ds is None or not ds.shape[1]:
        return None
    n = ds.shape[1]
    total, per_step, cnt, i = np.zeros(n), np.full(t, np.nan), np.zeros(n), 0
    for blk in _chunks(ds):
        blk = blk[: max(t - i, 0)]
        if not len(blk):
            break
        fin = np.isfinite(blk)
        x = np.where(fin, blk, 0.0)
        total += x.sum(axis=0)
        cnt += fin.sum(axis=0)
        per_step[i : i + len(blk)] = np.where(fin.any(axis=1), x.sum(axis=1), np.nan)
        i += len(blk)
    if not cnt.any() or not np.nan_to_num(per_step).any():  # (batteries out of the market: all zero)
        return None
    names = _strs(_ds(f, "agents/storage_name"))
    names = names if len(names) == n else [f"battery {k}" for k in range(n)]
    return Storage(names, np.where(cnt > 0, total, np.nan), per_step)


def load_uncertainty(f: h5py.File) -> Uncertainty | None:
    """Read and reduce the uncertainty datasets of an open run file; None when none of them has content."""
    time_s = np.asarray(f["time"][()], dtype=np.int64).ravel()
    t = time_s.size
    step_s = float(_attr(f, "step_s", 0) or (time_s[1] - time_s[0] if t > 1 else 3600))
    unc = Uncertainty(
        time_s=time_s,
        step_s=step_s,
        security=_load_security(f, t),
        stochastic=_load_stochastic(f, time_s, step_s),
        admm=_load_admm(f, t),
        outages=_load_outages(f, time_s, step_s),
        storage=_load_storage(f, t),
    )
    return unc if parts(unc) else None


def parts(unc: Uncertainty) -> list[str]:
    """Names of the parts the run has, in ``PARTS`` order ('shed energy' for outage data without an event)."""
    present = (unc.security, unc.stochastic, unc.admm, unc.outages, unc.storage)
    names = [k for k, v in zip(PARTS, present, strict=True) if v is not None]
    ou = unc.outages
    if ou is not None and not (ou.kind or ou.islanded.any()):
        names[names.index("outages")] = "shed energy"
    return names


# ------------------------------------------------------------------------------------------------ metrics


def island_spans(unc: Uncertainty, out: Outages) -> list[tuple[float, float]]:
    """(start, end) Unix s of every island: the island events, else the runs of /grid/islanded."""
    spans = [
        (float(s), float(e))
        for k, s, e in zip(out.kind, out.start, out.end, strict=True)
        if k == "island" and np.isfinite(s) and np.isfinite(e)
    ]
    if any(k == "island" for k in out.kind):
        return spans
    if not out.islanded.any():
        return spans
    x = np.concatenate([[0], out.islanded.astype(np.int8), [0]])
    lo, hi = np.flatnonzero(np.diff(x) == 1), np.flatnonzero(np.diff(x) == -1)  # [lo, hi) runs of steps
    return [
        (float(unc.time_s[a]), float(unc.time_s[b - 1] + unc.step_s)) for a, b in zip(lo, hi, strict=True)
    ]


def islanded_hours(unc: Uncertainty, out: Outages) -> float:
    """Hours of the steps run islanded."""
    return float(np.count_nonzero(out.islanded)) * unc.step_s / 3600


def unserved_total_mwh(out: Outages) -> tuple[float, float]:
    """Shed energy of all agents and of the critical ones (MWh; NaN without /agents/unserved_mwh)."""
    if not np.isfinite(out.unserved_critical).any():
        return np.nan, np.nan
    crit = float(np.nansum(out.unserved_critical))
    return crit + float(np.nansum(out.unserved_other)), crit


# ------------------------------------------------------------------------------------------------ rows


def _listed(names: list[str]) -> str:
    """Up to MAX_NAMES names, escaped, then how many more."""
    more = f", … (+{len(names) - MAX_NAMES})" if len(names) > MAX_NAMES else ""
    return html.escape(", ".join(names[:MAX_NAMES])) + more


def security_rows(sec: Security) -> list[tuple[str, str]]:
    """Total security cost and the outage counts, labels as in ``SECURITY_LABELS``."""
    fin = np.isfinite(sec.cost)
    n_nan = int(fin.size - fin.sum())
    cost = (
        f"{_f(sec.cost[fin].sum(), '.2f')} $ over {int(fin.sum())} intervals"
        + (f" ({n_nan} not computed)" if n_nan else "")
        if fin.any()
        else "n/a (not computed in any interval)"
    )
    counts = " / ".join("n/a" if x is None else str(len(x)) for x in (sec.secured, sec.islanding))
    named = [
        f"{what}: {_listed(x)}" for what, x in (("secured", sec.secured), ("islanding", sec.islanding)) if x
    ]
    outages = counts + (f" ({'; '.join(named)})" if named else "")
    return list(zip(SECURITY_LABELS, (cost, outages), strict=True))


def stochastic_rows(st: Stochastic) -> list[tuple[str, str]]:
    """Total VSS, EVPI and expected cost over the days, labels as in ``STOCHASTIC_LABELS``."""
    n = st.day_s.size
    ok = np.isfinite(st.vss) & np.isfinite(st.evpi)

    def total(x: Arr) -> float:
        return float(x[np.isfinite(x)].sum()) if np.isfinite(x).any() else np.nan

    failed = f" ({int(n - ok.sum())} failed)" if not ok.all() else ""
    value = f"{_num(total(st.vss), '.2f', ' $')} / {_num(total(st.evpi), '.2f', ' $')} over {n} days{failed}"
    n_exp = int(np.isfinite(st.expected_cost).sum())
    exp = f"{_num(total(st.expected_cost), '.2f', ' $')} over {n_exp} of {n} days"
    return list(zip(STOCHASTIC_LABELS, (value, exp), strict=True))


def admm_rows(ad: Admm) -> list[tuple[str, str]]:
    """Iterations per interval (intervals cleared by ADMM) and messages, labels as in ``ADMM_LABELS``."""
    it = ad.iterations[ad.iterations > 0]
    stats = (
        f"{_f(it.mean(), '.1f')} / {_f(np.percentile(it, 95), '.1f')} / {_f(it.max(), '.0f')} (over "
        f"{it.size} of "
        f"{ad.iterations.size} intervals)"
        if it.size
        else f"n/a (no iteration in {ad.iterations.size} intervals)"
    )
    msgs = "n/a" if ad.messages is None else f"{_f(ad.messages.sum(), '.0f')}"
    return list(zip(ADMM_LABELS, (stats, msgs), strict=True))


def outage_rows(unc: Uncertainty, out: Outages) -> list[tuple[str, str]]:
    """Shed and curtailed energy and the island events (``OUTAGE_LABELS``), rows of the data present."""
    rows: list[tuple[str, str]] = []
    total, crit = unserved_total_mwh(out)
    if np.isfinite(total):
        critical = f"critical {_f(crit, '.3f')} MWh" if out.has_critical else "no critical flags"
        rows.append((OUTAGE_LABELS[0], f"{_f(total, '.3f')} MWh ({critical})"))
    if np.isfinite(out.curtailed).any():
        rows.append((OUTAGE_LABELS[1], f"{_f(np.nansum(out.curtailed), '.3f')} MWh"))
    if out.has_events or out.has_islanded:
        others: dict[str, int] = {}
        for k in out.kind:
            if k != "island":
                others[k] = others.get(k, 0) + 1
        extra = "".join(f"; {c} {html.escape(k or 'unnamed')} events" for k, c in sorted(others.items()))
        cell = f"{len(island_spans(unc, out))} / {_f(islanded_hours(unc, out), '.2f')} h{extra}"
        rows.append((OUTAGE_LABELS[2], cell))
    return rows


def storage_rows(sto: Storage) -> list[tuple[str, str]]:
    """Total profit of the batteries and its spread over them, labels as in ``STORAGE_LABELS``."""
    x = sto.total[np.isfinite(sto.total)]
    cell = (
        f"{_f(x.sum(), '.2f')} $ ({_f(x.min(), '.2f')} / {_f(np.median(x), '.2f')} / "
        f"{_f(x.max(), '.2f')} $ over {x.size} batteries)"
        if x.size
        else "n/a"
    )
    return [(STORAGE_LABELS[0], cell)]


def uncertainty_rows(unc: Uncertainty) -> list[tuple[str, str]]:
    """Summary rows (label, HTML cell) of the parts the run has, labels as in ``LABELS``."""
    rows: list[tuple[str, str]] = []
    if unc.security is not None:
        rows += security_rows(unc.security)
    if unc.stochastic is not None:
        rows += stochastic_rows(unc.stochastic)
    if unc.admm is not None:
        rows += admm_rows(unc.admm)
    if unc.outages is not None:
        rows += outage_rows(unc, unc.outages)
    if unc.storage is not None:
        rows += storage_rows(unc.storage)
    return rows


# ------------------------------------------------------------------------------------------------ figures


def _long(unc: Uncertainty) -> bool:
    """The run spans more than DAILY_AFTER_DAYS days (time series drawn per UTC day)."""
    t = unc.time_s
    return bool(t.size > 1 and t[-1] - t[0] > DAILY_AFTER_DAYS * 86400)


def _dt(x: Arr | float) -> Any:
    """Unix seconds as datetime64[s]."""
    return np.asarray(x, dtype=np.int64).astype("datetime64[s]")


def _period(ax: Axes, unc: Uncertainty) -> None:
    """Date axis over the run's period."""
    if unc.time_s.size:
        ax.set_xlim(*_dt(unc.time_s[[0, -1]] + np.array([0, int(unc.step_s)])))
    _dates(ax)


def plot_security(unc: Uncertainty, sec: Security) -> Figure:
    """Security cost per interval (daily sums for long runs) and its cumulative total; outage counts noted."""
    fig = Figure(figsize=(10, 4.5), layout="tight")
    ax = fig.add_subplot()
    daily = _long(unc)
    s = pd.Series(sec.cost, index=pd.DatetimeIndex(_dt(unc.time_s)))
    if daily:
        s = s.resample("D").sum(min_count=1)
        s.index = s.index + pd.Timedelta(hours=12)
    y = s.to_numpy(dtype=float)
    ax.plot(
        s.index,
        y,
        lw=1,
        color="tab:red",
        marker="." if len(s) < 50 else None,
        label="daily sum" if daily else "per interval",
    )
    nan = ~np.isfinite(sec.cost)
    if nan.any():
        ax.plot(
            _dt(unc.time_s[nan]),
            np.zeros(int(nan.sum())),
            "x",
            color="grey",
            ms=4,
            label=f"not computed ({int(nan.sum())})",
        )
    ax.axhline(0, color="black", lw=0.5)
    ax.set(xlabel="time (UTC)", ylabel="security cost ($/day)" if daily else "security cost ($/interval)")
    axc = ax.twinx()
    cum = np.cumsum(np.nan_to_num(sec.cost))
    axc.plot(
        _dt(unc.time_s),
        cum,
        color="black",
        lw=1.2,
        ls="--",
        label=f"cumulative (total {_f(cum[-1], '.2f')} $)",
    )
    axc.set_ylabel("cumulative security cost ($)")
    lines = [*ax.get_legend_handles_labels()[0], *axc.get_legend_handles_labels()[0]]
    ax.legend(lines, [str(h.get_label()) for h in lines], loc="upper left", fontsize=8)
    n_sec = "n/a" if sec.secured is None else str(len(sec.secured))
    n_isl = "n/a" if sec.islanding is None else str(len(sec.islanding))
    text = f"{n_sec} secured outages\n{n_isl} islanding outages (not secured)"
    if sec.secured:
        more = f", … (+{len(sec.secured) - MAX_NAMES})" if len(sec.secured) > MAX_NAMES else ""
        text += "\nsecured: " + ", ".join(sec.secured[:MAX_NAMES]) + more
    ax.text(
        0.99,
        0.97,
        text,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        bbox={"facecolor": "white", "edgecolor": "grey", "alpha": 0.85},
    )
    ax.set_title(
        f"N-1 security cost ({'daily sums' if daily else 'per interval'}): welfare given up "
        "against the unsecured DC-OPF"
    )
    _period(ax, unc)
    return fig


def plot_stochastic(st: Stochastic) -> Figure:
    """VSS and EVPI per day (bars, totals in the legend) and the expected cost per day."""
    has_exp = bool(np.isfinite(st.expected_cost).any())
    fig = Figure(figsize=(10, 6.5 if has_exp else 4), layout="tight")
    axes = fig.subplots(2 if has_exp else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    x = _dt(st.day_s)
    width, noon = np.timedelta64(int(0.4 * 86400), "s"), np.timedelta64(43200, "s")
    for dx, y, what, colour in ((-1, st.vss, "VSS", "tab:blue"), (0, st.evpi, "EVPI", "tab:orange")):
        ok = np.isfinite(y)  # the two bars side by side in the middle of their day
        ax.bar(
            x[ok] + noon + dx * width,
            y[ok],
            width=width,
            align="edge",
            color=colour,
            label=f"{what} (total {_f(y[ok].sum(), '.2f')} $ over {int(ok.sum())} days)",
        )
    bad = ~(np.isfinite(st.vss) & np.isfinite(st.evpi))
    if bad.any():
        ax.plot(
            x[bad] + noon,
            np.zeros(int(bad.sum())),
            "x",
            color="grey",
            label=f"failed ({int(bad.sum())} days)",
        )
    ax.axhline(0, color="black", lw=0.5)
    ax.set(
        title="Value of the stochastic solution (EEV - RP) and of perfect information (RP - WS) per day",
        ylabel="$ per day",
    )
    ax.legend(loc="best", fontsize=8)
    if has_exp:
        ok = np.isfinite(st.expected_cost)
        axes[1].plot(
            x[ok] + noon,
            st.expected_cost[ok],
            "o-",
            ms=3,
            color="tab:green",
            label=f"expected cost RP (total {_f(st.expected_cost[ok].sum(), '.2f')} $)",
        )
        axes[1].set(title="Expected cost of the stochastic day-ahead clearing per day", ylabel="$ per day")
        axes[1].legend(loc="best", fontsize=8)
    axes[-1].set_xlabel("day (UTC)")
    ax.set_xlim(x.min(), x.max() + 2 * noon)
    _dates(axes[-1])
    return fig


def plot_admm(unc: Uncertainty, ad: Admm) -> Figure:
    """Iterations per interval over time and their histogram; primal and dual residual traces (log y)."""
    fig = Figure(figsize=(11, 7.5), layout="tight")
    gs = fig.add_gridspec(2, 2, width_ratios=(1.6, 1))
    ax, axh = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1])
    daily = _long(unc)
    it = np.where(ad.iterations > 0, ad.iterations, np.nan)
    s = pd.Series(it, index=pd.DatetimeIndex(_dt(unc.time_s)))
    if daily:
        r = s.resample("D")
        ax.plot(r.max().index, r.max().to_numpy(dtype=float), lw=0.8, color="tab:red", label="daily max")
        s = r.mean()
    ax.plot(
        s.index,
        s.to_numpy(dtype=float),
        lw=1,
        color="tab:blue",
        marker="." if len(s) < 50 else None,
        label="daily mean" if daily else "per interval",
    )
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(title="ADMM iterations per interval", xlabel="time (UTC)", ylabel="iterations (-)")
    ax.legend(loc="best", fontsize=8)
    _period(ax, unc)
    pos = ad.iterations[ad.iterations > 0]
    if pos.size:
        lo, hi = int(pos.min()), int(pos.max())
        w = -(-(hi - lo + 1) // HIST_BINS)  # whole iterations per bin
        axh.hist(pos, bins=list(np.arange(lo, hi + w + 1, w) - 0.5), color="tab:blue", alpha=0.7)
        for v, what, ls in ((np.median(pos), "median", "--"), (np.percentile(pos, 95), "p95", ":")):
            axh.axvline(v, color="black", ls=ls, lw=1, label=f"{what} {v:.4g}")
        axh.legend(loc="upper right", fontsize=8)
    else:
        _note(axh, "no interval cleared by ADMM")
    axh.set(title="Distribution over intervals", xlabel="iterations (-)", ylabel="intervals (-)")
    for k, (key, what) in enumerate((("primal", "Primal residual (MW)"), ("dual", "Dual residual ($/MWh)"))):
        axr = fig.add_subplot(gs[1, k])
        drawn = False
        for s_ in sorted(ad.traces):
            iteration, primal, dual = ad.traces[s_]
            y = primal if key == "primal" else dual
            y = np.where(np.isfinite(y) & (y > 0), y, np.nan)  # log axis
            if np.isfinite(y).any():
                when = str(_dt(unc.time_s[s_]))[:16] if s_ < unc.time_s.size else f"step {s_}"
                axr.plot(iteration, y, lw=1, label=f"{when} ({ad.why[s_]}, {iteration.size} it.)")
                drawn = True
        if drawn:
            axr.set_yscale("log")
            axr.legend(loc="upper right", fontsize=7)
        else:
            _note(axr, "no residual trace" if not ad.n_rows else "no positive residual (missing or zero)")
        axr.set(title=f"{what} per iteration", xlabel="iteration (-)", ylabel=what.split(" (")[0].lower())
    return fig


def _window(unc: Uncertainty, start: float, end: float) -> tuple[int, int] | None:
    """First and last step drawn around an event: the steps it overlaps, EVENT_PAD_STEPS either side."""
    t = unc.time_s
    hit = np.flatnonzero((t + unc.step_s > start) & (t < end))
    if not hit.size:
        return None
    return max(int(hit[0]) - EVENT_PAD_STEPS, 0), min(int(hit[-1]) + EVENT_PAD_STEPS, t.size - 1)


STACK = (  # (Outages attribute, label, colour, hatch) bottom to top, by priority
    ("served_critical", "served, critical loads", "darkgreen", ""),
    ("served_other", "served, other loads", "mediumseagreen", ""),
    ("unserved_critical", "unserved, critical loads", "darkred", "//"),
    ("unserved_other", "unserved, other inelastic loads", "tab:red", "//"),
    ("curtailed", "curtailed flexible demand (price)", "tab:orange", ".."),
)


def plot_islanding(unc: Uncertainty, out: Outages) -> Figure:
    """Timeline of the events and the bus mean price; per island (MAX_EVENT_PANELS at most) a close-up."""
    islands = island_spans(unc, out)
    others = [
        (f"{k} {e}".strip(), float(s), float(en))
        for k, e, s, en in zip(out.kind, out.element, out.start, out.end, strict=True)
        if k != "island" and np.isfinite(s) and np.isfinite(en)
    ]
    detail = [("island", s, e) for s, e in islands] if islands else others
    unserved = out.unserved_critical + out.unserved_other  # NaN without /agents/unserved_mwh
    wins = [(name, s, e, w) for name, s, e in detail if (w := _window(unc, s, e)) is not None]
    top = sorted(range(len(wins)), key=lambda i: -np.nansum(unserved[wins[i][3][0] : wins[i][3][1] + 1]))
    shown = [wins[i] for i in sorted(top[:MAX_EVENT_PANELS])]
    fig = Figure(figsize=(11, 3.2 + 3.0 * len(shown)), layout="tight")
    gs = fig.add_gridspec(1 + len(shown), 1)
    ax = fig.add_subplot(gs[0])
    daily = _long(unc)
    s = pd.Series(out.price_mean, index=pd.DatetimeIndex(_dt(unc.time_s)))
    if daily:  # a day's mean drawn at its middle, not at midnight before it
        s = s.resample("D").mean()
        s.index = s.index + pd.Timedelta(hours=12)
    if np.isfinite(s.to_numpy(dtype=float)).any():
        ax.plot(
            s.index,
            s.to_numpy(dtype=float),
            lw=0.9,
            color="black",
            label="bus mean price" + (" (daily mean)" if daily else ""),
        )
    else:
        _note(ax, "no market price")
    spans = [(a, b, "tab:red", 0.25) for a, b in islands] + [(a, b, "tab:blue", 0.15) for _, a, b in others]
    for a, b, colour, alpha in spans:
        ax.axvspan(_dt(a), _dt(b), color=colour, alpha=alpha, lw=0)
    handles = ax.get_legend_handles_labels()[0]
    if islands:
        hours = islanded_hours(unc, out)
        handles.append(
            Patch(
                color="tab:red", alpha=0.25, label=f"islanded ({len(islands)} islands, {_f(hours, '.1f')} h)"
            )
        )
    if others:
        handles.append(Patch(color="tab:blue", alpha=0.15, label=f"other outages ({len(others)})"))
    ax.set(title="Outage events and the market price", xlabel="time (UTC)", ylabel="price ($/MWh)")
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize=8)
    _period(ax, unc)
    h = unc.step_s / 3600
    n_detail = len(wins)
    for k, (name, a, b, (lo, hi)) in enumerate(shown):
        axe = fig.add_subplot(gs[1 + k])
        x = _dt(unc.time_s[lo : hi + 1])
        width = np.timedelta64(int(unc.step_s), "s")
        bottom = np.zeros(hi - lo + 1)
        handles = []
        for attr, label, colour, hatch in STACK:
            y = getattr(out, attr)[lo : hi + 1]
            if not np.isfinite(y).any():
                continue
            y = np.nan_to_num(y)
            axe.bar(
                x,
                y,
                width=width,
                bottom=bottom,
                align="edge",
                color=colour,
                hatch=hatch,
                edgecolor="white",
                lw=0.3,
            )
            handles.append(Patch(facecolor=colour, hatch=hatch, edgecolor="white", label=label))
            bottom += y
        axe.set_ylim(0, 1.6 * float(bottom.max()) if bottom.max() > 0 else 1.0)  # room for the legend
        if not handles:
            _note(axe, "no energy data (no /agents datasets)")
        axe.axvspan(
            _dt(max(a, unc.time_s[lo])),
            _dt(min(b, unc.time_s[hi] + unc.step_s)),
            color="tab:red" if name == "island" else "tab:blue",
            alpha=0.12,
            lw=0,
        )
        axe.set_ylabel(f"energy (MWh per {h:g} h step)")
        axp = axe.twinx()
        price = out.price_mean[lo : hi + 1]
        if np.isfinite(price).any():
            axp.step(
                np.append(x, x[-1] + width), np.append(price, price[-1]), where="post", color="black", lw=1.2
            )
            handles.append(Line2D([], [], color="black", lw=1.2, label="bus mean price (right)"))
            p_lo, p_hi = float(np.nanmin(price)), float(np.nanmax(price))
            r = max(p_hi - p_lo, 1.0)
            axp.set_ylim(p_lo - 0.05 * r, p_hi + 0.65 * r)
        axp.set_ylabel("price ($/MWh)")
        if handles:
            axe.legend(handles=handles, loc="upper left", fontsize=7, ncol=3)
        shed = _num(float(unserved[lo : hi + 1].sum()), ".3f", " MWh")
        span = f"{_dt(a)} – {_dt(b)} UTC"
        axe.set_title(f"{name}: {span} (± {EVENT_PAD_STEPS} steps; unserved {shed})", fontsize=10)
        axe.set_xlim(x[0], x[-1] + width)
        _dates(axe)
    if n_detail > len(shown):
        fig.suptitle(f"{len(shown)} of {n_detail} events in detail (most unserved energy)", fontsize=10)
    return fig


def plot_storage(unc: Uncertainty, sto: Storage) -> Figure:
    """Total profit per battery (sorted bars) and the cumulative profit of all batteries."""
    fig = Figure(figsize=(10, 7), layout="tight")
    ax, axc = fig.subplots(2, 1)
    ok = np.isfinite(sto.total)
    order = np.flatnonzero(ok)[np.argsort(-sto.total[ok], kind="stable")]
    y = sto.total[order]
    ax.bar(np.arange(y.size), y, color=np.where(y >= 0, "tab:green", "tab:red"))
    ax.axhline(0, color="black", lw=0.5)
    if 0 < y.size <= 30:
        ax.set_xticks(np.arange(y.size), [sto.names[i] for i in order], rotation=45, ha="right", fontsize=7)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("battery rank (-)")
    ax.set(
        title=f"Profit per battery over the run (revenue - cost; {y.size} batteries, total "
        f"{_f(y.sum(), '.2f')} $)",
        ylabel="profit ($)",
    )
    cum = np.cumsum(np.nan_to_num(sto.per_step))
    axc.plot(
        _dt(unc.time_s), cum, color="tab:green", lw=1.2, label=f"all batteries (total {_f(cum[-1], '.2f')} $)"
    )
    axc.axhline(0, color="black", lw=0.5)
    axc.set(title="Cumulative profit of all batteries", xlabel="time (UTC)", ylabel="profit ($)")
    axc.legend(loc="best", fontsize=8)
    _period(axc, unc)
    return fig


@dataclass
class UncertaintySection:
    """The uncertainty part of a run report (the :class:`~analysis.common.Section` protocol)."""

    unc: Uncertainty

    @property
    def title(self) -> str:
        """Section heading naming the parts present."""
        return f"Uncertainty and outages ({', '.join(parts(self.unc))})"

    def rows(self) -> list[tuple[str, str]]:
        """Summary rows (``LABELS``)."""
        return uncertainty_rows(self.unc)

    def findings(self) -> list[str]:
        """Security cost, stochastic value, ADMM effort, energy not served, storage profit, from the data."""
        unc, out = self.unc, []
        sec, st, ad, ou, sto = unc.security, unc.stochastic, unc.admm, unc.outages, unc.storage
        if sec is not None:
            c = sec.cost[np.isfinite(sec.cost)]
            n_pos = int((c > 0).sum())
            out.append(
                f"Securing the network against N-1 outages cost {money(float(c.sum()))}, in {n_pos:,} of "
                f"{c.size:,} intervals" + ("; the N-1 constraints never bound." if not n_pos else ".")
            )
        if st is not None:
            out.append(
                f"The stochastic clearing was worth {money(float(np.nansum(st.vss)))} over "
                f"{st.day_s.size} days "
                f"(VSS); perfect forecasts would have been worth {money(float(np.nansum(st.evpi)))} "
                "more (EVPI)."
            )
        if ad is not None:
            it = ad.iterations[ad.iterations > 0]
            if it.size:
                out.append(
                    f"ADMM needed {it.mean():,.1f} iterations per interval on average, "
                    f"{it.max():,.0f} at most."
                )
        if ou is not None:
            total, crit = unserved_total_mwh(ou)
            if np.isfinite(total):
                out.append(
                    f"{fmt(total, '.3f')} MWh went unserved ({fmt(crit, '.3f')} MWh of critical loads) over "
                    f"{len(island_spans(unc, ou))} islands and {islanded_hours(unc, ou):,.1f} islanded hours."
                )
        if sto is not None:
            x = sto.total[np.isfinite(sto.total)]
            if x.size:
                out.append(
                    f"The {x.size} batteries earned {money(float(x.sum()))} in total; "
                    f"{int((x < 0).sum())} lost money."
                )
        return out

    def figures(self) -> list[Fig]:
        """The figures of the parts with data, captioned."""
        unc, figs = self.unc, []
        sec, st, ad, ou, sto = unc.security, unc.stochastic, unc.admm, unc.outages, unc.storage
        if sec is not None and np.isfinite(sec.cost).any():
            figs.append(
                Fig(
                    SECURITY_FIG,
                    plot_security(unc, sec),
                    "Welfare given up to keep the grid secure against every listed single outage (N-1), per "
                    "interval (left axis) and cumulated (dashed, right axis). Zero means the secure dispatch "
                    f"equals the unsecured one; amounts below {MONEY_TOL_USD} $ are solver noise, "
                    "drawn as 0.",
                )
            )
        if st is not None and any(np.isfinite(x).any() for x in (st.vss, st.evpi, st.expected_cost)):
            figs.append(
                Fig(
                    STOCHASTIC_FIG,
                    plot_stochastic(st),
                    "Per day: the value of the stochastic solution (VSS, what planning for the "
                    "scenarios saves "
                    "against planning for their mean) and of perfect information (EVPI, what exact forecasts "
                    "would save more); below, the expected cost of the stochastic day-ahead plan.",
                )
            )
        if ad is not None and ((ad.iterations > 0).any() or ad.traces):
            figs.append(
                Fig(
                    ADMM_FIG,
                    plot_admm(unc, ad),
                    "Top: ADMM iterations needed per interval and their distribution. Bottom: primal (power "
                    "mismatch) and dual (price change) residuals per iteration for a few intervals; a trace "
                    "that flattens above zero did not converge.",
                )
            )
        if ou is not None and (ou.kind or ou.islanded.any()):
            figs.append(
                Fig(
                    ISLANDING_FIG,
                    plot_islanding(unc, ou),
                    "Top: the bus mean price over the run (daily means drawn at midday for long runs) with "
                    "islands (red bands) and other outages (blue). Below, per event: served, unserved and "
                    "curtailed energy per step (stacked bars) and the price (black step line, right axis).",
                )
            )
        if sto is not None and np.isfinite(sto.total).any():
            figs.append(
                Fig(
                    STORAGE_FIG,
                    plot_storage(unc, sto),
                    "Top: profit of every battery over the run (revenue from discharging minus the cost of "
                    "charging), sorted; red bars lost money. Bottom: cumulative profit of all batteries.",
                )
            )
        return figs


def uncertainty_figures(unc: Uncertainty, out: Path) -> list[str]:
    """Write the figures of the parts with data (of ``UNCERTAINTY_FIGS``) into out; return their names."""
    figs = UncertaintySection(unc).figures()
    save(figs, out)
    return [f.name for f in figs]


def uncertainty_section(unc: Uncertainty, out: Path) -> str:
    """HTML section of one run's report: heading naming the parts present, findings and captioned figures."""
    return render_section(UncertaintySection(unc), out)
