"""Helpers shared by the report and its sections: HDF5 reading, number formatting, figures with captions.

Every analysis module imports from here and nothing here imports another analysis module, so the report
(``report.py``) imports its sections (``ledger_report``, ``society_report``, ``uncertainty_report``) without a
cycle. A section is anything with the :class:`Section` protocol: a title, key findings written from its
numbers, its summary rows and its captioned figures; :func:`render_section` turns one into HTML.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

Arr = np.ndarray[Any, Any]
CHUNK = 2048
DPI = 110
ZERO_TOL = 1e-6  # |x| below this (in the unit shown) is written and drawn as 0: solver noise, not a value


# ------------------------------------------------------------------------------------------------ reading


@dataclass
class Stats:
    """Per-step (row) and per-column reductions of a (T, n) dataset."""

    row_min: Arr
    row_max: Arr
    row_mean: Arr
    col_min: Arr
    col_max: Arr


def chunks(ds: h5py.Dataset | None) -> Iterator[Arr]:
    """Yield float blocks of a 2-D dataset in time chunks."""
    if ds is None or ds.ndim != 2 or ds.shape[1] == 0:
        return
    for i in range(0, ds.shape[0], CHUNK):
        yield np.asarray(ds[i : i + CHUNK], dtype=float)


def reduce(ds: h5py.Dataset | None, t: int) -> Stats:
    """Chunked NaN-ignoring min/max/mean over columns and over time."""
    n = 0 if ds is None or ds.ndim != 2 else ds.shape[1]
    nan_t, nan_n = np.full(t, np.nan), np.full(n, np.nan)
    s = Stats(nan_t.copy(), nan_t.copy(), nan_t.copy(), nan_n.copy(), nan_n.copy())
    i = 0
    for blk in chunks(ds):
        k = slice(i, i + len(blk))
        s.row_min[k], s.row_max[k] = np.fmin.reduce(blk, axis=1), np.fmax.reduce(blk, axis=1)
        cnt = np.isfinite(blk).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            s.row_mean[k] = np.where(cnt > 0, np.nansum(blk, axis=1) / cnt, np.nan)
        s.col_min = np.fmin(s.col_min, np.fmin.reduce(blk, axis=0))
        s.col_max = np.fmax(s.col_max, np.fmax.reduce(blk, axis=0))
        i += len(blk)
    return s


def strs(ds: h5py.Dataset | None) -> list[str]:
    """Decode a 1-D string dataset (bytes or str) into a list of str."""
    if ds is None:
        return []
    if h5py.check_string_dtype(ds.dtype) is not None:
        return [str(x) for x in ds.asstr()[()]]
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]


def attr(obj: Any, key: str, default: Any = "") -> Any:
    """Attribute of a file, group or dataset, bytes decoded."""
    v = obj.attrs.get(key, default)
    return v.decode() if isinstance(v, bytes) else v


def fit(a: Arr, n: int, fill: Any) -> Arr:
    """Cut or pad a 1-D array to length n."""
    a = a.ravel()[:n]
    return a if a.size == n else np.concatenate([a, np.full(n - a.size, fill, dtype=a.dtype)])


# ------------------------------------------------------------------------------------------------ numbers


def clean(x: float, tol: float = ZERO_TOL) -> float:
    """x with |x| < tol set to 0 (solver noise) and -0 made 0; NaN stays NaN."""
    return 0.0 if np.isfinite(x) and abs(x) < tol else float(x)


def num(x: float | np.floating[Any], decimals: int = 2, unit: str = "", tol: float | None = None) -> str:
    """A number with thousands separators and unit; 'n/a' when not finite; never '-0.00'.

    Values that round to zero at ``decimals`` (or lie below ``tol``) are written as 0.
    """
    if not np.isfinite(x):
        return "n/a"
    x = clean(float(x), 0.5 * 10.0**-decimals if tol is None else tol)
    return f"{x:,.{decimals}f}{unit}"


def sig(x: float) -> str:
    """A number with about four significant digits (thousands separated), 'n/a' when not finite."""
    if not np.isfinite(x):
        return "n/a"
    if x == 0 or 1e-3 <= abs(x) < 1e3:
        return f"{x:.4g}"
    return f"{x:,.0f}" if abs(x) >= 1e3 else f"{x:.3e}"


def share(part: float, whole: float) -> str:
    """part / whole as a percentage with one decimal, 'n/a' when whole is 0 or not finite."""
    return num(100 * part / whole, 1, " %") if np.isfinite(whole) and whole else "n/a"


def power(mw: float) -> str:
    """A power in kW below 1 MW (LV grids), else in MW."""
    return num(mw * 1000, 1, " kW") if np.isfinite(mw) and abs(mw) < 1 else num(mw, 3, " MW")


def energy(mwh: float) -> str:
    """An energy in kWh below 1 MWh, else in MWh."""
    return num(mwh * 1000, 1, " kWh") if np.isfinite(mwh) and abs(mwh) < 1 else num(mwh, 3, " MWh")


def money(usd: float) -> str:
    """Dollars with two decimals and separators ('0.00 $' for solver noise)."""
    return num(usd, 2, " $")


# ------------------------------------------------------------------------------------------------ drawing


def note(ax: Axes, text: str) -> None:
    """Write a centred note on an axis (used for empty or all-NaN data)."""
    box = {"facecolor": "white", "edgecolor": "grey"}
    ax.text(0.5, 0.6, text, transform=ax.transAxes, ha="center", color="grey", bbox=box)


def dates(ax: Axes) -> None:
    """Format an x axis as concise dates."""
    loc = AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(loc))


def flat(y: Arr, tol: float = ZERO_TOL) -> bool:
    """The series has no finite value of magnitude tol or more: a panel of it would be a flat zero line."""
    y = np.asarray(y, dtype=float)
    return not bool((np.abs(y[np.isfinite(y)]) >= tol).any())


# ------------------------------------------------------------------------------------------------ figures


@dataclass
class Fig:
    """A figure of the report: the file it is saved to, the matplotlib Figure and its caption (HTML)."""

    name: str
    figure: Figure
    caption: str


def save(figs: list[Fig], out: Path) -> str:
    """Save the figures as PNG into out and release them; return their HTML (image and caption each)."""
    parts = []
    for f in figs:
        f.figure.savefig(out / f.name, dpi=DPI)
        f.figure.clear()
        alt = html.escape(f.name.removesuffix(".png").replace("_", " "))
        parts.append(
            f'<figure><img src="{f.name}" alt="{alt}" onerror="this.dataset.broken=1">'
            f"<figcaption>{f.caption}</figcaption></figure>"
        )
    return "\n".join(parts)


def save_png(fig: Figure, path: Path) -> str:
    """Save one figure as PNG and release it; return its file name (for pages without captions' helpers)."""
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path.name


def findings(items: list[str]) -> str:
    """The key findings of a section as an HTML list ('' without any)."""
    if not items:
        return ""
    return (
        "<div class='findings'><b>Key findings</b><ul>"
        + "".join(f"<li>{s}</li>" for s in items)
        + "</ul></div>"
    )


class Section(Protocol):
    """A part of the report: what it is called, what it found, its summary rows and its figures."""

    @property
    def title(self) -> str:
        """The section's heading."""
        ...

    def findings(self) -> list[str]:
        """Sentences written from the section's numbers (HTML)."""
        ...

    def rows(self) -> list[tuple[str, str]]:
        """Summary table rows (label, HTML cell)."""
        ...

    def figures(self) -> list[Fig]:
        """The section's captioned figures."""
        ...


def render_section(sec: Section, out: Path, level: int = 2) -> str:
    """HTML of a section: heading, key findings, then its figures with captions."""
    head = f"<h{level}>{html.escape(sec.title)}</h{level}>"
    return f"{head}\n{findings(sec.findings())}\n{save(sec.figures(), out)}\n"


CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:4px 10px;"
    "text-align:left}th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd}"
    "pre{background:#f7f7f7;padding:1em;overflow:auto}figure{margin:1.5em 0}"
    "figcaption{font-size:0.92em;color:#444;margin-top:0.4em;max-width:900px}"
    ".findings{background:#f4f8fb;border-left:4px solid #4a7ab0;padding:0.5em 1em;margin:1em 0}"
    ".flag{color:#a00;font-weight:bold}"
)


def page(title: str, body: str) -> str:
    """A whole HTML page; title must already be escaped."""
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body>\n<h1>{title}</h1>\n{body}\n</body></html>\n"
    )


def table(rows: list[tuple[str, str]], ident: str) -> str:
    """A two-column HTML table of (label, HTML cell) rows."""
    body = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table id='{ident}'>\n{body}\n</table>"


def fmt(x: float | np.floating[Any], spec: str, unit: str = "") -> str:
    """Format with a format spec ('.2f' specs get thousands separators and no '-0'), 'n/a' when not finite."""
    if not np.isfinite(x):
        return "n/a"
    if spec.startswith(".") and spec.endswith("f"):
        return num(x, int(spec[1:-1]), unit)
    return f"{x:{spec}}{unit}"
