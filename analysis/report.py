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
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

CHUNK = 2048
DPI = 110
Arr = np.ndarray[Any, Any]


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
    long_run = d["T"] > 1 and (d["time"][-1] - d["time"][0]) > 30 * 86400
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


def write_report(h5_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write figures and index.html for one run; return the HTML path. out_dir defaults to '<h5 stem>_report/' beside the file."""  # noqa: E501
    h5_path = Path(h5_path)
    out = Path(out_dir) if out_dir is not None else h5_path.with_name(f"{h5_path.stem}_report")
    out.mkdir(parents=True, exist_ok=True)
    with h5py.File(h5_path, "r") as f:
        d = _load(f)
        figs = [fn(d, out) for fn in (_fig_voltage, _fig_duration, _fig_losses_import,
                                     _fig_network, _fig_agents)]  # fmt: skip
        vmin = _extreme(f, d, "vm", "grid/bus/vm_pu", "bus_name", hi=False)
        vmax = _extreme(f, d, "vm", "grid/bus/vm_pu", "bus_name", hi=True)
        lmax = _extreme(f, d, "line", "grid/line/loading_percent", "line_name", hi=True)
        meta = {k: str(_attr(f, k)) for k in ("name", "seed", "code_version", "versions")}
        yaml = str(_attr(f, "scenario_yaml"))
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
        ("Total losses", f"{np.nansum(d['losses']) * h:.3f} MWh"),
        ("Total import (net)", f"{imp.sum() * h:.3f} MWh"),
        ("Import (positive part)", f"{imp.clip(0, None).sum() * h:.3f} MWh"),
        ("Export (negative part)", f"{-imp.clip(None, 0).sum() * h:.3f} MWh"),
    ]
    for k in sorted(d["energy"]):
        p, n = d["energy"][k]
        rows.append((f"Energy {html.escape(k)}", f"{p + n:.3f} MWh (+{p:.3f} / {n:.3f})"))
    rows += [(k.replace("_", " ").title(), html.escape(meta[k])) for k in meta if k != "name"]
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    imgs = "\n".join(f'<figure><img src="{fn}" alt="{fn}"></figure>' for fn in figs)
    css = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 10px;"
        "text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd}"
        "pre{background:#f7f7f7;padding:1em;overflow:auto}figure{margin:1.5em 0}"
    )
    title = html.escape(f"Run report: {meta['name'] or h5_path.stem}")
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{css}</style></head><body>\n<h1>{title}</h1>\n<h2>Summary</h2>\n"
        f"<table id='summary'>\n{table}\n</table>\n<h2>Figures</h2>\n{imgs}\n"
        f"<details><summary>Scenario YAML</summary><pre>{html.escape(yaml)}</pre></details>\n"
        "</body></html>\n"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
