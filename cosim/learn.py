"""A learner without heavy dependencies: cross-entropy search over a tabular bidding policy, in numpy.

The policy is a table indexed by the interval of the day (read back from the observation's time-of-day
features) and a state-of-charge bin (storage; one bin by default), holding one action each. Cross-entropy
search (Rubinstein & Kroese 2004) samples whole tables from a Gaussian over a compact parametrisation, runs
one episode per table (every table of an iteration on the same start day: common random numbers), and
refits the Gaussian to the best ``elite`` tables. Parametrisation per cell, in [-1, 1]:
storage: the net power u (u > 0 charges u * power at the top limit price, u < 0 discharges at limit 0:
a price-taking bid); producer: (offer share, offer price share); EV: (charge share, limit price share).

Policy files are JSON with their metadata (format, agent, role, step, limits), checked against the agent
that uses them (``agents.strategic``), and the learning curve (profit of every training episode).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosim.bidder_view import AgentView
from cosim.errors import ScenarioError

FORMAT = "cosim-policy"
VERSION = 1


@dataclass
class TablePolicy:
    """Action of every (interval of day, state-of-charge bin) cell; ``act`` maps an observation to it."""

    table: np.ndarray  # (steps_per_day, n_soc_bins, action_dim)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def steps_per_day(self) -> int:
        return int(self.table.shape[0])

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The table's action for an observation (time of day from its sin/cos, bin from its state)."""
        n_day, n_bin = self.table.shape[:2]
        phase = np.arctan2(float(obs[1]), float(obs[2])) % (2 * np.pi)
        t = int(np.round(phase / (2 * np.pi) * n_day)) % n_day
        b = min(int(float(obs[0]) * n_bin), n_bin - 1)
        return self.table[t, b].astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the policy and its metadata as JSON."""
        path = Path(path)
        data = {"format": FORMAT, "version": VERSION, **self.meta, "table": self.table.tolist()}
        path.write_text(json.dumps(data, indent=1))
        return path


def load_policy(path: str | Path) -> TablePolicy:
    """Read a policy file; ValueError when it is not one."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} v{VERSION} file")
    table = np.asarray(data.pop("table"), dtype=float)
    if table.ndim != 3:
        raise ValueError(f"{path}: the table must have 3 dimensions, has {table.ndim}")
    return TablePolicy(table, {k: v for k, v in data.items() if k not in ("format", "version")})


def policy_meta(view: AgentView, step_s: int) -> dict[str, Any]:
    """What a policy file records about the agent it was trained for."""
    return {
        "agent": view.name,
        "kind": view.kind,
        "role": view.role,
        "step_s": int(step_s),
        "action_low": view.low.tolist(),
        "action_high": view.high.tolist(),
        "observation": view.obs_names,
    }


def check_policy(policy: TablePolicy, view: AgentView, step_s: int, where: str) -> None:
    """Refuse a policy trained for another agent, role, step or limits (ScenarioError at ``where``)."""
    want, got = policy_meta(view, step_s), policy.meta
    problems = [
        f"{key} is {got.get(key)!r} in the file but {want[key]!r} here"
        for key in ("agent", "role", "step_s", "observation")
        if got.get(key) != want[key]
    ]
    for key in ("action_low", "action_high"):
        have, need = np.asarray(got.get(key, []), dtype=float), np.asarray(want[key], dtype=float)
        if have.shape != need.shape or not np.allclose(have, need, rtol=1e-6):
            problems.append(f"{key} is {got.get(key)} in the file but {want[key]} here (other limits)")
    if policy.table.shape[0] * step_s != 86400 or policy.table.shape[2] != len(view.low):
        problems.append(f"table of shape {policy.table.shape} does not fit {86400 // step_s} steps a day")
    if problems:
        raise ScenarioError([(where, "policy does not fit this agent: " + "; ".join(problems))])


class PolicyBidder:
    """An ``agents.strategic`` agent in a run: its steps of every interval's bids come from the policy."""

    def __init__(self, view: AgentView, policy: TablePolicy) -> None:
        self.view, self.policy = view, policy

    def bid(self, k: int, bids: Any) -> Any:
        return self.view.apply(k, bids, self.policy.act(self.view.observe(k)))[0]

    def settle(self, k: int, award_mw: np.ndarray, price_per_mwh: np.ndarray) -> None:
        self.view.settle(k, award_mw, price_per_mwh)


def build_strategic(scenario: Any, net: Any, fleet: Any, market: Any) -> list[PolicyBidder]:
    """The run's policy bidders from ``agents.strategic`` (names and policy files checked)."""
    from cosim.bidder_view import default_price_max

    out = []
    if scenario.agents.strategic and market is None:
        raise ScenarioError([("agents.strategic", "policies bid in a market: add a market section")])
    for i, s in enumerate(scenario.agents.strategic):
        where = f"agents.strategic.{i}"
        try:
            policy = load_policy(s.policy)
        except (OSError, ValueError) as exc:
            raise ScenarioError([(f"{where}.policy", str(exc))]) from None
        names = [str(n) for n in fleet.table.name]
        bus_pos = int(net.bus.index.get_indexer([int(fleet.table.bus[names.index(s.agent)])])[0]) if (
            s.agent in names) else 0  # fmt: skip
        cap = float(policy.meta.get("price_max_per_mwh") or default_price_max(market.bidder))
        view = AgentView(fleet, market.bidder, s.agent, price_max_per_mwh=cap,
                         n_lags=int(policy.meta.get("n_lags", 3)), voll_per_mwh=scenario.market.voll_per_mwh,
                         bus_pos=bus_pos, where=f"{where}.agent")  # fmt: skip
        check_policy(policy, view, scenario.time.step_s, f"{where}.policy")
        out.append(PolicyBidder(view, policy))
    return out


def policy_attrs(bidders: list[PolicyBidder], files: list[Any]) -> str:
    """JSON of the run attribute ``agents/strategic_policies``: per agent its policy file, learner and
    learning curve (profit of every training episode, $), so the report needs only the run's HDF5 file."""
    keep = ("role", "learner", "scenario", "episodes", "population", "episode_days", "seed")
    return json.dumps({
        b.view.name: {"policy": str(f), **{k: b.policy.meta.get(k) for k in keep},
                      "learning_curve": [float(x) for x in b.policy.meta.get("learning_curve", [])]}
        for b, f in zip(bidders, files, strict=True)
    })  # fmt: skip


def _table(view: AgentView, theta: np.ndarray) -> np.ndarray:
    """Actions of a parameter table theta (steps, bins, n_param) in [-1, 1]."""
    lo, hi = view.low, view.high
    if view.role == "storage":
        u = theta[..., 0]
        return np.stack(
            [
                np.clip(u, 0, 1) * hi[0],
                np.full_like(u, hi[1]),
                np.clip(-u, 0, 1) * hi[2],
                np.full_like(u, lo[3]),
            ],
            axis=-1,
        )
    share = (np.clip(theta, -1, 1) + 1) / 2
    return lo + share * (hi - lo)


def episode_return(env: Any, policy: TablePolicy, seed: int | None) -> float:
    """Profit [$] of one episode of ``policy`` in ``env``."""
    obs, _ = env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
        total += reward
        done = terminated or truncated
    return total


def train_cem(
    env: Any,
    *,
    episodes: int = 600,
    population: int = 24,
    elite: int = 6,
    n_soc_bins: int = 1,
    seed: int = 0,
    sigma0: float = 0.6,
) -> tuple[TablePolicy, list[float]]:
    """Cross-entropy search of a table policy for ``env`` (a `MarketEnv`) over ``episodes`` episodes.

    Returns the mean table of the last iteration and the profit of every episode run, in order.
    """
    view, steps = env.view, env.loop.steps_per_day
    n_param = 1 if view.role == "storage" else len(view.low)
    rng = np.random.default_rng(seed)
    mean = np.zeros((steps, n_soc_bins, n_param))
    if view.role != "storage":
        mean[...] = 0.0
    sd = np.full_like(mean, sigma0)
    curve: list[float] = []
    best_theta, best = mean.copy(), -np.inf
    for it in range(max(1, episodes // population)):
        episode_seed = int(rng.integers(2**31))
        thetas = np.clip(mean + sd * rng.standard_normal((population, *mean.shape)), -1, 1)
        scores = np.array([episode_return(env, TablePolicy(_table(view, th)), episode_seed) for th in thetas])
        curve += scores.tolist()
        top = thetas[np.argsort(-scores)[:elite]]
        if scores.max() > best:
            best, best_theta = float(scores.max()), thetas[int(np.argmax(scores))]
        mean = top.mean(axis=0)
        sd = top.std(axis=0) + sigma0 * 0.1 / (1 + it)  # a little noise that decays keeps the search alive
    final = TablePolicy(_table(view, mean))
    final_score = episode_return(env, final, int(rng.integers(2**31)))
    if env.start_day is not None and best > final_score:  # one fixed day: the best table seen is exact
        final = TablePolicy(_table(view, best_theta))
    meta = policy_meta(view, env.loop.scenario.time.step_s) | {
        "learner": "cem",
        "scenario": env.loop.scenario.name,
        "episode_days": env.days,
        "episodes": len(curve),
        "population": population,
        "elite": elite,
        "seed": seed,
        "price_max_per_mwh": view.price_max,
        "n_lags": view.n_lags,
        "learning_curve": curve,
    }
    final.meta = meta
    return final, curve
