"""A co-simulation's ledger (keep_history=False) keeps only what is not final: same rows, bounded state."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cosim.models.ledger.chain import transaction_from_record
from cosim.models.ledger.consensus import ENGINES
from cosim.models.ledger.ledger import LedgerModel, StepOutput

N_AGENTS = 6
PARAMS: dict[str, dict[str, Any]] = {
    "pow": {"block_interval_s": 300.0, "confirmations": 3},
    "pos": {},
    "bft": {"create_empty_blocks": False},
}
TRADES = {
    "buyer": np.array([0, 1, 2, -1]), "seller": np.array([3, 4, 3, 5]),
    "mwh": np.array([0.002, 0.001, 0.003, 0.1]), "price": np.full(4, 60.0), "seller_price": np.full(4, 55.0),
}  # fmt: skip
HELD_MODEL = (
    "submitted", "index_of", "submit_tau", "final_tau", "_cancel_step", "queue", "deadlines", "to_execute",
    "replay_guard",
)  # fmt: skip
HELD_STATE = ("promises", "trade_refs", "readings_wh", "allocated_wh", "open_tokens", "events")
EXPORT_MW = np.array([0, 0, 0, 0.004, 0.0005, 0.0])


def _model(mechanism: str, keep_history: bool) -> LedgerModel:
    engine = ENGINES[mechanism](8, np.random.default_rng(1), **PARAMS[mechanism])
    return LedgerModel(
        engine, N_AGENTS, np.random.default_rng(2), epoch_unix_s=1.6e9, step_s=3600.0,
        import_price_per_mwh=80.0, export_price_per_mwh=30.0, keep_history=keep_history,
    )  # fmt: skip


def _steps(model: LedgerModel, n: int, last: bool = False) -> list[StepOutput]:
    """``n`` hourly steps of the same trades and readings (and a few transfers)."""
    return [model.step(k, TRADES, EXPORT_MW, n_transfers=2, last=last and k == n - 1) for k in range(n)]


def _held(model: LedgerModel) -> dict[str, int]:
    """The sizes of every container of the ledger that could grow with the run."""
    sizes = {name: len(getattr(model, name)) for name in HELD_MODEL}
    sizes |= {name: len(getattr(model.state, name)) for name in HELD_STATE}
    return sizes | {
        "chain_blocks": len(model.chain.blocks), "chain_txs": len(model.chain.txs),
        "engine_blocks": len(model.engine.blocks), "engine_ranges": len(model.engine.ranges),
    }  # fmt: skip


@pytest.mark.parametrize("mechanism", ["pow", "pos", "bft"])
def test_the_state_held_does_not_grow_with_the_final_transactions(mechanism: str) -> None:
    """After 4x the steps (4x the final transactions) the ledger holds no more than after 1x (+ a step's)."""
    short, long = _model(mechanism, False), _model(mechanism, False)
    _steps(short, 12)
    outs = _steps(long, 48)
    n_final = sum(int(np.isfinite(o.tx["final_s"]).sum()) for o in outs)
    assert n_final > 48 * 5  # the long run really finalised its trades, readings, transfers (and cancels)
    held_short, held_long = _held(short), _held(long)
    per_step = 4 + 2 + 2 + 4  # trades, readings, transfers, cancels of one step: what may differ
    for name, n in held_long.items():
        assert n <= held_short[name] + 2 * per_step, (name, held_short, held_long)
    assert sum(held_long.values()) < 2 * sum(held_short.values()) + per_step
    # the replay protection: one entry per sender (wallets and meter keys), the same after 12 and 48 steps
    assert 0 < len(long.replay_guard) == len(short.replay_guard) <= 2 * N_AGENTS
    # ... and it still holds: every ok transaction of the first step, sent again at the end, is refused
    first = outs[0].tx
    ok = np.flatnonzero(first["status"] == b"ok")
    assert len(ok) >= 4
    for i in ok.tolist():
        rec = {k: first[k][i].decode() for k in ("tx_id", "kind", "payload", "sender", "signatures")}
        tx = transaction_from_record(rec | {"nonce": int(first["nonce"][i])})
        assert tx.tx_id == rec["tx_id"] and not long.admit(48 * 3600.0, tx)
    assert long.tx_rows.take()["status"].tolist() == [b"replay"] * len(ok)


@pytest.mark.parametrize("mechanism", ["pow", "pos", "bft"])
def test_dropping_what_is_final_changes_no_row(mechanism: str) -> None:
    """The same run with and without its history writes the very same tx, block and vote rows and figures."""
    kept, bounded = _model(mechanism, True), _model(mechanism, False)
    for a, b in zip(_steps(kept, 20, last=True), _steps(bounded, 20, last=True), strict=True):
        for table in ("tx", "blocks", "votes"):
            for col, values in getattr(a, table).items():
                np.testing.assert_array_equal(getattr(b, table)[col], values, err_msg=f"{table}/{col}")
        assert (a.n_late, a.late_cost, a.finality_p50_s) == pytest.approx(
            (b.n_late, b.late_cost, b.finality_p50_s), nan_ok=True
        )
    assert kept.state.balances == bounded.state.balances and kept.state.credits_wh == bounded.state.credits_wh
    assert kept.chain.head_hash == bounded.chain.head_hash and kept.chain.n_tx == bounded.chain.n_tx
    assert len(bounded.chain.blocks) == 1 < len(kept.chain.blocks)
