"""The ``bitcoin`` gossip preset against measured Bitcoin block propagation and PoW stale rates.

Published values: Decker & Wattenhofer, "Information propagation in the Bitcoin network", IEEE P2P 2013
(time for a block to reach a node: median 6.5 s, mean 12.6 s, 95th percentile ~40 s; 1.69 % of blocks
forked); the race formula stale = 1 - exp(-tau/T) of the same paper.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from cosim.models.ledger.consensus import HEADER_BYTES, TX_SIZE_BYTES, ProofOfWork
from cosim.models.ledger.network import (
    BITCOIN,
    BITCOIN_REFERENCE_BLOCK_BYTES,
    DEFAULT_ONE_WAY_DELAY_S,
    DEFAULT_REGIONS,
    GossipNetwork,
)

REF_TX = (BITCOIN_REFERENCE_BLOCK_BYTES - HEADER_BYTES) // TX_SIZE_BYTES  # a full reference-size block


def test_bitcoin_preset_propagation_matches_decker_wattenhofer() -> None:
    """80 kB blocks over 4 graphs x 300 sources: median 6.5 s +-10 %, mean 12.6 s +-15 %, p95 40 s +-20 %."""
    delays = []
    for seed in range(4):
        net = GossipNetwork(
            simpy.Environment(), np.random.default_rng(seed + 1), list(DEFAULT_REGIONS),
            DEFAULT_ONE_WAY_DELAY_S, BITCOIN, 16, np.random.default_rng(seed),
        )  # fmt: skip
        for src in np.random.default_rng(seed + 2).integers(BITCOIN.nodes, size=300):
            delays.append(np.delete(net.propagation_s(int(src), BITCOIN_REFERENCE_BLOCK_BYTES), src))
    d = np.concatenate(delays)
    assert np.median(d) == pytest.approx(6.5, rel=0.10)
    assert d.mean() == pytest.approx(12.6, rel=0.15)
    assert np.percentile(d, 95) == pytest.approx(40.0, rel=0.20)


def _pow(interval_s: float, blocks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stale flags of a PoW run of full 80 kB blocks on the bitcoin preset (50 equal miners), and the
    weighted delay ``D_m`` of each block's miner (s)."""
    miners, duration_s = 50, blocks * interval_s
    submit_s = np.sort(np.random.default_rng(seed).uniform(0.0, duration_s, int(1.2 * REF_TX * blocks)))
    engine = ProofOfWork(
        miners, np.random.default_rng(seed), block_interval_s=interval_s, block_tx_limit=REF_TX,
        gossip=BITCOIN, graph_seed=seed,
    )  # fmt: skip
    assert isinstance(engine.net, GossipNetwork)
    d_s = engine.net.weighted_delay_s(np.ones(miners), HEADER_BYTES + REF_TX * TX_SIZE_BYTES)
    engine.submit(submit_s)
    engine.run(duration_s)
    engine.close()
    return np.array([b.stale for b in engine.blocks]), d_s[[b.proposer for b in engine.blocks]]


def test_bitcoin_preset_stale_rate_at_600_s_matches_race_formula_and_measurement() -> None:
    """T = 600 s, 3 graphs x 5,000 blocks: stale = 1 - exp(-tau/T) (3 sigma) and 1.69 % measured +-30 %."""
    runs = [_pow(600.0, 5000, seed) for seed in (2, 3, 4)]
    stale = np.concatenate([r[0] for r in runs])
    d_s = np.concatenate([r[1] for r in runs])
    tau_s = d_s.mean()  # effective delay: hash-weighted delay of a block to the miners
    assert 8.0 < tau_s < 16.0  # between the measured median and mean propagation
    expected = 1.0 - np.exp(-tau_s / 600.0)
    sigma = np.sqrt(expected * (1.0 - expected) / len(stale))
    assert abs(stale.mean() - expected) < 3.0 * sigma
    forks = (1.0 - np.exp(-d_s / 600.0)).sum()  # per-block race, miner by miner
    assert abs(stale.sum() - forks) < 3.0 * np.sqrt(forks)
    assert stale.mean() == pytest.approx(0.0169, rel=0.30)


def test_bitcoin_preset_stale_rate_grows_as_the_interval_shrinks() -> None:
    """T = 600, 60, 10 s: the stale rate grows; at T near tau it stays below 1 - exp(-tau/T).

    The formula counts every competitor of a block as one more stale block; when forks overlap (tau
    comparable to T) a competitor often extends or replaces another stale branch, so it over-counts.
    """
    rates = []
    for interval_s, blocks in ((600.0, 3000), (60.0, 3000), (10.0, 3000)):
        stale, d_s = _pow(interval_s, blocks, 3)
        rates.append(stale.mean())
        if interval_s < 600.0:
            assert stale.mean() < 1.0 - np.exp(-d_s.mean() / interval_s)
    assert rates[0] < rates[1] < rates[2] < 0.5
    assert rates[1] > 5 * rates[0]
