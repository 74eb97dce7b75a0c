"""Benchmark: propagation and PoW stale rate of the ``bitcoin`` gossip preset against published values.

1. Propagation: a block of ``BITCOIN_REFERENCE_BLOCK_BYTES`` sent from random nodes of the peer graph;
   the median, mean and 95th percentile over (block, receiving node) of its arrival time, against
   Decker & Wattenhofer (2013): 6.5 s, 12.6 s, ~40 s.
2. Stale rate: proof of work on the ``bitcoin`` preset with full reference-size blocks, at block
   intervals of 600 s, 60 s and 10 s; the simulated stale rate, the race formula ``1 - exp(-tau/T)``
   with the measured effective delay ``tau`` (hash-power weighted mean delay of a block to the other
   miners), and the published measurements.

Run from the repository root::

    python benchmarks/gossip_stale.py               # 5,000 blocks per interval (about a minute)
    python benchmarks/gossip_stale.py --blocks 20000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import simpy

from cosim.models.ledger.consensus import HEADER_BYTES, TX_SIZE_BYTES, simulate
from cosim.models.ledger.network import (
    BITCOIN,
    BITCOIN_REFERENCE_BLOCK_BYTES,
    DEFAULT_ONE_WAY_DELAY_S,
    DEFAULT_REGIONS,
    GossipNetwork,
)

REF_TX = (BITCOIN_REFERENCE_BLOCK_BYTES - HEADER_BYTES) // TX_SIZE_BYTES  # transactions of a full block
PUBLISHED = {  # block interval (s) -> (chain, measured stale rate)
    600.0: "Bitcoin 1.69 % (Decker & Wattenhofer 2013); 0.41 % (Gervais et al. 2016)",
    60.0: "Dogecoin 0.619 % (Gervais et al. 2016)",
    10.0: "Ethereum (12-15 s) 6.8 % (Gervais et al. 2016)",
}


def propagation_s(seed: int, blocks: int, validators: int = 16) -> np.ndarray:
    """Delays (s) of reference-size blocks from ``blocks`` random graph nodes to every other node."""
    net = GossipNetwork(
        simpy.Environment(), np.random.default_rng(seed + 1), list(DEFAULT_REGIONS), DEFAULT_ONE_WAY_DELAY_S,
        BITCOIN, validators, np.random.default_rng(seed),
    )  # fmt: skip
    src = np.random.default_rng(seed + 2).integers(BITCOIN.nodes, size=blocks)
    return np.concatenate([np.delete(net.propagation_s(s, BITCOIN_REFERENCE_BLOCK_BYTES), s) for s in src])


def effective_delay_s(miners: int, seed: int) -> float:
    """Mean over miners of the hash-power weighted delay of a reference block to the other miners (s)."""
    net = GossipNetwork(
        simpy.Environment(), np.random.default_rng(seed), list(DEFAULT_REGIONS), DEFAULT_ONE_WAY_DELAY_S,
        BITCOIN, miners, np.random.default_rng(seed),
    )  # fmt: skip
    size = HEADER_BYTES + REF_TX * TX_SIZE_BYTES
    delay = np.mean([net.all_to_all(np.zeros(miners), size) for _ in range(20)], axis=0)
    return float(delay.mean())  # equal shares: sum_j d_mj / miners, averaged over m


def stale_rate(interval_s: float, blocks: int, miners: int, seed: int) -> tuple[float, int]:
    """Stale share of the decided blocks of a PoW run of about ``blocks`` full reference-size blocks."""
    duration_s = blocks * interval_s
    n_tx = int(1.2 * REF_TX * blocks)  # more than the chain can take: every block full
    submit_s = np.sort(np.random.default_rng(seed).uniform(0.0, duration_s, n_tx))
    run = simulate(
        "pow", submit_s, validators=miners, rng=np.random.default_rng(seed), duration_s=duration_s,
        block_interval_s=interval_s, block_tx_limit=REF_TX, gossip=BITCOIN, graph_seed=seed,
    )  # fmt: skip
    return float(np.mean([b.stale for b in run.blocks])), len(run.blocks)


def main() -> None:
    """Print the propagation percentiles and the stale-rate table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=5000, help="blocks per block interval")
    ap.add_argument("--miners", type=int, default=50, help="miners (equal hash power)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    d = np.concatenate([propagation_s(s, 300) for s in range(4)])
    print(
        f"propagation of a {BITCOIN_REFERENCE_BLOCK_BYTES / 1e3:.0f} kB block: median {np.median(d):.2f} s "
        f"(published 6.5), mean {d.mean():.2f} s (12.6), p95 {np.percentile(d, 95):.2f} s (~40)"
    )
    tau_s = effective_delay_s(args.miners, args.seed)
    print(f"effective delay tau = {tau_s:.2f} s ({args.miners} equal miners)")
    print("| block interval | simulated (blocks) | 1 - exp(-tau/T) | published |")
    print("|---|---|---|---|")
    for interval_s in (600.0, 60.0, 10.0):
        t0 = time.perf_counter()
        rate, n = stale_rate(interval_s, args.blocks, args.miners, args.seed)
        analytic = 1.0 - np.exp(-tau_s / interval_s)
        print(
            f"| {interval_s:.0f} s | {rate:.2%} ({n}) | {analytic:.2%} | {PUBLISHED[interval_s]} |"
            f"  [{time.perf_counter() - t0:.0f} s]"
        )


if __name__ == "__main__":
    main()
