"""Ed25519 through libsodium, and the signature threads: published vectors, same results with any number
of threads, verdicts in order, and verify-ledger still naming the first problem in row order."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.errors import CosimError
from cosim.models.ledger import audit, chain
from cosim.models.ledger.chain import KeyPair, Transaction, signature_ok
from cosim.models.ledger.consensus import ENGINES
from cosim.models.ledger.ledger import LedgerModel, StepOutput

# RFC 8032, section 7.1 (Ed25519): TEST 1 (empty message) and TEST 2 (one byte), (seed, public, msg, sig)
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
        "d25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c"
        "387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("seed", "public", "message", "signature"), RFC8032)
def test_keys_and_signatures_match_rfc8032(seed: str, public: str, message: str, signature: str) -> None:
    """A key pair from an RFC 8032 seed has the published public key and signs to the published bytes."""
    key = KeyPair.generate(bytes.fromhex(seed))
    msg = bytes.fromhex(message)
    assert key.public_hex == public
    assert key.sign(msg).hex() == signature
    assert signature_ok(public, signature, msg)
    flipped = signature[:10] + ("0" if signature[10] != "0" else "1") + signature[11:]
    assert not signature_ok(public, flipped, msg) and not signature_ok(public, signature, msg + b"x")


def _signed_txs(n: int) -> list[Transaction]:
    keys = [KeyPair.generate(bytes([i]) * 32) for i in range(4)]
    out = []
    for i in range(n):
        payload = {"to": keys[(i + 1) % 4].public_hex, "amount_micro": i}
        out.append(Transaction("transfer", payload, keys[i % 4].public_hex, i).signed(keys[i % 4]))
    return out


def test_batch_verdicts_keep_their_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forged transaction in a batch gets False at its own place, with and without threads; the batch
    runs partly on another thread when threads are on."""
    txs = _signed_txs(24)
    pub, sig = txs[13].signatures[0]
    txs[13] = Transaction(txs[13].kind, txs[13].payload, txs[13].sender, 99, ((pub, sig),))  # replayed sig
    expected = [i != 13 for i in range(24)]
    names: set[str] = set()
    for threads in (1, 2):
        monkeypatch.setattr(chain, "SIGNATURE_THREADS", threads)
        assert chain.verify_all(txs) == expected
        names |= set(chain.parallel_map(lambda _: threading.current_thread().name, list(range(24))))
    assert any(name.startswith("cosim-ed25519") for name in names)


def _ledger(steps: int) -> tuple[list[StepOutput], LedgerModel]:
    engine = ENGINES["bft"](8, np.random.default_rng(1), create_empty_blocks=False)
    model = LedgerModel(engine, 12, np.random.default_rng(2), epoch_unix_s=1.6e9, step_s=3600.0)
    rng = np.random.default_rng(3)
    outs = []
    for k in range(steps):
        n = 20
        trades = {
            "buyer": rng.integers(0, 6, n), "seller": rng.integers(6, 12, n), "mwh": rng.uniform(0, 0.01, n),
            "price": np.full(n, 60.0), "seller_price": np.full(n, 55.0),
        }  # fmt: skip
        outs.append(model.step(k, trades, rng.uniform(0, 0.01, 12), n_transfers=10, last=k == steps - 1))
    return outs, model


def test_threads_change_no_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trades, readings, transfers, blocks and votes: the same tables with one thread and with two."""
    tables: list[list[dict[str, Any]]] = []
    for threads in (1, 2):
        monkeypatch.setattr(chain, "SIGNATURE_THREADS", threads)
        outs, model = _ledger(4)
        tables.append([o.tx | o.blocks | o.votes for o in outs])
        assert model.n_rejected == 0
    for one, two in zip(*tables, strict=True):
        assert one.keys() == two.keys()
        for name in one:
            np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    assert sum(len(t["signature"]) for t in tables[1]) > 0 and all(
        s for t in tables[1] for s in t["signature"][t["height"] > 0]
    )


def test_verify_ledger_names_the_first_problem_in_row_order() -> None:
    """A bad signature in a block is reported before an unreadable record later in the same block, although
    the block's signatures are checked as one batch."""
    outs, model = _ledger(3)
    cols = {name: np.concatenate([o.tx[name] for o in outs]) for name in outs[0].tx}
    blocks = {name: np.concatenate([o.blocks[name] for o in outs]) for name in outs[0].blocks}
    votes = {name: np.concatenate([o.votes[name] for o in outs]) for name in outs[0].votes}
    height = np.bincount(cols["height"][cols["height"] > 0]).argmax()  # the fullest block
    first, later = np.flatnonzero(cols["height"] == height)[[0, -1]]
    sigs = cols["signatures"].astype(str)
    good, end = sigs[first], len(sigs[first]) - 3  # ...<last signature hex>"]]
    sigs[first] = good[: end - 2] + ("00" if good[end - 2 : end] != "00" else "11") + good[end:]
    cols["signatures"] = sigs.astype(cols["signatures"].dtype)
    ok, problem, _, _ = audit.verify_tables(model.genesis_json, blocks, cols, votes, complete=True)
    assert not ok and problem == f"tx {cols['tx_id'][first].decode()}: bad signature"
    payload = cols["payload"].copy()
    payload[later] = b"not json"
    cols["payload"] = payload
    ok, problem, _, _ = audit.verify_tables(model.genesis_json, blocks, cols, votes, complete=True)
    assert not ok and problem == f"tx {cols['tx_id'][first].decode()}: bad signature"
    cols["signatures"] = np.where(np.arange(len(sigs)) == first, good, sigs).astype(cols["signatures"].dtype)
    ok, problem, _, _ = audit.verify_tables(model.genesis_json, blocks, cols, votes, complete=True)
    assert not ok and problem == f"tx record {later}: unreadable"


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_thread_setting_is_an_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """COSIM_SIGNATURE_THREADS must be a whole number >= 1; the message names the variable."""
    monkeypatch.setenv(chain.ENV_THREADS, value)
    with pytest.raises(CosimError, match="COSIM_SIGNATURE_THREADS"):
        chain._signature_threads()
    monkeypatch.setenv(chain.ENV_THREADS, "3")
    assert chain._signature_threads() == 3
    monkeypatch.delenv(chain.ENV_THREADS)
    assert 1 <= chain._signature_threads() <= 2


_KEYS = [KeyPair.generate(bytes([i + 1]) * 32) for i in range(3)]
_UNSOUND = [
    KeyPair(_KEYS[1].public, _KEYS[0].secret),  # claims another's public key
    KeyPair(_KEYS[1].public, _KEYS[0].secret[:32] + _KEYS[1].public),  # and carries it in its secret
]


@settings(max_examples=150, deadline=None)
@given(
    signers=st.lists(st.sampled_from(_KEYS + _UNSOUND), max_size=3),
    parties=st.tuples(*[st.sampled_from([k.public_hex for k in _KEYS] + ["ab" * 32])] * 3),
    prior=st.sampled_from(["none", "valid", "forged"]),
)
def test_a_verdict_by_construction_is_the_checked_verdict(
    signers: list[KeyPair], parties: tuple[str, str, str], prior: str
) -> None:
    """``sign_and_check``'s verdict without re-checking signatures it made with sound keys equals
    ``verify_signatures``' on the same signed transaction: with unsound key pairs, missing parties and
    signatures attached before (valid or forged)."""
    sender, buyer, seller = parties
    tx = Transaction("trade", {"buyer": buyer, "seller": seller, "wh": 5}, sender, 1)
    if prior != "none":
        pub, sig = tx.signed(_KEYS[2]).signatures[0]
        sig = sig if prior == "valid" else "00" * 64
        tx = Transaction(tx.kind, tx.payload, tx.sender, tx.nonce, ((pub, sig),))
    [(signed, ok)] = chain.sign_and_check([(tx, tuple(signers))])
    assert signed == tx.signed(*signers)
    assert ok == chain.verify_signatures(signed, chain.required_signers(signed))
    assert [k.sound for k in _KEYS + _UNSOUND] == [True, True, True, False, False]
