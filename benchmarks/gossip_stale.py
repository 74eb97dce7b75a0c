"""Benchmark: propagation and PoW stale rate of the ``bitcoin`` gossip preset against published values.

1. Propagation: a block of ``BITCOIN_REFERENCE_BLOCK_BYTES`` sent from random nodes of the peer graph;
   the median, mean and 95th percentile over (block, receiving node) of its arrival time, against
   Decker & Wattenhofer (2013): 6.5 s, 12.6 s, ~40 s.
2. Stale rate: proof of work on the ``bitcoin`` preset with full reference-size blocks, at block
   intervals of 600 s, 60 s and 10 s; the simulated stale rate, the race formula ``1 - exp(-tau/T)``
   with the measured effective delay ``tau`` (from each block's hash-power weighted delay to the other
   miners, ``GossipNetwork.weighted_delay_s``), and the published measurements.

Run from the repository root::

    python benchmarks/gossip_stale.py               # 3 graphs x 5,000 blocks per interval (minutes)
    python benchmarks/gossip_stale.py --blocks 20000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import simpy

from cosim.models.ledger.consensus import HEADER_BYTES, TX_SIZE_BYTES, ProofOfWork
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


def pow_on_bitcoin(interval_s: float, blocks: int, miners: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stale flags of the decided blocks of a PoW run of ~``blocks`` full reference-size blocks on the
    ``bitcoin`` preset (equal miners), and each block's miner's weighted delay ``D_m`` (s)."""
    duration_s = blocks * interval_s
    n_tx = int(1.2 * REF_TX * blocks)  # more than the chain can take: every block full
    submit_s = np.sort(np.random.default_rng(seed).uniform(0.0, duration_s, n_tx))
    engine = ProofOfWork(
        miners, np.random.default_rng(seed), block_interval_s=interval_s, block_tx_limit=REF_TX,
        gossip=BITCOIN, graph_seed=seed,
    )  # fmt: skip
    assert isinstance(engine.net, GossipNetwork)
    d_s = engine.net.weighted_delay_s(np.ones(miners), HEADER_BYTES + REF_TX * TX_SIZE_BYTES)
    engine.submit(submit_s)
    engine.run(duration_s)
    engine.close()
    stale = np.array([b.stale for b in engine.blocks])
    return stale, d_s[[b.proposer for b in engine.blocks]]


def main() -> None:
    """Print the propagation percentiles and the stale-rate table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=5000, help="blocks per block interval")
    ap.add_argument("--miners", type=int, default=50, help="miners (equal hash power)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[2, 3, 4], help="graph seeds")
    args = ap.parse_args()
    d = np.concatenate([propagation_s(s, 300) for s in range(4)])
    print(
        f"propagation of a {BITCOIN_REFERENCE_BLOCK_BYTES / 1e3:.0f} kB block: median {np.median(d):.2f} s "
        f"(published 6.5), mean {d.mean():.2f} s (12.6), p95 {np.percentile(d, 95):.2f} s (~40)"
    )
    print(f"{args.miners} equal miners, graph seeds {args.seeds}, {args.blocks} blocks per seed and interval")
    print("| block interval | simulated | 1 - exp(-tau/T) | tau | published |")
    print("|---|---|---|---|---|")
    for interval_s in (600.0, 60.0, 10.0):
        t0 = time.perf_counter()
        runs = [pow_on_bitcoin(interval_s, args.blocks, args.miners, s) for s in args.seeds]
        stale = np.concatenate([r[0] for r in runs])
        tau_s = float(np.concatenate([r[1] for r in runs]).mean())  # effective delay: mean D_m per block
        print(
            f"| {interval_s:.0f} s | {stale.mean():.2%} ({stale.sum()} of {len(stale)}) | "
            f"{1.0 - np.exp(-tau_s / interval_s):.2%} | {tau_s:.1f} s | {PUBLISHED[interval_s]} |"
            f"  [{time.perf_counter() - t0:.0f} s]"
        )


if __name__ == "__main__":
    main()
