"""Market-power section of the run report: screens (HHI, RSI duration curve) and the strategic player.

Reads ``/market/hhi``, ``/market/rsi``, ``/market/rsi_min``, ``/market/pivotal`` (every network run) and,
with ``market.strategic``, ``/market/strategic_offer_per_mwh``, ``strategic_profit``,
``competitive_profit``, ``lerner_index`` and ``welfare_loss``. A run without the screens gets no section.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .common import Arr, Fig, fmt, money, num, render_section
from .common import dates as _dates
from .common import note as _note

FIGS = ("market_power_rsi.png", "market_power_strategic.png")
LABELLED = 6  # suppliers of lowest mean RSI drawn in colour with a legend entry
LOG_ABOVE = 20.0  # RSIs beyond this: symlog axis


@dataclass
class MarketPower:
    """One run's market-power datasets."""

    time_s: Arr  # (T,)
    step_h: float
    supplier: list[str]
    hhi: Arr  # (T,)
    rsi: Arr  # (T, n_supplier)
    rsi_min: Arr  # (T,)
    pivotal: Arr  # (T, n_supplier) bool
    offer: Arr | None = None  # (T,) strategic datasets, None without a player
    profit: Arr | None = None
    competitive: Arr | None = None
    lerner: Arr | None = None
    welfare_loss: Arr | None = None


def load_market_power(f: h5py.File) -> MarketPower | None:
    """Read the screens and strategic datasets of an open run file; None without the screens."""
    g = f.get("market")
    if not isinstance(g, h5py.Group) or "hhi" not in g:
        return None
    time_s = np.asarray(f["time"][()], dtype=np.int64).ravel()
    step_h = float((time_s[1] - time_s[0]) / 3600) if time_s.size > 1 else 1.0

    def vec(key: str) -> Arr | None:
        return np.asarray(g[key][()], dtype=float) if key in g else None

    names = [n.decode() if isinstance(n, bytes) else str(n) for n in g["supplier_name"][()]]
    return MarketPower(
        time_s=time_s,
        step_h=step_h,
        supplier=names,
        hhi=np.asarray(g["hhi"][()], dtype=float),
        rsi=np.asarray(g["rsi"][()], dtype=float),
        rsi_min=np.asarray(g["rsi_min"][()], dtype=float),
        pivotal=np.asarray(g["pivotal"][()], dtype=bool),
        offer=vec("strategic_offer_per_mwh"),
        profit=vec("strategic_profit"),
        competitive=vec("competitive_profit"),
        lerner=vec("lerner_index"),
        welfare_loss=vec("welfare_loss"),
    )


def market_power_rows(mp: MarketPower) -> list[tuple[str, str]]:
    """Summary rows: HHI, RSI, pivotal hours; with a strategic player its markup, profits and welfare loss."""
    hours = np.count_nonzero(mp.pivotal.any(axis=1)) * mp.step_h
    most = int(np.argmax(mp.pivotal.sum(axis=0))) if mp.pivotal.size else -1
    rows = [
        ("HHI of supply mean / max", f"{fmt(np.nanmean(mp.hhi), '.0f')} / {fmt(np.nanmax(mp.hhi), '.0f')}"),
        (
            "RSI minimum mean / lowest",
            f"{fmt(np.nanmean(mp.rsi_min), '.3f')} / {fmt(np.nanmin(mp.rsi_min), '.3f')}",
        ),
        ("Hours with a pivotal supplier", f"{fmt(hours, '.1f')} h"),
    ]
    if most >= 0 and mp.pivotal[:, most].any():
        rows.append(
            ("Most often pivotal", f"{html.escape(mp.supplier[most])} ({mp.pivotal[:, most].sum()} steps)")
        )
    if mp.offer is not None:
        assert mp.profit is not None and mp.competitive is not None and mp.lerner is not None
        assert mp.welfare_loss is not None
        rows += [
            (
                "Strategic offer mean / max",
                f"{fmt(np.nanmean(mp.offer), '.2f')} / {fmt(np.nanmax(mp.offer), '.2f')} $/MWh",
            ),
            (
                "Lerner index mean / max",
                f"{fmt(np.nanmean(mp.lerner), '.3f')} / {fmt(np.nanmax(mp.lerner), '.3f')}",
            ),
            (
                "Strategic / competitive profit",
                f"{fmt(np.nansum(mp.profit), '.2f')} / {fmt(np.nansum(mp.competitive), '.2f')} $",
            ),
            ("Welfare loss from market power", f"{fmt(np.nansum(mp.welfare_loss), '.2f')} $"),
        ]
    return rows


def plot_rsi(mp: MarketPower) -> Figure:
    """RSI duration curves: the ``LABELLED`` suppliers of lowest mean RSI in colour (the rest grey) and the
    interval minimum, sorted high to low; a symlog axis when RSIs reach beyond ``LOG_ABOVE``."""
    fig = Figure(figsize=(8, 4.5), layout="tight")
    ax = fig.add_subplot()
    t = mp.rsi_min.size
    share = 100.0 * (np.arange(t) + 0.5) / max(t, 1)
    with np.errstate(all="ignore"):
        order = np.argsort(np.nan_to_num(np.nanmean(mp.rsi, axis=0), nan=np.inf), kind="stable")
    shown = set(order[:LABELLED].tolist())
    for k, name in enumerate(mp.supplier):
        curve = np.sort(mp.rsi[:, k])[::-1]
        if k in shown:
            ax.plot(share, curve, lw=1.2, label=name)
        else:
            ax.plot(
                share, curve, lw=0.6, color="0.75", label="other suppliers" if k == order[LABELLED] else None
            )
    ax.plot(share, np.sort(mp.rsi_min)[::-1], color="black", lw=2, label="minimum over suppliers")
    ax.axhline(1.0, color="red", ls="--", lw=1, label="RSI = 1 (pivotal below)")
    if np.nanmax(mp.rsi, initial=0.0) > LOG_ABOVE:
        ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(bottom=0.0)  # an RSI is never negative
    ax.set_xlabel("share of intervals (%)")
    ax.set_ylabel("residual supply index")
    ax.set_title("RSI duration curve: (capacity - supplier's capacity) / demand, sorted")
    ax.legend(fontsize=7, ncol=2)
    return fig


def plot_strategic(mp: MarketPower) -> Figure:
    """Strategic offer and Lerner index over time (top), profits and welfare loss per interval (bottom)."""
    fig = Figure(figsize=(9, 6), layout="tight")
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2, sharex=None)
    when = pd.to_datetime(mp.time_s, unit="s")
    if mp.offer is None or mp.lerner is None or mp.profit is None or mp.competitive is None:
        _note(top, "no strategic player (market.strategic)")
        _note(bottom, "no strategic player")
    else:
        top.step(when, mp.offer, where="post", color="tab:red", label="offer ($/MWh)")
        top.set_ylabel("offer ($/MWh)")
        twin = top.twinx()
        twin.step(when, mp.lerner, where="post", color="tab:blue", ls="--", label="Lerner index")
        twin.set_ylabel("Lerner index (P - MC) / P")
        twin.set_ylim(min(0.0, float(np.nanmin(mp.lerner, initial=0.0))), 1.0)
        top.set_title("Strategic player: offer and Lerner index at its bus")
        top.legend(loc="upper left", fontsize=8)
        twin.legend(loc="upper right", fontsize=8)
        bottom.step(when, mp.profit, where="post", label="strategic profit ($)")
        bottom.step(when, mp.competitive, where="post", label="competitive profit ($)")
        if mp.welfare_loss is not None:
            bottom.step(when, mp.welfare_loss, where="post", label="welfare loss ($)")
        bottom.set_title("Profit with and without market power, and the welfare it costs, per interval")
        bottom.legend(fontsize=8)
        _dates(top)
        _dates(bottom)
    return fig


RSI_CAPTION = (
    "Residual supply index duration curve: RSI_i = (total offered capacity - supplier i's) / cleared "
    "demand, each supplier and the minimum, sorted; below 1 the supplier is pivotal."
)
STRATEGIC_CAPTION = (
    "Strategic player (market.strategic): its MPEC offer and Lerner index (P - MC) / P at its bus; its "
    "profit against offering its true cost, and the welfare loss (competitive minus strategic welfare at "
    "true costs)."
)


@dataclass
class MarketPowerSection:
    """The market-power part of a run report (the :class:`~analysis.common.Section` protocol)."""

    mp: MarketPower
    title: str = "Market power"

    def rows(self) -> list[tuple[str, str]]:
        """Summary rows."""
        return market_power_rows(self.mp)

    def findings(self) -> list[str]:
        """Concentration, pivotal hours and, with a strategic player, what its market power cost."""
        mp = self.mp
        hours = float(np.count_nonzero(mp.pivotal.any(axis=1)) * mp.step_h)
        total = float(mp.rsi_min.size * mp.step_h)
        out = [
            f"The mean HHI of supply was {num(float(np.nanmean(mp.hhi)), 0)} (above 2,500 is highly "
            f"concentrated); a supplier was pivotal (RSI below 1) in {num(hours, 1)} of {num(total, 1)} h."
        ]
        if mp.welfare_loss is not None and mp.profit is not None and mp.competitive is not None:
            out.append(
                f"The strategic player earned {money(float(np.nansum(mp.profit)))} instead of "
                f"{money(float(np.nansum(mp.competitive)))} at its true cost; its market power cost "
                f"{money(float(np.nansum(mp.welfare_loss)))} of welfare."
            )
        return out

    def figures(self) -> list[Fig]:
        """The RSI duration curve and the strategic player, captioned."""
        return [
            Fig(FIGS[0], plot_rsi(self.mp), html.escape(RSI_CAPTION)),
            Fig(FIGS[1], plot_strategic(self.mp), html.escape(STRATEGIC_CAPTION)),
        ]


def market_power_section(mp: MarketPower, out: Path) -> str:
    """HTML section: findings, the RSI duration curve and, with a strategic player, its markups, captioned."""
    return render_section(MarketPowerSection(mp), out)
