"""Learning bidders against ordinary runs: the environment clears as a study does; policies bid in a study."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.scenario import StrategicAgent

sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
from test_rl import BATTERY, _scenario  # noqa: E402


@pytest.mark.parametrize("design", ["dcopf", "tou"])
def test_env_clears_as_the_run(tmp_path: Path, design: str) -> None:
    """Replaying the agent's ordinary bids, the env's prices and awards equal a `cosim run`'s for a day."""
    from cosim.rl import MarketEnv
    from cosim.world import run

    scenario = _scenario(design, "1d")
    summary = run(scenario, out=tmp_path / "run.h5")
    env = MarketEnv(scenario, agent=BATTERY, start_day=0)
    env.reset(seed=0)
    prices, awards, done = [], [], False
    while not done:
        _, _, done, _, _ = env.step(env.ordinary_action())
        prices.append(env.loop.last_result.price_per_mwh)
        awards.append(env.loop.last_result.award_mw)
    with h5py.File(summary.path) as f:
        np.testing.assert_allclose(np.array(prices), f["market/price_per_mwh"][:], rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(np.array(awards), f["market/award_mw"][:], rtol=1e-7, atol=1e-9)
        battery = list(f["agents/name"].asstr()[:]).index(BATTERY)
        assert np.abs(f["market/award_mw"][:, battery]).max() > 0  # the battery trades: the replay is tested


def _idle_policy(path: Path, agent: str) -> Path:
    """A policy file that keeps the battery idle, with the metadata of the agent (from the env)."""
    from cosim.learn import TablePolicy, policy_meta
    from cosim.rl import MarketEnv

    env = MarketEnv(_scenario("tou", "1d"), agent=agent)
    meta = policy_meta(env.view, 3600) | {"price_max_per_mwh": env.view.price_max, "n_lags": env.view.n_lags}
    return TablePolicy(np.zeros((24, 1, 4)), meta).save(path)


def test_strategic_agent_bids_by_its_policy(tmp_path: Path) -> None:
    """`agents.strategic` in a run: the battery bids what its policy says (idle), the others as usual."""
    from cosim.world import run

    policy = _idle_policy(tmp_path / "idle.json", BATTERY)
    base = _scenario("tou", "1d")
    strategic = base.agents.model_copy(update={"strategic": [StrategicAgent(agent=BATTERY, policy=policy)]})
    ordinary = run(base, out=tmp_path / "ordinary.h5").path
    learned = run(base.model_copy(update={"agents": strategic}), out=tmp_path / "learned.h5").path
    with h5py.File(ordinary) as f, h5py.File(learned) as g:
        names = list(f["agents/name"].asstr()[:])
        i = names.index(BATTERY)
        assert np.abs(f["market/award_mw"][:, i]).max() > 1e-4  # the ordinary bids trade
        assert np.abs(g["market/award_mw"][:, i]).max() == 0.0  # the policy keeps it idle
        others = np.ones(len(names), dtype=bool)
        others[[i, names.index("LV1.101 Load 11")]] = False
        np.testing.assert_allclose(g["market/award_mw"][:, others], f["market/award_mw"][:, others])
        assert json.loads(g["agents"].attrs["strategic"]) == {BATTERY: str(policy)}


def test_strategic_policy_checked_against_the_agent(tmp_path: Path) -> None:
    """A policy for another agent, or a misspelt agent, is refused before the run, naming the key."""
    from cosim.cores import build_market, build_models
    from cosim.errors import ScenarioError
    from cosim.learn import build_strategic

    policy = _idle_policy(tmp_path / "idle.json", BATTERY)
    base = _scenario("tou", "1d")
    for agent, message in (("LV1.101 Load 11", "agent is 'LV1.101 Load 11 battery' in the file"),
                           ("LV1.101 Load 11 batery", "nearest: 'LV1.101 Load 11 battery'")):  # fmt: skip
        agents = base.agents.model_copy(update={"strategic": [StrategicAgent(agent=agent, policy=policy)]})
        scenario = base.model_copy(update={"agents": agents})
        net, fleet, _, _, events = build_models(scenario)
        with pytest.raises(ScenarioError, match="agents.strategic.0") as err:
            build_strategic(scenario, net, fleet, build_market(scenario, net, fleet, events))
        assert message in str(err.value)


def test_cosim_train_writes_policy_and_figure(tmp_path: Path) -> None:
    """`cosim train` writes a policy file with its metadata and learning curve, and the PNG beside it."""
    from cosim.cli import main
    from cosim.learn import load_policy

    out = tmp_path / "battery.json"
    argv = ["train", str(Path(__file__).parents[2] / "scenarios" / "rl_arbitrage.yaml")]
    argv += ["--agent", "LV1.101 Load 4 battery", "--episodes", "48", "--start-day", "0", "--out", str(out)]
    assert main(argv) == 0
    policy = load_policy(out)
    assert policy.table.shape == (24, 1, 4) and policy.meta["agent"] == "LV1.101 Load 4 battery"
    assert len(policy.meta["learning_curve"]) == 48 and policy.meta["learner"] == "cem"
    assert out.with_suffix(".png").stat().st_size > 1000
    assert main([*argv[:3], "LV1.101 Load 4 batery", *argv[4:]]) == 2  # a misspelt agent: exit code 2
