"""Learned and strategic bidding in the reports: a policy agent's learning curve and realised profit (one
run), and a comparison of how one player bids across runs on the same grid (competitive, strategic, learned).

Reads only the run files: the ``/agents`` attribute ``strategic_policies`` (JSON: per policy agent its policy
file, learner and learning curve), ``/agents/cost_per_mwh`` and ``/agents/cost_per_mw2h`` (the producers'
true cost data), ``/market/payment``, ``/market/award_mw``, ``/market/price_per_mwh``, ``/market/welfare``
and, with ``market.strategic``, ``/market/competitive_profit`` and ``/market/welfare_loss``.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml
from matplotlib.figure import Figure

from .learning import learning_curve_figure
from .report import Arr, _attr, _ints, _save, _strs

COMPARE_FIG = "comparison_bidding.png"


@dataclass
class PlayerRun:
    """One player's outcome in one run (profits per interval, $; prices at its bus, $/MWh)."""

    run: str
    player: str
    how: str  # "competitive", "strategic (MPEC)" or "learned (policy FILE)"
    step_h: float
    time_s: Arr
    profit: Arr  # (T,) paid to it less the true cost of its dispatch
    competitive: Arr | None  # (T,) /market/competitive_profit where recorded
    lerner: Arr  # (T,) (LMP - cost) / LMP at its bus, NaN where the LMP is 0
    mean_price: float  # mean over steps and buses
    welfare: float  # sum of /market/welfare (at the offers as bid)
    welfare_loss: float | None  # sum of /market/welfare_loss where recorded


def policies(f: h5py.File) -> dict[str, dict]:
    """The run's policy agents (``agents.strategic``): name -> {policy, learner, learning_curve, ...}."""
    g = f.get("agents")
    text = g.attrs.get("strategic_policies", "") if isinstance(g, h5py.Group) else ""
    text = text.decode() if isinstance(text, bytes) else str(text)
    return json.loads(text) if text else {}


def strategic_player(f: h5py.File) -> str | None:
    """Name of the ``market.strategic`` player, from the stored scenario; None without one."""
    try:
        sc = yaml.safe_load(str(_attr(f, "scenario_yaml", ""))) or {}
    except yaml.YAMLError:
        return None
    strat = (sc.get("market") or {}).get("strategic") if isinstance(sc, dict) else None
    return str(strat["player"]) if isinstance(strat, dict) and "player" in strat else None


def player_run(f: h5py.File, run: str, player: str) -> PlayerRun | None:
    """The player's outcome in an open run file; None when the run has no market or no such agent."""
    g = f.get("market")
    names = _strs(f.get("agents/name"))
    if not isinstance(g, h5py.Group) or "payment" not in g or player not in names:
        return None
    a = names.index(player)
    time_s = np.asarray(f["time"][()], dtype=np.int64).ravel()
    step_h = float(_attr(f, "step_s", 3600)) / 3600.0
    pay = np.asarray(g["payment"][:, a], dtype=float)
    p = np.clip(-np.nan_to_num(np.asarray(g["award_mw"][:, a], dtype=float)), 0.0, None)  # produced MW
    c1 = float(f["agents/cost_per_mwh"][a]) if "agents/cost_per_mwh" in f else np.nan
    c2 = float(f["agents/cost_per_mw2h"][a]) if "agents/cost_per_mw2h" in f else 0.0
    cost = (np.nan_to_num(c1) * p + np.nan_to_num(c2) * p * p) * step_h
    price = np.asarray(g["price_per_mwh"][()], dtype=float)
    index, bus = _ints(f.get("grid/bus/index")).tolist(), int(f["agents/bus"][a])  # pandapower indices
    bus_name = _strs(f.get("grid/bus/name"))[index.index(bus)] if bus in index else None
    cols = _strs(g.get("bus"))  # the price columns' bus names
    at_bus = price[:, cols.index(bus_name)] if bus_name in cols else np.full(len(pay), np.nan)
    with np.errstate(all="ignore"):
        lerner = np.where(at_bus != 0, (at_bus - c1) / at_bus, np.nan)
    pol = policies(f)
    if player in pol:
        how = f"learned (policy {Path(str(pol[player].get('policy', ''))).name})"
    elif strategic_player(f) == player:
        how = "strategic (MPEC)"
    else:
        how = "competitive"
    return PlayerRun(
        run=run,
        player=player,
        how=how,
        step_h=step_h,
        time_s=time_s,
        profit=-np.nan_to_num(pay) - cost,
        competitive=np.asarray(g["competitive_profit"][()], dtype=float)
        if "competitive_profit" in g
        else None,  # noqa: E501
        lerner=lerner,
        mean_price=float(np.nanmean(price)) if price.size else np.nan,
        welfare=float(np.nansum(g["welfare"][()])) if "welfare" in g else np.nan,
        welfare_loss=float(np.nansum(g["welfare_loss"][()])) if "welfare_loss" in g else None,
    )


def daily(time_s: Arr, x: Arr) -> tuple[Arr, Arr]:
    """(day start [s], sum per day) of a per-interval series."""
    day = (np.asarray(time_s) // 86400) * 86400
    starts = np.unique(day)
    return starts, np.array([np.nansum(x[day == d]) for d in starts])


# ----------------------------------------------------------------------------------------- one run


def policy_section(f: h5py.File, run: str, out: Path) -> tuple[list[tuple[str, str]], str]:
    """(summary rows, HTML section) of the run's policy agents: learning curve, realised profit per day."""
    rows: list[tuple[str, str]] = []
    figs: list[tuple[str, str]] = []
    for i, (agent, meta) in enumerate(policies(f).items()):
        pr = player_run(f, run, agent)
        curve = np.asarray(meta.get("learning_curve") or [], dtype=float)
        title = f"Learning curve: {agent}"
        fig = learning_curve_figure(curve.tolist(), population=meta.get("population"), title=title)
        days, per_day = daily(pr.time_s, pr.profit) if pr is not None else (np.zeros(0), np.zeros(0))
        if per_day.size:
            ax = fig.axes[0]
            ax.axhline(float(per_day.mean()) * float(meta.get("episode_days") or 1), color="black", lw=1.2,
                       label="realised in this run (per episode length)")  # fmt: skip
            ax.legend(fontsize=8, loc="lower right")
        fn = _save(fig, out / f"policy_{i}.png")
        cap = (f"Learning curve of {agent}'s policy ({meta.get('policy')}): the profit of every training "
               f"episode ({meta.get('learner')}, {curve.size} episodes) and each iteration's best; the black "
               "line is the profit it realised in this run per episode length.")  # fmt: skip
        figs.append((fn, cap))
        rows += [
            (
                f"Policy of {html.escape(agent)}",
                html.escape(f"{meta.get('policy')} ({meta.get('learner')}, {curve.size} training episodes)"),
            ),  # fmt: skip
            (
                f"Learning curve of {html.escape(agent)} first / last",
                f"{curve[0]:.2f} / {curve[-1]:.2f} $ per episode" if curve.size else "not stored",
            ),
        ]
        if pr is not None and per_day.size:
            rows.append(
                (
                    f"Realised profit of {html.escape(agent)}",
                    f"{float(np.sum(pr.profit)):.2f} $ ({per_day.mean():.2f} $/day over {per_day.size} days)",
                )
            )
            fig2 = Figure(figsize=(7.0, 3.0), layout="tight")
            ax2 = fig2.add_subplot()
            ax2.bar(np.arange(per_day.size), per_day, color="C0")
            ax2.set_xticks(np.arange(per_day.size), [str(np.datetime64(int(d), "s"))[:10] for d in days],
                           rotation=45, fontsize=7)  # fmt: skip
            ax2.set(ylabel="profit [$/day]", title=f"{agent}: realised profit per day")
            fn2 = _save(fig2, out / f"policy_{i}_daily.png")
            figs.append((fn2, f"{agent}'s realised profit per day in this run: paid at its bus less the true "
                              "cost of its dispatch (producers; /agents/cost_per_mwh)."))  # fmt: skip
    if not figs:
        return rows, ""
    body = "\n".join(
        f'<figure><img src="{fn}" alt="{fn}"><figcaption>{html.escape(cap)}</figcaption></figure>'
        for fn, cap in figs
    )
    return rows, f"<h2>Learning bidders</h2>\n{body}\n"


# ----------------------------------------------------------------------------------------- comparison


def _grid_key(f: h5py.File) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(_strs(f.get("grid/bus/name"))), tuple(_strs(f.get("agents/name")))


def bidding_runs(runs: list[tuple[str, Path]]) -> list[PlayerRun]:
    """The player's outcome in every run, when the runs share a grid (buses and agents) and at least one has a
    strategic player or a policy agent (the first one named is the player); else []."""
    player, keys = None, set()
    for _, path in runs:
        with h5py.File(path, "r") as f:
            keys.add(_grid_key(f))
            player = player or strategic_player(f) or next(iter(policies(f)), None)
    if player is None or len(keys) != 1 or len(runs) < 2:
        return []
    out = []
    for name, path in runs:
        with h5py.File(path, "r") as f:
            pr = player_run(f, name, player)
        if pr is not None:
            out.append(pr)
    return out if len(out) >= 2 else []


def comparison_rows(pr: PlayerRun) -> dict[str, str]:
    """Cells of one run in the bidding comparison."""
    return {
        "How the player bids": html.escape(pr.how),
        "Player's profit": f"{np.sum(pr.profit):.2f} $",
        "Competitive counterfactual profit": "–"
        if pr.competitive is None
        else f"{np.nansum(pr.competitive):.2f} $",
        "Mean price": f"{pr.mean_price:.2f} $/MWh",
        "Welfare (at offers as bid)": f"{pr.welfare:.2f} $",
        "Welfare loss (at true costs)": "–" if pr.welfare_loss is None else f"{pr.welfare_loss:.2f} $",
        "Lerner index mean at its bus": f"{np.nanmean(pr.lerner):.3f}"
        if np.isfinite(pr.lerner).any()
        else "–",
    }


def _fig_bidding(prs: list[PlayerRun], out: Path) -> str:
    """Player's profit per run (with the competitive counterfactual), and mean price and Lerner index."""
    fig = Figure(figsize=(9, 3.8), layout="tight")
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    x = np.arange(len(prs))
    labels = [f"{p.run}\n{p.how.split(' (')[0]}" for p in prs]
    profits = [float(np.sum(p.profit)) for p in prs]
    bars = left.bar(x, profits, color="C0", label="player's profit")
    left.bar_label(bars, fmt="%.0f", fontsize=7)
    left.set_ylim(top=max([*profits, 1.0]) * 1.3)
    comp = [(i, float(np.nansum(p.competitive))) for i, p in enumerate(prs) if p.competitive is not None]
    if comp:
        left.plot(*zip(*comp, strict=True), "k_", ms=30, mew=2, label="competitive counterfactual")
    left.set_xticks(x, labels, fontsize=7)
    left.set(ylabel="profit [$]", title=f"{prs[0].player}: profit per run")
    left.legend(fontsize=8, loc="upper left")
    right.bar(x - 0.2, [p.mean_price for p in prs], width=0.4, color="C1", label="mean price ($/MWh)")
    right.set_ylabel("mean price [$/MWh]")
    right.set_ylim(top=max([p.mean_price for p in prs if np.isfinite(p.mean_price)] + [1.0]) * 1.3)
    twin = right.twinx()
    twin.bar(x + 0.2, [float(np.nanmean(p.lerner)) if np.isfinite(p.lerner).any() else 0.0 for p in prs],
             width=0.4, color="C2", label="Lerner index")  # fmt: skip
    twin.set(ylabel="Lerner index (P - MC) / P", ylim=(min(0.0, twin.get_ylim()[0]), 1.0))
    right.set_xticks(x, labels, fontsize=7)
    right.set_title("Mean price and the player's Lerner index")
    right.legend(loc="upper left", fontsize=8)
    twin.legend(loc="upper right", fontsize=8)
    return _save(fig, out / COMPARE_FIG)


def bidding_comparison(runs: list[tuple[str, Path]], out: Path) -> str:
    """HTML "bidding" section of a comparison (table, figure); '' unless ``bidding_runs`` finds one."""
    prs = bidding_runs(runs)
    if not prs:
        return ""
    cols = [comparison_rows(p) for p in prs]
    head = "<tr><th>Run</th>" + "".join(f"<th>{html.escape(p.run)}</th>" for p in prs) + "</tr>"
    body = [f"<tr><th>{k}</th>" + "".join(f"<td>{c[k]}</td>" for c in cols) + "</tr>" for k in cols[0]]
    fn = _fig_bidding(prs, out)
    cap = (f"How {prs[0].player} bids: its profit in each run (paid at its bus less the true cost of its "
           "dispatch) against the competitive counterfactual where recorded (market.strategic: the same "
           "interval with it offering its true cost); the mean price over buses and steps and its Lerner "
           "index (LMP - marginal cost) / LMP at its bus.")  # fmt: skip
    table = "\n".join([head, *body])
    return (
        f"\n<h2>Bidding: {html.escape(prs[0].player)}</h2>\n"
        f"<table id='bidding_comparison'>\n{table}\n</table>\n"
        f'<figure><img src="{fn}" alt="{fn}"><figcaption>{html.escape(cap)}</figcaption></figure>'
    )
