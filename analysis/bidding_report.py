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

from .common import Arr, Fig, money, save_png
from .common import attr as _attr
from .common import strs as _strs
from .learning import learning_curve_figure

COMPARE_FIG = "comparison_bidding.png"


def _ints(ds: h5py.Dataset | None) -> Arr:
    """An integer 1-D dataset, empty if missing."""
    return np.zeros(0, dtype=int) if ds is None else np.asarray(ds[()], dtype=int).ravel()


def _save(fig: Figure, path: Path) -> str:
    return save_png(fig, path)


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


@dataclass
class PolicyRun:
    """One policy agent of a run: its policy file's metadata (learning curve included) and its outcome."""

    agent: str
    meta: dict
    outcome: PlayerRun | None


def load_policies(f: h5py.File, run: str) -> list[PolicyRun]:
    """The run's policy agents with their outcomes ([] when the run used no policy)."""
    return [PolicyRun(agent, meta, player_run(f, run, agent)) for agent, meta in policies(f).items()]


class PolicySection:
    """Learning bidders: each policy's learning curve and the profit it realised in the run."""

    title = "Learning bidders"

    def __init__(self, runs: list[PolicyRun]) -> None:
        self.runs = runs

    def _per_day(self, pr: PolicyRun) -> tuple[Arr, Arr]:
        if pr.outcome is None:
            return np.zeros(0), np.zeros(0)
        return daily(pr.outcome.time_s, pr.outcome.profit)

    def findings(self) -> list[str]:
        """The last training episode's profit against the profit realised per episode in the run."""
        out = []
        for pr in self.runs:
            curve = np.asarray(pr.meta.get("learning_curve") or [], dtype=float)
            _, per_day = self._per_day(pr)
            if curve.size and per_day.size:
                days = float(pr.meta.get("episode_days") or 1)
                out.append(
                    f"{html.escape(pr.agent)} learned over {curve.size:,} episodes (last episode "
                    f"{money(curve[-1])}); in this run it realised {money(per_day.mean() * days)} per "
                    f"{days:g}-day episode."
                )
        return out

    def rows(self) -> list[tuple[str, str]]:
        """Policy file, learning curve ends and realised profit per policy agent."""
        rows: list[tuple[str, str]] = []
        for pr in self.runs:
            curve = np.asarray(pr.meta.get("learning_curve") or [], dtype=float)
            a = html.escape(pr.agent)
            what = f"{pr.meta.get('policy')} ({pr.meta.get('learner')}, {curve.size:,} training episodes)"
            rows.append((f"Policy of {a}", html.escape(what)))
            ends = f"{money(curve[0])} / {money(curve[-1])} per episode" if curve.size else "not stored"
            rows.append((f"Learning curve of {a} first / last", ends))
            _, per_day = self._per_day(pr)
            if pr.outcome is not None and per_day.size:
                total = float(np.sum(pr.outcome.profit))
                rows.append(
                    (
                        f"Realised profit of {a}",
                        f"{money(total)} ({money(per_day.mean())}/day, {per_day.size} days)",
                    )
                )
        return rows

    def figures(self) -> list[Fig]:
        """The learning curve (with the realised profit) and the realised profit per day of each agent."""
        figs = []
        for i, pr in enumerate(self.runs):
            curve = np.asarray(pr.meta.get("learning_curve") or [], dtype=float)
            fig = learning_curve_figure(
                curve.tolist(), population=pr.meta.get("population"), title=f"Learning curve: {pr.agent}"
            )
            days, per_day = self._per_day(pr)
            if per_day.size:
                ax = fig.axes[0]
                per_episode = float(per_day.mean()) * float(pr.meta.get("episode_days") or 1)
                ax.axhline(per_episode, color="black", lw=1.2, label="realised in this run (per episode)")
                ax.legend(fontsize=8, loc="lower right")
            agent, policy = html.escape(pr.agent), html.escape(str(pr.meta.get("policy")))
            learner = html.escape(str(pr.meta.get("learner")))
            cap = (
                f"Learning curve of {agent}'s policy ({policy}): the profit of every training episode "
                f"({learner}, {curve.size:,} episodes) and each iteration's best; the black line is the "
                "profit it realised in this run per episode length."
            )
            figs.append(Fig(f"policy_{i}.png", fig, cap))
            if per_day.size:
                fig2 = Figure(figsize=(7.0, 3.0), layout="tight")
                ax2 = fig2.add_subplot()
                ax2.bar(np.arange(per_day.size), per_day, color="C0")
                labels = [str(np.datetime64(int(d), "s"))[:10] for d in days]
                ax2.set_xticks(np.arange(per_day.size), labels, rotation=45, fontsize=7)
                ax2.set(ylabel="profit [$/day]", title=f"{pr.agent}: realised profit per day")
                cap2 = (
                    f"{agent}'s realised profit per day in this run: paid at its bus less the true cost "
                    "of its dispatch (producers: /agents/cost_per_mwh)."
                )
                figs.append(Fig(f"policy_{i}_daily.png", fig2, cap2))
        return figs


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
