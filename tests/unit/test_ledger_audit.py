"""Signed chains of every mechanism verify; re-execution catches what every key could sign."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cosim.models.ledger import audit
from cosim.models.ledger.chain import Transaction, canonical
from cosim.models.ledger.consensus import ENGINES
from cosim.models.ledger.ledger import LedgerModel, StepOutput
from tests.ledger_tamper import insert, rehash

Cols = dict[str, np.ndarray]


def _run(
    mechanism: str, steps: int = 20, per_step: int = 60, **kw: Any
) -> tuple[LedgerModel, Cols, Cols, Cols]:
    """A ledger of 10 accounts on ``per_step`` transfers a minute for ``steps`` minutes; its tx, block and
    vote columns."""
    params = {"pow": {"block_interval_s": 60.0, "confirmations": 2}, "bft": {"create_empty_blocks": False}}
    engine = ENGINES[mechanism](8, np.random.default_rng(1), **params.get(mechanism, {}) | kw)
    model = LedgerModel(
        engine, 10, np.random.default_rng(2), epoch_unix_s=1.6e9, step_s=60.0, gate_closure_s=0.0
    )
    outs: list[StepOutput] = [model.step(k, n_transfers=per_step, last=k == steps - 1) for k in range(steps)]

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


def test_a_reused_nonce_recorded_as_the_replay_it_executes_to_is_named() -> None:
    """The same twin stored with the receipt its re-execution gives (replay, 0 gas), re-signed by every key:
    the receipts match, but the gateway refuses a nonce not above its sender's earlier ones, so it is named
    (before the gateway's rule was mirrored here this chain verified)."""
    model, tx, blocks, votes = _run("bft")
    i = int(np.flatnonzero((tx["height"] > 2) & (tx["status"] == b"ok"))[0])
    sender = tx["sender"][i].decode()
    twin = Transaction("transfer", {"to": sender, "amount_micro": 1}, sender, int(tx["nonce"][i]))
    twin = twin.signed(model.wallets[model.account_of[sender]])
    h = int(tx["height"][i])
    row = {c: v[i] for c, v in tx.items()} | {
        "tx_id": twin.tx_id, "payload": canonical(twin.payload),
        "signatures": canonical([list(s) for s in twin.signatures]), "status": b"replay", "gas_used": 0,
    }  # fmt: skip
    tx = insert(tx, int(np.flatnonzero(tx["height"] == h)[-1]) + 1, row)
    _resign(model, tx, blocks, votes, h)
    ok, problem = _verify(model, tx, blocks, votes)
    assert not ok and str(problem).startswith(f"tx {twin.tx_id}: nonce {int(tx['nonce'][i])} not above ")
    assert str(problem).endswith("its sender's earlier in the chain (a replay, which the gateway refuses)")


def test_resigning_keeps_an_untouched_chain_valid() -> None:
    """The re-signing helper itself produces valid signatures (so the two tests above test re-execution)."""
    model, tx, blocks, votes = _run("bft")
    _resign(model, tx, blocks, votes, 1)
    assert _verify(model, tx, blocks, votes) == (True, None)


@functools.cache
def _small(mechanism: str) -> tuple[LedgerModel, Cols, Cols, Cols]:
    """A short run of each mechanism, computed once (the mutation test copies its columns)."""
    return _run(mechanism, steps=22, per_step=10)


def _mutate(value: Any, pick: int) -> Any:
    """A different value of the same type: a number shifted, a flag flipped, one character changed."""
    if isinstance(value, np.bool_):
        return not value
    if isinstance(value, np.integer):
        return value + 1 + pick % 3
    if isinstance(value, np.floating):
        return value + 0.25 * (1 + pick % 3)
    text = bytes(value)
    if not text:
        return b"0"
    k = pick % len(text)
    new = b"1" if text[k : k + 1] == b"0" else b"0"
    return text[:k] + new + text[k + 1 :]


@settings(max_examples=100, deadline=None)
@given(
    mechanism=st.sampled_from(["bft", "pos", "pow"]),
    table=st.sampled_from(["tx", "blocks", "votes"]),
    row=st.integers(0, 10**6),
    column=st.integers(0, 20),
    pick=st.integers(0, 10**6),
)
def test_any_single_change_of_the_stored_chain_is_detected(
    mechanism: str, table: str, row: int, column: int, pick: int
) -> None:
    """Changing any one value of a chain row (tx in a block, live block, vote) makes verification fail."""
    model, *tables = _small(mechanism)
    cols = dict(
        zip(("tx", "blocks", "votes"), ({c: v.copy() for c, v in t.items()} for t in tables), strict=True)
    )
    t = cols[table]
    if table == "tx":
        rows = np.flatnonzero(t["height"] >= 0)  # rejected and pending rows are not on the chain
    elif table == "blocks":
        rows = np.flatnonzero(~t["stale"])
    else:
        rows = np.arange(len(t["height"]))
    name = sorted(t)[column % len(t)]
    i = int(rows[row % len(rows)])
    before = t[name][i]
    assume(not (isinstance(before, np.floating) and np.isnan(before)))
    t[name][i] = _mutate(before, pick)
    assume(t[name][i] != before)  # a fixed-width text may drop what it cannot hold
    ok, problem = _verify(model, cols["tx"], cols["blocks"], cols["votes"])
    assert not ok, (table, name, i)


def test_the_interval_a_transaction_reads_under_a_horizon() -> None:
    """A trade or reading reads its own interval, a settlement its promise's (none when the promise is
    unknown), a cancel or transfer none: what a horizon of dropped intervals is checked against."""
    from types import SimpleNamespace

    from cosim.models.ledger.contracts import Ledger, Promise

    ledger = Ledger()
    ledger.promises["t1"] = Promise("s", "b", 7, 10, 50_000_000, 500)
    checker = audit._Checker.__new__(audit._Checker)
    checker.g = SimpleNamespace(ledger=ledger)  # type: ignore[assignment]
    cases = [
        (Transaction("trade", {"step": 3}, "b", 1), 3),
        (Transaction("meter", {"step": 4}, "m", 1), 4),
        (Transaction("settle", {"token": "t1"}, "s", 1), 7),
        (Transaction("settle", {"token": "t2"}, "s", 2), None),
        (Transaction("cancel", {"token": "t1"}, "b", 2), None),
        (Transaction("trade", {"step": "3"}, "b", 3), None),
        (Transaction("transfer", {"to": "s", "amount_micro": 1}, "b", 4), None),
    ]
    assert [checker._interval(tx) for tx, _ in cases] == [want for _, want in cases]
