"""Hash chain: deterministic keys, signatures, Merkle roots, block links and tamper detection of records."""

from __future__ import annotations

import functools
import hashlib
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cosim.models.ledger.chain import (
    Block,
    Chain,
    KeyPair,
    Transaction,
    block_from_record,
    block_record,
    canonical,
    merkle_root,
    receipt_leaf,
    signatures_json,
    transaction_from_record,
    transaction_record,
    verify_chain,
    verify_records,
    verify_signatures,
)


def _keys(n: int, seed: int = 7) -> list[KeyPair]:
    rng = np.random.default_rng(seed)
    return [KeyPair.from_rng(rng) for _ in range(n)]


@functools.cache
def _chain() -> Chain:
    """Three blocks of signed trades, meter readings and transfers."""
    seller, buyer, meter = _keys(3)
    chain = Chain()
    nonce = 0
    for height in range(3):
        txs = []
        for step in range(height + 1):
            trade = {"seller": seller.public_hex, "buyer": buyer.public_hex, "step": step, "wh": 1500 + step}
            trade |= {"price_micro_per_mwh": 42_500_000, "trade_ref": f"clr-{height}"}
            txs.append(Transaction("trade", trade, buyer.public_hex, nonce).signed(buyer, seller))
            reading = {"owner": seller.public_hex, "step": step, "wh": 1400, "pf": 0.95}
            txs.append(Transaction("meter", reading, meter.public_hex, nonce).signed(meter))
            nonce += 1
        chain.seal(txs, time_s=900.0 * (height + 1) + 0.25, proposer=f"validator-{height}")
    return chain


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    chain = _chain()
    txs = [chain.txs[t] for b in chain.blocks for t in b.tx_ids]
    return [block_record(b) for b in chain.blocks], [transaction_record(t) for t in txs]


def test_keys_are_deterministic_from_seed() -> None:
    """The same 32-byte seed gives the same key and signature; different seeds give different keys."""
    a, b = KeyPair.generate(b"\x01" * 32), KeyPair.generate(b"\x01" * 32)
    assert a.public_hex == b.public_hex and a.sign(b"x") == b.sign(b"x") and len(a.public_hex) == 64
    assert _keys(2, seed=1)[0].public_hex == _keys(2, seed=1)[0].public_hex != _keys(2, seed=2)[0].public_hex


def test_tx_id_is_canonical_and_excludes_signatures() -> None:
    """The id hashes sorted-key compact JSON of kind/payload/sender/nonce and ignores signatures."""
    (k,) = _keys(1)
    tx = Transaction("transfer", {"to": "ab", "amount_micro": 5}, k.public_hex, 3)
    body = (
        f'{{"kind":"transfer","nonce":3,"payload":{{"amount_micro":5,"to":"ab"}},"sender":"{k.public_hex}"}}'
    )
    assert tx.signing_bytes() == body.encode()
    assert tx.tx_id == hashlib.sha256(body.encode()).hexdigest() == tx.signed(k).tx_id


def test_trade_needs_both_signatures() -> None:
    """A trade verifies only when signed by buyer and seller, and not after its payload changes."""
    seller, buyer, other = _keys(3)
    payload = {"seller": seller.public_hex, "buyer": buyer.public_hex, "step": 0, "wh": 10}
    tx = Transaction("trade", payload, buyer.public_hex, 0)
    need = {seller.public_hex, buyer.public_hex}
    assert verify_signatures(tx.signed(buyer, seller), need)
    assert not verify_signatures(tx.signed(buyer), need)
    assert not verify_signatures(tx.signed(buyer, other), need)
    forged = Transaction(
        "trade", payload | {"wh": 11}, buyer.public_hex, 0, tx.signed(buyer, seller).signatures
    )
    assert not verify_signatures(forged, need)


def test_merkle_root_bitcoin_style() -> None:
    """Empty -> SHA-256(b""), one leaf is the root, an odd level duplicates its last node."""
    ids = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    h = lambda x, y: hashlib.sha256(bytes.fromhex(x) + bytes.fromhex(y)).hexdigest()  # noqa: E731
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest() and merkle_root(ids[:1]) == ids[0]
    assert merkle_root(ids) == h(h(ids[0], ids[1]), h(ids[2], ids[2]))


def test_append_checks_link_merkle_and_duplicates() -> None:
    """``Chain.append`` refuses a broken link, a wrong Merkle root or repeated tx ids."""
    chain = Chain()
    chain.seal([], 0.0, "p")
    tid = "ab" * 32
    with pytest.raises(ValueError, match="prev_hash"):
        chain.append(Block(1, 1.0, "p", "00" * 32, merkle_root([])))
    with pytest.raises(ValueError, match="merkle"):
        chain.append(Block(1, 1.0, "p", chain.head_hash, merkle_root([]), (tid,)))
    with pytest.raises(ValueError, match="duplicate"):
        chain.append(Block(1, 1.0, "p", chain.head_hash, merkle_root([tid, tid]), (tid, tid)))


def test_verify_chain_names_first_bad_block_or_tx() -> None:
    """An intact chain verifies; an altered block or signature is named precisely."""
    chain = _chain()
    assert chain.verify() == (True, None)
    blocks, b1 = list(chain.blocks), chain.blocks[1]
    blocks[1] = Block(1, b1.time_s, "mallory", b1.prev_hash, b1.merkle_root, b1.tx_ids)
    assert verify_chain(blocks, chain.txs) == (False, "block 2: prev_hash link broken")
    blocks = list(chain.blocks)
    blocks[1] = Block(1, b1.time_s, b1.proposer, b1.prev_hash, b1.merkle_root, b1.tx_ids[:-1])
    assert verify_chain(blocks, chain.txs) == (False, "block 1: merkle root mismatch")
    tid = chain.blocks[2].tx_ids[0]
    tx = chain.txs[tid]
    txs = dict(chain.txs) | {tid: Transaction(tx.kind, tx.payload, tx.sender, tx.nonce, tx.signatures[:1])}
    assert verify_chain(chain.blocks, txs) == (False, f"tx {tid}: bad signature")


def test_records_round_trip() -> None:
    """Flat records hold only str/int/float and read back to equal objects that verify."""
    blocks, txs = _records()
    chain = _chain()
    assert [block_from_record(r) for r in blocks] == chain.blocks
    assert {transaction_from_record(r).tx_id: transaction_from_record(r) for r in txs} == chain.txs
    assert all(isinstance(v, str | int | float) for r in blocks + txs for v in r.values())
    assert verify_records(blocks, txs) == (True, None)


@settings(max_examples=300, deadline=None)
@given(
    is_block=st.booleans(),
    which=st.integers(0, 10_000),
    field_pick=st.integers(0, 100),
    pos=st.integers(0, 10_000),
    char=st.characters(min_codepoint=32, max_codepoint=126),
    bit=st.integers(0, 62),
)
def test_any_single_change_of_a_record_is_detected(
    is_block: bool, which: int, field_pick: int, pos: int, char: str, bit: int
) -> None:
    """Changing one character (str) or one bit (int, float) of any field of any stored record is caught."""
    blocks, txs = _records()
    records = blocks if is_block else txs
    i = which % len(records)
    rec = dict(records[i])
    name = sorted(rec)[field_pick % len(rec)]
    value = rec[name]
    if isinstance(value, str):
        p = pos % len(value)
        assume(value[p] != char)
        rec[name] = value[:p] + char + value[p + 1 :]
    elif isinstance(value, int):
        rec[name] = value ^ (1 << bit)
    else:
        (raw,) = struct.unpack("<Q", struct.pack("<d", value))
        (rec[name],) = struct.unpack("<d", struct.pack("<Q", raw ^ (1 << bit)))
    records[i] = rec
    ok, problem = verify_records(blocks, txs)
    assert not ok and problem is not None
    if is_block:
        assert problem.startswith(f"block {i}:"), problem
    else:
        assert problem.startswith("tx "), problem
        assert name == "tx_id" or records[i]["tx_id"] in problem or f"record {i}" in problem, problem


JSON_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["ab" * 32, 'a"b', "a\\b", ""]
)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(JSON_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(kind=JSON_TEXT, payload=st.dictionaries(JSON_TEXT, JSON_VALUE, max_size=4), sender=JSON_TEXT)
def test_payload_json_is_the_canonical_json_of_the_payload(
    kind: str, payload: dict[str, Any], sender: str
) -> None:
    """The payload column cut out of the signing bytes equals canonical(payload), whatever the texts hold."""
    tx = Transaction(kind, payload, sender, 3)
    assert tx.payload_json == canonical(payload).decode()


@settings(max_examples=200, deadline=None)
@given(signatures=st.lists(st.tuples(JSON_TEXT, JSON_TEXT), max_size=3))
def test_signatures_json_is_canonical(signatures: list[tuple[str, str]]) -> None:
    """The signatures column formatted directly equals canonical JSON of the pairs, for any text."""
    assert signatures_json(tuple(signatures)) == canonical([list(s) for s in signatures]).decode()


@settings(max_examples=300, deadline=None)
@given(
    tx_id=JSON_TEXT,
    status=JSON_TEXT,
    gas=st.integers(0, 10**12),
    times=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3),
)
def test_receipt_leaf_hashes_the_canonical_json(
    tx_id: str, status: str, gas: int, times: list[float]
) -> None:
    """A receipt leaf formatted directly is SHA-256 of the canonical JSON, for any text and any float."""
    expected = hashlib.sha256(canonical([tx_id, status, gas, *times])).hexdigest()
    assert receipt_leaf(tx_id, status, gas, *times) == expected


@settings(max_examples=400, deadline=None)
@given(
    kind=JSON_TEXT,
    payload=st.dictionaries(JSON_TEXT, st.integers() | JSON_TEXT, max_size=6)
    | st.dictionaries(JSON_TEXT, JSON_VALUE, max_size=4),
    sender=JSON_TEXT,
    nonce=st.integers(-(2**70), 2**70),
)
def test_signing_bytes_are_the_canonical_body(
    kind: str, payload: dict[str, Any], sender: str, nonce: int
) -> None:
    """A transaction's signing bytes (formatted directly when plain) are the canonical JSON of its body."""
    body = {"kind": kind, "payload": payload, "sender": sender, "nonce": nonce}
    assert Transaction(kind, payload, sender, nonce).signing_bytes() == canonical(body)
