"""Gas-metered, deterministic energy-trading contracts on the ledger state.

Money is integer micro-dollars and energy integer Wh, so every balance is exact. Operations:

* ``trade`` (signed by buyer and seller) mints an ERC-721-like delivery promise (token id = tx id) and
  locks the buyer's payment ``wh * price_micro_per_mwh // 1e6`` in escrow;
* ``meter`` (signed by the meter key registered for the owner) records an owner's delivered Wh for a step;
* ``settle`` (anyone, once the seller's reading exists) mints ERC-20-like energy credits to the buyer,
  ``delivered = min(promised, seller's metered Wh not yet allocated to its other promises of the step)``,
  so credits never exceed metered energy. The seller gets ``escrow * delivered // promised``, the rest of
  the escrow returns to the buyer, and the seller pays the buyer a penalty of ``penalty_share`` of that
  undelivered value, capped by the seller's balance after being paid (balances never go negative). A
  promise with nothing delivered ends "cancelled", otherwise "settled";
* ``cancel`` (signed by the buyer or the seller) ends a promise not yet settled: the escrow returns to
  the buyer, no penalty (the co-simulation cancels trades not final by their deadline this way);
* ``transfer`` moves money between balances (signed by the sender).

With ``settle_on_meter`` the meter reading itself settles the owner's open promises of that step, in the
order they were minted (an oracle callback: one transaction instead of one per promise); a promise minted
after its seller's reading still needs a ``settle``.

Atomicity: a *rejected* transaction (unknown kind or malformed payload, bad signature, replayed nonce)
changes nothing and uses no gas. A transaction that *fails during execution* (out of gas, insufficient
balance, double spend, missing reading...) has all its writes reverted but still consumes its nonce (as
in the EVM), so the state is byte-identical to before except the sender's nonce, and the same signed
transaction can never be replayed later; the gas consumed is reported (all of it on out of gas).

Gas schedule after the EVM (Ethereum Yellow Paper, Berlin/London values with EIP-2929 and EIP-2028).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple, TypeVar

from cosim.models.ledger.chain import (
    Transaction,
    canonical,
    plain_json,
    required_signers,
    verify_signatures,
)

G_TX = 21_000  # intrinsic gas per transaction (G_transaction)
G_TXDATA = 16  # per byte of the canonical transaction (G_txdatanonzero, EIP-2028)
G_SSTORE_SET = 20_000  # write to a new storage slot (G_sset)
G_SSTORE_RESET = 5_000  # update of an existing slot (G_sreset, cold, EIP-2929)
G_SLOAD = 2_100  # cold storage read (EIP-2929)
G_LOG = 375  # per event (G_log)
G_LOGDATA = 8  # per byte of event data (G_logdata)
G_SIG_VERIFY = 3_000  # per signature checked (ecrecover precompile)
PROMISE_SLOTS = 2  # storage slots of one packed promise struct

Status = Literal[
    "ok", "bad_signature", "replay", "double_spend", "insufficient_balance", "out_of_gas", "unknown"
]
V = TypeVar("V")
_MISSING = object()
_APPENDED = object()  # journal mark: the write appended to a list (the revert pops it)

SCHEMAS: dict[str, dict[str, type]] = {
    "trade": {
        "seller": str, "buyer": str, "step": int, "wh": int, "price_micro_per_mwh": int, "trade_ref": str,
    },
    "meter": {"owner": str, "step": int, "wh": int},
    "settle": {"token": str},
    "cancel": {"token": str},
    "transfer": {"to": str, "amount_micro": int},
}  # fmt: skip


class OutOfGas(Exception):
    """The gas limit was reached."""


class _Failure(Exception):
    """Execution failure with a receipt status."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


class GasMeter:
    """Gas counter that raises ``OutOfGas`` past ``limit`` (then ``used == limit``, as in the EVM)."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def charge(self, gas: int) -> None:
        """Consume ``gas``."""
        used = self.used + gas
        if used > self.limit:
            self.used = self.limit
            raise OutOfGas(f"needs more than the limit of {self.limit} gas")
        self.used = used


class Promise(NamedTuple):
    """ERC-721-like promise to deliver ``wh`` in ``step``; ``escrow_micro`` is locked while "minted".

    Immutable; a named tuple (a frozen dataclass cost ~0.6 us more per promise made, two per trade)."""

    seller: str
    buyer: str
    step: int
    wh: int
    price_micro_per_mwh: int
    escrow_micro: int
    status: Literal["minted", "settled", "cancelled"] = "minted"
    delivered_wh: int = 0


class Receipt(NamedTuple):
    """Outcome of ``Ledger.apply`` (immutable, as ``Promise``)."""

    status: Status
    gas_used: int
    error: str | None = None


def _parties(p: Promise) -> tuple[str, str, int, int, int]:
    """The fields of a promise that never change (``Promise._replace`` is slow on the hot path)."""
    return p[:5]  # seller, buyer, step, wh, price_micro_per_mwh


def _json_len(event: dict[str, Any]) -> int:
    """``len(canonical(event))``, counted without encoding when every key and value is plain text or an int
    (the events of the contracts): braces, a colon per item, commas between, quotes around text. Plain text
    is plain character by character, so the keys and text values are checked in one string."""
    if not event:
        return 2
    n, texts = 4 * len(event) + 1, []
    for value in event.values():
        if type(value) is str:
            texts.append(value)
            n += len(value) + 2
        elif type(value) is int:
            n += len(str(value))
        else:
            return len(canonical(event))
    try:
        keys = "".join(event)
    except TypeError:  # a key that is not text
        return len(canonical(event))
    return n + len(keys) if plain_json(keys + "".join(texts)) else len(canonical(event))


def _valid_payload(tx: Transaction) -> str | None:
    """Why the payload of ``tx`` does not fit its kind's schema (exact keys, types, signs)."""
    schema, payload = SCHEMAS[tx.kind], tx.payload
    if payload.keys() != schema.keys():
        return f"payload keys must be {sorted(schema)}"
    for key, kind in schema.items():
        value = payload[key]
        if type(value) is kind:  # (the common case: exactly str or int, never a bool)
            if type(value) is int and value < 0:
                return f"{key} must be non-negative"
            continue
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key} must be {kind.__name__}"
        if isinstance(value, int) and value < 0:
            return f"{key} must be non-negative"
    if tx.kind == "trade" and (payload["wh"] == 0 or payload["seller"] == payload["buyer"]):
        return "a trade needs wh > 0 and two parties"
    return None


class Ledger:
    """Contract state: balances, promises, meter readings, energy credits and nonces.

    Parameters
    ----------
    balances_micro : genesis balances [micro-$] by account (public-key hex)
    meter_keys : registered meter (oracle) public key by owner account
    penalty_share : share of the undelivered value the seller pays the buyer
    settle_on_meter : a meter reading settles the owner's open promises of its step
    """

    def __init__(
        self,
        balances_micro: Mapping[str, int] | None = None,
        meter_keys: Mapping[str, str] | None = None,
        penalty_share: float = 0.1,
        settle_on_meter: bool = False,
    ) -> None:
        self.balances: dict[str, int] = dict(balances_micro or {})
        self.meter_keys: dict[str, str] = dict(meter_keys or {})
        self.penalty_ppm = round(penalty_share * 1_000_000)
        self.nonces: dict[str, int] = {}
        self.promises: dict[str, Promise] = {}
        self.trade_refs: dict[str, str] = {}  # "seller|buyer|step|trade_ref" -> token
        self.readings_wh: dict[str, int] = {}  # "owner|step" -> metered Wh
        self.allocated_wh: dict[str, int] = {}  # "seller|step" -> Wh credited to buyers
        self.credits_wh: dict[str, int] = {}
        self.settle_on_meter = settle_on_meter
        self.open_tokens: dict[str, list[str]] = {}  # "seller|step" -> promises to settle on reading
        self.events: list[dict[str, Any]] = []
        self._undo: list[tuple[Any, str, object]] = []  # (table, key, old value) or (list, "", _APPENDED)
        self._handlers: dict[str, Callable[[Transaction, GasMeter], None]] = {
            "trade": self._trade, "meter": self._meter, "settle": self._settle, "cancel": self._cancel,
            "transfer": self._transfer,
        }  # fmt: skip

    # ---------------------------------------------------------------- queries
    def escrow_micro(self) -> int:
        """Money locked in the escrow of open promises [micro-$]."""
        return sum(p.escrow_micro for p in self.promises.values())

    def money_micro(self) -> int:
        """Balances plus escrow [micro-$]: constant under any transaction."""
        return sum(self.balances.values()) + self.escrow_micro()

    def state_hash(self) -> str:
        """SHA-256 hex of the canonical state (events excluded)."""
        state = {
            "balances": self.balances, "meter_keys": self.meter_keys, "nonces": self.nonces,
            "promises": {k: p._asdict() for k, p in self.promises.items()}, "trade_refs": self.trade_refs,
            "readings_wh": self.readings_wh, "allocated_wh": self.allocated_wh, "credits_wh": self.credits_wh,
            "open_tokens": self.open_tokens,
        }  # fmt: skip
        return hashlib.sha256(canonical(state)).hexdigest()

    def forget_steps(self, before: int) -> None:
        """Drop the state of the delivery intervals before step ``before`` that no later transaction can
        read: their readings, allocations, open-token lists, trade references and closed promises (minted
        ones hold escrow and stay). Only for a caller that knows no transaction referring to those steps
        is still to come (the co-simulation's ledger, once all of them are executed): the memory then
        stays in proportion to the open intervals, not to the run."""

        def old(key: str, field: int) -> bool:
            return int(key.split("|")[field]) < before

        for table in (self.readings_wh, self.allocated_wh, self.open_tokens):
            for key in [k for k in table if old(k, 1)]:
                del table[key]
        for key in [k for k in self.trade_refs if old(k, 2)]:
            del self.trade_refs[key]
        for token in [t for t, p in self.promises.items() if p.step < before and p.status != "minted"]:
            del self.promises[token]

    # ---------------------------------------------------------------- execution
    def apply(self, tx: Transaction, gas_limit: int = 1_000_000, signatures_checked: bool = False) -> Receipt:
        """Validate and execute ``tx`` atomically under ``gas_limit``.

        ``signatures_checked``: the caller (a gateway) verified the signatures already; the rest of the
        validation (payload, registered meter, required signers present, nonce) still runs.
        """
        handler = self._handlers.get(tx.kind)
        if handler is None:
            return Receipt("unknown", 0, f"unknown kind {tx.kind!r}")
        if (problem := _valid_payload(tx)) is not None:
            return Receipt("unknown", 0, problem)
        signers = required_signers(tx)
        if tx.kind == "meter" and self.meter_keys.get(tx.payload["owner"]) != tx.sender:
            return Receipt("bad_signature", 0, "sender is not the owner's registered meter")
        if not (
            signers <= {pub for pub, _ in tx.signatures}
            if signatures_checked
            else verify_signatures(tx, signers)
        ):
            return Receipt("bad_signature", 0, f"needs valid signatures of {sorted(signers)}")
        if tx.nonce <= self.nonces.get(tx.sender, -1):
            return Receipt("replay", 0, f"nonce {tx.nonce} already used")
        gas, n_events = GasMeter(gas_limit), len(self.events)
        self._undo = []
        try:
            gas.charge(G_TX + G_TXDATA * len(tx.signing_bytes()) + G_SIG_VERIFY * len(tx.signatures))
            handler(tx, gas)
            self._put(self.nonces, tx.sender, tx.nonce)  # account nonce: part of the intrinsic gas
        except (OutOfGas, _Failure) as err:
            for table, key, old in reversed(self._undo):
                if old is _APPENDED:
                    table.pop()
                elif old is _MISSING:
                    del table[key]
                else:
                    table[key] = old
            del self.events[n_events:]
            self.nonces[tx.sender] = tx.nonce  # a failed transaction consumes its nonce (no replay later)
            status: Status = "out_of_gas" if isinstance(err, OutOfGas) else err.status
            return Receipt(status, gas.used, str(err))
        finally:
            self._undo = []
        return Receipt("ok", gas.used)

    def _put(self, table: dict[str, V], key: str, value: V) -> None:
        """Journaled write (for the revert)."""
        self._undo.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def _sload(self, table: dict[str, V], key: str, gas: GasMeter) -> V | None:
        """Metered read."""
        if gas.used + G_SLOAD > gas.limit:  # (``GasMeter.charge`` inlined: the hottest call of a block)
            gas.charge(G_SLOAD)
        gas.used += G_SLOAD
        return table.get(key)

    def _sstore(self, table: dict[str, V], key: str, value: V, gas: GasMeter, slots: int = 1) -> None:
        """Metered, journaled write."""
        old = table.get(key, _MISSING)
        cost = slots * (G_SSTORE_SET if old is _MISSING else G_SSTORE_RESET)
        if gas.used + cost > gas.limit:  # (``GasMeter.charge`` inlined, as in ``_sload``)
            gas.charge(cost)
        gas.used += cost
        self._undo.append((table, key, old))
        table[key] = value

    def _sappend(self, table: dict[str, list[V]], key: str, value: V, gas: GasMeter) -> None:
        """Metered, journaled append to the list at ``key`` (gas as a write of the whole slot). In place:
        re-writing a copy grew with the list, quadratic in the trades of one seller in one step."""
        items = table.get(key)
        if items is None:
            self._sstore(table, key, [value], gas)
            return
        gas.charge(G_SSTORE_RESET)
        self._undo.append((items, "", _APPENDED))
        items.append(value)

    def _log(self, event: dict[str, Any], gas: GasMeter) -> None:
        """Metered event."""
        gas.charge(G_LOG + G_LOGDATA * _json_len(event))
        self.events.append(event)

    def _move(self, src: str, dst: str, amount_micro: int, gas: GasMeter) -> None:
        """Move money between balances (``insufficient_balance`` failure if ``src`` lacks it)."""
        have = self._sload(self.balances, src, gas) or 0
        if have < amount_micro:
            raise _Failure("insufficient_balance", f"{src[:8]} has {have} < {amount_micro} micro-$")
        self._sstore(self.balances, src, have - amount_micro, gas)
        self._sstore(self.balances, dst, (self._sload(self.balances, dst, gas) or 0) + amount_micro, gas)

    # ---------------------------------------------------------------- operations
    def _trade(self, tx: Transaction, gas: GasMeter) -> None:
        p, token = tx.payload, tx.tx_id
        ref = f"{p['seller']}|{p['buyer']}|{p['step']}|{p['trade_ref']}"
        minted = self._sload(self.promises, token, gas) is not None
        if minted or self._sload(self.trade_refs, ref, gas) is not None:
            raise _Failure("double_spend", "trade already minted")
        escrow = p["wh"] * p["price_micro_per_mwh"] // 1_000_000
        have = self._sload(self.balances, p["buyer"], gas) or 0
        if have < escrow:
            raise _Failure("insufficient_balance", f"buyer has {have} < {escrow} micro-$ to escrow")
        self._sstore(self.balances, p["buyer"], have - escrow, gas)
        promise = Promise(p["seller"], p["buyer"], p["step"], p["wh"], p["price_micro_per_mwh"], escrow)
        self._sstore(self.promises, token, promise, gas, slots=PROMISE_SLOTS)
        self._sstore(self.trade_refs, ref, token, gas)
        if self.settle_on_meter:
            key = f"{p['seller']}|{p['step']}"
            self._sload(self.open_tokens, key, gas)
            self._sappend(self.open_tokens, key, token, gas)
        self._log({"event": "Mint", "token": token, "buyer": p["buyer"], "seller": p["seller"]}, gas)

    def _meter(self, tx: Transaction, gas: GasMeter) -> None:
        p = tx.payload
        key = f"{p['owner']}|{p['step']}"
        if self._sload(self.readings_wh, key, gas) is not None:
            raise _Failure("double_spend", f"reading for step {p['step']} already recorded")
        self._sstore(self.readings_wh, key, p["wh"], gas)
        self._log({"event": "Meter", "owner": p["owner"], "step": p["step"], "wh": p["wh"]}, gas)
        if self.settle_on_meter:
            for token in self._sload(self.open_tokens, key, gas) or ():
                if (promise := self._sload(self.promises, token, gas)) and promise.status == "minted":
                    self._settle_token(token, gas)

    def _settle(self, tx: Transaction, gas: GasMeter) -> None:
        self._settle_token(tx.payload["token"], gas)

    def _cancel(self, tx: Transaction, gas: GasMeter) -> None:
        token = tx.payload["token"]
        promise = self._sload(self.promises, token, gas)
        if promise is None:
            raise _Failure("unknown", f"no promise {token}")
        if tx.sender not in (promise.buyer, promise.seller):
            raise _Failure("bad_signature", "only the buyer or the seller may cancel")
        if promise.status != "minted":
            raise _Failure("double_spend", f"promise already {promise.status}")
        buyer_micro = (self._sload(self.balances, promise.buyer, gas) or 0) + promise.escrow_micro
        self._sstore(self.balances, promise.buyer, buyer_micro, gas)
        done = Promise(*_parties(promise), 0, "cancelled", promise.delivered_wh)
        self._sstore(self.promises, token, done, gas, slots=PROMISE_SLOTS)
        self._log({"event": "Cancel", "token": token}, gas)

    def _settle_token(self, token: str, gas: GasMeter) -> None:
        promise = self._sload(self.promises, token, gas)
        if promise is None:
            raise _Failure("unknown", f"no promise {token}")
        if promise.status != "minted":
            raise _Failure("double_spend", f"promise already {promise.status}")
        key = f"{promise.seller}|{promise.step}"
        metered = self._sload(self.readings_wh, key, gas)
        if metered is None:
            raise _Failure("unknown", f"seller not metered for step {promise.step}")
        allocated = self._sload(self.allocated_wh, key, gas) or 0
        delivered = min(promise.wh, metered - allocated)
        paid = promise.escrow_micro * delivered // promise.wh
        refund = promise.escrow_micro - paid
        status: Literal["settled", "cancelled"] = "settled" if delivered else "cancelled"
        done = Promise(*_parties(promise), 0, status, delivered)
        self._sstore(self.promises, token, done, gas, slots=PROMISE_SLOTS)
        self._sstore(self.allocated_wh, key, allocated + delivered, gas)
        buyer_credit = self._sload(self.credits_wh, promise.buyer, gas) or 0
        self._sstore(self.credits_wh, promise.buyer, buyer_credit + delivered, gas)
        seller_micro = (self._sload(self.balances, promise.seller, gas) or 0) + paid
        buyer_micro = (self._sload(self.balances, promise.buyer, gas) or 0) + refund
        penalty = min(refund * self.penalty_ppm // 1_000_000, seller_micro)
        self._sstore(self.balances, promise.seller, seller_micro - penalty, gas)
        self._sstore(self.balances, promise.buyer, buyer_micro + penalty, gas)
        event = {"event": "Settle", "token": token, "delivered_wh": delivered, "penalty_micro": penalty}
        self._log(event, gas)

    def _transfer(self, tx: Transaction, gas: GasMeter) -> None:
        to, amount = tx.payload["to"], tx.payload["amount_micro"]
        self._move(tx.sender, to, amount, gas)
        self._log({"event": "Transfer", "from": tx.sender, "to": to, "amount_micro": amount}, gas)
