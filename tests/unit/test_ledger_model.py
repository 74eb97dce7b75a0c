"""The ledger of a run: trades and readings through consensus onto the chain, deadline rule, invariants."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.ledger.chain import Transaction, verify_chain
from cosim.models.ledger.consensus import ENGINES
from cosim.models.ledger.ledger import MICRO, LedgerModel, StepOutput, percentiles_50_95

N_AGENTS = 6


def _model(
    mechanism: str = "bft", late_rule: str = "cancel", balance: float = 1000.0, **kw: object
) -> LedgerModel:
    params = {"create_empty_blocks": False} if mechanism == "bft" else {}
    engine = ENGINES[mechanism](8, np.random.default_rng(1), **params | kw)  # type: ignore[arg-type]
    return LedgerModel(
        engine, N_AGENTS, np.random.default_rng(2), epoch_unix_s=1.6e9, step_s=3600.0,
        late_rule=late_rule, initial_balance=balance, import_price_per_mwh=80.0, export_price_per_mwh=30.0,
    )  # type: ignore[arg-type]  # fmt: skip


def _trades(
    buyer: list[int], seller: list[int], mwh: list[float], price: float = 60.0
) -> dict[str, np.ndarray]:
    n = len(buyer)
    return {
        "buyer": np.array(buyer), "seller": np.array(seller), "mwh": np.array(mwh),
        "price": np.full(n, price), "seller_price": np.full(n, price),
    }  # fmt: skip


def _run(model: LedgerModel, steps: list[dict[str, np.ndarray]], export_mw: np.ndarray) -> list[StepOutput]:
    return [model.step(k, tr, export_mw, last=k == len(steps) - 1) for k, tr in enumerate(steps)]


def _tx(outs: list[StepOutput]) -> dict[str, np.ndarray]:
    cols = {c: np.concatenate([o.tx[c] for o in outs]) for c in outs[0].tx}
    return {c: v.astype(str) if v.dtype.kind == "S" else v for c, v in cols.items()}


def test_bft_trades_are_final_before_delivery_and_settled_by_the_reading() -> None:
    """BFT finalises in seconds: no late trade; each reading settles its seller's promises pro rata."""
    model = _model()
    trade = _trades([0, 1, -1, 0], [3, 3, 4, -1], [0.002, 0.001, 0.5, 0.3])  # upstream rows stay off chain
    outs = _run(model, [trade, trade, trade], np.array([0, 0, 0, 0.0025, 0, 0]))
    tx = _tx(outs)
    kinds = Counter(zip(tx["kind"], tx["status"], strict=True))
    assert kinds[("trade", "ok")] == 6 and kinds[("meter", "ok")] == 2 and kinds[("meter", "pending")] == 1
    assert sum(o.n_late for o in outs) == 0 and sum(o.late_cost for o in outs) == 0.0
    final = tx["final_s"][tx["kind"] == "trade"] - tx["submit_s"][tx["kind"] == "trade"]
    assert (final < 10.0).all()
    seller = model.address[3]
    assert model.state.readings_wh[f"{seller}|0"] == 2500
    delivered = sorted(p.delivered_wh for p in model.state.promises.values() if p.step == 0)
    assert delivered == [500, 2000]  # first minted first: 2 kWh to buyer 0, the rest to buyer 1
    assert model.state.money_micro() == N_AGENTS * 1000 * MICRO
    assert verify_chain(model.chain.blocks, model.chain.txs) == (True, None)


def test_a_reading_out_of_gas_is_warned_and_leaves_its_promises_minted() -> None:
    """A gas limit that fits a trade (~113,000) but not a reading settling two promises: the reading's
    receipt is out_of_gas, the promises keep their escrow, and the run's warnings say so."""
    from cosim.models.ledger.component import ledger_warnings

    engine = ENGINES["bft"](8, np.random.default_rng(1), create_empty_blocks=False)
    model = LedgerModel(
        engine, N_AGENTS, np.random.default_rng(2), epoch_unix_s=1.6e9, step_s=3600.0, gas_limit=130_000,
        initial_balance=1000.0, import_price_per_mwh=80.0, export_price_per_mwh=30.0,
    )  # type: ignore[arg-type]  # fmt: skip
    trade = _trades([0, 1], [3, 3], [0.002, 0.001])
    tx = _tx(_run(model, [trade, trade], np.array([0, 0, 0, 0.003, 0, 0])))
    kinds = Counter(zip(tx["kind"], tx["status"], strict=True))
    assert kinds[("trade", "ok")] == 4 and kinds[("meter", "out_of_gas")] == 1
    assert {p.status for p in model.state.promises.values() if p.step == 0} == {"minted"}
    assert model.n_out_of_gas == 1
    (warning,) = ledger_warnings(model)
    assert "1 transaction(s) ran out of gas (ledger.gas_limit 130,000)" in warning


@pytest.mark.parametrize("late_rule", ["cancel", "settle_late"])
def test_pos_finality_misses_a_15_minute_gate_closure(late_rule: str) -> None:
    """PoS needs 2-3 epochs (13-19 min): trades submitted 15 min before delivery are mostly late."""
    model = _model("pos", late_rule)
    trade = _trades([0, 1], [3, 4], [0.002, 0.001])
    outs = _run(model, [trade] * 4, np.array([0, 0, 0, 0.01, 0.01, 0.0]))
    tx = _tx(outs)
    n_late = sum(o.n_late for o in outs)
    n_cancel = int((tx["kind"] == "cancel").sum())
    assert n_late >= 4
    if late_rule == "cancel":
        assert n_cancel == n_late
        assert sum(o.late_cost for o in outs) == pytest.approx(n_late / 2 * 0.003 * 50.0, rel=0.5)
        cancelled = [p for p in model.state.promises.values() if p.status == "cancelled"]
        assert len(cancelled) == n_late and all(p.delivered_wh == 0 for p in cancelled)
    else:
        assert n_cancel == 0 and sum(o.late_cost for o in outs) == 0.0
    assert model.state.money_micro() == N_AGENTS * 1000 * MICRO


def test_forged_and_replayed_transactions_are_rejected_at_the_gateway() -> None:
    """A trade with a changed payload (old signatures) or sent twice never reaches a block."""
    model = _model()
    (good, _), (other, _) = model.trade_txs(0, _trades([0, 1], [3, 4], [0.001, 0.001]))
    forged = type(good)(good.kind, good.payload | {"wh": 10**9}, good.sender, good.nonce, good.signatures)
    assert model.admit(0.0, good) and not model.admit(0.0, good) and not model.admit(0.0, forged)
    out = model.step(0, None, None, last=True)
    assert Counter(_tx([out])["status"]) == {"ok": 1, "replay": 1, "bad_signature": 1}
    assert model.n_rejected == 2


def test_a_new_transaction_reusing_a_stale_nonce_is_refused_at_the_gateway_as_replay() -> None:
    """A validly signed trade with a fresh id but its buyer's nonce already admitted never reaches a block
    (the gateway remembers per sender the highest nonce, not every id); a nonce that skips ahead passes."""
    model = _model()
    (first, _), (second, _) = model.trade_txs(0, _trades([0, 0], [3, 4], [0.001, 0.001]))
    assert model.admit(0.0, first) and model.admit(0.0, second)
    wallets = model.wallets[0], model.wallets[3]
    for nonce in (first.nonce, second.nonce):  # below and equal to the highest admitted
        stale = Transaction("trade", first.payload | {"wh": 1234}, first.sender, nonce).signed(*wallets)
        assert stale.tx_id not in (first.tx_id, second.tx_id) and not model.admit(1.0, stale)
    pay = {"to": model.address[5], "amount_micro": 7}
    ahead = Transaction("transfer", pay, first.sender, second.nonce + 5).signed(model.wallets[0])
    assert model.admit(2.0, ahead)
    tx = _tx([model.step(0, None, None, last=True)])
    verdicts = Counter(zip(tx["status"], tx["height"] >= 0, strict=True))
    assert verdicts == {("ok", True): 3, ("replay", False): 2}
    assert model.n_rejected == 2 and set(tx["nonce"][tx["status"] == "replay"]) == {first.nonce, second.nonce}


@settings(max_examples=25, deadline=None)
@given(sends=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(1, 3)), max_size=25))
def test_the_gateway_admits_exactly_the_nonces_above_each_senders_highest_admitted(
    sends: list[tuple[int, int, int]],
) -> None:
    """Any stream of signed transfers (sender, nonce, amount): admitted iff its nonce is above every nonce
    admitted from that sender before (an independent replay of the rule); no id admitted twice; the replay
    state holds one entry per sender that had one admitted."""
    model = _model()
    highest: dict[int, int] = {}
    admitted: list[str] = []
    for sender, nonce, amount in sends:
        payload = {"to": model.address[(sender + 1) % N_AGENTS], "amount_micro": amount}
        tx = Transaction("transfer", payload, model.address[sender], nonce).signed(model.wallets[sender])
        expected = nonce > highest.get(sender, -1)
        assert model.admit(float(len(admitted)), tx) == expected
        if expected:
            highest[sender] = nonce
            admitted.append(tx.tx_id)
    assert len(set(admitted)) == len(admitted) and len(model.replay_guard) == len(highest)
    assert model.n_rejected == len(sends) - len(admitted)


@settings(max_examples=15, deadline=None)
@given(
    steps=st.lists(
        st.lists(
            st.tuples(st.integers(-1, N_AGENTS - 1), st.integers(-1, N_AGENTS - 1), st.floats(0.0, 0.05)),
            max_size=8,
        ),
        min_size=1,
        max_size=4,
    ),
    export_mw=st.lists(st.floats(0.0, 0.05), min_size=N_AGENTS, max_size=N_AGENTS),
    mechanism=st.sampled_from(["bft", "pos"]),
    balance=st.sampled_from([0.05, 1000.0]),
)
def test_money_conserved_credits_within_readings_each_promise_settled_once(
    steps: list[list[tuple[int, int, float]]], export_mw: list[float], mechanism: str, balance: float
) -> None:
    """Any trade stream: money constant, credits <= metered, no promise settled twice, chain verifies."""
    model = _model(mechanism, balance=balance)
    trades = [
        _trades([b for b, s, _ in st_] or [0], [s for _, s, _ in st_] or [0], [e for *_, e in st_] or [0.0])
        for st_ in steps
    ]
    outs = _run(model, trades, np.array(export_mw))
    state = model.state
    assert state.money_micro() == N_AGENTS * round(balance * MICRO)
    assert min(state.balances.values()) >= 0
    for key, allocated in state.allocated_wh.items():
        assert allocated <= state.readings_wh[key]
    assert sum(state.credits_wh.values()) == sum(state.allocated_wh.values())
    tx = _tx(outs)
    assert len(set(tx["tx_id"])) == len(tx["tx_id"])  # every transaction recorded once
    assert "replay" not in set(tx["status"])  # honest senders' nonces: never refused, at gateway or execution
    assert verify_chain(model.chain.blocks, model.chain.txs) == (True, None)
    settled = [e["token"] for e in state.events if e["event"] in ("Settle", "Cancel")]
    assert len(settled) == len(set(settled))  # no double spend of a promise


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6), max_size=40)
    | st.lists(st.sampled_from([0.0, 1.0, 2.5, 3.0]), max_size=40)
    | st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5)
)
def test_step_percentiles_are_numpys(values: list[float]) -> None:
    """The step's 50th and 95th percentiles are numpy's default ones, bit for bit (NaN for none)."""
    with np.errstate(invalid="ignore"):  # (numpy's inf - inf)
        expected = np.percentile(values, [50, 95]).tolist() if values else [np.nan, np.nan]
        np.testing.assert_array_equal(percentiles_50_95(values), expected)
