"""Benchmark: the ledger's speed, alone and inside the year-long default study.

1. Simulated transactions per wall-clock second of the whole ledger (signed transfers admitted by a
   gateway that checks Ed25519 signatures, consensus engine, execution by the contracts, hash chain) on
   the standalone workload, for BFT with 16 validators, PoS with 32 and PoW with 50 miners; the consensus
   engine alone on the same arrivals; and the Ed25519 floor measured in the same run (one signature made
   and checked per transfer).
2. The consensus engine against the obvious way to write it: a SimPy process per validator exchanging one
   event per message (Tendermint happy path, heights of propose -> prevote -> precommit with 2/3 quorums).
   Ours computes each phase's arrivals and quorums as numpy arrays. Heights per wall second, n = 16, 64.
3. The ledger's share of the year-long default study (``scenarios/default.yaml``, 8,760 hourly steps):
   wall time of the run, and the time inside the power flow, the market clearing and the ledger; target:
   ledger <= market.

Run from the repository root::

    python benchmarks/ledger.py            # all three (the year takes a few minutes)
    python benchmarks/ledger.py --no-year  # 1 and 2 only
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from cosim.models.ledger.chain import KeyPair, signature_ok
from cosim.models.ledger.consensus import ENGINES, simulate
from cosim.models.ledger.ledger import LedgerModel
from cosim.models.ledger.network import default_network

MECHANISMS: dict[str, tuple[int, dict[str, Any]]] = {
    "bft": (16, {"create_empty_blocks": False}),
    "pos": (32, {}),
    "pow": (50, {"block_interval_s": 600.0}),
}


def ledger_throughput(mechanism: str, tx_per_s: float, duration_s: float) -> tuple[int, float, float]:
    """Transactions through the ledger (in a block), wall time of the full ledger and of the engine alone."""
    validators, params = MECHANISMS[mechanism]
    engine = ENGINES[mechanism](validators, np.random.default_rng(1), **params)
    model = LedgerModel(
        engine, 1000, np.random.default_rng(2), epoch_unix_s=1.7e9, step_s=60.0, gate_closure_s=0.0
    )
    rng = np.random.default_rng(3)
    steps = int(duration_s // 60)
    t0 = time.perf_counter()
    n_done = 0
    for k in range(steps):
        out = model.step(k, n_transfers=int(rng.poisson(tx_per_s * 60.0)), last=k == steps - 1)
        n_done += int((out.tx["height"] >= 0).sum())
    full_s = time.perf_counter() - t0
    submit = np.asarray(model.submit_tau)
    t0 = time.perf_counter()
    simulate(
        mechanism,
        submit,
        validators=validators,
        rng=np.random.default_rng(1),
        duration_s=duration_s,
        **params,
    )  # type: ignore[arg-type]
    return n_done, full_s, time.perf_counter() - t0


def ed25519_us(n: int = 3000) -> float:
    """Micro-seconds to sign and verify one 300-byte message."""
    key, data = KeyPair.generate(), b"x" * 300
    t0 = time.perf_counter()
    for _ in range(n):
        if not signature_ok(key.public_hex, key.sign(data).hex(), data):
            raise AssertionError("Ed25519 round trip failed")
    return (time.perf_counter() - t0) / n * 1e6


def naive_tendermint(n: int, heights: int, seed: int = 0) -> float:
    """Wall seconds of a message-per-event SimPy Tendermint (happy path) for ``heights`` heights."""
    env = simpy.Environment()
    net = default_network(env, np.random.default_rng(seed), n)
    need = 2 * n // 3 + 1
    inbox = [simpy.Store(env) for _ in range(n)]

    def send(src: int, kind: str, h: int) -> None:
        delay = net.broadcast(src, 250.0) - env.now
        for dst in range(n):
            env.process(_deliver(dst, float(delay[dst]), (kind, h)))

    def _deliver(dst: int, delay: float, msg: tuple[str, int]) -> Any:
        yield env.timeout(delay)
        yield inbox[dst].put(msg)

    def validator(i: int) -> Any:
        for h in range(heights):
            if i == h % n:
                send(i, "proposal", h)
            counts = {"proposal": 0, "prevote": 0, "precommit": 0}
            while counts["precommit"] < need:
                kind, mh = yield inbox[i].get()
                if mh != h:
                    continue
                counts[kind] += 1
                if kind == "proposal":
                    send(i, "prevote", h)
                elif kind == "prevote" and counts["prevote"] == need:
                    send(i, "precommit", h)
            yield env.timeout(1.0)  # timeout_commit

    for i in range(n):
        env.process(validator(i))
    t0 = time.perf_counter()
    env.run()
    return time.perf_counter() - t0


def ours_tendermint(n: int, heights: int) -> float:
    """Wall seconds of our engine for ``heights`` empty heights."""
    engine = ENGINES["bft"](n, np.random.default_rng(0), create_empty_blocks=True)
    t0 = time.perf_counter()
    while len(engine.blocks) < heights:
        engine.run(engine.env.now + 10.0)
    return time.perf_counter() - t0


def year_share() -> None:
    import cosim

    summary = cosim.run(Path("scenarios/default.yaml"), out=Path("results/bench_default.h5"))
    rest = summary.wall_s - summary.power_flow_s - summary.market_s - summary.ledger_s
    print(f"\n3. default study, one year ({summary.n_steps} hourly steps): {summary.wall_s:.1f} s wall")
    parts = {"power flow": summary.power_flow_s, "market clearing": summary.market_s,
             "ledger": summary.ledger_s, "rest (agents, mosaik, recorder, setup)": rest}  # fmt: skip
    for name, s in parts.items():
        print(f"   {name:40s} {s:7.1f} s  {100 * s / summary.wall_s:5.1f} %")
    ratio = summary.ledger_s / summary.market_s
    print(f"   ledger / market clearing: {ratio:.1f}x (target <= 1): {'met' if ratio <= 1 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-year", action="store_true", help="skip the year-long default study")
    parser.add_argument("--tx-per-s", type=float, default=20.0)
    parser.add_argument("--minutes", type=float, default=30.0)
    args = parser.parse_args()
    logging.getLogger("pandapower").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    floor_us = ed25519_us()
    print(f"1. ledger alone, {args.tx_per_s:g} signed transfers/s for {args.minutes:g} min "
          f"(Ed25519 sign + verify: {floor_us:.0f} us per transfer)")  # fmt: skip
    print(f"   {'':18s} {'tx':>9s} {'tx/wall s':>10s} {'engine alone tx/wall s':>23s} {'Ed25519':>8s}")
    for mech, (validators, _) in MECHANISMS.items():
        n, full_s, engine_s = ledger_throughput(mech, args.tx_per_s, args.minutes * 60.0)
        crypto = n * floor_us * 1e-6 / full_s
        print(
            f"   {mech} ({validators:2d} nodes) {n:12d} {n / full_s:10.0f} {n / engine_s:23.0f} {crypto:8.0%}"
        )
    print("\n2. BFT consensus engine: heights per wall second (happy path)")
    for n in (16, 64):
        heights = 200 if n == 16 else 40
        naive, ours = naive_tendermint(n, heights), ours_tendermint(n, heights)
        print(f"   n = {n:2d}: ours {heights / ours:8.0f}, message-per-event SimPy {heights / naive:8.1f}, "
              f"ratio {naive / ours:.0f}x")  # fmt: skip
    if not args.no_year:
        year_share()


if __name__ == "__main__":
    main()
