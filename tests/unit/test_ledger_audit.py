"""Signed chains of every mechanism verify; re-execution catches what every key could sign."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cosim.models.ledger import audit
from cosim.models.ledger.chain import Transaction, canonical
from cosim.models.ledger.consensus import ENGINES
from cosim.models.ledger.ledger import LedgerModel, StepOutput
from tests.ledger_tamper import insert, rehash

Cols = dict[str, np.ndarray]


def _run(mechanism: str, steps: int = 20, **kw: Any) -> tuple[LedgerModel, Cols, Cols, Cols]:
    """A ledger of 10 accounts on 1 transfer/s for ``steps`` minutes; the tx, block and vote columns."""
    params = {"pow": {"block_interval_s": 60.0, "confirmations": 2}, "bft": {"create_empty_blocks": False}}
    engine = ENGINES[mechanism](8, np.random.default_rng(1), **params.get(mechanism, {}) | kw)
    model = LedgerModel(
        engine, 10, np.random.default_rng(2), epoch_unix_s=1.6e9, step_s=60.0, gate_closure_s=0.0
    )
    outs: list[StepOutput] = [model.step(k, n_transfers=60, last=k == steps - 1) for k in range(steps)]

    def cat(name: str) -> Cols:
        tables = [getattr(o, name) for o in outs]
        return {c: np.concatenate([t[c] for t in tables]) for c in tables[0]}

    return model, cat("tx"), cat("blocks"), cat("votes")


def _verify(model: LedgerModel, tx: Cols, blocks: Cols, votes: Cols) -> tuple[bool, str | None]:
    return audit.verify_tables(model.genesis_json, blocks, tx, votes, complete=True)[:2]


@pytest.mark.parametrize(
    ("mechanism", "kw"),
    [
        ("bft", {}),
        ("bft", {"faulty": 2, "behaviour": "equivocating"}),
        ("bft", {"faulty": 3}),  # >= 1/3 silent: halted, genesis only
        ("pos", {}),
        ("pos", {"faulty": 2}),
        ("pow", {}),
        ("pow", {"faulty": 3}),
    ],
)
def test_every_mechanism_signs_a_chain_that_verifies(mechanism: str, kw: dict[str, Any]) -> None:
    """Honest and Byzantine runs of all three engines give chains that pass every check of verify_tables."""
    model, tx, blocks, votes = _run(mechanism, **kw)
    assert _verify(model, tx, blocks, votes) == (True, None)
    kinds = set(votes["kind"].astype(str))
    n_blocks = int((~blocks["stale"]).sum())
    assert "head" in kinds
    if mechanism == "bft" and n_blocks > 1:
        assert "commit" in kinds
    if mechanism == "pos":
        assert "attest" in kinds
    if mechanism == "pow":
        assert all(int(h, 16) >> 248 == 0 for h in blocks["hash"][~blocks["stale"]][1:].astype(str))


def _resign(model: LedgerModel, tx: Cols, blocks: Cols, votes: Cols, from_height: int) -> None:
    """What only a holder of every validator key can do: re-sign the blocks, certificates and head."""
    keys, heads = model.validator_keys, rehash(blocks, tx, from_height)
    for block in heads:
        blocks["signature"][block.height] = (
            keys[int(blocks["proposer"][block.height])].sign(audit.block_message(block.hash)).hex()
        )
        for i in np.flatnonzero((votes["height"] == block.height) & (votes["kind"] == b"commit")):
            message = audit.commit_message(block.height, block.hash)
            votes["signature"][i] = keys[int(votes["validator"][i])].sign(message).hex()
    head, n_tx = heads[-1], int((tx["height"] >= 0).sum())
    for i in np.flatnonzero(votes["kind"] == b"head"):
        message = audit.head_message(head.height, head.hash, n_tx)
        votes["signature"][i] = keys[int(votes["validator"][i])].sign(message).hex()


def test_reexecution_catches_a_receipt_that_every_key_signed() -> None:
    """A receipt changed and re-signed by all validators is still named: re-execution gives another one."""
    model, tx, blocks, votes = _run("bft")
    i = int(np.flatnonzero(tx["height"] > 2)[0])
    tx["gas_used"][i] += 100
    _resign(model, tx, blocks, votes, int(tx["height"][i]))
    ok, problem = _verify(model, tx, blocks, votes)
    assert not ok and f"tx {tx['tx_id'][i].decode()}: stored receipt ok/" in str(problem), problem


def test_reexecution_catches_a_reused_nonce_that_every_key_signed() -> None:
    """A second transfer with an already used nonce, signed by its owner and every validator, is named."""
    model, tx, blocks, votes = _run("bft")
    i = int(np.flatnonzero((tx["height"] > 2) & (tx["status"] == b"ok"))[0])
    sender = tx["sender"][i].decode()
    wallet = model.wallets[model.account_of[sender]]
    twin = Transaction("transfer", {"to": sender, "amount_micro": 1}, sender, int(tx["nonce"][i]))
    twin = twin.signed(wallet)
    h = int(tx["height"][i])
    row = {c: v[i] for c, v in tx.items()} | {
        "tx_id": twin.tx_id, "payload": canonical(twin.payload),
        "signatures": canonical([list(s) for s in twin.signatures]),
    }  # fmt: skip
    tx = insert(tx, int(np.flatnonzero(tx["height"] == h)[-1]) + 1, row)
    _resign(model, tx, blocks, votes, h)
    ok, problem = _verify(model, tx, blocks, votes)
    assert not ok and f"tx {twin.tx_id}: stored receipt ok/" in str(problem), problem
    assert f"nonce {int(tx['nonce'][i])} not above" in str(problem)


def test_resigning_keeps_an_untouched_chain_valid() -> None:
    """The re-signing helper itself produces valid signatures (so the two tests above test re-execution)."""
    model, tx, blocks, votes = _run("bft")
    _resign(model, tx, blocks, votes, 1)
    assert _verify(model, tx, blocks, votes) == (True, None)
