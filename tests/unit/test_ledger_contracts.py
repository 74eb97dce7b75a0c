"""Energy contracts: gas metering, atomic reverts, replay and double-spend protection, exact money."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.ledger.chain import KeyPair, Transaction, canonical
from cosim.models.ledger.contracts import G_TX, Ledger, _json_len

N = 4
PRICE = 50_000_000  # micro-$/MWh = 50 $/MWh


@functools.cache
def _keys() -> tuple[list[KeyPair], list[KeyPair]]:
    """Wallet and meter keys of ``N`` agents, reproducible from a numpy seed."""
    rng = np.random.default_rng(2024)
    return [KeyPair.from_rng(rng) for _ in range(N)], [KeyPair.from_rng(rng) for _ in range(N)]


def _ledger(balance_micro: int = 1_000_000, settle_on_meter: bool = False) -> Ledger:
    wallets, meters = _keys()
    return Ledger(
        {w.public_hex: balance_micro for w in wallets},
        {w.public_hex: m.public_hex for w, m in zip(wallets, meters, strict=True)},
        settle_on_meter=settle_on_meter,
    )


def _trade(
    seller: int, buyer: int, step: int, wh: int, nonce: int, ref: str = "r", price: int = PRICE
) -> Transaction:
    w, _ = _keys()
    p = {"seller": w[seller].public_hex, "buyer": w[buyer].public_hex, "step": step, "wh": wh}
    p |= {"price_micro_per_mwh": price, "trade_ref": ref}
    return Transaction("trade", p, w[buyer].public_hex, nonce).signed(w[buyer], w[seller])


def _meter(owner: int, step: int, wh: int, nonce: int) -> Transaction:
    w, m = _keys()
    payload = {"owner": w[owner].public_hex, "step": step, "wh": wh}
    return Transaction("meter", payload, m[owner].public_hex, nonce).signed(m[owner])


def _settle(caller: int, token: str, nonce: int) -> Transaction:
    w, _ = _keys()
    return Transaction("settle", {"token": token}, w[caller].public_hex, nonce).signed(w[caller])


def _cancel(caller: int, token: str, nonce: int) -> Transaction:
    w, _ = _keys()
    return Transaction("cancel", {"token": token}, w[caller].public_hex, nonce).signed(w[caller])


def _transfer(src: int, dst: str | int, amount: int, nonce: int) -> Transaction:
    w, _ = _keys()
    to = dst if isinstance(dst, str) else w[dst].public_hex
    return Transaction("transfer", {"to": to, "amount_micro": amount}, w[src].public_hex, nonce).signed(
        w[src]
    )


def _hash_with_nonces(ledger: Ledger, nonces: dict[str, int]) -> str:
    """State hash of ``ledger`` with its nonces temporarily set to ``nonces``."""
    kept, ledger.nonces = ledger.nonces, dict(nonces)
    try:
        return ledger.state_hash()
    finally:
        ledger.nonces = kept


def test_failed_transaction_consumes_its_nonce_and_cannot_be_replayed() -> None:
    """A signed transfer reverted for lack of money cannot be replayed once the money is there."""
    ledger = _ledger(balance_micro=1000)
    w, _ = _keys()
    pay = _transfer(0, 1, 1500, 0)
    receipt = ledger.apply(pay)
    assert receipt.status == "insufficient_balance" and receipt.gas_used > 0
    assert ledger.nonces[w[0].public_hex] == 0 and ledger.balances[w[0].public_hex] == 1000
    assert ledger.apply(_transfer(2, 0, 1000, 0)).status == "ok"  # now the sender could pay
    assert ledger.apply(pay).status == "replay"  # but the reverted transaction stays spent
    assert ledger.balances[w[0].public_hex] == 2000
    assert ledger.apply(_transfer(0, 1, 1500, 1)).status == "ok"  # a fresh nonce works


def _check_invariants(ledger: Ledger, money_micro: int) -> None:
    assert ledger.money_micro() == money_micro and min(ledger.balances.values()) >= 0
    for key, allocated in ledger.allocated_wh.items():
        assert allocated <= ledger.readings_wh[key]
    assert (
        sum(ledger.credits_wh.values())
        == sum(ledger.allocated_wh.values())
        <= sum(ledger.readings_wh.values())
    )
    assert all(p.escrow_micro == 0 for p in ledger.promises.values() if p.status != "minted")


def test_transfer_and_mint_gas_match_evm_scale() -> None:
    """A transfer costs 40k-60k gas (existing or new recipient) and a promise mint 50k-150k."""
    ledger = _ledger()
    to_existing = ledger.apply(_transfer(0, 1, 1000, 0))
    to_new = ledger.apply(_transfer(0, "ee" * 32, 1000, 1))
    mint = ledger.apply(_trade(0, 1, 0, 2000, 0))
    assert to_existing.status == to_new.status == mint.status == "ok"
    assert 40_000 <= to_existing.gas_used < to_new.gas_used <= 60_000
    assert 50_000 <= mint.gas_used <= 150_000


def test_settle_caps_credits_and_pays_pro_rata_with_penalty() -> None:
    """Two promises over-selling one reading: credits = metered, payment pro rata, 10% penalty on the rest."""
    ledger = _ledger()
    wallets, _ = _keys()
    s, b1, b2 = (w.public_hex for w in wallets[:3])
    t1, t2 = _trade(0, 1, 5, 3000, 0), _trade(0, 2, 5, 2000, 0)
    assert [ledger.apply(t).status for t in (t1, t2, _meter(0, 5, 4000, 0))] == ["ok"] * 3
    assert ledger.escrow_micro() == 250_000
    assert ledger.apply(_settle(3, t1.tx_id, 0)).status == "ok"
    assert ledger.apply(_settle(3, t2.tx_id, 1)).status == "ok"
    assert ledger.credits_wh == {b1: 3000, b2: 1000} and ledger.escrow_micro() == 0
    # t2: escrow 100_000, delivered half -> seller paid 50_000, buyer refunded 50_000 + penalty 5_000
    assert ledger.balances[s] == 1_000_000 + 150_000 + 50_000 - 5_000
    assert ledger.balances[b2] == 1_000_000 - 100_000 + 50_000 + 5_000
    assert ledger.apply(_settle(3, t2.tx_id, 2)).status == "double_spend"


def test_undelivered_promise_is_cancelled_and_penalty_capped_by_balance() -> None:
    """Nothing metered: the promise is cancelled, escrow refunded, penalty limited to the seller's money."""
    ledger = _ledger()
    wallets, _ = _keys()
    assert ledger.apply(_transfer(0, 3, 1_000_000, 0)).status == "ok"  # the seller is now broke
    trade = _trade(0, 1, 2, 10_000, 1)
    assert [ledger.apply(t).status for t in (trade, _meter(0, 2, 0, 0), _settle(2, trade.tx_id, 0))] == [
        "ok"
    ] * 3
    assert ledger.promises[trade.tx_id].status == "cancelled" and ledger.balances[wallets[0].public_hex] == 0
    assert ledger.balances[wallets[1].public_hex] == 1_000_000 and ledger.credits_wh == {
        wallets[1].public_hex: 0
    }


def test_rejections_change_nothing() -> None:
    """Bad signatures, a foreign meter, replays, duplicate refs, overdrafts and bad payloads all fail."""
    ledger = _ledger()
    wallets, _ = _keys()
    assert ledger.apply(_trade(0, 1, 0, 100, 0, ref="x")).status == "ok"
    before = ledger.state_hash()
    one_signature = Transaction("trade", _trade(0, 1, 1, 100, 1).payload, wallets[1].public_hex, 1)
    forged_meter = Transaction("meter", _meter(0, 0, 5, 0).payload, wallets[0].public_hex, 0).signed(
        wallets[0]
    )
    cases = {
        "bad_signature": [one_signature.signed(wallets[1]), forged_meter],
        "replay": [_trade(0, 1, 0, 100, 0, ref="x"), _transfer(1, 0, 1, 0)],
        "double_spend": [_trade(0, 1, 0, 100, 1, ref="x")],
        "insufficient_balance": [_trade(0, 1, 1, 10**9, 2), _transfer(2, 0, 1_000_001, 0)],
        "unknown": [
            Transaction("mint_money", {}, wallets[0].public_hex, 5).signed(wallets[0]),
            _transfer(0, 1, -5, 5),
            _settle(0, "00" * 32, 5),
        ],
    }
    nonces0 = dict(ledger.nonces)
    for status, txs in cases.items():
        for tx in txs:
            nonces = dict(ledger.nonces)
            receipt = ledger.apply(tx)
            assert receipt.status == status, (status, receipt)
            assert _hash_with_nonces(ledger, nonces0) == before  # only nonces may change
            if status in ("bad_signature", "replay"):
                assert receipt.gas_used == 0 and ledger.nonces == nonces
            elif receipt.gas_used:  # failed in execution: the nonce is consumed
                assert ledger.nonces == nonces | {tx.sender: tx.nonce}


@settings(max_examples=60, deadline=None)
@given(limit=st.integers(0, 200_000), kind=st.sampled_from(["trade", "settle", "transfer", "meter"]))
def test_out_of_gas_leaves_state_byte_identical(limit: int, kind: str) -> None:
    """Any gas limit either completes the call or reverts it to the exact prior state hash and events."""
    ledger = _ledger()
    trade = _trade(0, 1, 0, 3000, 0)
    assert ledger.apply(trade).status == ledger.apply(_meter(0, 0, 2000, 0)).status == "ok"
    tx = {
        "trade": _trade(2, 3, 0, 500, 0),
        "settle": _settle(1, trade.tx_id, 1),
        "transfer": _transfer(0, "aa" * 32, 10, 0),
        "meter": _meter(1, 0, 10, 0),
    }[kind]
    before, n_events = ledger.state_hash(), len(ledger.events)
    nonces = dict(ledger.nonces)
    receipt = ledger.apply(tx, gas_limit=limit)
    if receipt.status == "out_of_gas":
        assert ledger.nonces == nonces | {tx.sender: tx.nonce}  # the failed transaction consumed its nonce
        assert _hash_with_nonces(ledger, nonces) == before
        assert len(ledger.events) == n_events and receipt.gas_used == limit
        assert ledger.apply(tx).status == "replay"  # and cannot be replayed later
    else:
        assert receipt.status == "ok" and G_TX < receipt.gas_used <= limit


OPS = st.lists(
    st.tuples(
        st.sampled_from(["trade", "meter", "settle", "cancel", "transfer", "replay", "forge", "oog"]),
        st.integers(0, N - 1),
        st.integers(0, N - 1),
        st.integers(0, 2),
        st.integers(0, 400_000),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, settle_on_meter=st.booleans())
def test_random_histories_conserve_money_and_never_overcredit(
    ops: list[tuple[str, int, int, int, int]], settle_on_meter: bool
) -> None:
    """Over any mix of valid and invalid txs: money is conserved, credits <= metered, no tx applies twice."""
    ledger = _ledger(settle_on_meter=settle_on_meter)
    wallets, meters = _keys()
    money = ledger.money_micro()
    nonce: dict[str, int] = {}
    applied: list[Transaction] = []
    failed: list[Transaction] = []
    tokens: list[str] = []

    def next_nonce(key: KeyPair) -> int:
        nonce[key.public_hex] = nonce.get(key.public_hex, -1) + 1
        return nonce[key.public_hex]

    for op, i, j, step, x in ops:
        j = j if j != i else (i + 1) % N
        tx: Any
        if op == "trade":
            tx = _trade(i, j, step, x // 40 + 1, next_nonce(wallets[j]), ref=f"r{x % 3}", price=PRICE + x)
        elif op == "meter":
            tx = _meter(i, step, x // 50, next_nonce(meters[i]))
        elif op == "settle":
            tx = _settle(i, tokens[x % len(tokens)] if tokens else "11" * 32, next_nonce(wallets[i]))
        elif op == "cancel":
            tx = _cancel(i, tokens[x % len(tokens)] if tokens else "11" * 32, next_nonce(wallets[i]))
        elif op == "transfer":
            tx = _transfer(i, j, x * 3, next_nonce(wallets[i]))
        elif op == "forge":
            honest = _transfer(i, j, x, next_nonce(wallets[i]))
            tx = Transaction(
                "transfer", honest.payload | {"amount_micro": x + 1}, honest.sender, honest.nonce
            )
            tx = Transaction(tx.kind, tx.payload, tx.sender, tx.nonce, honest.signatures)
        elif op == "replay":
            tx = (
                applied[x % len(applied)]
                if applied
                else _transfer(i, j, 1, nonce.get(wallets[i].public_hex, 0))
            )
        else:
            tx = _transfer(i, j, x, next_nonce(wallets[i]))
        before, nonces = ledger.state_hash(), dict(ledger.nonces)
        receipt = ledger.apply(tx, gas_limit=30_000 if op == "oog" else 1_000_000)
        if op in ("forge", "oog") or (op == "replay" and applied):
            assert receipt.status != "ok"
        if receipt.status == "ok":
            applied.append(tx)
            tokens += [tx.tx_id] if tx.kind == "trade" else []
        elif receipt.gas_used == 0:  # rejected: nothing changes
            assert ledger.state_hash() == before
        else:  # failed in execution: reverted, except that it consumed its nonce
            assert ledger.nonces == nonces | {tx.sender: tx.nonce}
            assert _hash_with_nonces(ledger, nonces) == before
            failed.append(tx)
        _check_invariants(ledger, money)
    for tx in applied + failed:
        assert ledger.apply(tx).status == "replay"


def test_meter_reading_settles_open_promises_and_cancel_refunds() -> None:
    """settle_on_meter: the reading settles its step's promises in mint order; a cancelled one is skipped."""
    ledger = _ledger(settle_on_meter=True)
    w, _ = _keys()
    t1, t2, t3 = _trade(0, 1, 7, 3000, 0), _trade(0, 2, 7, 2000, 0), _trade(0, 3, 7, 1000, 0)
    assert [ledger.apply(t).status for t in (t1, t2, t3)] == ["ok"] * 3
    assert ledger.apply(_cancel(3, t2.tx_id, 1)).status == "bad_signature"  # not a party of t2
    assert ledger.apply(_cancel(3, t3.tx_id, 1)).status == "replay"  # the failed cancel used nonce 1
    assert ledger.apply(_cancel(3, t3.tx_id, 2)).status == "ok"  # the buyer of t3
    assert ledger.balances[w[3].public_hex] == 1_000_000  # escrow back, no penalty
    assert ledger.apply(_cancel(0, t3.tx_id, 0)).status == "double_spend"
    reading = ledger.apply(_meter(0, 7, 4000, 0))
    assert reading.status == "ok" and reading.gas_used > 100_000
    assert [ledger.promises[t.tx_id].delivered_wh for t in (t1, t2, t3)] == [3000, 1000, 0]
    assert [ledger.promises[t.tx_id].status for t in (t1, t2, t3)] == ["settled", "settled", "cancelled"]
    assert ledger.credits_wh == {w[1].public_hex: 3000, w[2].public_hex: 1000}
    assert ledger.apply(_settle(1, t1.tx_id, 1)).status == "double_spend"


def test_open_promises_of_a_seller_grow_in_place_and_revert() -> None:
    """A seller's open-promise list is appended in place (a copy per trade was quadratic in its trades of a
    step), and a trade running out of gas after the append leaves the list and the state hash as before."""
    ledger = _ledger(settle_on_meter=True)
    w, _ = _keys()
    assert ledger.apply(_trade(0, 1, 5, 1000, 0)).status == "ok"
    key = f"{w[0].public_hex}|5"
    tokens = ledger.open_tokens[key]
    second = _trade(0, 2, 5, 1000, 0)
    full = _ledger(settle_on_meter=True)
    assert full.apply(_trade(0, 1, 5, 1000, 0)).status == full.apply(second).status == "ok"
    need = full.apply(_trade(0, 3, 5, 1000, 0)).gas_used  # (a third, to have the gas of a non-first trade)
    before, nonces = ledger.state_hash(), dict(ledger.nonces)
    receipt = ledger.apply(second, gas_limit=need - 1)  # fails in its event, after the append
    assert receipt.status == "out_of_gas"
    assert ledger.open_tokens[key] is tokens and tokens == [full.open_tokens[key][0]]
    assert _hash_with_nonces(ledger, nonces) == before
    assert ledger.apply(_trade(0, 3, 5, 1000, 0)).status == "ok"
    assert ledger.open_tokens[key] is tokens and len(tokens) == 2


@settings(max_examples=200, deadline=None)
@given(
    event=st.dictionaries(
        st.text(max_size=8) | st.sampled_from(["event", "token"]),
        st.integers() | st.booleans() | st.floats() | st.text(max_size=8) | st.just("ab" * 32),
        max_size=5,
    )
)
def test_event_gas_counts_the_canonical_json(event: dict[str, Any]) -> None:
    """The event size that log gas is charged on, counted without encoding, is len(canonical(event))."""
    assert _json_len(event) == len(canonical(event))
