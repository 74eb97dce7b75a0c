"""Learned and strategic bidding in the reports, on PJM 5-bus with Solitude (gen 1, 30 $/MWh, bus C)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np

from analysis.report import compare_runs, write_report

ROOT = Path(__file__).parents[2]
COMPETITIVE = ROOT / "scenarios" / "pjm5_competitive.yaml"
STRATEGIC = ROOT / "scenarios" / "pjm5_strategic.yaml"
PLAYER = "gen 1"


def _cells(page: str, table: str) -> dict[str, list[str]]:
    """Row label -> cells of the HTML table with id ``table``."""
    body = page.split(f"<table id='{table}'>")[1].split("</table>")[0]
    return {
        m.group(1): re.findall(r"<td>(.*?)</td>", m.group(2))
        for m in re.finditer(r"<tr><th>(.*?)</th>(.*?)</tr>", body)
    }


def _usd(cell: str) -> float:
    return float(cell.split()[0])


def test_producer_reward_is_its_profit_at_true_cost() -> None:
    """A generator's env reward is what it is paid less its true cost: (LMP at its bus - 30 $/MWh) x MWh."""
    from cosim.rl import MarketEnv

    env = MarketEnv(COMPETITIVE, agent=PLAYER, start_day=0)
    env.reset(seed=0)
    _, reward, _, _, _ = env.step(np.array([200.0, 45.0], dtype=np.float32))
    result = env.loop.last_result
    mwh = -float(result.award_mw[env.view.device])
    assert mwh > 0  # dispatched: the check compares a real profit
    lmp = float(result.price_per_mwh[env.view.bus_pos])
    assert np.isclose(reward, (lmp - 30.0) * mwh, rtol=1e-9, atol=1e-9)


def test_policy_run_reports_its_learning_curve(tmp_path: Path) -> None:
    """A run with a policy trained for 3 episodes stores the policy's learning curve in the HDF5 file; its
    report draws it and shows the realised profit, equal to the env's return of that policy on that day."""
    from cosim.learn import episode_return, train_cem
    from cosim.rl import MarketEnv
    from cosim.scenario import StrategicAgent, load_scenario
    from cosim.world import run

    env = MarketEnv(COMPETITIVE, agent=PLAYER, start_day=0)
    policy, curve = train_cem(env, episodes=3, population=3, elite=1, seed=1)
    assert len(curve) == 3
    path = policy.save(tmp_path / "solitude.json")
    expected = episode_return(env, policy, seed=0)
    base = load_scenario(COMPETITIVE)
    agents = base.agents.model_copy(update={"strategic": [StrategicAgent(agent=PLAYER, policy=path)]})
    h5 = run(base.model_copy(update={"agents": agents}), out=tmp_path / "learned.h5").path
    with h5py.File(h5) as f:
        stored = json.loads(f["agents"].attrs["strategic_policies"])[PLAYER]
    assert stored["learning_curve"] == curve and stored["policy"] == str(path) and stored["learner"] == "cem"
    page = write_report(h5, tmp_path / "report").read_text()
    assert "<h2>Learning bidders</h2>" in page and (tmp_path / "report" / "policy_0.png").stat().st_size > 0
    assert (tmp_path / "report" / "policy_0_daily.png").exists()
    assert f"{curve[0]:,.2f} $ / {curve[-1]:,.2f} $ per episode" in page
    realised = re.search(r"Realised profit of gen 1</th><td>(-?[0-9.,]+) \$", page)
    assert realised is not None and abs(float(realised.group(1).replace(",", "")) - expected) < 0.006


def test_comparison_strategic_above_competitive(tmp_path: Path) -> None:
    """Comparing a competitive and a strategic PJM 5-bus run: Solitude's profit is higher when strategic, and
    every cell equals the HDF5 datasets (its competitive-run profit equals the recorded counterfactual)."""
    from cosim.world import run

    comp = run(COMPETITIVE, out=tmp_path / "competitive.h5", days=0.25).path
    strat = run(STRATEGIC, out=tmp_path / "strategic.h5", days=0.25).path
    page = compare_runs([comp, strat], tmp_path / "cmp").read_text()
    cells = _cells(page, "bidding_comparison")
    assert cells["How the player bids"] == ["competitive", "strategic (MPEC)"]
    c_profit, s_profit = (_usd(x) for x in cells["Player's profit"])
    with h5py.File(comp) as c, h5py.File(strat) as s:
        m, mc = s["market"], c["market"]
        assert s_profit == round(float(np.sum(m["strategic_profit"][:])), 2)
        counterfactual = f"{np.sum(m['competitive_profit'][:]):.2f} $"
        assert cells["Competitive counterfactual profit"] == ["–", counterfactual]
        assert c_profit == round(float(np.sum(m["competitive_profit"][:])), 2)
        assert cells["Mean price"] == [f"{np.mean(mc['price_per_mwh'][:]):.2f} $/MWh",
                                       f"{np.mean(m['price_per_mwh'][:]):.2f} $/MWh"]  # fmt: skip
        assert cells["Welfare (at offers as bid)"] == [f"{np.sum(mc['welfare'][:]):.2f} $",
                                                       f"{np.sum(m['welfare'][:]):.2f} $"]  # fmt: skip
        assert cells["Welfare loss (at true costs)"] == ["–", f"{np.sum(m['welfare_loss'][:]):.2f} $"]
        assert cells["Lerner index mean at its bus"][1] == f"{np.nanmean(m['lerner_index'][:]):.3f}"
    assert s_profit > c_profit + 100.0
    assert (tmp_path / "cmp" / "comparison_bidding.png").stat().st_size > 0
    assert "<figcaption>How gen 1" in page


def test_no_bidding_section_without_a_player(tmp_path: Path) -> None:
    """Two runs without a strategic player or policy get no bidding comparison."""
    from cosim.world import run

    a = run(COMPETITIVE, out=tmp_path / "a.h5", days=0.125).path
    b = run(COMPETITIVE, out=tmp_path / "b.h5", days=0.125).path
    assert "bidding_comparison" not in compare_runs([a, b], tmp_path / "cmp").read_text()
