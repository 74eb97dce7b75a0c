"""Benchmark: a learning battery against the perfect-foresight arbitrage LP and today's fixed-price bids.

Scenario ``scenarios/rl_arbitrage.yaml``: a SimBench LV grid under a time-of-use tariff, so the price at
the battery's bus follows the same daily shape every day (30 / 60 / 90 / 60 / 120 / 60 $/MWh). The
battery ``LV1.101 Load 4 battery`` (10 kWh, 5 kW, 0.95 / 0.95) learns by cross-entropy search
(`cosim.learn.train_cem`) over day episodes in `cosim.rl.MarketEnv` (every step: bids, the tariff's
clearing, the AC power flow, settlement). Then one evaluation episode of ``--days`` days from day 0 with:

* ``rl_profit``: the learned policy;
* ``fixed_profit``: the battery's ordinary bids (charge at up to 40 $/MWh, discharge at 70 $/MWh or more);
* ``lp_profit``: the perfect-foresight LP (`cosim.models.agents.arbitrage.schedule`) on the same prices
  from the same start energy, free to end empty as the episode is: the upper bound of any bidder.

Prints one JSON object (``--json``) or a table; exit code 0 when ``rl_profit >= 0.9 * lp_profit`` and
``rl_profit > fixed_profit``. ``--out DIR`` also writes the policy file and its learning-curve PNG.

    python benchmarks/rl_arbitrage.py --json
    python benchmarks/rl_arbitrage.py --episodes 1200 --days 7 --out /tmp/rl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cosim.learn import TablePolicy, train_cem
from cosim.models.agents.arbitrage import schedule
from cosim.rl import MarketEnv

SCENARIO = Path(__file__).parents[1] / "scenarios" / "rl_arbitrage.yaml"
AGENT = "LV1.101 Load 4 battery"
TARGET = 0.9


def evaluate(env: MarketEnv, act: object) -> float:
    """Profit [$] of one episode from day 0 with ``act(obs)`` (None: the ordinary bids)."""
    obs, _ = env.reset(seed=0, options={"start_day": 0})
    total, done = 0.0, False
    while not done:
        action = env.ordinary_action() if act is None else act(obs)  # type: ignore[operator]
        obs, reward, done, _, _ = env.step(action)
        total += reward
    return total


def lp_profit(env: MarketEnv, days: int) -> float:
    """The perfect-foresight LP's profit [$] over ``days`` days from day 0, free to end empty."""
    b, i, loop = env.loop.fleet.batteries, env.view.battery, env.loop
    price = loop.market.posted_price_per_mwh[: days * loop.steps_per_day]
    return schedule(price, price, power_mw=float(b.power_mw[i]), capacity_mwh=float(b.soc_max_mwh[i]),
                    energy_mwh=float(loop._soc0[i]), eta_charge=b.eta_charge, eta_discharge=b.eta_discharge,
                    energy_min_mwh=float(b.soc_min_mwh[i]), dt_h=loop.fleet.step_s / 3600,
                    end_at_start=False).profit  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=720, help="training episodes (days)")
    parser.add_argument("--days", type=int, choices=(1, 7), default=7, help="evaluation episode length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="directory for the policy file and learning curve")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    train_env = MarketEnv(SCENARIO, agent=AGENT, episode="day")
    t0 = time.perf_counter()
    policy, curve = train_cem(train_env, episodes=args.episodes, seed=args.seed)
    train_s = time.perf_counter() - t0
    result = {}
    for days in sorted({1, args.days}):
        env = MarketEnv(SCENARIO, agent=AGENT, episode="day" if days == 1 else "week", loop=train_env.loop)
        rl, fixed = evaluate(env, TablePolicy(policy.table).act), evaluate(env, None)
        result[days] = rl, lp_profit(env, days), fixed
    rl, lp, fixed = result[args.days]
    out = {
        "rl_profit": round(rl, 6),
        "lp_profit": round(lp, 6),
        "fixed_profit": round(fixed, 6),
        "rl_over_lp": round(rl / lp, 4),
        "evaluation_days": args.days,
        "day_profits": {k: round(v, 6) for k, v in zip(("rl", "lp", "fixed"), result[1], strict=True)},
        "episodes": len(curve),
        "train_s": round(train_s, 1),
        "last_iteration_mean_profit": round(float(np.mean(curve[-policy.meta["population"] :])), 6),
    }
    if args.out is not None:
        from cosim.analysis.learning import learning_curve_figure

        args.out.mkdir(parents=True, exist_ok=True)
        path = policy.save(args.out / "rl_arbitrage_policy.json")
        _, day_lp, day_fixed = result[1]
        refs = {"perfect-foresight LP": day_lp, "fixed bids": day_fixed}
        fig = learning_curve_figure(curve, population=policy.meta["population"], title=AGENT, references=refs)
        fig.savefig(path.with_suffix(".png"))
        out["policy"] = str(path)
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:>28}: {value}")
    return 0 if rl >= TARGET * lp and rl > fixed else 1


if __name__ == "__main__":
    sys.exit(main())
