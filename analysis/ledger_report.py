"""Ledger section of the run report and of run comparisons: latency and finality, throughput, gas, blocks.

Reads the optional ``/ledger`` group of a run file (h5py only). A run without it gets no ledger section.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .common import Arr, Fig, findings, money, num, save
from .common import attr as _attr
from .common import dates as _dates
from .common import fit as _fit
from .common import note as _note
from .common import sig as _sig

LEDGER_FIGS = ("ledger_cdf.png", "ledger_throughput.png", "ledger_gas.png")
COMPARE_FIG = "comparison_ledger.png"
KINDS = ("trade", "meter", "settle", "cancel", "transfer")
STATUSES = (
    "ok",
    "pending",
    "bad_signature",
    "replay",
    "double_spend",
    "insufficient_balance",
    "out_of_gas",
    "unknown",
)
DAILY_AFTER_DAYS = 7  # throughput as daily means beyond this run length, as the price heat map
ECDF_POINTS = 4000  # most points drawn per CDF curve (ranks evenly thinned)
LINESTYLES = ("-", "--", "-.", ":")  # overlaid runs stay apart when their curves coincide
FLOOR_S = 1e-3  # log-scale CDFs draw shorter (or zero) durations at this value
LABELS = (
    "Ledger consensus",
    "Ledger transactions",
    "Transaction latency p50 / p95",
    "Time to finality p50 / p95",
    "Throughput mean / peak",
    "Blocks canonical / stale / stale rate",
    "Consensus energy per final transaction",
    "Mean gas per trade",
    "Late trades",
    "Ledger notes",
)


@dataclass
class Ledger:
    """One run's ``/ledger`` reduced to what the report draws and summarises."""

    consensus: str
    validators: int
    faulty: int
    permissioned: bool
    nakamoto: int
    late_rule: str
    notes: str
    time_s: Arr  # (T,) step starts, Unix s
    step_s: float
    throughput_tps: Arr  # (T,)
    energy_kwh: Arr  # (T,)
    n_late: Arr  # (T,)
    late_cost: Arr  # (T,) $
    n_tx: int
    n_final: int
    status_counts: dict[str, int]
    latency_s: Arr  # include - submit of every included tx
    finality_s: Arr  # final - submit of every final tx
    gas_by_kind: dict[str, Arr]  # gas used by included txs, per kind
    n_blocks: int
    n_stale: int
    gate_s: float = np.nan  # gate closure: a trade is late when not final this long after submission


def _order(names: Any, known: tuple[str, ...]) -> list[str]:
    """Names in the contract's order, unknown ones after it sorted."""
    names = set(names)
    return [k for k in known if k in names] + sorted(names - set(known))


def _num_col(g: Any, key: str, n: int, fill: float = np.nan) -> Arr:
    """A numeric column of a table group as float, fill where missing."""
    ds = None if g is None else g.get(key)
    return np.full(n, fill) if ds is None else _fit(np.asarray(ds[()], dtype=float), n, fill)


def _str_col(g: Any, key: str, n: int) -> Arr:
    """A variable-length string column as a str array, '' where missing."""
    ds = None if g is None else g.get(key)
    if ds is None:
        return np.full(n, "", dtype=str)
    vals = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) is not None else ds[()]
    return _fit(np.asarray(vals, dtype=str), n, "")


def _rows(g: Any) -> int:
    """Number of rows of a table group (length of its longest column, 0 if missing)."""
    if not isinstance(g, h5py.Group):
        return 0
    return max((int(ds.shape[0]) for ds in g.values() if isinstance(ds, h5py.Dataset) and ds.ndim), default=0)


def _series(g: h5py.Group, key: str, t: int, fill: float = np.nan) -> Arr:
    """A per-step series (T,) as float, fill if missing."""
    ds = g.get(key)
    return np.full(t, fill) if ds is None else _fit(np.asarray(ds[()], dtype=float), t, fill)


def load_ledger(f: h5py.File) -> Ledger | None:
    """Read and reduce ``/ledger`` of an open run file; None when the run has no ledger."""
    g = f.get("ledger")
    if not isinstance(g, h5py.Group):
        return None
    time_s = np.asarray(f["time"][()], dtype=np.int64).ravel()
    t = time_s.size
    step_s = float(_attr(f, "step_s", 0) or (time_s[1] - time_s[0] if t > 1 else 3600))
    tx, n = g.get("tx"), _rows(g.get("tx"))
    submit_s = _num_col(tx, "submit_s", n)
    include_s, final_s = _num_col(tx, "include_s", n), _num_col(tx, "final_s", n)
    included, final = np.isfinite(include_s), np.isfinite(final_s)
    kind, status = _str_col(tx, "kind", n), _str_col(tx, "status", n)
    gas = _num_col(tx, "gas_used", n)
    labels, counts = np.unique(status, return_counts=True)
    blocks = g.get("blocks")
    stale = _num_col(blocks, "stale", _rows(blocks), 0.0).astype(bool)
    return Ledger(
        consensus=str(_attr(g, "consensus", "unknown")),
        validators=int(_attr(g, "validators", 0)),
        faulty=int(_attr(g, "faulty", 0)),
        permissioned=bool(_attr(g, "permissioned", False)),
        nakamoto=int(_attr(g, "nakamoto_coefficient", 0)),
        late_rule=str(_attr(g, "late_rule", "")),
        notes=str(_attr(g, "notes", "")),
        time_s=time_s,
        step_s=step_s,
        throughput_tps=_series(g, "throughput_tps", t),
        energy_kwh=_series(g, "energy_kwh", t),
        n_late=_series(g, "n_late", t, 0.0),
        late_cost=_series(g, "late_cost", t),
        n_tx=n,
        n_final=int(np.count_nonzero(final)),
        status_counts={str(k): int(c) for k, c in zip(labels, counts, strict=True)},
        latency_s=(include_s - submit_s)[included],
        finality_s=(final_s - submit_s)[final],
        gas_by_kind={k: gas[included & (kind == k)] for k in _order(np.unique(kind[included]), KINDS)},
        n_blocks=int(stale.size),
        n_stale=int(np.count_nonzero(stale)),
        gate_s=float(_attr(g, "gate_closure_s", np.nan)),
    )


def _pct(x: Arr, q: float) -> float:
    """Percentile q of the finite values, NaN if none."""
    x = x[np.isfinite(x)]
    return float(np.percentile(x, q)) if x.size else np.nan


def _p50_p95(x: Arr) -> str:
    """'p50 / p95 s' of durations, 'n/a' without any."""
    p50, p95 = _pct(x, 50), _pct(x, 95)
    return f"{_sig(p50)} / {_sig(p95)} s" if np.isfinite(p50) else "n/a"


def energy_per_final_tx_kwh(led: Ledger) -> float:
    """Consensus energy of the run divided by its number of final transactions (kWh/tx, NaN if none)."""
    return float(np.nansum(led.energy_kwh)) / led.n_final if led.n_final else np.nan


def stale_rate(led: Ledger) -> float:
    """Stale blocks over all produced blocks (-, NaN without blocks)."""
    return led.n_stale / led.n_blocks if led.n_blocks else np.nan


def mean_gas_per_trade(led: Ledger) -> float:
    """Mean gas used by the included 'trade' transactions (gas, NaN if none)."""
    gas = led.gas_by_kind.get("trade", np.zeros(0))
    return float(gas.mean()) if gas.size else np.nan


def ledger_rows(led: Ledger) -> list[tuple[str, str]]:
    """Summary rows (label, HTML cell) of a run's ledger, labels as in ``LABELS``."""
    access = "permissioned" if led.permissioned else "permissionless"
    consensus = (
        f"{html.escape(led.consensus)}: {led.validators} validators ({led.faulty} faulty), {access}, "
        f"Nakamoto coefficient {led.nakamoto}"
    )
    bad = [(s, led.status_counts[s]) for s in _order(led.status_counts, STATUSES) if s != "ok"]
    txs = f"{led.n_tx:,} total, {led.n_final:,} final" + (
        "; " + ", ".join(f"{html.escape(s)} {c}" for s, c in bad) if bad else ""
    )
    tps = led.throughput_tps[np.isfinite(led.throughput_tps)]
    throughput = f"{_sig(float(tps.mean()))} / {_sig(float(tps.max()))} tx/s" if tps.size else "n/a"
    rate = stale_rate(led)
    blocks = f"{led.n_blocks - led.n_stale} / {led.n_stale} / " + (
        f"{100 * rate:.2f} %" if np.isfinite(rate) else "n/a"
    )
    e = energy_per_final_tx_kwh(led)
    energy = (
        f"{_sig(e)} kWh/tx ({_sig(float(np.nansum(led.energy_kwh)))} kWh over {led.n_final} final tx)"
        if np.isfinite(e)
        else f"n/a (no final transaction; {_sig(float(np.nansum(led.energy_kwh)))} kWh in total)"
    )
    n_trades = led.gas_by_kind.get("trade", np.zeros(0)).size
    g = mean_gas_per_trade(led)
    gas = f"{_sig(g)} gas over {n_trades} included trades" if np.isfinite(g) else "n/a"
    rule = f", rule {html.escape(led.late_rule)}" if led.late_rule else ""
    late = f"{int(np.nansum(led.n_late)):,} (cost {money(float(np.nansum(led.late_cost)))}{rule})"
    cells = (
        *(consensus, txs, _p50_p95(led.latency_s), _p50_p95(led.finality_s), throughput, blocks, energy),
        *(gas, late, html.escape(led.notes) or "–"),
    )
    return list(zip(LABELS, cells, strict=True))


def _ecdf(x: Arr, max_points: int = ECDF_POINTS) -> tuple[Arr, Arr]:
    """Empirical CDF of the finite values: sorted x and share <= x, ranks thinned to max_points."""
    x = np.sort(x[np.isfinite(x)])
    y = np.arange(1, x.size + 1) / max(x.size, 1)
    if x.size > max_points:
        k = np.unique(np.linspace(0, x.size - 1, max_points).round().astype(int))
        x, y = x[k], y[k]
    return x, y


def _cdf_curve(ax: Axes, x_s: Arr, label: str, annotate: bool, **kw: Any) -> bool:
    """Draw one duration CDF on a log x axis (values floored at FLOOR_S), optionally marking p50 and p95."""
    x, y = _ecdf(x_s)
    if not x.size:
        return False
    p50, p95 = _pct(x_s, 50), _pct(x_s, 95)
    stats = f", p50 {_sig(p50)} s, p95 {_sig(p95)} s" if annotate else ""
    (line,) = ax.step(
        np.maximum(x, FLOOR_S), y, where="post", lw=1.4, label=f"{label} (n={x_s.size:,}{stats})", **kw
    )
    if annotate:  # the markers; their values are in the legend (labels beside them would overlap)
        ax.plot(np.maximum([p50, p95], FLOOR_S), [0.5, 0.95], "o", color=line.get_color(), ms=5)
    return True


def _cdf_axes(ax: Axes, title: str, gate_s: float = np.nan) -> None:
    """Log x in seconds, shares 0-1 with the p50 and p95 levels and the gate-closure deadline when known."""
    for q in (0.5, 0.95):
        ax.axhline(q, color="grey", lw=0.5, ls=":")
    if np.isfinite(gate_s) and gate_s > 0:
        ax.axvline(gate_s, color="tab:red", lw=1.2, ls="--", label=f"deadline: gate closure {_sig(gate_s)} s")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.set_xlabel(f"time since submission (s, log; < {FLOOR_S:g} s drawn at {FLOOR_S:g} s)")
    ax.set_ylabel("share of transactions (-)")


def late_share(led: Ledger) -> float:
    """Share of the final transactions that became final after the gate-closure deadline (NaN if unknown)."""
    x = led.finality_s[np.isfinite(led.finality_s)]
    if not x.size or not np.isfinite(led.gate_s) or led.gate_s <= 0:
        return np.nan
    return float(np.count_nonzero(x > led.gate_s)) / x.size


def plot_cdf(led: Ledger) -> Figure:
    """Empirical CDFs of transaction latency (include - submit) and time to finality (final - submit)."""
    fig = Figure(figsize=(8, 4.5), layout="tight")
    ax = fig.add_subplot()
    drawn = [
        _cdf_curve(ax, led.latency_s, "latency (submit to inclusion)", True, color="tab:blue"),
        _cdf_curve(ax, led.finality_s, "time to finality (submit to final)", True, color="tab:red"),
    ]
    _cdf_axes(ax, f"Transaction latency and finality ({led.consensus})", led.gate_s)
    if any(drawn):
        ax.legend(loc="upper left", fontsize=8)  # the CDFs rise at the right: the top left is empty
    else:
        _note(ax, "no data (no transaction included)")
    return fig


def plot_throughput(led: Ledger) -> Figure:
    """Throughput (final transactions per second) per step, or daily mean with min-max band for long runs."""
    fig = Figure(figsize=(10, 4), layout="tight")
    ax = fig.add_subplot()
    time, y = led.time_s, led.throughput_tps
    s = pd.Series(y, index=pd.DatetimeIndex(time.astype("datetime64[s]")))
    mean = f"run mean {_sig(float(np.nanmean(y)))} tx/s" if np.isfinite(y).any() else "no data"
    if time.size > 1 and time[-1] - time[0] > DAILY_AFTER_DAYS * 86400:
        g = s.resample("D").agg(["mean", "min", "max"])
        g.index = g.index + pd.Timedelta(hours=12)  # a day's values drawn at its middle
        ax.fill_between(g.index, g["min"], g["max"], alpha=0.3, label="daily min-max")
        ax.plot(g.index, g["mean"], lw=1, label=f"daily mean ({mean})")
    else:
        ax.plot(s.index, y, lw=1, marker="." if y.size < 50 else None, label=f"per step ({mean})")
    if not np.isfinite(y).any():
        _note(ax, "no data (no throughput recorded)")
    if time.size:  # the run's period, also when every value is NaN
        ax.set_xlim(*(time[[0, -1]] + np.array([0, int(led.step_s)])).astype("datetime64[s]"))
    ax.set_ylim(bottom=0)
    ax.set_title(f"Ledger throughput ({led.consensus}): transactions made final per second")
    ax.set(xlabel="time (UTC)", ylabel="throughput (tx/s)")
    _dates(ax)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_gas(led: Ledger) -> Figure:
    """Box plot of the gas used per included transaction, by kind, with each kind's mean written on it."""
    fig = Figure(figsize=(8, 4), layout="tight")
    ax = fig.add_subplot()
    kinds = [k for k, v in led.gas_by_kind.items() if v.size]
    if kinds:
        data = [led.gas_by_kind[k] for k in kinds]
        ticks = [f"{k}\nn={v.size:,}\nmean {v.mean():,.0f}" for k, v in zip(kinds, data, strict=True)]
        ax.boxplot(data, tick_labels=ticks, whis=(5, 95), showfliers=False, showmeans=True)
        medians = [float(np.median(v)) for v in data]
        if min(float(v.min()) for v in data) > 0 and max(medians) > 100 * min(medians):
            ax.set_yscale("log")  # e.g. a reading settling thousands of trades beside the trades themselves
    else:
        _note(ax, "no data (no transaction included)")
    ax.set_title("Gas used per included transaction (box 25-75 %, whiskers 5-95 %, triangle = mean)")
    log = " (log scale)" if ax.get_yscale() == "log" else ""
    ax.set(xlabel="transaction kind", ylabel=f"gas used (gas){log}")
    return fig


def _deadline(led: Ledger) -> str:
    """Caption text on the gate-closure deadline."""
    if not np.isfinite(led.gate_s) or led.gate_s <= 0:
        return "The run does not record a gate-closure deadline."
    return (
        "The dashed red line is the deadline: trades are submitted at gate closure, "
        f"{_sig(led.gate_s)} s before"
        " delivery starts; a trade whose finality curve lies right of it settled late."
    )


@dataclass
class LedgerSection:
    """The ledger part of a run report (the :class:`~analysis.common.Section` protocol)."""

    led: Ledger

    @property
    def title(self) -> str:
        """Section heading."""
        return f"Ledger ({self.led.consensus})"

    def findings(self) -> list[str]:
        """Finality against the deadline, late trades and their cost, consensus energy."""
        led = self.led
        out = [
            f"{led.n_final:,} of {led.n_tx:,} transactions became final; median time to finality "
            f"{_sig(_pct(led.finality_s, 50))} s, 95th percentile {_sig(_pct(led.finality_s, 95))} s."
        ]
        late = late_share(led)
        if np.isfinite(late):
            out.append(
                f"{num(100 * late, 1, ' %')} of the final transactions missed the "
                f"{_sig(led.gate_s)} s gate-closure "
                f"deadline; {int(np.nansum(led.n_late)):,} trades were late at a cost of "
                f"{money(float(np.nansum(led.late_cost)))}."
            )
        e = energy_per_final_tx_kwh(led)
        if np.isfinite(e):
            out.append(
                f"Consensus used {_sig(float(np.nansum(led.energy_kwh)))} kWh, {_sig(e)} kWh per "
                "final transaction."
            )
        return out

    def rows(self) -> list[tuple[str, str]]:
        """Summary rows (``LABELS``)."""
        return ledger_rows(self.led)

    def figures(self) -> list[Fig]:
        """CDFs, throughput and gas, captioned."""
        led = self.led
        return [
            Fig(
                LEDGER_FIGS[0],
                plot_cdf(led),
                "Share of transactions (y) included or final within a time since submission (x, log scale). "
                "A curve further left is faster; dots mark the median and the 95th percentile. "
                + _deadline(led),
            ),
            Fig(
                LEDGER_FIGS[1],
                plot_throughput(led),
                "Transactions made final per second over the run (daily mean and range beyond a week). It "
                "follows the market's trading volume; a drop to zero while trades continue means the ledger "
                "stalled.",
            ),
            Fig(
                LEDGER_FIGS[2],
                plot_gas(led),
                "Gas used per included transaction, one box per kind. Gas measures the contract work a "
                "transaction costs; compare the kinds, and runs with different contracts.",
            ),
        ]


def ledger_figures(led: Ledger, out: Path) -> list[str]:
    """Write the ledger figures (``LEDGER_FIGS``) of one run into out; return their file names."""
    figs = LedgerSection(led).figures()
    save(figs, out)
    return [f.name for f in figs]


def plot_compare(runs: list[tuple[str, Ledger]]) -> Figure:
    """Finality (top) and latency (bottom) CDFs of every run with a ledger, with the gate-closure deadline."""
    fig = Figure(figsize=(9, 8), layout="tight")
    axes = fig.subplots(2, 1, sharex=True)
    gates = sorted({led.gate_s for _, led in runs if np.isfinite(led.gate_s) and led.gate_s > 0})
    for ax, key, title in (
        (axes[0], "finality_s", "Time to finality (submit to final)"),
        (axes[1], "latency_s", "Latency (submit to inclusion)"),
    ):
        drawn = [
            _cdf_curve(ax, getattr(led, key), f"{name} ({led.consensus})", False, ls=LINESTYLES[i % 4])
            for i, (name, led) in enumerate(runs)
        ]
        _cdf_axes(ax, title)
        for g in gates:
            ax.axvline(g, color="tab:red", lw=1.2, ls="--", label=f"deadline: gate closure {_sig(g)} s")
        if any(drawn):
            ax.legend(loc="upper left", fontsize=8)  # the CDFs rise at the right: the top left is empty
        else:
            _note(ax, "no data (no transaction in any run)")
    return fig


def ledger_comparison(runs: list[tuple[str, Path]], out: Path) -> str:
    """HTML ledger section of a comparison: findings, table (``LABELS``) and CDF figure; '' without any."""
    leds: list[tuple[str, Ledger | None]] = []
    for name, path in runs:
        with h5py.File(path, "r") as f:
            leds.append((name, load_ledger(f)))
    present = [(n, led) for n, led in leds if led is not None]
    if not present:
        return ""
    cap = (
        "Time to finality (top) and latency (bottom) of every run with a ledger, as cumulative shares of its "
        "transactions; a curve further left is faster. The dashed red line is the gate-closure deadline: the "
        "share of a finality curve right of it settled late."
    )
    fig = save([Fig(COMPARE_FIG, plot_compare(present), cap)], out)
    found = []
    for n, led in present:
        late = late_share(led)
        found.append(
            f"{html.escape(n)} ({html.escape(led.consensus)}): median finality "
            f"{_sig(_pct(led.finality_s, 50))} s"
            + (f", {num(100 * late, 1, ' %')} after the deadline" if np.isfinite(late) else "")
            + f", {_sig(energy_per_final_tx_kwh(led))} kWh per final transaction."
        )
    cols = [{} if led is None else dict(ledger_rows(led)) for _, led in leds]
    head = "<tr><th>Run</th>" + "".join(f"<th>{html.escape(n)}</th>" for n, _ in leds) + "</tr>"
    body = [
        f"<tr><th>{k}</th>"
        + "".join(f"<td>{c.get(k, 'none' if k == LABELS[0] else '–')}</td>" for c in cols)
        + "</tr>"
        for k in LABELS
    ]
    table = "\n".join([head, *body])
    return f"\n<h2>Ledger</h2>\n{findings(found)}\n<table id='ledger_comparison'>\n{table}\n</table>\n{fig}"
