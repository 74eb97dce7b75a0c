"""HTML + PNG report for one run's HDF5 file (reads h5py only, no model imports)."""

from __future__ import annotations

import html
from collections.abc import Iterator
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
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

CHUNK = 2048
DPI = 110
V_LIMITS = (0.95, 1.05)  # pu; bus limits are not in the file
Arr = np.ndarray[Any, Any]
MARKET_FIGS = ("price_duration.png", "lmp_heatmap.png", "market_volume.png", "ac_gap.png")
PHYSICS = {
    "uniform": "approximate physics: copper plate, no network, no losses, no voltage or line limits",
    "dcopf": "approximate physics: linearised lossless DC flows, line limits, no voltage or reactive power",
    "acopf": "AC physics in the market too, but cleared on forecasts: gaps show forecast and model mismatch",
}


@dataclass
class _Stats:
    """Per-step (row) and per-column reductions of a (T, n) dataset."""

    row_min: Arr
    row_max: Arr
    row_mean: Arr
    col_min: Arr
    col_max: Arr


def _chunks(ds: h5py.Dataset | None) -> Iterator[Arr]:
    """Yield float blocks of a 2-D dataset in time chunks."""
    if ds is None or ds.ndim != 2 or ds.shape[1] == 0:
        return
    for i in range(0, ds.shape[0], CHUNK):
        yield np.asarray(ds[i : i + CHUNK], dtype=float)


def _reduce(ds: h5py.Dataset | None, t: int) -> _Stats:
    """Chunked NaN-ignoring min/max/mean over columns and over time."""
    n = 0 if ds is None or ds.ndim != 2 else ds.shape[1]
    nan_t, nan_n = np.full(t, np.nan), np.full(n, np.nan)
    s = _Stats(nan_t.copy(), nan_t.copy(), nan_t.copy(), nan_n.copy(), nan_n.copy())
    i = 0
    for blk in _chunks(ds):
        k = slice(i, i + len(blk))
        s.row_min[k], s.row_max[k] = np.fmin.reduce(blk, axis=1), np.fmax.reduce(blk, axis=1)
        cnt = np.isfinite(blk).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            s.row_mean[k] = np.where(cnt > 0, np.nansum(blk, axis=1) / cnt, np.nan)
        s.col_min = np.fmin(s.col_min, np.fmin.reduce(blk, axis=0))
        s.col_max = np.fmax(s.col_max, np.fmax.reduce(blk, axis=0))
        i += len(blk)
    return s


def _strs(ds: h5py.Dataset | None) -> list[str]:
    """Decode a 1-D string dataset (bytes or str) into a list of str."""
    if ds is None:
        return []
    if h5py.check_string_dtype(ds.dtype) is not None:
        return [str(x) for x in ds.asstr()[()]]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]


def _ints(ds: h5py.Dataset | None) -> Arr:
    """Read an integer 1-D dataset, empty if missing."""
    return np.zeros(0, dtype=int) if ds is None else np.asarray(ds[()], dtype=int).ravel()


def _vec(ds: h5py.Dataset | None, t: int) -> Arr:
    """Read a float 1-D time series, NaN if missing."""
    return np.full(t, np.nan) if ds is None else np.asarray(ds[()], dtype=float).ravel()


def _attr(f: h5py.File, key: str, default: Any = "") -> Any:
    """Root attribute, bytes decoded."""
    v = f.attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


def _note(ax: Axes, text: str) -> None:
    """Write a centred note on an axis (used for empty or all-NaN data)."""
    box = {"facecolor": "white", "edgecolor": "grey"}
    ax.text(0.5, 0.6, text, transform=ax.transAxes, ha="center", color="grey", bbox=box)


def _dates(ax: Axes) -> None:
    """Format an x axis as concise dates."""
    loc = AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))


def _long(d: dict[str, Any], days: float) -> bool:
    """The run spans more than this many days."""
    return bool(d["T"] > 1 and (d["time"][-1] - d["time"][0]) > days * 86400)


def _save(fig: Figure, path: Path) -> str:
    """Save and release a figure; return its file name."""
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path.name


def _fig_voltage(d: dict[str, Any], out: Path) -> str:
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
        ax.axhline(lim, ls="--", color="red", lw=1, label=f"{lim:.2f} pu limit")
    if not np.isfinite(v.row_min).any():
        _note(ax, "no voltage data (all steps failed or no buses)")
    ax.set(title="Bus voltage envelope", xlabel="time (UTC)", ylabel="voltage (pu)")
    _dates(ax)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out / "voltage_envelope.png")


def _fig_duration(d: dict[str, Any], out: Path) -> str:
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
    return _save(fig, out / "loading_duration.png")


def _fig_losses_import(d: dict[str, Any], out: Path) -> str:
    """Losses and grid import over time (daily mean with min-max band for long runs)."""
    fig = Figure(figsize=(10, 5.5), layout="tight")
    axes = fig.subplots(2, 1, sharex=True)
    long_run = _long(d, 30)
    spec = (("losses", "Grid losses"), ("imp", "Grid import (+) / export (-)"))
    for ax, (key, title) in zip(axes, spec, strict=True):
        s = pd.Series(d[key], index=pd.DatetimeIndex(d["dt"]))
        if long_run:
            g = s.resample("D").agg(["mean", "min", "max"])
            ax.fill_between(g.index, g["min"], g["max"], alpha=0.3, label="daily min-max")
            ax.plot(g.index, g["mean"], lw=1, label="daily mean")
        else:
            ax.plot(s.index, s.to_numpy(), lw=1, marker="." if d["T"] < 50 else None, label=title)
        if not np.isfinite(d[key]).any():
            _note(ax, "no data")
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=title, ylabel="power (MW)")
        ax.legend(loc="best", fontsize=8)
    axes[1].set_xlabel("time (UTC)")
    _dates(axes[1])
    return _save(fig, out / "losses_import.png")


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
                    seen[w], pos[w, 1] = True, pos[v, 1] - 1
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


def _fig_network(d: dict[str, Any], out: Path) -> str:
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
        return _save(fig, out / "network.png")
    deg = np.bincount(np.array(le + te, dtype=int).ravel(), minlength=n) if le + te else np.zeros(n)
    root = max((i for i, _ in te), key=lambda i: d["vn_kv"][i], default=int(np.argmax(deg)))
    pos = _tree_layout(n, le + te, root)
    loads = np.array(ll + tl, dtype=float)
    lmax = np.nanmax(loads) if np.isfinite(loads).any() else 100.0
    lnorm, lcmap = Normalize(0, max(100.0, float(lmax))), colormaps["plasma"]

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
        ax.scatter(mid[:, 0], mid[:, 1], marker="s", s=80, c=colours(tl, lnorm, lcmap),
                   edgecolors="black", zorder=3)  # fmt: skip
    vmin = d["vm"].col_min
    fin = vmin[np.isfinite(vmin)]
    lo, hi = (float(fin.min()), float(fin.max())) if fin.size else (0.95, 1.05)
    vnorm = Normalize(min(0.95, lo), max(1.05, hi))
    vcmap = colormaps["viridis"]
    ax.scatter(pos[:, 0], pos[:, 1], c=colours(vmin, vnorm, vcmap), s=60, edgecolors="black",
               zorder=4)  # fmt: skip
    if n <= 40:
        for i, name in enumerate(d["bus_name"]):
            ax.annotate(name, pos[i], xytext=(4, 4), textcoords="offset points", fontsize=7)
    fig.colorbar(ScalarMappable(vnorm, vcmap), ax=ax, label="min bus voltage over run (pu)")
    fig.colorbar(ScalarMappable(lnorm, lcmap), ax=ax, label="max branch loading over run (%)")
    handles = [Line2D([], [], color="k", lw=2, label="line"),
               Line2D([], [], color="k", lw=3, ls="--", marker="s", label="trafo")]  # fmt: skip
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.autoscale()
    ax.margins(0.08)
    ax.set(title="Network overview (grey = no data)", xlabel="tree position (-)",
           ylabel="depth from root bus (-)")  # fmt: skip
    return _save(fig, out / "network.png")


def _fig_agents(d: dict[str, Any], out: Path) -> str:
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
        axes[1].plot(d["dt"], d["soc"], marker="." if d["T"] < 50 else None, label="mean SoC")
        axes[1].set(title="Battery state of charge (mean over storages)", xlabel="time (UTC)",
                    ylabel="state of charge (MWh)")  # fmt: skip
        axes[1].legend(loc="best", fontsize=8)
        _dates(axes[1])
    return _save(fig, out / "agents.png")


def _duration_xy(row: Arr, scale: float) -> tuple[Arr, Arr] | None:
    """Duration curve of a series (NaN dropped, sorted descending) as step-'post' data from x=0."""
    y = np.sort(row[np.isfinite(row)])[::-1]
    if not y.size:
        return None
    return np.arange(y.size + 1, dtype=float) * scale, np.append(y, y[-1])


def _fig_price_duration(d: dict[str, Any], m: dict[str, Any], out: Path) -> str:
    """Price duration curves of the per-step min, mean and max price over buses."""
    fig = Figure(figsize=(8, 4), layout="tight")
    ax = fig.add_subplot()
    p: _Stats = m["price"]
    h, total_h = d["step_h"], max(d["T"] * d["step_h"], 1e-9)
    mk = "." if d["T"] < 50 else None
    spec = ((p.row_max, "max over buses", "tab:red", 0.8), (p.row_mean, "mean over buses", "black", 1.2),
            (p.row_min, "min over buses", "tab:blue", 0.8))  # fmt: skip
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
    ax.set(title=f"Price duration curve, {m['design']} market{extra}", xlabel="hours at or above (h)",
           ylabel="price ($/MWh)")  # fmt: skip

    def share(x: ArrayLike) -> Arr:
        return np.asarray(x, dtype=float) * (100 / total_h)

    def hours(q: ArrayLike) -> Arr:
        return np.asarray(q, dtype=float) * (total_h / 100)

    sec = ax.secondary_xaxis("top", functions=(share, hours))
    sec.set_xlabel("share of the run (%)")
    if failed:
        ax.plot([], [], " ", label=f"{failed} failed clearing(s) left out")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, out / "price_duration.png")


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


def _fig_lmp_heatmap(d: dict[str, Any], m: dict[str, Any], out: Path) -> str:
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
        equal = (
            "\nuniform design: one price for all buses, rows are equal"
            if m["design"] == "uniform"
            else "\nsame price at every bus in every step (no congestion): rows are equal"
        )
    ax.set(title=f"Energy price by bus ({what}, {m['design']} market; grey = failed clearing){equal}",
           xlabel="time (UTC)", ylabel="bus" if n_bus <= 40 else "bus (position in the file)")  # fmt: skip
    return _save(fig, out / "lmp_heatmap.png")


def _series_plot(ax: Axes, d: dict[str, Any], y: Arr, how: str, long_run: bool, **kw: Any) -> bool:
    """Plot a time series per step, or aggregated per day ('sum', 'mean', 'max') for long runs."""
    s = pd.Series(y, index=pd.DatetimeIndex(d["dt"]))
    if long_run:
        r = s.resample("D")
        s = r.sum(min_count=1) if how == "sum" else r.agg(how)
    ax.plot(s.index, s.to_numpy(dtype=float), lw=1, marker="." if len(s) < 50 else None, **kw)
    return bool(np.isfinite(s.to_numpy(dtype=float)).any())


def _fig_market_volume(d: dict[str, Any], m: dict[str, Any], out: Path) -> str:
    """Welfare, cleared volume (with unserved energy), cost and congestion rent over time."""
    fig = Figure(figsize=(10, 8), layout="tight")
    axes = fig.subplots(3, 1, sharex=True)
    long_run = _long(d, 30)
    per = "daily sums" if long_run else "per step"
    spec = (
        (axes[0], (("welfare", "welfare", "tab:green"),), "Social welfare", "money ($)"),
        (axes[1], (("cleared_mwh", "cleared", "tab:blue"), ("unserved_mwh", "unserved", "tab:red")),
         "Cleared volume", "energy (MWh)"),
        (axes[2], (("cost", "generation cost", "tab:orange"),
                   ("congestion_rent", "congestion rent", "tab:purple")),
         "Cost and congestion rent", "money ($)"),
    )  # fmt: skip
    for ax, lines, title, unit in spec:
        drawn = [_series_plot(ax, d, m[k], "sum", long_run, color=c, label=lab) for k, lab, c in lines]
        if not any(drawn):
            _note(ax, "no data (every clearing failed)")
        ax.axhline(0, color="black", lw=0.5)
        ax.set(title=f"{title} ({per})", ylabel=unit)
    bad = ~m["ok"]
    if bad.any():
        axes[0].plot(d["dt"][bad], np.zeros(int(bad.sum())), "x", color="grey", label="failed clearing")
    for ax in axes:
        ax.legend(loc="best", fontsize=8)
    axes[2].set_xlabel("time (UTC)")
    _dates(axes[2])
    return _save(fig, out / "market_volume.png")


def _fig_ac_gap(d: dict[str, Any], m: dict[str, Any], out: Path) -> str:
    """What the market's physics missed: losses, voltage violations and overloads per step."""
    fig = Figure(figsize=(10, 8), layout="tight")
    axes = fig.subplots(3, 1, sharex=True)
    long_run = _long(d, 30)
    design = m["design"]
    lo, hi = V_LIMITS
    losses = (
        "Grid losses (the market models them)"
        if design == "acopf"
        else "Grid losses a lossless market ignores"
    )
    spec = (
        (d["losses"], losses, "power (MW)", "mean", "tab:blue"),
        (m["n_vbad"], f"Buses outside {lo:.2f}-{hi:.2f} pu", "buses (-)", "max", "tab:red"),
        (m["n_over"], "Lines above 100 % loading", "lines (-)", "max", "tab:purple"),
    )
    for ax, (y, title, unit, how, colour) in zip(axes, spec, strict=True):
        label = f"daily {how}" if long_run else "per step"
        if not _series_plot(ax, d, y, how, long_run, color=colour, label=label):
            _note(ax, "no data (power flow failed)")
        if how == "max":  # counts: integer ticks, zero visible
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            top = float(np.nanmax(y)) if np.isfinite(y).any() else 0.0
            ax.set_ylim(-0.5, max(1.0, top) + 0.5)
        ax.set(title=title, ylabel=unit)
        ax.legend(loc="best", fontsize=8)
    fig.suptitle(f"What the {design} market's physics missed\n{PHYSICS.get(design, 'unknown market design')}",
                 fontsize=11)  # fmt: skip
    axes[2].set_xlabel("time (UTC)")
    _dates(axes[2])
    return _save(fig, out / "ac_gap.png")


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


def _num(x: float, fmt: str, unit: str = "") -> str:
    """Format a number with unit, 'n/a' when not finite."""
    return f"{x:{fmt}}{unit}" if np.isfinite(x) else "n/a"


def _market_rows(m: dict[str, Any], t: int) -> list[tuple[str, str]]:
    """Summary rows of the market: design, totals, failed clearings, prices and trades."""
    p: _Stats = m["price"]
    fin = np.isfinite(p.row_mean)
    prices = (
        " / ".join(
            f"{v:.2f}" for v in (np.mean(p.row_mean[fin]), np.min(p.row_min[fin]), np.max(p.row_max[fin]))
        )
        + " $/MWh"
        if fin.any()
        else "n/a"
    )
    return [
        ("Market design", html.escape(m["design"])),
        ("Total cleared energy", f"{np.nansum(m['cleared_mwh']):.3f} MWh"),
        ("Total welfare", f"{np.nansum(m['welfare']):.2f} $"),
        ("Total generation cost", f"{np.nansum(m['cost']):.2f} $"),
        ("Total congestion rent", f"{np.nansum(m['congestion_rent']):.2f} $"),
        ("Unserved energy", f"{np.nansum(m['unserved_mwh']):.3f} MWh"),
        ("Failed clearings", f"{int(np.count_nonzero(~m['ok']))} of {t}"),
        ("Price mean / min / max", prices),
        ("Trades", str(m["n_trades"])),
        ("Traded energy", f"{m['traded_mwh']:.3f} MWh"),
        ("Net agent payments", f"{m['payments']:.2f} $"),
    ]


def _violation_rows(d: dict[str, Any]) -> list[tuple[str, str]]:
    """Steps with a bus outside the voltage limits and steps with a line above 100 %."""
    lo, hi = V_LIMITS
    with np.errstate(invalid="ignore"):
        nv = int(np.count_nonzero((d["vm"].row_min < lo) | (d["vm"].row_max > hi)))
        no = int(np.count_nonzero(d["line"].row_max > 100))
    return [
        (f"Steps with voltage outside {lo:.2f}-{hi:.2f} pu", str(nv)),
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
    return f"{row[ti]:.4f} at {html.escape(name)}, {d['dt'][ti]} UTC"


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 10px;"
    "text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd}"
    "pre{background:#f7f7f7;padding:1em;overflow:auto}figure{margin:1.5em 0}"
)


def _page(title: str, body: str) -> str:
    """A whole HTML page; title must already be escaped."""
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
    )


def _imgs(figs: list[str]) -> str:
    """HTML figures for PNG file names."""
    return "\n".join(f'<figure><img src="{fn}" alt="{fn}"></figure>' for fn in figs)


def write_report(h5_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write figures and index.html for one run; return the HTML path. out_dir defaults to '<h5 stem>_report/' beside the file."""  # noqa: E501
    from .bidding_report import policy_section  # late: it imports this module
    from .ledger_report import ledger_figures, ledger_rows, load_ledger  # late: it imports this module
    from .market_power_report import load_market_power, market_power_rows, market_power_section  # late
    from .society_report import load_society, society_rows, society_section  # late: imports this module
    from .uncertainty_report import load_uncertainty, uncertainty_rows, uncertainty_section  # late: same

    h5_path = Path(h5_path)
    out = Path(out_dir) if out_dir is not None else h5_path.with_name(f"{h5_path.stem}_report")
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(h5_path, "r") as f:
        d = _load(f)
        grid = "grid" in f or "agents" in f  # else the ledger ran alone on a workload
        figs = [fn(d, out) for fn in (_fig_voltage, _fig_duration, _fig_losses_import,
                                     _fig_network, _fig_agents)] if grid else []  # fmt: skip
        m = _load_market(f, d)
        mfigs = [] if m is None else [fn(d, m, out) for fn in (_fig_price_duration, _fig_lmp_heatmap,
                                                               _fig_market_volume, _fig_ac_gap)]  # fmt: skip
        vmin = _extreme(f, d, "vm", "grid/bus/vm_pu", "bus_name", hi=False)
        vmax = _extreme(f, d, "vm", "grid/bus/vm_pu", "bus_name", hi=True)
        lmax = _extreme(f, d, "line", "grid/line/loading_percent", "line_name", hi=True)
        meta = {k: str(_attr(f, k)) for k in ("name", "seed", "code_version", "versions")}
        complete = bool(_attr(f, "complete", True))
        yaml_text = str(_attr(f, "scenario_yaml"))
        led = load_ledger(f)
        soc = load_society(f)
        unc = load_uncertainty(f)
        mp = load_market_power(f)
        policy_rows, policy_html = policy_section(f, meta["name"] or h5_path.stem, out)
    h, t = d["step_h"], d["T"]
    imp = np.nan_to_num(d["imp"])
    counts = ", ".join(f"{k} {d['kinds'].count(k)}" for k in sorted(set(d["kinds"])))
    rows: list[tuple[str, str]] = [
        ("Run name", html.escape(meta["name"] or h5_path.stem)),
        ("Period", f"{d['dt'][0]} – {d['dt'][-1]} UTC" if t else "empty"),
        ("Steps", str(t)),
        ("Step length", f"{h * 3600:.0f} s"),
        (
            "Buses / lines / trafos",
            f"{len(d['bus_index'])} / {len(d['from_bus'])} / {len(d['hv_bus'])}",
        ),
        ("Agents", f"{len(d['kinds'])} ({html.escape(counts)})"),
        ("Non-converged steps", str(d["nonconv"])),
        ("Min voltage (pu)", vmin),
        ("Max voltage (pu)", vmax),
        ("Max line loading (%)", lmax),
        *_violation_rows(d),
        ("Total losses", f"{np.nansum(d['losses']) * h:.3f} MWh"),
        ("Total import (net)", f"{imp.sum() * h:.3f} MWh"),
        ("Import (positive part)", f"{imp.clip(0, None).sum() * h:.3f} MWh"),
        ("Export (negative part)", f"{-imp.clip(None, 0).sum() * h:.3f} MWh"),
    ]
    if not grid:
        rows = rows[:4]
    for k in sorted(d["energy"]):
        p, n = d["energy"][k]
        rows.append((f"Energy {html.escape(k)}", f"{p + n:.3f} MWh (+{p:.3f} / {n:.3f})"))
    if m is not None:
        rows += _market_rows(m, t)
    if mp is not None:
        rows += market_power_rows(mp)
    rows += policy_rows
    if led is not None:
        rows += ledger_rows(led)
    if soc is not None:
        rows += society_rows(soc)
    if unc is not None:
        rows += uncertainty_rows(unc)
    rows += [(k.replace("_", " ").title(), html.escape(meta[k])) for k in meta if k != "name"]
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    market = f"<h2>Market ({html.escape(m['design'])})</h2>\n{_imgs(mfigs)}\n" if m is not None else ""
    if led is not None:
        market += f"<h2>Ledger ({html.escape(led.consensus)})</h2>\n{_imgs(ledger_figures(led, out))}\n"
    if soc is not None:
        market += society_section(soc, out)
    if mp is not None:
        market += market_power_section(mp, out)
    if unc is not None:
        market += uncertainty_section(unc, out)
    market += policy_html
    title = html.escape(f"Run report: {meta['name'] or h5_path.stem}")
    if not complete:  # a stopped or killed run: say so where nobody can miss it
        title = html.escape(f"INCOMPLETE run ({t} steps recorded before it stopped) - ") + title
    body = (
        f"<h2>Summary</h2>\n<table id='summary'>\n{table}\n</table>\n"
        + (f"<h2>Figures</h2>\n{_imgs(figs)}\n" if figs else "")
        + f"{market}"
        f"<details><summary>Scenario YAML</summary><pre>{html.escape(yaml_text)}</pre></details>"
    )
    path = out / "index.html"
    path.write_text(_page(title, body), encoding="utf-8")
    return path


def _run_column(h5_path: Path) -> tuple[str, dict[str, str], Arr | None, float]:
    """One run of a comparison: its name, {row label: cell}, per-step mean price (None without market), T."""
    from .uncertainty_report import load_uncertainty, uncertainty_rows  # late: it imports this module

    with h5py.File(h5_path, "r") as f:
        d = _load(f)
        m = _load_market(f, d, figures=False)
        name = str(_attr(f, "name")) or h5_path.stem
        unc = load_uncertainty(f)
    h, t = d["step_h"], d["T"]
    lo = d["vm"].row_min[np.isfinite(d["vm"].row_min)]
    hi = d["line"].row_max[np.isfinite(d["line"].row_max)]
    cells: dict[str, str] = {
        "File": html.escape(h5_path.name),
        "Market design": "none" if m is None else html.escape(m["design"]),
        "Period": f"{d['dt'][0]} – {d['dt'][-1]} UTC" if t else "empty",
        "Steps": f"{t} of {h * 3600:.0f} s",
    }
    if m is not None:
        cells |= dict(_market_rows(m, t)[1:])
    cells |= {
        "Total losses": f"{np.nansum(d['losses']) * h:.3f} MWh",
        "Total import (net)": f"{np.nansum(d['imp']) * h:.3f} MWh",
        "Min voltage (pu)": _num(float(lo.min()) if lo.size else np.nan, ".4f"),
        "Max line loading (%)": _num(float(hi.max()) if hi.size else np.nan, ".1f"),
        "Non-converged steps": str(d["nonconv"]),
        **dict(_violation_rows(d)),
    }
    if unc is not None:
        cells |= dict(uncertainty_rows(unc))
    return name, cells, None if m is None else m["price"].row_mean, float(t)


def _fig_compare_prices(runs: list[tuple[str, str, Arr | None, float]], out: Path) -> str:
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
    ax.set(title="Price duration curves (mean price over buses)", xlabel="share of the run's steps (%)",
           ylabel="price ($/MWh)")  # fmt: skip
    return _save(fig, out / "comparison_prices.png")


def compare_runs(h5_paths: list[Path], out_dir: Path) -> Path:
    """Write comparison.html (one column per run) and comparison_prices.png into out_dir; return its path."""
    from .bidding_report import bidding_comparison  # late: it imports this module
    from .ledger_report import ledger_comparison  # late: it imports this module
    from .society_report import society_comparison  # late: it imports this module

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = [_run_column(Path(p)) for p in h5_paths]
    labels: list[str] = []
    for _, cells, _, _ in cols:
        labels += [k for k in cells if k not in labels]
    design = "Market design"
    fig = _fig_compare_prices([(n, html.unescape(c[design]), p, t) for n, c, p, t in cols], out)
    head = "<tr><th>Run</th>" + "".join(f"<th>{html.escape(n)}</th>" for n, _, _, _ in cols) + "</tr>"
    body_rows = [
        f"<tr><th>{k}</th>" + "".join(f"<td>{c.get(k, '–')}</td>" for _, c, _, _ in cols) + "</tr>"
        for k in labels
    ]
    table = "\n".join([head, *body_rows])
    title = html.escape(f"Comparison of {len(cols)} runs")
    body = f"<table id='comparison'>\n{table}\n</table>\n<h2>Prices</h2>\n{_imgs([fig])}"
    named = [(n, Path(p)) for (n, *_), p in zip(cols, h5_paths, strict=True)]
    body += ledger_comparison(named, out) + society_comparison(named, out)
    body += bidding_comparison(named, out)
    path = out / "comparison.html"
    path.write_text(_page(title, body), encoding="utf-8")
    return path
