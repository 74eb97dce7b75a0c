"""Consensus mechanisms of the ledger: determinism, BFT safety/liveness, PoW fork choice, time ordering."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.ledger import consensus
from cosim.models.ledger.consensus import ENGINES, LedgerRun, _quorum_s, _timing, equal_quorum, simulate

SUBMIT_S = np.sort(np.random.default_rng(0).uniform(0.0, 300.0, 600))


def _bft(faulty: int, behaviour: str, seed: int = 1) -> LedgerRun:
    return simulate(
        "bft", SUBMIT_S, validators=4, faulty=faulty, behaviour=behaviour,
        rng=np.random.default_rng(seed), duration_s=300.0,
    )  # fmt: skip


@pytest.mark.parametrize("mechanism", ["pow", "pos", "bft"])
def test_same_seed_same_run(mechanism: str) -> None:
    """The same seed gives identical transaction timings and blocks."""
    kw = {"block_interval_s": 30.0} if mechanism == "pow" else {}
    a, b = (
        simulate(mechanism, SUBMIT_S, validators=8, rng=np.random.default_rng(5), duration_s=900.0, **kw)  # type: ignore[arg-type]
        for _ in range(2)
    )
    np.testing.assert_array_equal(a.tx.final_s, b.tx.final_s)
    np.testing.assert_array_equal(a.tx.height, b.tx.height)
    assert a.blocks == b.blocks


@pytest.mark.parametrize("behaviour", ["silent", "equivocating"])
def test_bft_live_and_safe_with_one_fault_in_four(behaviour: str) -> None:
    """With n = 4, f = 1 every height commits one block and all early transactions become final."""
    run = _bft(1, behaviour)
    heights = [b.height for b in run.blocks]
    assert heights == list(range(1, len(heights) + 1))  # one commit per height, none skipped
    assert run.finalized_height > 50
    assert np.isfinite(run.tx.final_s[SUBMIT_S < 250.0]).all()
    assert "no conflicting commit" in run.notes


@pytest.mark.parametrize("behaviour", ["silent", "equivocating"])
def test_bft_no_finality_with_one_third_faulty(behaviour: str) -> None:
    """With n = 4, f = 2 nothing is finalized and no block is committed (so never two at one height)."""
    run = _bft(2, behaviour)
    assert run.finalized_height == 0 and run.blocks == []
    assert np.isnan(run.tx.final_s).all()
    assert "1/3" in run.notes


def test_pow_longest_chain_resolves_forks() -> None:
    """Slow propagation makes forks; the winning chain has one block per height and the rest are stale."""
    run = simulate(
        "pow", SUBMIT_S, validators=6, rng=np.random.default_rng(2), duration_s=20_000.0,
        block_interval_s=20.0, regions=["x"], one_way_delay_s=np.array([[5.0]]), jitter_sd_s=0.0,
    )  # fmt: skip
    live = [b.height for b in run.blocks if not b.stale]
    assert any(b.stale for b in run.blocks)
    assert live == list(range(1, len(live) + 1))
    assert run.finalized_height == len(live) - 5
    included = run.tx.height[run.tx.height >= 0]
    assert set(included) <= set(live)


@pytest.mark.parametrize("mechanism", ["pow", "pos", "bft"])
def test_finalized_tx_times_are_ordered(mechanism: str) -> None:
    """Every finalized transaction has submit <= include <= final."""
    kw = {"block_interval_s": 20.0} if mechanism == "pow" else {}
    run = simulate(mechanism, SUBMIT_S, validators=8, rng=np.random.default_rng(3), duration_s=1800.0, **kw)  # type: ignore[arg-type]
    tx, final = run.tx, np.isfinite(run.tx.final_s)
    assert final.sum() > 100
    assert (tx.submit_s[final] <= tx.include_s[final]).all()
    assert (tx.include_s[final] <= tx.final_s[final]).all()


def _in_steps(
    mechanism: str,
    params: dict[str, object],
    submit_s: np.ndarray,
    until_s: float,
    step_s: float,
    after_step: Callable[[Any], object] | None = None,
) -> Any:
    """An engine (8 validators, seed 1) driven in steps of ``step_s`` as the co-simulation does, closed."""
    engine = ENGINES[mechanism](8, np.random.default_rng(1), **params)  # type: ignore[arg-type]
    for t0 in np.arange(0.0, until_s, step_s):
        engine.submit(submit_s[(submit_s >= t0) & (submit_s < t0 + step_s)])
        engine.run(min(t0 + step_s, until_s))
        if after_step is not None:
            after_step(engine)
    engine.close()
    return engine


@pytest.mark.parametrize(
    ("mechanism", "params"),
    [("pow", {"block_interval_s": 60.0}), ("pos", {}), ("bft", {}), ("bft", {"create_empty_blocks": False})],
)
def test_step_by_step_equals_one_go(mechanism: str, params: dict[str, object]) -> None:
    """Driving an engine in 300 s steps (as the co-simulation does) gives exactly the one-go result."""
    submit_s = np.sort(np.random.default_rng(0).uniform(0.0, 3600.0, 500))
    whole = simulate(
        mechanism, submit_s, validators=8, rng=np.random.default_rng(1), duration_s=4000.0, **params
    )  # type: ignore[arg-type]
    engine = _in_steps(mechanism, params, submit_s, 4000.0, 300.0)
    assert whole.blocks == [b for b in engine.blocks if b.time_s <= 4000.0]
    assert whole.finalized_height == engine.finalized_height(4000.0)
    with pytest.raises(ValueError, match="before the clock"):
        engine.submit(np.array([10.0]))


@pytest.mark.parametrize(
    ("mechanism", "params"),
    [("pow", {"block_interval_s": 60.0}), ("pos", {}), ("bft", {"create_empty_blocks": False})],
)
def test_the_mempool_holds_only_the_transactions_not_yet_in_a_block(
    mechanism: str, params: dict[str, object]
) -> None:
    """4,000 transactions in 60 s steps of 100: the mempool's arrays stay at their first 1,024 entries (it
    drops what is in decided blocks; it held all 4,000 before), with the very blocks and times of one go."""
    submit_s = np.sort(np.random.default_rng(0).uniform(0.0, 2400.0, 4000))
    whole = simulate(
        mechanism, submit_s, validators=8, rng=np.random.default_rng(1), duration_s=2500.0, **params
    )  # type: ignore[arg-type]
    sizes: set[tuple[int, int]] = set()
    engine = _in_steps(mechanism, params, submit_s, 2500.0, 60.0,
                       lambda e: sizes.add((len(e.pool._submit_s), len(e.pool._origin))))  # fmt: skip
    assert sizes == {(1024, 1024)}
    assert engine.pool.base > 2000  # what was forgotten really went
    assert whole.blocks == [b for b in engine.blocks if b.time_s <= 2500.0]
    timing = _timing(submit_s, engine.ranges, 2500.0)
    for name in ("submit_s", "include_s", "final_s", "height"):
        np.testing.assert_array_equal(getattr(timing, name), getattr(whole.tx, name), err_msg=name)


def test_pos_skips_idle_slots() -> None:
    """With nothing submitted for an hour, PoS produces no blocks and counts the idle slots."""
    engine = ENGINES["pos"](16, np.random.default_rng(0))
    engine.run(3600.0)
    assert engine.blocks == [] and engine.n_idle_slots == 0  # type: ignore[attr-defined]
    engine.submit(np.array([3600.0, 3601.0]))
    engine.run(3700.0)
    assert sum(b.n_tx for b in engine.blocks) == 2
    assert engine.n_idle_slots == 300  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 12),
    power=st.sampled_from([1.0, 0.3, 7.0]),
    share=st.floats(0.0, 1.2),
    seed=st.integers(0, 2**32 - 1),
)
def test_equal_power_quorum_is_the_kth_arrival(n: int, power: float, share: float, seed: int) -> None:
    """With equal voting powers the quorum time (k-th earliest arrival) equals the general cumulative one."""
    rng = np.random.default_rng(seed)
    arrival = rng.uniform(0.0, 5.0, (n, n + 1))
    arrival[rng.random((n, n + 1)) < 0.3] = np.inf  # votes never sent
    arrival[:, 0] = rng.integers(0, 3, n)  # ties
    powers, need = np.full(n, power), share * power * n
    k = equal_quorum(powers, need)
    assert k is not None
    np.testing.assert_array_equal(_quorum_s(arrival, powers, need, k), _quorum_s(arrival, powers, need))
    assert equal_quorum(np.arange(1.0, n + 2), need) is None


@pytest.mark.parametrize(("faulty", "behaviour"), [(0, "silent"), (1, "silent"), (1, "equivocating")])
def test_bft_equal_power_shortcut_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, faulty: int, behaviour: str
) -> None:
    """A BFT run with the equal-power quorum shortcut is the run without it (blocks, signers, timings)."""
    fast = _bft(faulty, behaviour, seed=3)
    monkeypatch.setattr(consensus, "equal_quorum", lambda power, need: None)
    slow = _bft(faulty, behaviour, seed=3)
    assert fast.blocks == slow.blocks
    np.testing.assert_array_equal(fast.tx.final_s, slow.tx.final_s)
    np.testing.assert_array_equal(fast.tx.include_s, slow.tx.include_s)
