"""Learning bidders: a scenario's market as a gymnasium environment (one agent) or a PettingZoo one (several).

Every step runs the scenario's own cores, built by the same builders as a study (`cosim.world`): the
fleet's bids for the interval (the controlled agents' replaced by the policy's actions), the configured
market design's clearing, the agents' set-points from their awards and the AC power flow of that
dispatch, and the settlement (the payment of every agent). No mosaik: the cores are driven in the order
a run steps them (bids for step k were made after step k-1, then clear, set-points, power flow).

An episode is a day or a week from a start day drawn from the scenario's period with the seed of
``reset`` (or a fixed ``start_day``); every episode starts from the scenario's initial states of charge,
and the other batteries' arbitrage planners (if any) start without history. The reward is the agent's
profit in the interval [$] (see `cosim.bidder_view` for roles, spaces and observations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from cosim.bidder_view import AgentView, default_price_max
from cosim.errors import ScenarioError
from cosim.models.market.designs import design
from cosim.scenario import Scenario, load_scenario

EPISODE_DAYS = {"day": 1, "week": 7}


class CoreLoop:
    """The cores of one scenario stepped in a run's order: bids, clearing, set-points, power flow."""

    def __init__(self, scenario: Scenario | str | Path) -> None:
        from cosim.cores import build_market, build_models

        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        if scenario.market is None:
            raise ScenarioError([("market", "a learning bidder needs a market section")])
        if design(scenario.market.design).capabilities.day_ahead:
            why = f"{scenario.market.design} clears whole days ahead: use a design cleared step by step"
            raise ScenarioError([("market.design", why)])
        self.scenario = scenario
        self.net, self.fleet, self.power_flow, self.times_s, self.events = build_models(scenario)
        market = build_market(scenario, self.net, self.fleet, self.events)
        assert market is not None
        self.market = market
        self.steps_per_day = 86400 // scenario.time.step_s
        self._soc0 = self.fleet.batteries.soc_mwh.copy()
        self.planner: Any = None
        self.last_pf: Any = None  # the last step's power flow and market result
        self.last_result: Any = None

    def bus_pos(self, agent: int) -> int:
        """Position of an agent's bus in the market's price vector (net.bus row order)."""
        return int(self.net.bus.index.get_indexer([int(self.fleet.table.bus[agent])])[0])

    def reset(self, k: int) -> None:
        """Back to the initial states of charge, a fresh arbitrage planner, at step ``k``."""
        from cosim.cores import build_planner

        self.fleet.batteries.soc_mwh = self._soc0.copy()
        self.planner = build_planner(self.scenario, self.net, self.fleet)

    def bids(self, k: int, strategic: Any = ()) -> dict[str, Any]:
        """The fleet's bids for step ``k`` (as `next_bids` makes them in a run)."""
        from cosim.models.agents.sim import next_bids

        return next_bids(self.fleet, self.market.bidder, k, self.planner, self.events, strategic)

    def step(self, k: int, pending: dict[str, Any]) -> Any:
        """Clear ``pending`` for step ``k``, run the awarded dispatch and its power flow; the MarketResult."""
        result = self.market.clear(pending["bids"], pending["forecast_mw"], k, pending["grid_forming_mwh"])
        setpoints = self.fleet.step_awarded(k, result.award_mw)
        if self.events is None:
            self.last_pf = self.power_flow.solve(setpoints.p_mw, setpoints.q_mvar)
        else:
            state = self.events.state(k)
            self.last_pf = self.power_flow.solve(
                setpoints.p_mw, setpoints.q_mvar, out_branches=state.out_branches,
                grid_forming=state.grid_forming,
            )  # type: ignore[call-arg]  # fmt: skip
        if self.planner is not None:
            self.planner.observe(k, result.price_per_mwh)
        self.last_result = result
        return result

    def start_step(self, rng: np.random.Generator, days: int, start_day: int | None) -> int:
        """First step of an episode of ``days`` days: day ``start_day`` or a random whole day that fits."""
        n_days = len(self.times_s) // self.steps_per_day - days + 1
        if n_days < 1:
            raise ScenarioError([("time.duration", f"shorter than an episode of {days} day(s)")])
        day = int(rng.integers(n_days)) if start_day is None else int(start_day)
        if not 0 <= day < n_days:
            raise ValueError(f"start_day {day} outside 0..{n_days - 1}")
        return day * self.steps_per_day


def _view(loop: CoreLoop, name: str, price_max: float | None, n_lags: int, where: str) -> AgentView:
    bidder = loop.market.bidder
    cap = price_max or default_price_max(bidder, loop.market.posted_price_per_mwh)
    table = loop.fleet.table
    names = [str(n) for n in table.name]
    bus_pos = loop.bus_pos(names.index(name)) if name in names else 0
    voll = loop.scenario.market.voll_per_mwh if loop.scenario.market else 3000.0
    return AgentView(loop.fleet, bidder, name, price_max_per_mwh=cap, n_lags=n_lags, voll_per_mwh=voll,
                     bus_pos=bus_pos, where=where)  # fmt: skip


class MarketEnv(gym.Env):  # type: ignore[misc]
    """One agent of a scenario bids by the policy; everyone else as in the scenario.

    Parameters
    ----------
    scenario : a Scenario or the path of its YAML
    agent : the controlled agent's name (as in /agents/name)
    episode : ``day`` or ``week``
    start_day : fixed first day of every episode (index into the scenario's days); default: drawn per reset
    price_max_per_mwh : upper bound of the action's limit prices (default: twice the highest ordinary price)
    n_lags : recent prices at the agent's bus in the observation
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        scenario: Scenario | str | Path,
        agent: str,
        episode: str = "day",
        *,
        start_day: int | None = None,
        price_max_per_mwh: float | None = None,
        n_lags: int = 3,
        loop: CoreLoop | None = None,
    ) -> None:
        if episode not in EPISODE_DAYS:
            raise ValueError(f"episode must be 'day' or 'week', not {episode!r}")
        self.loop = loop or CoreLoop(scenario)
        self.view = _view(self.loop, agent, price_max_per_mwh, n_lags, "agent")
        self.agent, self.days, self.start_day = agent, EPISODE_DAYS[episode], start_day
        self.n_steps = self.days * self.loop.steps_per_day
        low, high = self.view.obs_bounds()
        self.observation_space = gym.spaces.Box(low, high, dtype=np.float32)
        self.action_space = gym.spaces.Box(
            self.view.low.astype(np.float32), self.view.high.astype(np.float32), dtype=np.float32
        )
        self.k = self.k_end = 0
        self.pending: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode; the same seed gives the same start day and the same trajectory."""
        super().reset(seed=seed)
        start_day = (options or {}).get("start_day", self.start_day)
        self.k = self.loop.start_step(self.np_random, self.days, start_day)
        self.k_end = self.k + self.n_steps
        self.loop.reset(self.k)
        self.view.reset(self.k)
        self.pending = self.loop.bids(self.k)
        return self.view.observe(self.k), {"step": self.k}

    def ordinary_action(self) -> np.ndarray:
        """The action that bids what the agent would bid by its ordinary rule this step."""
        return self.view.ordinary_action(self.pending["bids"])

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        """Bid ``action`` (clipped to the physical limits), clear, dispatch, settle; reward = profit [$]."""
        k = self.k
        bids, used = self.view.apply(k, self.pending["bids"], action)
        result = self.loop.step(k, self.pending | {"bids": bids})
        penalty = self.view.settle(k, result.award_mw, result.price_per_mwh)
        reward = self.view.reward(result.payment, penalty, result.award_mw)
        self.k += 1
        done = self.k >= self.k_end
        if not done:
            self.pending = self.loop.bids(self.k)
        info = _info(self.view, result, used, k, self.loop)
        return self.view.observe(self.k), reward, done, False, info


def _info(view: AgentView, result: Any, used: np.ndarray, k: int, loop: CoreLoop) -> dict[str, Any]:
    b = loop.fleet.batteries
    return {
        "step": k,
        "action_used": used,
        "price_per_mwh": float(result.price_per_mwh[view.bus_pos]),
        "award_mw": float(result.award_mw[view.device]),
        "soc_mwh": float(b.soc_mwh[view.battery]) if view.battery >= 0 else np.nan,
        "market_ok": bool(result.ok),
        "power_flow_converged": bool(getattr(loop.last_pf, "converged", True)),
    }


class MarketParallelEnv(ParallelEnv):  # type: ignore[misc]
    """Several agents of one scenario bid by their policies at once (PettingZoo parallel API).

    Parameters as `MarketEnv`, with ``agents`` a list of agent names (no two controlling the same device).
    """

    metadata: dict[str, Any] = {"name": "cosim_market_v0", "render_modes": []}

    def __init__(
        self,
        scenario: Scenario | str | Path,
        agents: list[str],
        episode: str = "day",
        *,
        start_day: int | None = None,
        price_max_per_mwh: float | None = None,
        n_lags: int = 3,
    ) -> None:
        if episode not in EPISODE_DAYS:
            raise ValueError(f"episode must be 'day' or 'week', not {episode!r}")
        self.loop = CoreLoop(scenario)
        self.views = {
            a: _view(self.loop, a, price_max_per_mwh, n_lags, f"agents.{i}") for i, a in enumerate(agents)
        }
        devices = [v.device for v in self.views.values()]
        if len(set(devices)) < len(devices):
            raise ValueError("two of the agents control the same device (a household and its battery?)")
        self.possible_agents = list(agents)
        self.agents: list[str] = []
        self.days, self.start_day = EPISODE_DAYS[episode], start_day
        self.n_steps = self.days * self.loop.steps_per_day
        self._obs_spaces, self._act_spaces = {}, {}
        for a, v in self.views.items():
            low, high = v.obs_bounds()
            self._obs_spaces[a] = gym.spaces.Box(low, high, dtype=np.float32)
            self._act_spaces[a] = gym.spaces.Box(
                v.low.astype(np.float32), v.high.astype(np.float32), dtype=np.float32
            )
        self.k = self.k_end = 0
        self.pending: dict[str, Any] = {}
        self._rng = np.random.default_rng()

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return self._obs_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Box:
        return self._act_spaces[agent]

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Start an episode for every agent; the same seed gives the same trajectory."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            for i, a in enumerate(self.possible_agents):
                self._act_spaces[a].seed(seed + i)
                self._obs_spaces[a].seed(seed + i)
        start_day = (options or {}).get("start_day", self.start_day)
        self.k = self.loop.start_step(self._rng, self.days, start_day)
        self.k_end = self.k + self.n_steps
        self.loop.reset(self.k)
        for v in self.views.values():
            v.reset(self.k)
        self.agents = list(self.possible_agents)
        self.pending = self.loop.bids(self.k)
        return {a: v.observe(self.k) for a, v in self.views.items()}, {
            a: {"step": self.k} for a in self.agents
        }

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Every agent's bid (an agent without an action bids its ordinary bid), one clearing, the profits."""
        k, bids, used = self.k, self.pending["bids"], {}
        for a, v in self.views.items():
            act = actions.get(a)
            bids, used[a] = v.apply(k, bids, v.ordinary_action(bids) if act is None else act)
        result = self.loop.step(k, self.pending | {"bids": bids})
        rewards = {}
        for a, v in self.views.items():
            penalty = v.settle(k, result.award_mw, result.price_per_mwh)
            rewards[a] = v.reward(result.payment, penalty, result.award_mw)
        self.k += 1
        done = self.k >= self.k_end
        if not done:
            self.pending = self.loop.bids(self.k)
        obs = {a: v.observe(self.k) for a, v in self.views.items()}
        infos = {a: _info(v, result, used[a], k, self.loop) for a, v in self.views.items()}
        agents = self.agents
        if done:
            self.agents = []
        return obs, rewards, dict.fromkeys(agents, done), dict.fromkeys(agents, False), infos
