"""Consensus timings against the published values listed in docs/references.md."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.models.ledger.consensus import simulate


def test_ethereum_pos_finality_two_to_three_epochs() -> None:
    """Ethereum PoS (12 s slots, 32-slot epochs): finality >= 768 s (12.8 min), mean in [12.8, 19.2] min."""
    submit_s = np.sort(np.random.default_rng(0).uniform(0.0, 4 * 3600.0, 5000))
    run = simulate("pos", submit_s, validators=32, rng=np.random.default_rng(1), duration_s=5 * 3600.0)
    latency_s = run.tx.final_s - run.tx.submit_s
    assert np.isfinite(latency_s).all()
    assert 768.0 <= latency_s.min() <= 768.0 + 2.0  # 2 epochs + network delays
    assert 768.0 < latency_s.mean() < 1152.0
    assert latency_s.mean() == pytest.approx(960.0, abs=30.0)  # 2.5 epochs for uniform arrivals


def test_bitcoin_pow_stale_rate_matches_exponential_race() -> None:
    """Bitcoin-like PoW, T = 600 s, tau = 20 s: stale rate = 1 - exp(-tau/T) = 3.28 % within 0.5 points."""
    tau_s, interval_s, miners = 20.0, 600.0, 100
    run = simulate(
        "pow", np.zeros(0), validators=miners, rng=np.random.default_rng(2), duration_s=20_000 * interval_s,
        regions=["x"], one_way_delay_s=np.array([[tau_s]]), jitter_sd_s=0.0, bandwidth_mbps=np.inf,
    )  # fmt: skip
    stale = np.mean([b.stale for b in run.blocks])
    assert len(run.blocks) > 19_000
    assert stale == pytest.approx(1.0 - np.exp(-tau_s / interval_s), abs=0.005)  # 3-sigma ~ 0.38 points


@pytest.mark.parametrize("validators", [4, 16, 64])
def test_tendermint_commit_within_one_to_three_seconds(validators: int) -> None:
    """Tendermint across five continents (n = 4, 16, 64): median commit-to-commit time in [1, 3] s."""
    submit_s = np.sort(np.random.default_rng(3).uniform(0.0, 600.0, 3000))
    run = simulate("bft", submit_s, validators=validators, rng=np.random.default_rng(4), duration_s=600.0)
    block_interval_s = np.diff([b.time_s for b in run.blocks])
    latency_s = run.tx.final_s - run.tx.submit_s
    assert 1.0 <= np.median(block_interval_s) <= 3.0
    assert 0.5 <= np.nanmedian(latency_s) <= 3.0  # submit -> commit: ~0.8-0.95 s (no multi-hop gossip)
