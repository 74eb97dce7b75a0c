"""Learning bidders: gymnasium and PettingZoo environments over a scenario's cores, and the CEM learner."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from cosim.scenario import Scenario, load_scenario

SCENARIO = Path(__file__).parents[2] / "scenarios" / "rl_arbitrage.yaml"
BATTERY = "LV1.101 Load 11 battery"  # placed with PV and EV shares of 0.3 (seeded)


def _scenario(design: str = "tou", days: str = "7d") -> Scenario:
    """The arbitrage scenario with PV and an EV, so every role has an agent."""
    s = load_scenario(SCENARIO)
    agents = s.agents.model_copy(
        update={
            "pv": s.agents.pv.model_copy(update={"share": 0.3}),
            "ev": s.agents.ev.model_copy(update={"share": 0.3}),
        }
    )
    market = s.market.model_copy(update={"design": design}) if s.market else None
    time = s.time.model_copy(update={"duration": days, "end": None})
    return s.model_copy(update={"agents": agents, "market": market, "time": time})


@pytest.fixture(scope="module")
def env():
    from cosim.rl import MarketEnv

    return MarketEnv(_scenario(), agent=BATTERY)


def test_check_env_passes(env) -> None:
    """gymnasium's env checker accepts the single-agent environment."""
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice only: asymmetric Box, no render modes
        check_env(env, skip_render_check=True)


def test_parallel_api_test_passes() -> None:
    """PettingZoo's parallel API test accepts a battery, a PV and an EV learning at once."""
    from pettingzoo.test import parallel_api_test

    from cosim.rl import MarketParallelEnv

    agents = [BATTERY, "LV1.101 Load 4 PV", "LV1.101 Load 11 EV"]
    par = MarketParallelEnv(_scenario(), agents)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parallel_api_test(par, num_cycles=30)
    obs, _ = par.reset(seed=3)
    assert set(obs) == set(agents)


def _rollout(env, seed: int) -> tuple[list[np.ndarray], list[float]]:
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    seen, rewards, done = [obs], [], False
    while not done:
        obs, reward, done, _, _ = env.step(env.action_space.sample())
        seen.append(obs)
        rewards.append(reward)
    return seen, rewards


def test_reset_seed_reproducible(env) -> None:
    """The same seed gives the same start day and the same trajectory; other seeds other days."""
    obs_a, rew_a = _rollout(env, 11)
    obs_b, rew_b = _rollout(env, 11)
    assert np.array_equal(np.array(obs_a), np.array(obs_b))
    assert rew_a == rew_b
    starts = {env.reset(seed=s)[1]["step"] for s in range(12)}
    assert len(starts) > 1  # the start day is drawn from the seven


def test_actions_clipped_to_physical_limits(env) -> None:
    """Bids far beyond the limits are cut to what power and state of charge allow; SoC stays in bounds."""
    b, i = env.loop.fleet.batteries, env.view.battery
    env.reset(seed=0, options={"start_day": 0})
    rng = np.random.default_rng(1)
    for _ in range(24):
        sign = rng.choice([-1.0, 1.0])
        action = np.array([1e3 * (sign > 0), 1e4, 1e3 * (sign < 0), -1e4], dtype=np.float32)
        _, _, _, _, info = env.step(action)
        used = info["action_used"]
        assert used[0] <= b.power_mw[i] + 1e-12 and used[2] <= b.power_mw[i] + 1e-12
        assert 0.0 <= used[1] <= env.view.price_max and used[3] == 0.0
        assert b.soc_min_mwh[i] - 1e-12 <= info["soc_mwh"] <= b.soc_max_mwh[i] + 1e-12
    assert info["soc_mwh"] in (pytest.approx(b.soc_min_mwh[i]), pytest.approx(b.soc_max_mwh[i]))


def test_household_reward_is_the_households_profit(env) -> None:
    """A household with a battery: the policy bids its battery, the reward adds the load's and EV's bills."""
    from cosim.rl import MarketEnv

    home = MarketEnv(_scenario(), agent="LV1.101 Load 11", loop=env.loop)
    assert home.view.role == "storage" and home.view.device == env.view.device
    assert len(home.view.members) == 3  # load, battery, EV
    for k in range(3):
        action = np.array([0.001, 200.0, 0.0, 0.0], dtype=np.float32)  # charge 1 kW at any posted price
        env.reset(seed=0, options={"start_day": 0})
        for _ in range(k):
            env.step(action)
        _, battery_reward, _, _, _ = env.step(action)
        home.reset(seed=0, options={"start_day": 0})
        for _ in range(k):
            home.step(action)
        _, home_reward, _, _, _ = home.step(action)
        p0 = env.loop.fleet.baseline(k)[0]
        bills = env.loop.market.posted_price_per_mwh[k] * sum(
            p0[m] for m in home.view.members if m != home.view.device
        )
        assert battery_reward < 0 and home_reward == pytest.approx(battery_reward - bills, rel=1e-9)


def test_unknown_agent_refused_with_nearest_names() -> None:
    """A misspelt agent name is refused with the nearest names."""
    from cosim.errors import ScenarioError
    from cosim.rl import MarketEnv

    with pytest.raises(ScenarioError, match="nearest: 'LV1.101 Load 11 battery'"):
        MarketEnv(_scenario(), agent="LV1.101 Load 11 batery")


def test_cem_reaches_the_arbitrage_lp() -> None:
    """On a fixed daily tariff CEM earns >= 0.9 of the perfect-foresight LP and beats the fixed bids."""
    from cosim.learn import episode_return, train_cem
    from cosim.models.agents.arbitrage import schedule
    from cosim.rl import MarketEnv

    env = MarketEnv(SCENARIO, agent="LV1.101 Load 4 battery", start_day=0)
    policy, curve = train_cem(env, episodes=360, seed=0)
    rl = episode_return(env, policy, 0)
    b, i = env.loop.fleet.batteries, env.view.battery
    price = env.loop.market.posted_price_per_mwh[:24]
    lp = schedule(price, price, power_mw=b.power_mw[i], capacity_mwh=b.soc_max_mwh[i],
                  energy_mwh=env.loop._soc0[i], eta_charge=b.eta_charge, eta_discharge=b.eta_discharge,
                  energy_min_mwh=b.soc_min_mwh[i], end_at_start=False).profit  # fmt: skip
    obs, _ = env.reset(seed=0)
    fixed, done = 0.0, False
    while not done:
        obs, r, done, _, _ = env.step(env.ordinary_action())
        fixed += r
    assert rl >= 0.9 * lp and rl > fixed
    assert len(curve) == 360 and policy.meta["learning_curve"] == curve


def test_ev_missing_energy_costs_voll_at_departure(env) -> None:
    """An EV that never charges pays its whole daily energy at the value of lost load when it leaves."""
    from cosim.rl import MarketEnv

    ev = MarketEnv(_scenario(), agent="LV1.101 Load 11 EV", episode="week", loop=env.loop)
    ev.reset(seed=0, options={"start_day": 0})
    rewards, done = [], False
    while not done:
        _, reward, done, _, info = ev.step(np.array([0.0, 0.0], dtype=np.float32))
        rewards.append(reward)
        assert info["award_mw"] == 0.0
    assert len(rewards) == 7 * 24
    fleet = env.loop.fleet
    daily_mwh, voll = float(fleet.evs.daily_mwh[0]), env.loop.scenario.market.voll_per_mwh
    hours = (fleet.times_s[: len(rewards)] % 86400) // 3600
    departures = np.flatnonzero(np.array(rewards) < 0)
    assert len(departures) == 6  # every morning but the first (the night before the start was charged)
    assert set(hours[departures]) == {int(fleet.evs.departure_h[0] // 1)}
    np.testing.assert_allclose(np.array(rewards)[departures], -daily_mwh * voll)
