"""The study report of a sweep directory: factor effects with 95 % intervals over seeds, the cost /
emissions / Gini trade-off with its Pareto front, the consensus-by-design matrix, and key findings.

Reads only ``DIR/summary.parquet`` (or ``.csv``) and ``DIR/study.yaml`` (written by ``cosim sweep``);
failed runs are listed and left out of every statistic.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib import colormaps
from matplotlib.figure import Figure
from scipy import stats

from .common import note as _note
from .common import page as _page
from .common import save_png as _save
from .common import sig as _sig
from .metrics import METRICS

LEVEL = 0.95  # coverage of the intervals over seeds
TRADEOFF = ("total_cost", "emissions_t", "gini_surplus")  # minimised together: the Pareto front
MATRIX = ("late_trades", "finality_p50_s", "ledger_energy_kwh")
CONSENSUS, DESIGN = "ledger.consensus", "market.design"
NCOLS = 4
MAX_LABELLED = 16  # trade-off points annotated with their combination up to this many
LABELS = {
    "total_cost": "total cost ($)",
    "welfare": "welfare ($)",
    "mean_price_per_mwh": "mean price ($/MWh)",
    "unserved_mwh": "unserved (MWh)",
    "traded_mwh": "traded (MWh)",
    "losses_mwh": "losses (MWh)",
    "emissions_t": "emissions (t CO2)",
    "gini_surplus": "Gini of surplus (-)",
    "finality_p50_s": "finality p50 (s)",
    "late_trades": "late trades",
    "late_cost": "late cost ($)",
    "ledger_energy_kwh": "consensus energy (kWh)",
    "dp_epsilon_spent": "DP epsilon spent (-)",
    "dp_relative_error": "DP relative error (-)",
}


@dataclass
class Factor:
    """One varied dimension: a factor, or the zipped keys that vary together."""

    keys: list[str]
    name: str  # "market.design" or "equity.rule + equity.levy_per_mwh"
    levels: list[str]  # in study order


def _level(row: pd.Series, keys: list[str]) -> str:
    return " / ".join(str(row[k]) for k in keys)


def _factors(df: pd.DataFrame, spec: dict[str, Any]) -> list[Factor]:
    """The study's factors (zip keys as one), with their level labels in study order."""
    keys = [k for k in df.attrs.get("factors", []) if k in df.columns]
    zipped = [k for k in (spec.get("zip") or {}) if k in keys]
    groups = [[k] for k in keys if k not in zipped] + ([zipped] if zipped else [])
    out = []
    for g in groups:
        labels = df.apply(_level, axis=1, keys=g) if len(df) else pd.Series(dtype=str)
        out.append(Factor(g, " + ".join(g), list(pd.unique(labels))))
    return out


def effects(ok: pd.DataFrame, factor: Factor, metric: str) -> pd.DataFrame:
    """Main effect of a factor on a metric: per level, the mean over seeds of the per-seed mean over the
    other factors' levels, and its two-sided 95 % t-interval over seeds (NaN with one seed)."""
    level = ok.apply(_level, axis=1, keys=factor.keys) if len(ok) else pd.Series(dtype=str)
    per_seed = ok.assign(_level=level).groupby(["_level", "seed"])[metric].mean().dropna()
    rows = []
    for lv in factor.levels:
        x = per_seed[lv].to_numpy(dtype=float) if lv in per_seed.index.get_level_values(0) else np.zeros(0)
        n = x.size
        mean = float(x.mean()) if n else np.nan
        half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1) * x.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan
        rows.append({"level": lv, "mean": mean, "lo": mean - half, "hi": mean + half, "n_seeds": n})
    return pd.DataFrame(rows)


def pareto(points: np.ndarray) -> np.ndarray:
    """Mask of the non-dominated rows of a (n, k) array, every column minimised (NaN rows never optimal)."""
    ok = np.isfinite(points).all(axis=1)
    front = ok.copy()
    for i in np.flatnonzero(ok):
        others = points[ok]
        dominated = (others <= points[i]).all(axis=1) & (others < points[i]).any(axis=1)
        front[i] = not dominated.any()
    return front


def _varies(ok: pd.DataFrame, metric: str) -> bool:
    v = ok[metric].to_numpy(dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool(np.ptp(v) > 1e-12 * max(1.0, float(np.abs(v).max())))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def _fig_effects(ok: pd.DataFrame, f: Factor, metrics: list[str], out: Path, i: int) -> str:
    """One panel per metric: the level means of factor f with their intervals over seeds."""
    n = max(len(metrics), 1)
    rows = -(-n // NCOLS)
    fig = Figure(figsize=(3.2 * min(n, NCOLS), 2.6 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, min(n, NCOLS), squeeze=False).ravel()
    for ax, m in zip(axes, metrics, strict=False):
        e = effects(ok, f, m)
        x = np.arange(len(e))
        err = np.vstack([e["mean"] - e["lo"], e["hi"] - e["mean"]])
        ax.errorbar(
            x, e["mean"], yerr=np.where(np.isfinite(err), err, 0), fmt="o", capsize=4, color="tab:blue"
        )
        ax.set_xticks(x, e["level"], rotation=30 if max(map(len, f.levels)) > 6 else 0, fontsize=8)
        ax.set_title(LABELS.get(m, m), fontsize=9)
        ax.margins(x=0.2)
    for ax in axes[len(metrics) :]:
        ax.set_axis_off()
    if not metrics:
        _note(axes[0], "no metric varies across the runs")
    fig.suptitle(f"Effect of {f.name}", fontsize=11)
    return _save(fig, out / f"effects_{i}_{_slug(f.name)}.png")


def _combos(ok: pd.DataFrame, factors: list[Factor], metrics: list[str]) -> pd.DataFrame:
    """Per combination of factor levels: mean over seeds, and the half-width of its 95 % interval."""
    keys = [k for f in factors for k in f.keys]
    label = ok.apply(lambda r: ", ".join(f"{k}={r[k]}" for k in keys), axis=1) if keys else "all runs"
    g = ok.assign(_combo=label).groupby("_combo", sort=False)[metrics]
    mean, sd, n = g.mean(), g.std(ddof=1), g.count()
    tcrit = stats.t.ppf(0.5 + LEVEL / 2, np.maximum(n - 1, 1))
    half = pd.DataFrame(
        np.where(n > 1, tcrit * sd / np.sqrt(n.clip(lower=1)), np.nan), index=mean.index, columns=metrics
    )
    return mean.join(half, rsuffix="_ci")


def _fig_tradeoff(combos: pd.DataFrame, objectives: list[str], front: np.ndarray, out: Path) -> str:
    """Cost against emissions (or what of the trade-off exists), coloured by the Gini; Pareto front ringed."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    x, y = combos[objectives[0]].to_numpy(float), combos[objectives[1]].to_numpy(float)
    xe, ye = combos[f"{objectives[0]}_ci"].to_numpy(float), combos[f"{objectives[1]}_ci"].to_numpy(float)
    ax.errorbar(x, y, xerr=np.nan_to_num(xe), yerr=np.nan_to_num(ye), fmt="none", ecolor="0.7", zorder=1)
    if len(objectives) > 2:
        c = combos[objectives[2]].to_numpy(float)
        sc = ax.scatter(x, y, c=c, cmap=colormaps["viridis"], s=60, zorder=2)
        fig.colorbar(sc, ax=ax, label=LABELS[objectives[2]])
    else:
        ax.scatter(x, y, s=60, color="tab:blue", zorder=2)
    ax.scatter(
        x[front],
        y[front],
        s=180,
        facecolors="none",
        edgecolors="crimson",
        linewidths=1.8,
        zorder=3,
        label=f"Pareto-optimal in {', '.join(LABELS[o].split(' (')[0] for o in objectives)}",
    )
    order = np.argsort(x[front])
    ax.plot(x[front][order], y[front][order], "--", color="crimson", lw=0.8, zorder=1)
    if len(combos) <= MAX_LABELLED:  # the combination's number in the table; coincident points share a label
        at: dict[tuple[str, str], list[str]] = {}
        for i, (xi, yi) in enumerate(zip(x, y, strict=True)):
            at.setdefault((f"{xi:.6g}", f"{yi:.6g}"), []).append(str(i + 1))
        for (xs, ys), nums in at.items():
            ax.annotate(
                ",".join(nums), (float(xs), float(ys)), xytext=(7, 5), textcoords="offset points", fontsize=8
            )
    ax.set(
        xlabel=LABELS[objectives[0]],
        ylabel=LABELS[objectives[1]],
        title="Trade-off per combination (mean over seeds, 95 % intervals)",
    )
    ax.legend(loc="best", fontsize=8)
    ax.margins(0.12)
    return _save(fig, out / "tradeoff.png")


def _matrix(ok: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean of a metric per consensus (rows) and design (columns), over seeds and the other factors."""
    design = ok[DESIGN] if DESIGN in ok.columns else pd.Series("(not varied)", index=ok.index)
    return ok.assign(_d=design).pivot_table(
        index=CONSENSUS, columns="_d", values=metric, aggfunc="mean", sort=False, dropna=False
    )


def _fig_matrix(ok: pd.DataFrame, out: Path) -> str:
    """Heat maps of late trades, finality p50 and consensus energy, consensus by market design."""
    fig = Figure(figsize=(4.2 * len(MATRIX), 3.6), layout="constrained")
    for ax, m in zip(fig.subplots(1, len(MATRIX)), MATRIX, strict=True):
        mat = _matrix(ok, m)
        v = mat.to_numpy(dtype=float)
        if np.isfinite(v).any():
            im = ax.imshow(v, cmap=colormaps["magma_r"], aspect="auto")
            fig.colorbar(im, ax=ax, shrink=0.8)
        else:
            _note(ax, "no data")
        for (r, c), val in np.ndenumerate(v):
            ax.text(
                c,
                r,
                _sig(float(val)),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if np.isfinite(val) and val > np.nanmean(v) else "black",
            )
        ax.set_xticks(range(v.shape[1]), [str(c) for c in mat.columns], fontsize=8)
        ax.set_yticks(range(v.shape[0]), [str(r) for r in mat.index], fontsize=8)
        ax.set(title=LABELS[m], xlabel=DESIGN if DESIGN in ok.columns else "", ylabel=CONSENSUS)
    return _save(fig, out / "consensus_design.png")


def _value(m: str, v: float) -> str:
    """A metric's value with its unit (from LABELS)."""
    unit = LABELS.get(m, "").rpartition("(")[2].rstrip(")") if "(" in LABELS.get(m, "") else ""
    return f"{_sig(v)} {unit}".rstrip(" -") if unit != "-" else _sig(v)


def _effect_sentence(ok: pd.DataFrame, f: Factor, metrics: list[str]) -> str:
    """Which metric the factor moves most (relative to its mean), between which levels, and how surely."""
    best: tuple[float, str, pd.DataFrame] | None = None
    for m in metrics:
        e = effects(ok, f, m).dropna(subset=["mean"])
        if len(e) < 2:
            continue
        scale = abs(float(ok[m].mean())) or 1.0
        spread = float(e["mean"].max() - e["mean"].min()) / scale
        if spread > 1e-9 and (best is None or spread > best[0]):
            best = (spread, m, e)
    if best is None:
        return f"<b>{html.escape(f.name)}</b> changes none of the headline metrics across its levels."
    _, m, e = best
    lo, hi = e.loc[e["mean"].idxmin()], e.loc[e["mean"].idxmax()]
    ratio = hi["mean"] / lo["mean"] if lo["mean"] else np.nan
    rel = (f" ({ratio:.3g} times)" if ratio > 10 else f" ({100 * (ratio - 1):+.0f} %)") if ratio > 0 else ""
    if np.isfinite(lo["hi"]) and np.isfinite(hi["lo"]):
        sure = (
            "the 95 % intervals over seeds do not overlap"
            if hi["lo"] > lo["hi"]
            else "but the 95 % intervals over seeds overlap"
        )
    else:
        sure = "fewer than two seeds at a level: no interval"
    return (
        f"<b>{html.escape(f.name)}</b> moves {LABELS.get(m, m).split(' (')[0]} most: {_value(m, lo['mean'])} "
        f"with {html.escape(str(lo['level']))} against {_value(m, hi['mean'])} with "
        f"{html.escape(str(hi['level']))}"
        f"{rel}; {sure}."
    )


def _findings(
    df: pd.DataFrame,
    ok: pd.DataFrame,
    factors: list[Factor],
    metrics: list[str],
    combos: pd.DataFrame | None,
    objectives: list[str],
    front: np.ndarray,
) -> list[str]:
    """A few sentences written from the numbers."""
    n_seeds = df["seed"].nunique()
    failed = df[df["status"] != "ok"]
    out = [
        f"{len(df)} runs ({len(df) // max(n_seeds, 1)} combinations x {n_seeds} seed(s)): {len(ok)} ok, "
        f"{len(failed)} failed or not run"
        + (
            ": "
            + "; ".join(
                f"{html.escape(r)} ({html.escape(' '.join(str(e).split())[:120])})"
                for r, e in zip(failed["run_id"][:3], failed["error"][:3], strict=True)
            )
            if len(failed)
            else ""
        )
        + "."
    ]
    out += [_effect_sentence(ok, f, metrics) for f in factors]
    if combos is not None and len(objectives) >= 2:
        names = [LABELS[o].split(" (")[0] for o in objectives]
        for o, name in zip(objectives, names, strict=True):
            best = combos[o].idxmin()
            num = list(combos.index).index(best) + 1
            out.append(
                f"Lowest {name}: #{num} {html.escape(str(best))} ({_value(o, float(combos.loc[best, o]))})."
            )
        out.append(
            f"{int(front.sum())} of {len(combos)} combinations are Pareto-optimal in {', '.join(names)}."
        )
    if CONSENSUS in ok.columns and ok[list(MATRIX)].notna().any().any():
        for m, word in zip(
            MATRIX, ("Fewest late trades", "Fastest median finality", "Least consensus energy"), strict=True
        ):
            mat = _matrix(ok, m).stack(future_stack=True).dropna()
            if mat.notna().any():
                val = float(mat.min())
                best = mat[mat <= val + 1e-9 * max(1.0, abs(val))].index
                names = [html.escape(str(c)) + (f" on {html.escape(str(d))}" if DESIGN in ok.columns else "")
                         for c, d in best]  # fmt: skip
                tie = " (tie)" if len(names) > 1 else ""
                out.append(f"{word}: {' and '.join(names)}{tie} ({_value(m, val)}).")
    return out


def _figure(fn: str, caption: str) -> str:
    return f'<figure><img src="{fn}" alt="{fn}"><figcaption>{caption}</figcaption></figure>'


def _table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "\n".join(
        "<tr>"
        + "".join(f"<td>{_sig(v) if isinstance(v, float) else html.escape(str(v))}</td>" for v in r)
        + "</tr>"
        for r in df.itertuples(index=False)
    )
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def write_study_report(sweep_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write the study report (PNG figures and index.html) of a sweep directory; return the HTML path.

    ``out_dir`` defaults to ``SWEEP/report/``.
    """
    from cosim.dask_sweep import load_study

    root = Path(sweep_dir)
    df = load_study(root)
    spec_path = root / "study.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.is_file() else {}
    out = Path(out_dir) if out_dir is not None else root / "report"
    out.mkdir(parents=True, exist_ok=True)
    ok = df[df["status"] == "ok"]
    factors = _factors(df, spec)
    metrics = [m for m in METRICS if m != "n_steps" and _varies(ok, m)]
    constant = [m for m in METRICS if m != "n_steps" and m not in metrics and ok[m].notna().any()]
    n_seeds = ok["seed"].nunique()
    parts = []
    interval = (
        f"bars are 95 % t-intervals over the {n_seeds} seeds" if n_seeds > 1 else "one seed: no interval"
    )
    const = f" Metrics equal in every run (not drawn): {', '.join(constant)}." if constant else ""
    for i, f in enumerate(factors):
        fig = _fig_effects(ok, f, metrics, out, i)
        parts.append(
            _figure(
                fig,
                f"Effect of <b>{html.escape(f.name)}</b> on each metric that varies: per "
                f"level, the mean over the other factors' levels for each seed, then over the "
                f"seeds; {interval}.{const}",
            )
        )
    objectives = [o for o in TRADEOFF if o in metrics]
    combos, front = None, np.zeros(0, dtype=bool)
    if len(ok) and metrics:
        combos = _combos(ok, factors, metrics)
    if combos is not None and len(objectives) >= 2:
        front = pareto(combos[objectives].to_numpy(float))
        fig = _fig_tradeoff(combos, objectives, front, out)
        names = ", ".join(LABELS[o] for o in objectives)
        parts.append(
            _figure(
                fig,
                f"Trade-off: one point per combination of factor levels (mean over seeds; "
                f"grey bars 95 % intervals over seeds). Ringed in red: the Pareto front, the "
                f"combinations no other one beats in all of {names} (all minimised); the "
                "dashed line joins them by cost. Numbers: rows of the table below.",
            )
        )
    if CONSENSUS in [k for f in factors for k in f.keys] and ok[list(MATRIX)].notna().any().any():
        fig = _fig_matrix(ok, out)
        parts.append(
            _figure(
                fig,
                "Consensus by market design: late trades, median time to finality and "
                "consensus energy per run, mean over seeds and the other factors.",
            )
        )
    findings = _findings(df, ok, factors, metrics, combos, objectives, front)
    by_combo = ""
    if combos is not None:
        show = [m for m in metrics if m in combos.columns]
        table = combos[show].reset_index(names="combination")
        table.insert(0, "#", range(1, len(table) + 1))
        by_combo = "<h2>Per combination (mean over seeds)</h2>\n" + _table(table)
    runs = df[
        [
            "run_id",
            *df.attrs["factors"],
            "seed",
            "status",
            "error",
            "wall_s",
            *[m for m in METRICS if m in df],
        ]
    ]
    body = (
        "<h2>Key findings</h2>\n<ul>"
        + "".join(f"<li>{s}</li>" for s in findings)
        + "</ul>\n"
        + "<h2>Figures</h2>\n"
        + "\n".join(parts)
        + "\n"
        + by_combo
        + f"\n<details><summary>All {len(df)} runs</summary>{_table(runs)}</details>"
        + f"<details><summary>Study</summary><pre>{html.escape(yaml.safe_dump(spec, sort_keys=False))}</pre>"
        "</details>"
    )
    path = out / "index.html"
    path.write_text(
        _page(html.escape(f"Study report: {df.attrs.get('name', root.name)}"), body), encoding="utf-8"
    )
    return path
