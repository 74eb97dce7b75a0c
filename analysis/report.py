"""HTML + PNG report for one run's HDF5 file (reads h5py only, no model imports)."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import yaml
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from cosim.models.market.designs import DESIGNS, Design

from . import bidding_report, ledger_report, market_power_report, society_report, uncertainty_report
from .common import CHUNK, Arr, Fig, Section, findings, fmt, money, num, page, render_section, save, table
from .common import Stats as _Stats
from .common import attr as _attr
from .common import chunks as _chunks
from .common import dates as _dates
from .common import flat as _flat
from .common import note as _note
from .common import reduce as _reduce
from .common import strs as _strs

_f = fmt

V_LIMITS = (0.95, 1.05)  # pu; bus limits are not in the file
MARKET_FIGS = ("price_duration.png", "lmp_heatmap.png", "market_volume.png", "ac_gap.png")


def _registered(name: str) -> Design | None:
    """The market design of that name from the registry, None for an unknown one (an old file)."""
    return DESIGNS.get(name)


def _ints(ds: h5py.Dataset | None) -> Arr:
    """Read an integer 1-D dataset, empty if missing."""
    return np.zeros(0, dtype=int) if ds is None else np.asarray(ds[()], dtype=int).ravel()


def _vec(ds: h5py.Dataset | None, t: int) -> Arr:
    """Read a float 1-D time series, NaN if missing."""
    return np.full(t, np.nan) if ds is None else np.asarray(ds[()], dtype=float).ravel()


def _long(d: dict[str, Any], days: float) -> bool:
    """The run spans more than this many days."""
    return bool(d["T"] > 1 and (d["time"][-1] - d["time"][0]) > days * 86400)


def plot_voltage(d: dict[str, Any]) -> Figure:
    """Voltage envelope (min/max band, mean) over time with 0.95/1.05 limits."""
    fig = Figure(figsize=(10, 4), layout="tight")
    ax = fig.add_subplot()
    v: _Stats = d["vm"]
    mk = "." if d["T"] < 50 else None
    ax.fill_between(d["dt"], v.row_min, v.row_max, alpha=0.3, label="min-max over buses")
    for row in (v.row_min, v.row_max):  # visible edges even for T=1 or isolated steps
        ax.plot(d["dt"], row, lw=0.5, color="tab:blue", alpha=0.6, marker=mk)
    ax.plot(d["dt"], v.row_mean, lw=0.8, color="black", marker=mk, label="mean over buses")
    for lim in (0.95, 1.05):
        ax.axhline(lim, ls="--", color="red", lw=1, label=f"{_f(lim, '.2f')} pu limit")
    if not np.isfinite(v.row_min).any():
        _note(ax, "no voltage data (all steps failed or no buses)")
    ax.set(title="Bus voltage envelope", xlabel="time (UTC)", ylabel="voltage (pu)")
    _dates(ax)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_duration(d: dict[str, Any]) -> Figure:
    """Duration curves of the per-step max line and trafo loading."""
    fig = Figure(figsize=(8, 4), layout="tight")
    ax = fig.add_subplot()
    drawn = False
    for key, label in (("line", "max line loading"), ("trafo", "max trafo loading")):
        y = d[key].row_max
        y = np.sort(y[np.isfinite(y)])[::-1]
        if y.size:
            x = np.arange(1, y.size + 1) * d["step_h"]
            ax.step(x, y, where="post", marker="." if y.size < 50 else None, label=label)
            drawn = True
    ax.axhline(100, ls="--", color="red", lw=1, label="100 % rating")
    if not drawn:
        _note(ax, "no loading data")
    ax.set(title="Loading duration curve", xlabel="hours exceeded (h)", ylabel="loading (%)")
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_losses_import(d: dict[str, Any]) -> Figure:
    """Losses and grid import over time (daily mean with min-max band for long runs)."""
    fig = Figure(figsize=(10, 5.5), layout="tight")
    axes = fig.subplots(2, 1, sharex=True)
    long_run = _long(d, 30)
    spec = (("losses", "Grid losses"), ("imp", "Grid import (+) / export (-)"))
    for ax, (key, title) in zip(axes, spec, strict=True):
        y = np.asarray(d[key], dtype=float)
        small = bool(np.isfinite(y).any() and np.nanmax(np.abs(y)) < 1.0)  # an LV grid: kW, not 0.0015 MW
        s = pd.Series(y * 1000 if small else y, index=pd.DatetimeIndex(d["dt"]))
        if long_run:
            g = s.resample("D").agg(["mean", "min", "max"])
            g.index = g.index + pd.Timedelta(hours=12)  # a day's values drawn at its middle
            ax.fill_between(g.index, g["min"], g["max"], alpha=0.3, label="daily min-max")
            ax.plot(g.index, g["mean"], lw=1, label="daily mean")
        else:
            ax.plot(s.index, s.to_numpy(), lw=1, marker="." if d["T"] < 50 else None, label=title)
        if not np.isfinite(d[key]).any():
            _note(ax, "no data")
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=title, ylabel="power (kW)" if small else "power (MW)")
        ax.legend(loc="best", fontsize=8)
    axes[1].set_xlabel("time (UTC)")
    _dates(axes[1])
    return fig


def _tree_layout(n: int, edges: list[tuple[int, int]], root: int) -> Arr:
    """BFS tree layout: depth on y (downwards), leaves spread on x, parents centred."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges:
        if a != b:
            adj[a].append(b)
            adj[b].append(a)
    pos, seen, next_x = np.zeros((n, 2)), np.zeros(n, dtype=bool), 0.0
    order = [root, *sorted(range(n), key=lambda i: -len(adj[i]))] if n else []
    for r in order:
        if seen[r]:
            continue
        children: dict[int, list[int]] = {r: []}
        seen[r], queue, pos[r, 1] = True, [r], 0.0
        for v in queue:  # BFS; queue grows while iterating
            for w in adj[v]:
                if not seen[w]:
                    seen[w], pos[w, 1] = True, pos[v, 1] + 1
                    children[v].append(w)
                    children[w] = []
                    queue.append(w)
        stack = [(r, False)]
        while stack:  # post-order: leaves get successive x, parents the mean of children
            v, done = stack.pop()
            if not done:
                stack.append((v, True))
                stack.extend((c, False) for c in reversed(children[v]))
            elif children[v]:
                pos[v, 0] = np.mean([pos[c, 0] for c in children[v]])
            else:
                pos[v, 0], next_x = next_x, next_x + 1
        next_x += 1
    return pos


def plot_network(d: dict[str, Any]) -> Figure:
    """Network graph: nodes by min voltage, lines/trafos by max loading."""
    fig = Figure(figsize=(10, 7), layout="tight")
    ax = fig.add_subplot()
    n = len(d["bus_index"])
    where = {int(b): i for i, b in enumerate(d["bus_index"])}

    def pairs(a: Arr, b: Arr, load: Arr) -> tuple[list[tuple[int, int]], list[float]]:
        ok = [(k, where.get(int(x)), where.get(int(y))) for k, (x, y) in enumerate(zip(a, b, strict=False))]
        kept = [(k, i, j) for k, i, j in ok if i is not None and j is not None]
        vals = [float(load[k]) if k < load.size else np.nan for k, _, _ in kept]
        return [(i, j) for _, i, j in kept], vals

    le, ll = pairs(d["from_bus"], d["to_bus"], d["line"].col_max)
    te, tl = pairs(d["hv_bus"], d["lv_bus"], d["trafo"].col_max)
    if n == 0:
        _note(ax, "no buses")
        return fig
    deg = np.bincount(np.array(le + te, dtype=int).ravel(), minlength=n) if le + te else np.zeros(n)
    root = max((i for i, _ in te), key=lambda i: d["vn_kv"][i], default=int(np.argmax(deg)))
    pos = _tree_layout(n, le + te, root)
    loads = np.array(ll + tl, dtype=float)
    lmax = np.nanmax(loads) if np.isfinite(loads).any() else 100.0
    lnorm, lcmap = Normalize(0, max(100.0, float(lmax))), colormaps["plasma"]

    grey = not (np.isfinite(np.asarray(ll + tl, dtype=float)).all() and np.isfinite(d["vm"].col_min).all())

    def colours(vals: list[float] | Arr, norm: Normalize, cmap: Any) -> Arr:
        c = cmap(norm(np.nan_to_num(np.asarray(vals, dtype=float))))
        c[~np.isfinite(np.asarray(vals, dtype=float))] = (0.7, 0.7, 0.7, 1.0)
        return np.asarray(c)

    for edges, load, ls, lw in ((le, ll, "-", 2.0), (te, tl, "--", 4.0)):
        if edges:
            segs = [[tuple(pos[i]), tuple(pos[j])] for i, j in edges]
            c = colours(load, lnorm, lcmap)
            ax.add_collection(LineCollection(segs, colors=c, linestyles=ls, linewidths=lw))
    if te:
        mid = np.array([(pos[i] + pos[j]) / 2 for i, j in te])
        ax.scatter(
            mid[:, 0], mid[:, 1], marker="s", s=80, c=colours(tl, lnorm, lcmap), edgecolors="black", zorder=3
        )
    vmin = d["vm"].col_min
    fin = vmin[np.isfinite(vmin)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.95, 1.05)
    vnorm = Normalize(min(0.95, lo), max(1.05, hi))
    vcmap = colormaps["viridis"]
    ax.scatter(pos[:, 0], pos[:, 1], c=colours(vmin, vnorm, vcmap), s=60, edgecolors="black", zorder=4)
    if n <= 40:
        for i, name in enumerate(d["bus_name"]):
            ax.annotate(name, pos[i], xytext=(4, 4), textcoords="offset points", fontsize=7)
    fig.colorbar(ScalarMappable(vnorm, vcmap), ax=ax, label="min bus voltage over run (pu)")
    fig.colorbar(ScalarMappable(lnorm, lcmap), ax=ax, label="max branch loading over run (%)")
    handles = [
        Line2D([], [], color="k", lw=2, label="line"),
        Line2D([], [], color="k", lw=3, ls="--", marker="s", label="trafo"),
    ]
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.autoscale()
    ax.margins(0.08)
    ax.invert_yaxis()  # the root (upstream) bus on top, depth counted downwards
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xticks([])
    ax.set_title("Network overview" + ("  (grey = no data)" if grey else ""))
    ax.set(xlabel="buses spread by feeder (no geographic meaning)", ylabel="branches from the root bus (-)")
    return fig


def plot_agents(d: dict[str, Any]) -> Figure:
    """Energy per agent kind (consumption +, injection -) and mean battery SoC."""
    has_soc = bool(np.isfinite(d["soc"]).any())
    fig = Figure(figsize=(10, 7 if has_soc else 4), layout="tight")
    axes = fig.subplots(2 if has_soc else 1, 1, squeeze=False)[:, 0]
    kinds = sorted(d["energy"])
    if kinds:
        pos = [d["energy"][k][0] for k in kinds]
        neg = [d["energy"][k][1] for k in kinds]
        axes[0].bar(kinds, pos, color="tab:red", label="consumption")
        axes[0].bar(kinds, neg, color="tab:green", label="injection")
        axes[0].scatter(kinds, np.add(pos, neg), marker="D", color="black", zorder=3, label="net")
        axes[0].legend(loc="best", fontsize=8)
    else:
        _note(axes[0], "no agents")
    axes[0].axhline(0, color="black", lw=0.5)
    axes[0].set(title="Agent energy by kind", xlabel="agent kind", ylabel="energy (MWh)")
    if has_soc:
        cap, lo, hi = d["battery"]
        axes[1].plot(d["dt"], 100 * d["soc"] / cap, marker="." if d["T"] < 50 else None, label="mean SoC")
        for v, what in ((lo, "lowest allowed"), (hi, "highest allowed")):
            axes[1].axhline(100 * v, color="grey", ls="--", lw=0.8, label=f"{what} {100 * v:.0f} %")
        axes[1].set_ylim(0, 100)
        axes[1].set_title(f"Battery state of charge (mean over storages, % of {cap * 1000:,.1f} kWh)")
        axes[1].set(xlabel="time (UTC)", ylabel="state of charge (%)")
        axes[1].legend(loc="best", fontsize=8)
        _dates(axes[1])
    return fig


def _duration_xy(row: Arr, scale: float) -> tuple[Arr, Arr] | None:
    """Duration curve of a series (NaN dropped, sorted descending) as step-'post' data from x=0."""
    y = np.sort(row[np.isfinite(row)])[::-1]
    if not y.size:
        return None
    return np.arange(y.size + 1, dtype=float) * scale, np.append(y, y[-1])


def plot_price_duration(d: dict[str, Any], m: dict[str, Any]) -> Figure:
    """Price duration curves of the per-step min, mean and max price over buses."""
    fig = Figure(figsize=(8, 4), layout="tight")
    ax = fig.add_subplot()
    p: _Stats = m["price"]
    h, total_h = d["step_h"], max(d["T"] * d["step_h"], 1e-9)
    mk = "." if d["T"] < 50 else None
    spec = (
        (p.row_max, "max over buses", "tab:red", 0.8),
        (p.row_mean, "mean over buses", "black", 1.2),
        (p.row_min, "min over buses", "tab:blue", 0.8),
    )
    drawn = False
    for row, label, colour, lw in spec:
        xy = _duration_xy(row, h)
        if xy is not None:
            ax.step(*xy, where="post", color=colour, lw=lw, marker=mk, label=label)
            drawn = True
    if not drawn:
        _note(ax, "no cleared prices (every clearing failed)")
    failed = int(np.count_nonzero(~m["ok"]))
    extra = "\n(one price at every bus: min = mean = max)" if m["uniform"] else ""
    ax.set(
        title=f"Price duration curve, {m['design']} market{extra}",
        xlabel="hours at or above (h)",
        ylabel="price ($/MWh)",
    )

    def share(x: ArrayLike) -> Arr:
        return np.asarray(x, dtype=float) * (100 / total_h)

    def hours(q: ArrayLike) -> Arr:
        return np.asarray(q, dtype=float) * (total_h / 100)

    sec = ax.secondary_xaxis("top", functions=(share, hours))
    sec.set_xlabel("share of the run (%)")
    if failed:
        ax.plot([], [], " ", label=f"{failed} failed clearing(s) left out")
    ax.legend(loc="best", fontsize=8)
    return fig


def _heat(ds: h5py.Dataset | None, d: dict[str, Any]) -> tuple[Arr, Arr, bool]:
    """Per-bus mean price per step, or per UTC day beyond 7 days: (bins, n_bus), bin edges (s), daily."""
    t, time, step_s = d["T"], d["time"], int(round(d["step_h"] * 3600)) or 3600
    daily = _long(d, 7)
    if daily:
        day0 = int(time.min()) // 86400
        idx = (time // 86400 - day0).astype(int)
        edges = (day0 + np.arange(int(idx.max()) + 2, dtype=np.int64)) * 86400
    else:
        idx = np.arange(t)
        edges = np.append(time, time[-1] + step_s) if t else np.zeros(0, dtype=np.int64)
    n = ds.shape[1] if ds is not None and ds.ndim == 2 else 0
    nb = max(len(edges) - 1, 0)
    tot, cnt = np.zeros((nb, n)), np.zeros((nb, n))
    i = 0
    for blk in _chunks(ds):
        fin = np.isfinite(blk)
        np.add.at(tot, idx[i : i + len(blk)], np.where(fin, blk, 0.0))
        np.add.at(cnt, idx[i : i + len(blk)], fin)
        i += len(blk)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan), edges, daily


def plot_lmp_heatmap(d: dict[str, Any], m: dict[str, Any]) -> Figure:
    """Bus-by-time heat map of the energy price (daily means for runs over 7 days)."""
    z, edges, daily = m["heat"]
    n_bus = z.shape[1]
    fig = Figure(figsize=(10, max(3.5, min(8.0, 1.5 + 0.25 * n_bus))), layout="tight")
    ax = fig.add_subplot()
    fin = z[np.isfinite(z)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.0, 1.0)
    if hi - lo < 1e-9:  # one constant price: widen so the colour bar is readable
        lo, hi = lo - 1.0, hi + 1.0
    norm, cmap = Normalize(lo, hi), colormaps["viridis"].with_extremes(bad="lightgrey")
    if n_bus and z.shape[0]:
        ax.pcolormesh(edges.astype("datetime64[s]"), np.arange(n_bus + 1) - 0.5, z.T, cmap=cmap, norm=norm)
        ax.set_ylim(n_bus - 0.5, -0.5)
        _dates(ax)
    if not fin.size:
        _note(ax, "no cleared prices (every clearing failed)")
    names = d["bus_name"]
    if 0 < n_bus <= 40 and len(names) == n_bus:
        ax.set_yticks(np.arange(n_bus), names, fontsize=7 if n_bus > 15 else 8)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    fig.colorbar(ScalarMappable(norm, cmap), ax=ax, label="price ($/MWh)")
    what = "daily mean" if daily else "per step"
    equal = ""
    if m["uniform"]:
        spec = _registered(m["design"])
        equal = (
            f"\n{m['design']} design: copper plate, one price for all buses, rows are equal"
            if spec is not None and not spec.capabilities.network
            else "\nsame price at every bus in every step (no congestion): rows are equal"
        )
    ax.set(
        title=f"Energy price by bus ({what}, {m['design']} market; grey = failed clearing){equal}",
        xlabel="time (UTC)",
        ylabel="bus" if n_bus <= 40 else "bus (position in the file)",
    )
    return fig


def _series_plot(ax: Axes, d: dict[str, Any], y: Arr, how: str, long_run: bool, **kw: Any) -> bool:
    """Plot a time series per step, or aggregated per day ('sum', 'mean', 'max') for long runs."""
    s = pd.Series(y, index=pd.DatetimeIndex(d["dt"]))
    if long_run:
        r = s.resample("D")
        s = r.sum(min_count=1) if how == "sum" else r.agg(how)
        s.index = s.index + pd.Timedelta(hours=12)  # a day's value drawn at its middle
    if (
        np.isfinite(y).any() and _flat(y) and "label" in kw
    ):  # a flat zero line is labelled as such, not left to be read as data
        kw["label"] = f"{kw['label']} (0 in every step)"
    ax.plot(s.index, s.to_numpy(dtype=float), lw=1, marker="." if len(s) < 50 else None, **kw)
    return bool(np.isfinite(s.to_numpy(dtype=float)).any())


def plot_market_volume(d: dict[str, Any], m: dict[str, Any]) -> Figure:
    """Welfare, cleared volume (with unserved energy), cost and congestion rent over time."""
    fig = Figure(figsize=(10, 8), layout="tight")
    axes = fig.subplots(3, 1, sharex=True)
    long_run = _long(d, 30)
    per = "daily sums" if long_run else "per step"
    voll = f"inelastic demand valued at the value of lost load, {m['voll']:,.0f} $/MWh"
    spec = (
        (axes[0], (("welfare", "welfare", "tab:green"),), f"Social welfare ({voll})", "money ($)"),
        (
            axes[1],
            (("cleared_mwh", "cleared", "tab:blue"), ("unserved_mwh", "unserved", "tab:red")),
            "Cleared volume",
            "energy (MWh)",
        ),
        (
            axes[2],
            (("cost", "generation cost", "tab:orange"), ("congestion_rent", "congestion rent", "tab:purple")),
            "Cost and congestion rent",
            "money ($)",
        ),
    )
    for ax, lines, title, unit in spec:
        drawn = [_series_plot(ax, d, m[k], "sum", long_run, color=c, label=lab) for k, lab, c in lines]
        if not any(drawn):
            _note(ax, "no data (every clearing failed)")
        elif all(_flat(m[k]) for k, _, _ in lines):
            _note(ax, "zero in every step")
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=f"{title} ({per})", ylabel=unit)
    bad = ~m["ok"]
    if bad.any():
        axes[0].plot(d["dt"][bad], np.zeros(int(bad.sum())), "x", color="grey", label="failed clearing")
    for ax in axes:
        ax.legend(loc="best", fontsize=8)
    axes[2].set_xlabel("time (UTC)")
    _dates(axes[2])
    return fig


def plot_ac_gap(d: dict[str, Any], m: dict[str, Any]) -> Figure:
    """What the market's physics missed: losses, voltage violations and overloads per step."""
    fig = Figure(figsize=(10, 8), layout="tight")
    axes = fig.subplots(3, 1, sharex=True)
    long_run = _long(d, 30)
    design, registered = m["design"], _registered(m["design"])
    lo, hi = V_LIMITS
    losses = (
        "Grid losses (the market models them)"
        if registered is not None and registered.capabilities.losses
        else "Grid losses a lossless market ignores"
    )
    fin = np.abs(d["losses"][np.isfinite(d["losses"])])
    k_w = 1000.0 if fin.size and fin.max() < 1 else 1.0  # an LV grid's losses in kW
    spec = (
        (d["losses"] * k_w, losses, f"power ({'kW' if k_w > 1 else 'MW'})", "mean", "tab:blue"),
        (m["n_vbad"], f"Buses outside {_f(lo, '.2f')}-{_f(hi, '.2f')} pu", "buses (-)", "max", "tab:red"),
        (m["n_over"], "Lines above 100 % loading", "lines (-)", "max", "tab:purple"),
    )
    for ax, (y, title, unit, how, colour) in zip(axes, spec, strict=True):
        label = f"daily {how}" if long_run else "per step"
        if not _series_plot(ax, d, y, how, long_run, color=colour, label=label):
            _note(ax, "no data (power flow failed)")
        elif how == "max" and _flat(y):
            _note(ax, "none in any step")
        if how == "max":  # counts: integer ticks, zero visible
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            top = float(np.nanmax(y)) if np.isfinite(y).any() else 0.0
            ax.set_ylim(-0.5, max(1.0, top) + 0.5)
        ax.set(title=title, ylabel=unit)
        ax.legend(loc="best", fontsize=8)
    physics = "unknown market design" if registered is None else registered.physics
    fig.suptitle(
        f"What the {design} market's physics missed\n{physics}",
        fontsize=11,
    )
    axes[2].set_xlabel("time (UTC)")
    _dates(axes[2])
    return fig


def _yaml_get(text: str, keys: tuple[str, ...], default: Any) -> Any:
    """A nested value of the scenario YAML, default when absent or unreadable."""
    try:
        doc: Any = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return default
    for k in keys:
        if not isinstance(doc, dict) or k not in doc:
            return default
        doc = doc[k]
    return default if doc is None else doc


def _design(text: str) -> str:
    """Market design from the scenario YAML ('unknown' if absent or unreadable)."""
    try:
        doc = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return "unknown"
    market = doc.get("market") if isinstance(doc, dict) else None
    return str(market.get("design", "unknown")) if isinstance(market, dict) else "unknown"


def _count(ds: h5py.Dataset | None, t: int, lo: float, hi: float) -> Arr:
    """Per step, how many columns lie outside [lo, hi]; NaN for steps without data."""
    out, i = np.full(t, np.nan), 0
    for blk in _chunks(ds):
        c = ((blk < lo) | (blk > hi)).sum(axis=1).astype(float)
        c[~np.isfinite(blk).any(axis=1)] = np.nan
        out[i : i + len(blk)] = c
        i += len(blk)
    return out


def _total(ds: h5py.Dataset | None) -> float:
    """NaN-ignoring sum of a 1-D or 2-D dataset, read in chunks."""
    if ds is None or ds.ndim == 0:
        return 0.0
    step = CHUNK if ds.ndim == 2 else CHUNK * 256
    return float(
        sum(np.nansum(np.asarray(ds[i : i + step], dtype=float)) for i in range(0, ds.shape[0], step))
    )


def _load_market(f: h5py.File, d: dict[str, Any], figures: bool = True) -> dict[str, Any] | None:
    """Read and reduce /market (None without one); figures=False skips the heat map and violation counts."""
    if not isinstance(f.get("market"), h5py.Group):
        return None
    g, t = f["market"].get, d["T"]
    m: dict[str, Any] = {"design": _design(str(_attr(f, "scenario_yaml")))}
    m["voll"] = float(_yaml_get(str(_attr(f, "scenario_yaml")), ("market", "voll_per_mwh"), 3000.0))
    m["price"] = p = _reduce(g("price_per_mwh"), t)
    for k in ("cleared_mwh", "welfare", "cost", "congestion_rent", "unserved_mwh"):
        m[k] = _vec(g(k), t)
    ok = g("ok")
    m["ok"] = np.asarray(ok[()], dtype=bool).ravel() if ok is not None else np.isfinite(p.row_mean)
    spread = (p.row_max - p.row_min)[np.isfinite(p.row_max)]
    m["uniform"] = bool(spread.size) and bool(np.all(spread <= 1e-9 * max(1.0, float(np.nanmax(p.row_max)))))
    trades = g("trades")
    mwh = trades.get("mwh") if isinstance(trades, h5py.Group) else None
    m["n_trades"], m["traded_mwh"] = (0 if mwh is None else int(mwh.shape[0])), _total(mwh)
    m["payments"] = _total(g("payment"))
    if figures:
        m["heat"] = _heat(g("price_per_mwh"), d)
        m["n_vbad"] = _count(f.get("grid/bus/vm_pu"), t, *V_LIMITS)
        m["n_over"] = _count(f.get("grid/line/loading_percent"), t, -np.inf, 100.0)
    return m


def _market_rows(m: dict[str, Any], t: int) -> list[tuple[str, str]]:
    """Summary rows of the market: design, totals, failed clearings, prices and trades."""
    p: _Stats = m["price"]
    fin = np.isfinite(p.row_mean)
    prices = (
        " / ".join(
            f"{_f(float(v), '.2f')}"
            for v in (np.mean(p.row_mean[fin]), np.min(p.row_min[fin]), np.max(p.row_max[fin]))
        )
        + " $/MWh"
        if fin.any()
        else "n/a"
    )
    return [
        ("Market design", html.escape(m["design"])),
        ("Total cleared energy", f"{_f(np.nansum(m['cleared_mwh']), '.3f')} MWh"),
        (
            "Total welfare",
            f"{_f(np.nansum(m['welfare']), '.2f')} $ (demand at its bids, VoLL {m['voll']:,.0f} $/MWh)",
        ),
        ("Total generation cost", f"{_f(np.nansum(m['cost']), '.2f')} $"),
        ("Total congestion rent", f"{_f(np.nansum(m['congestion_rent']), '.2f')} $"),
        ("Unserved energy", f"{_f(np.nansum(m['unserved_mwh']), '.3f')} MWh"),
        ("Failed clearings", f"{int(np.count_nonzero(~m['ok']))} of {t}"),
        ("Price mean / min / max", prices),
        ("Trades", str(m["n_trades"])),
        ("Traded energy", f"{_f(m['traded_mwh'], '.3f')} MWh"),
        ("Net agent payments", f"{_f(m['payments'], '.2f')} $"),
    ]


def _violation_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """Steps with a bus outside the voltage limits and steps with a line above 100 %."""
    lo, hi = V_LIMITS
    with np.errstate(invalid="ignore"):
        nv = int(np.count_nonzero((d["vm"].row_min < lo) | (d["vm"].row_max > hi)))
        no = int(np.count_nonzero(d["line"].row_max > 100))
    return [
        (f"Steps with voltage outside {_f(lo, '.2f')}-{_f(hi, '.2f')} pu", str(nv)),
        ("Steps with line overloads", str(no)),
    ]


def _load(f: h5py.File) -> dict[str, Any]:
    """Read and reduce everything the report needs, one dataset at a time."""
    time = np.asarray(f["time"][()], dtype=np.int64).ravel()
    t = time.size
    step_s = int(_attr(f, "step_s", 0) or (time[1] - time[0] if t > 1 else 3600))
    d: dict[str, Any] = {"T": t, "time": time, "dt": time.astype("datetime64[s]")}
    d["step_h"] = step_s / 3600
    g = f.get
    d["vm"], d["line"], d["trafo"] = (
        _reduce(g(p), t)
        for p in ("grid/bus/vm_pu", "grid/line/loading_percent", "grid/trafo/loading_percent")
    )
    d["bus_name"], d["bus_index"] = _strs(g("grid/bus/name")), _ints(g("grid/bus/index"))
    d["vn_kv"] = _vec(g("grid/bus/vn_kv"), len(d["bus_index"]))
    d["line_name"], d["trafo_name"] = _strs(g("grid/line/name")), _strs(g("grid/trafo/name"))
    for k in ("line/from_bus", "line/to_bus", "trafo/hv_bus", "trafo/lv_bus"):
        d[k.split("/")[1]] = _ints(g("grid/" + k))
    d["losses"], d["imp"] = _vec(g("grid/losses_mw"), t), _vec(g("grid/import_mw"), t)
    conv = g("grid/converged")
    d["nonconv"] = int(t - np.count_nonzero(conv[()])) if conv is not None else 0
    kinds = _strs(g("agents/kind"))
    d["kinds"], pos, neg = kinds, np.zeros(len(kinds)), np.zeros(len(kinds))
    for blk in _chunks(g("agents/p_mw")):
        pos += np.nansum(np.clip(blk, 0, None), axis=0) * d["step_h"]
        neg += np.nansum(np.clip(blk, None, 0), axis=0) * d["step_h"]
    d["energy"] = {
        k: (float(pos[m].sum()), float(neg[m].sum())) for k in set(kinds) for m in [np.array(kinds) == k]
    }
    d["soc"] = _reduce(g("agents/soc_mwh"), t).row_mean
    text = str(_attr(f, "scenario_yaml"))
    d["battery"] = (  # capacity (MWh) and SoC limits (share) of the home batteries, as the scenario says
        float(_yaml_get(text, ("agents", "battery", "capacity_kwh"), 10.0)) / 1000,
        float(_yaml_get(text, ("agents", "battery", "soc_min"), 0.05)),
        float(_yaml_get(text, ("agents", "battery", "soc_max"), 0.95)),
    )
    return d


def _extreme(f: h5py.File, d: dict[str, Any], key: str, path: str, names: str, hi: bool) -> str:
    """Describe the global extreme of a (T, n) dataset: value, element name and time."""
    row = d[key].row_max if hi else d[key].row_min
    if not np.isfinite(row).any():
        return "n/a"
    ti = int(np.nanargmax(row) if hi else np.nanargmin(row))
    vals = np.asarray(f[path][ti], dtype=float)
    j = int(np.nanargmax(vals) if hi else np.nanargmin(vals))
    name = d[names][j] if j < len(d[names]) else str(j)
    return f"{_f(row[ti], '.4f')} at {html.escape(name)}, {d['dt'][ti]} UTC"


@dataclass
class GridSection:
    """The grid part of a run report (the :class:`~analysis.common.Section` protocol)."""

    d: dict[str, Any]
    title: str = "Grid"

    def rows(self) -> list[tuple[str, str]]:
        """Violation counts (the other grid rows are in the summary)."""
        return _violation_rows(self.d)

    def findings(self) -> list[str]:
        """Voltage band, loading, losses and import, from the reduced data."""
        d, h = self.d, self.d["step_h"]
        vlo, vhi = (
            np.nanmin(d["vm"].row_min) if _any(d["vm"].row_min) else np.nan,
            np.nanmax(d["vm"].row_max) if _any(d["vm"].row_max) else np.nan,
        )
        lmax = np.nanmax(d["line"].row_max) if _any(d["line"].row_max) else np.nan
        lo, hi = V_LIMITS
        with np.errstate(invalid="ignore"):
            n_v = int(np.count_nonzero((d["vm"].row_min < lo) | (d["vm"].row_max > hi)))
            n_o = int(np.count_nonzero(d["line"].row_max > 100))
            n_80 = int(np.count_nonzero(d["line"].row_max > 80))
        out = [
            f"Voltages stayed within {fmt(vlo, '.3f')}–{fmt(vhi, '.3f')} pu; {n_v:,} of {d['T']:,} "
            "steps had a bus "
            f"outside {lo:.2f}–{hi:.2f} pu.",
            f"The most loaded line peaked at {fmt(lmax, '.1f', ' %')} of its rating; {n_o:,} steps "
            "overloaded a line "
            f"and {n_80:,} loaded one above 80 %" + (" — the grid never binds." if n_80 == 0 else "."),
        ]
        loss, imp = float(np.nansum(d["losses"]) * h), np.nan_to_num(d["imp"])
        cons = sum(p for p, _ in d["energy"].values())
        out.append(
            f"Losses were {_energy(loss)} ({share_of(loss, cons)} of the agents' consumption); the "
            "grid imported "
            f"{_energy(float(imp.clip(0, None).sum() * h))} and exported "
            f"{_energy(float(-imp.clip(None, 0).sum() * h))}."
        )
        return out

    def figures(self) -> list[Fig]:
        """The five grid figures, captioned."""
        d = self.d
        return [
            Fig(
                "voltage_envelope.png",
                plot_voltage(d),
                "Lowest and highest bus voltage in every step (band) and their mean (black line) against the "
                "0.95 and 1.05 pu limits (red, dashed). A band touching a limit means a bus at the "
                "edge of the "
                "statutory range: under-voltage at peak load, over-voltage at peak PV.",
            ),
            Fig(
                "loading_duration.png",
                plot_duration(d),
                "Duration curves of the most loaded line and transformer: the loading (y) reached "
                "or exceeded "
                "for that many hours (x). Where a curve crosses the 100 % line the grid binds; its "
                "length at the "
                "left shows for how many hours.",
            ),
            Fig(
                "losses_import.png",
                plot_losses_import(d),
                "Network losses (top) and the power drawn from the upstream grid (bottom; negative "
                "= export), in "
                "kW when they stay below 1 MW. Long runs show daily means (line, drawn at midday) "
                "and ranges (band).",
            ),
            Fig(
                "network.png",
                plot_network(d),
                "The network as a tree from the upstream bus (top) down its feeders: buses coloured by their "
                "lowest voltage over the run, lines (solid) and transformers (dashed, squares) by "
                "their highest "
                "loading. Look for yellow (high-loading) branches and dark (low-voltage) buses at "
                "feeder ends.",
            ),
            Fig(
                "agents.png",
                plot_agents(d),
                "Top: energy per agent kind over the run, consumption (red, +) and injection "
                "(green, -), net as a "
                "diamond. Bottom (with batteries): mean state of charge in % of the configured "
                "capacity, between "
                "its allowed limits; a flat line at a limit means the batteries do not cycle.",
            ),
        ]


def _any(x: Arr) -> bool:
    """Any finite value."""
    return bool(np.isfinite(x).any())


def _energy(mwh: float) -> str:
    """Energy in kWh below 1 MWh, else MWh, with separators."""
    return num(mwh * 1000, 1, " kWh") if abs(mwh) < 1 else num(mwh, 3, " MWh")


def share_of(part: float, whole: float) -> str:
    """part / whole in %, 'n/a' when whole is 0."""
    return num(100 * part / whole, 1, " %") if whole else "n/a"


@dataclass
class MarketSection:
    """The market part of a run report (the :class:`~analysis.common.Section` protocol)."""

    d: dict[str, Any]
    m: dict[str, Any]

    @property
    def title(self) -> str:
        """Section heading."""
        return f"Market ({self.m['design']})"

    def rows(self) -> list[tuple[str, str]]:
        """Market summary rows."""
        return _market_rows(self.m, self.d["T"])

    def findings(self) -> list[str]:
        """Price level and spread, separation across buses, congestion, unserved energy."""
        d, m = self.d, self.m
        p: _Stats = m["price"]
        mean = p.row_mean[np.isfinite(p.row_mean)]
        out = []
        if mean.size:
            mode = float(pd.Series(np.round(mean, 2)).mode().iloc[0])
            at_mode = float(np.mean(np.abs(mean - mode) < 0.005))
            out.append(
                f"The mean price was {fmt(float(mean.mean()), '.2f', ' $/MWh')} (range "
                f"{fmt(float(np.nanmin(p.row_min)), '.2f')}"
                f"–{fmt(float(np.nanmax(p.row_max)), '.2f')} $/MWh); {num(100 * at_mode, 1, ' %')} "
                "of the cleared steps "
                f"were at the single most common price, {fmt(mode, '.2f', ' $/MWh')}."
            )
            spread = (p.row_max - p.row_min)[np.isfinite(p.row_max)]
            n_sep = int(np.count_nonzero(spread > 0.01))
            out.append(
                f"Prices separated across buses (spread > 0.01 $/MWh) in {n_sep:,} of "
                f"{spread.size:,} steps; the "
                f"congestion rent was {money(float(np.nansum(m['congestion_rent'])))}."
            )
        un = float(np.nansum(m["unserved_mwh"]))
        out.append(
            f"{int(np.count_nonzero(~m['ok'])):,} of {d['T']:,} clearings failed; unserved energy "
            f"{_energy(un)}; "
            f"welfare {money(float(np.nansum(m['welfare'])))} (inelastic demand valued at "
            f"{m['voll']:,.0f} $/MWh)."
        )
        return out

    def figures(self) -> list[Fig]:
        """The four market figures, captioned."""
        d, m = self.d, self.m
        return [
            Fig(
                MARKET_FIGS[0],
                plot_price_duration(d, m),
                "Price duration curves: the price (y) reached or exceeded for that many hours (x, "
                "bottom; share of "
                "the run on top), for the cheapest, mean and dearest bus of each step. Flat "
                "stretches are hours at "
                "one price (often the import tariff); a gap between min and max is congestion.",
            ),
            Fig(
                MARKET_FIGS[1],
                plot_lmp_heatmap(d, m),
                "Energy price per bus (rows) over time (columns; daily means beyond a week). Equal "
                "rows mean one "
                "price everywhere; a row that differs marks a bus behind a binding constraint."
                + (" Grey cells are failed clearings." if (~m["ok"]).any() else ""),
            ),
            Fig(
                MARKET_FIGS[2],
                plot_market_volume(d, m),
                "Social welfare (top; inelastic demand valued at the value of lost load, "
                f"{m['voll']:,.0f} $/MWh, so "
                "its level mostly reflects that assumption — compare changes, not levels), cleared "
                "and unserved "
                "energy (middle), generation cost and congestion rent (bottom).",
            ),
            Fig(
                MARKET_FIGS[3],
                plot_ac_gap(d, m),
                "What the market's physics left out, checked by the AC power flow: losses, buses outside the "
                "voltage limits and lines above their rating per step. Panels noted 'none in any "
                "step' had none.",
            ),
        ]


def _versions(text: str) -> str:
    """The versions attribute (JSON) as a small HTML table, the raw text when it is not a JSON object."""
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not doc:
        return html.escape(text)
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in doc.items()
    )
    return f"<table class='versions'>{rows}</table>"


def write_report(h5_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write figures and index.html for one run; return the HTML path.

    out_dir defaults to '<h5 stem>_report/' beside the file. Every figure is saved with a caption, every
    section opens with key findings written from the run's numbers.
    """
    h5_path = Path(h5_path)
    out = Path(out_dir) if out_dir is not None else h5_path.with_name(f"{h5_path.stem}_report")
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(h5_path, "r") as f:
        d = _load(f)
        grid = "grid" in f or "agents" in f  # else the ledger ran alone on a workload
        m = _load_market(f, d)
        vmin = _extreme(f, d, "vm", "grid/bus/vm_pu", "bus_name", hi=False)
        vmax = _extreme(f, d, "vm", "grid/bus/vm_pu", "bus_name", hi=True)
        lmax = _extreme(f, d, "line", "grid/line/loading_percent", "line_name", hi=True)
        meta = {k: str(_attr(f, k)) for k in ("name", "seed", "code_version", "versions")}
        complete = bool(_attr(f, "complete", True))
        yaml_text = str(_attr(f, "scenario_yaml"))
        led = ledger_report.load_ledger(f)
        soc = society_report.load_society(f)
        unc = uncertainty_report.load_uncertainty(f)
        mp = market_power_report.load_market_power(f)
        pol = bidding_report.load_policies(f, meta["name"] or h5_path.stem)
    sections: list[Section] = []
    if grid:
        sections.append(GridSection(d))
    if m is not None:
        sections.append(MarketSection(d, m))
    if mp is not None:
        sections.append(market_power_report.MarketPowerSection(mp))
    if pol:
        sections.append(bidding_report.PolicySection(pol))
    if led is not None:
        sections.append(ledger_report.LedgerSection(led))
    if soc is not None:
        sections.append(society_report.SocietySection(soc))
    if unc is not None:
        sections.append(uncertainty_report.UncertaintySection(unc))
    h, t = d["step_h"], d["T"]
    imp = np.nan_to_num(d["imp"])
    counts = ", ".join(f"{k} {d['kinds'].count(k):,}" for k in sorted(set(d["kinds"])))
    rows: list[tuple[str, str]] = [
        ("Run name", html.escape(meta["name"] or h5_path.stem)),
        ("Period", f"{d['dt'][0]} – {d['dt'][-1]} UTC" if t else "empty"),
        ("Steps", f"{t:,}"),
        ("Step length", f"{_f(h * 3600, '.0f')} s"),
        (
            "Buses / lines / trafos",
            f"{len(d['bus_index']):,} / {len(d['from_bus']):,} / {len(d['hv_bus']):,}",
        ),
        ("Agents", f"{len(d['kinds']):,} ({html.escape(counts)})"),
        ("Non-converged steps", f"{d['nonconv']:,}"),
        ("Min voltage (pu)", vmin),
        ("Max voltage (pu)", vmax),
        ("Max line loading (%)", lmax),
        *_violation_rows(d),
        ("Total losses", f"{_f(np.nansum(d['losses']) * h, '.3f')} MWh"),
        ("Total import (net)", f"{_f(imp.sum() * h, '.3f')} MWh"),
        ("Import (positive part)", f"{_f(imp.clip(0, None).sum() * h, '.3f')} MWh"),
        ("Export (negative part)", f"{_f(-imp.clip(None, 0).sum() * h, '.3f')} MWh"),
    ]
    if not grid:
        rows = rows[:4]
    for k in sorted(d["energy"]):
        p, n = d["energy"][k]
        rows.append(
            (f"Energy {html.escape(k)}", f"{_f(p + n, '.3f')} MWh (+{_f(p, '.3f')} / {_f(n, '.3f')})")
        )
    for sec in sections[1 if grid else 0 :]:
        rows += sec.rows()
    rows += [("Seed", html.escape(meta["seed"])), ("Code version", html.escape(meta["code_version"]))]
    rows.append(("Versions", _versions(meta["versions"])))
    body = "".join(render_section(sec, out) for sec in sections)
    title = html.escape(f"Run report: {meta['name'] or h5_path.stem}")
    if not complete:  # a stopped or killed run: say so where nobody can miss it
        title = html.escape(f"INCOMPLETE run ({t} steps recorded before it stopped) - ") + title
    page_body = (
        f"<h2>Summary</h2>\n{table(rows, 'summary')}\n{body}"
        f"<details><summary>Scenario YAML</summary><pre>{html.escape(yaml_text)}</pre></details>"
    )
    path = out / "index.html"
    path.write_text(page(title, page_body), encoding="utf-8")
    return path


def _run_column(h5_path: Path) -> tuple[str, dict[str, str], Arr | None, float]:
    """One run of a comparison: its name, {row label: cell}, per-step mean price (None without market), T."""
    with h5py.File(h5_path, "r") as f:
        d = _load(f)
        m = _load_market(f, d, figures=False)
        name = str(_attr(f, "name")) or h5_path.stem
        unc = uncertainty_report.load_uncertainty(f)
    h, t = d["step_h"], d["T"]
    lo = d["vm"].row_min[np.isfinite(d["vm"].row_min)]
    hi = d["line"].row_max[np.isfinite(d["line"].row_max)]
    cells: dict[str, str] = {
        "File": html.escape(h5_path.name),
        "Market design": "none" if m is None else html.escape(m["design"]),
        "Period": f"{d['dt'][0]} – {d['dt'][-1]} UTC" if t else "empty",
        "Steps": f"{t} of {_f(h * 3600, '.0f')} s",
    }
    if m is not None:
        cells |= dict(_market_rows(m, t)[1:])
    cells |= {
        "Total losses": f"{_f(np.nansum(d['losses']) * h, '.3f')} MWh",
        "Total import (net)": f"{_f(np.nansum(d['imp']) * h, '.3f')} MWh",
        "Min voltage (pu)": fmt(float(lo.min()) if lo.size else np.nan, ".4f"),
        "Max line loading (%)": fmt(float(hi.max()) if hi.size else np.nan, ".1f"),
        "Non-converged steps": str(d["nonconv"]),
        **dict(_violation_rows(d)),
    }
    if unc is not None:
        cells |= dict(uncertainty_report.uncertainty_rows(unc))
    return name, cells, None if m is None else m["price"].row_mean, float(t)


def plot_compare_prices(runs: list[tuple[str, str, Arr | None, float]]) -> Figure:
    """Overlaid duration curves of the per-step mean price of every run with a market (x = % of its steps)."""
    fig = Figure(figsize=(8, 4), layout="tight")
    ax = fig.add_subplot()
    drawn = False
    for name, design, price, t in runs:
        xy = None if price is None else _duration_xy(price, 100 / max(t, 1))
        if xy is not None:
            ax.step(*xy, where="post", lw=1.2, marker="." if t < 50 else None, label=f"{name} ({design})")
            drawn = True
    if drawn:
        ax.legend(loc="best", fontsize=8)
    else:
        _note(ax, "no run with cleared market prices")
    ax.set(
        title="Price duration curves (mean price over buses)",
        xlabel="share of the run's steps (%)",
        ylabel="price ($/MWh)",
    )
    return fig


def _compare_findings(runs: list[tuple[str, str, Arr | None, float]]) -> list[str]:
    """Per run with a market: mean price, share of steps at its most common price; the cheapest run."""
    out, means = [], []
    for name, design, price, _ in runs:
        p = np.zeros(0) if price is None else price[np.isfinite(price)]
        if not p.size:
            continue
        mode = float(pd.Series(np.round(p, 2)).mode().iloc[0])
        at = float(np.mean(np.abs(p - mode) < 0.005))
        means.append((float(p.mean()), name))
        out.append(
            f"{html.escape(name)} ({html.escape(design)}): mean price "
            f"{fmt(float(p.mean()), '.2f', ' $/MWh')}, "
            f"{num(100 * at, 1, ' %')} of its steps at {fmt(mode, '.2f', ' $/MWh')}."
        )
    if len(means) > 1:
        lo, hi = min(means), max(means)
        out.append(
            f"{html.escape(lo[1])} has the lowest mean price, {fmt(hi[0] - lo[0], '.2f', ' $/MWh')} below "
            f"{html.escape(hi[1])}."
        )
    return out


def compare_runs(h5_paths: list[Path], out_dir: Path) -> Path:
    """Write comparison.html (one column per run) and comparison_prices.png into out_dir; return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = [_run_column(Path(p)) for p in h5_paths]
    labels: list[str] = []
    for _, cells, _, _ in cols:
        labels += [k for k in cells if k not in labels]
    design = "Market design"
    runs = [(n, html.unescape(c[design]), p, t) for n, c, p, t in cols]
    cap = (
        "Price duration curves of every run with a market: the bus-mean price (y) reached or "
        "exceeded in that "
        "share of the run's steps (x). A curve lower and flatter is a cheaper, steadier market."
    )
    fig = save([Fig("comparison_prices.png", plot_compare_prices(runs), cap)], out)
    head = "<tr><th>Run</th>" + "".join(f"<th>{html.escape(n)}</th>" for n, _, _, _ in cols) + "</tr>"
    body_rows = [
        f"<tr><th>{k}</th>" + "".join(f"<td>{c.get(k, '–')}</td>" for _, c, _, _ in cols) + "</tr>"
        for k in labels
    ]
    grid = "\n".join([head, *body_rows])
    title = html.escape(f"Comparison of {len(cols)} runs")
    head_findings = findings(_compare_findings(runs))
    body = f"{head_findings}\n<table id='comparison'>\n{grid}\n</table>\n<h2>Prices</h2>\n{fig}"
    named = [(n, Path(p)) for (n, *_), p in zip(cols, h5_paths, strict=True)]
    body += ledger_report.ledger_comparison(named, out) + society_report.society_comparison(named, out)
    body += bidding_report.bidding_comparison(named, out)
    path = out / "comparison.html"
    path.write_text(page(title, body), encoding="utf-8")
    return path
