"""What makes a stored chain tamper-evident, and the check of it: genesis registry, signed messages, verifier.

A consistent rewrite of the ``/ledger`` tables (hashes and Merkle roots recomputed) is caught because it
needs signatures the rewriter does not hold:

* genesis (``/ledger/genesis``, canonical JSON, committed to by the genesis header) registers every
  validator's Ed25519 key and power, every account's meter key, the genesis balances and the contract
  parameters;
* every block is signed by its proposer (``block_message``); a PoW block's hash also meets a stored
  low-difficulty target (``POW_BITS`` leading zero bits, ~256 hashes per block: evidence of work, not
  security; the timing of blocks still comes from the simulated exponential process);
* a BFT block carries its commit certificate: precommits (``commit_message``) of validators holding more
  than 2/3 of the voting power, taken from those the engine says precommitted the block;
* a PoS block that is its epoch's checkpoint (the last block at or before the epoch boundary) carries the
  attestations that finalised the epoch: one signature per validator over ``attest_message`` (simplified:
  a list of signatures of honest validators holding more than 2/3 of the stake, instead of a BLS
  aggregate, and signed once the epoch is final instead of in the epoch's own slots);
* at the end of a run a quorum of validators (the first by index holding more than 2/3 of the power,
  faulty ones included: a simplification) signs the head (``head_message``), so deleting the last blocks
  is caught.

``verify_tables`` re-checks all of it from the stored columns, re-executes the contracts from genesis to
recompute every receipt, and names the first block (by height) or transaction (by id) that fails. With
``keep_steps`` it holds the contract state of only the last delivery intervals (see ``HorizonError``), so
its memory does not grow with the chain.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cosim.errors import ResultsError
from cosim.models.ledger.chain import (
    GENESIS_PREV,
    Block,
    Transaction,
    canonical,
    meets_target,
    merkle_root,
    receipt_leaf,
    sha256_hex,
    signature_ok,
    transaction_from_record,
    transaction_record,
    verify_all,
)
from cosim.models.ledger.contracts import Ledger

POW_BITS = 8  # leading zero bits of a PoW block hash: 256 hashes per block on average
Columns = Mapping[str, Sequence[Any]]


# ------------------------------------------------------------------------------------------ genesis and keys
def voting_power(engine: Any) -> np.ndarray:
    """Per validator: BFT voting power, PoS stake share, PoW honest hash share (faulty miners 0)."""
    if engine.mechanism == "bft":
        return np.asarray(engine.power, dtype=float)
    if engine.mechanism == "pos":
        return np.asarray(engine.p_propose, dtype=float)
    return np.asarray(engine.share, dtype=float)


def pos_epoch(time_s: float, engine: Any) -> int:
    """Checkpoint epoch of a PoS block at ledger time ``time_s``: ``ceil(slot / slots_per_epoch)``."""
    slot = round(time_s / engine.slot_s)
    return -(-slot // engine.slots_per_epoch)


def genesis_json(
    engine: Any, epoch_unix_s: float, keys: Sequence[str], power: np.ndarray, state: Ledger, gas_limit: int
) -> str:
    """The genesis registry as canonical JSON (what ``verify_tables`` trusts, besides the signatures)."""
    genesis = {
        "consensus": engine.mechanism, "epoch_unix_s": float(epoch_unix_s),
        "pow_bits": POW_BITS if engine.mechanism == "pow" else 0,
        "slot_s": float(getattr(engine, "slot_s", 0.0)),
        "slots_per_epoch": int(getattr(engine, "slots_per_epoch", 0)),
        "validators": [[k, float(p)] for k, p in zip(keys, power.tolist(), strict=True)],
        "meter_keys": state.meter_keys, "balances_micro": state.balances, "penalty_ppm": state.penalty_ppm,
        "settle_on_meter": state.settle_on_meter, "gas_limit": int(gas_limit),
    }  # fmt: skip
    return canonical(genesis).decode()


def block_message(block_hash: str) -> bytes:
    """What a proposer signs: its block's hash."""
    return b"cosim-block:" + bytes.fromhex(block_hash)


def commit_message(height: int, block_hash: str) -> bytes:
    """What a BFT validator's precommit signs."""
    return canonical({"type": "precommit", "height": int(height), "block": block_hash})


def attest_message(epoch: int, block_hash: str) -> bytes:
    """What a PoS validator's attestation of an epoch checkpoint signs."""
    return canonical({"type": "attest", "epoch": int(epoch), "checkpoint": block_hash})


def head_message(height: int, block_hash: str, n_tx: int) -> bytes:
    """What the validators sign at the end of a run: the head and the number of transactions in the chain."""
    return canonical({"type": "head", "height": int(height), "block": block_hash, "n_tx": int(n_tx)})


# ------------------------------------------------------------------------------------------ verification
class _Fail(Exception):
    """The first problem found."""


class HorizonError(ResultsError):
    """The check kept the contract state of the last ``keep_steps`` delivery intervals only, and met a
    transaction that needs an older interval's: the chain is not judged (run again with a longer horizon).

    Beyond the horizon the check drops what the co-simulation's ledger drops once no transaction can read it
    (``Ledger.forget_steps``: readings, allocations, trade references and closed promises; minted promises
    stay). A trade, reading or settlement of a dropped interval stops the check; so does a cancel or
    settlement of an unknown promise whose stored receipt differs from the re-executed one (the promise may
    be one dropped).
    A transaction appearing twice more than about ``2 * keep_steps`` intervals apart is then named by the
    nonce rule instead of as a duplicate."""

    exit_code = 2


class _Genesis:
    """The parsed registry."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            g = json.loads(text)
            self.consensus = str(g["consensus"])
            self.epoch_unix_s, self.pow_bits = float(g["epoch_unix_s"]), int(g["pow_bits"])
            self.slot_s, self.slots_per_epoch = float(g["slot_s"]), int(g["slots_per_epoch"])
            self.keys = [str(k) for k, _ in g["validators"]]
            self.power = np.array([float(p) for _, p in g["validators"]])
            self.meter_keys = {str(a): str(k) for a, k in g["meter_keys"].items()}
            self.ledger = Ledger(
                {str(a): int(v) for a, v in g["balances_micro"].items()}, self.meter_keys,
                int(g["penalty_ppm"]) / 1_000_000, bool(g["settle_on_meter"]),
            )  # fmt: skip
            self.gas_limit = int(g["gas_limit"])
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise _Fail(f"genesis registry unreadable ({err})") from None
        if canonical(g).decode() != text:
            raise _Fail("genesis registry is not canonical JSON")
        if self.consensus not in ("pow", "pos", "bft") or not (self.power >= 0).all():
            raise _Fail("genesis registry: unknown consensus or negative power")
        self.need = 2.0 / 3.0 * float(self.power.sum())

    def quorum(self, votes: Sequence[tuple[int, str]], message: bytes, what: str) -> None:
        """Check that ``votes`` (validator, signature hex) are valid, distinct and hold > 2/3 of the power."""
        seen: set[int] = set()
        for v, sig in votes:
            if not 0 <= v < len(self.keys) or v in seen:
                raise _Fail(f"{what}: vote of unknown or repeated validator {v}")
            if not signature_ok(self.keys[v], sig, message):
                raise _Fail(f"{what}: bad signature of validator {v}")
            seen.add(v)
        if not float(self.power[sorted(seen)].sum()) > self.need:
            raise _Fail(f"{what}: signatures of {len(seen)} validators hold no more than 2/3 of the power")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def verify_tables(
    genesis: str, blocks: Columns, tx: Columns, votes: Columns, complete: bool, keep_steps: int | None = None
) -> tuple[bool, str | None, int, int]:
    """Re-check a stored chain; see the module docstring.

    Parameters
    ----------
    genesis : the ``/ledger/genesis`` text
    blocks, tx, votes : the ``/ledger/blocks``, ``/ledger/tx`` and ``/ledger/votes`` columns (text as str)
    complete : the run completed, so its head must be signed
    keep_steps : hold the contract state of this many delivery intervals before the newest a trade or
        reading has reached (between ``keep_steps`` and twice as many); None: all (memory grows with the
        chain). Raises HorizonError when the chain needs more.

    Returns
    -------
    ``(ok, problem, n_blocks, n_tx)``: ``problem`` names the first bad block (by height) or transaction.
    """
    n_blocks = n_tx = 0
    try:
        g = _Genesis(genesis)
        live = [i for i, stale in enumerate(blocks["stale"]) if not stale]
        n_blocks = len(live)
        rows_of = _rows_by_height(np.asarray(tx["height"], dtype=np.int64))
        n_tx = sum(map(len, rows_of.values()))
        votes_of: dict[tuple[int, str], list[tuple[int, str]]] = {}
        for h, kind, v, sig in zip(
            votes["height"], votes["kind"], votes["validator"], votes["signature"], strict=True
        ):
            votes_of.setdefault((int(h), _text(kind)), []).append((int(v), _text(sig)))
        _Checker(g, blocks, tx, rows_of, votes_of, keep_steps).run(live, complete)
    except _Fail as err:
        return False, str(err), n_blocks, n_tx
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as err:  # untrusted input
        return False, f"ledger tables malformed ({type(err).__name__}: {err})", n_blocks, n_tx
    return True, None, n_blocks, n_tx


def _rows_by_height(height: np.ndarray) -> dict[int, np.ndarray]:
    """The rows of each block height >= 0, in row order (arrays: 4 or 8 bytes a row)."""
    rows = np.flatnonzero(height >= 0)
    rows = rows[np.argsort(height[rows], kind="stable")].astype(np.int32 if len(height) < 2**31 else np.int64)
    if not len(rows):
        return {}
    cuts = np.flatnonzero(np.diff(height[rows])) + 1
    starts = np.concatenate(([0], cuts))
    return {int(height[rows[a]]): part for a, part in zip(starts, np.split(rows, cuts), strict=True)}


class _Checker:
    """One pass over the chain in height order."""

    def __init__(
        self,
        g: _Genesis,
        blocks: Columns,
        tx: Columns,
        rows_of: dict[int, np.ndarray],
        votes_of: dict[tuple[int, str], list[tuple[int, str]]],
        keep_steps: int | None = None,
    ) -> None:
        self.g, self.b, self.t, self.rows_of, self.votes_of = g, blocks, tx, rows_of, votes_of
        self.keep_steps = keep_steps
        self.newest_step = -1  # the newest delivery interval an executed trade or reading refers to
        self.forgot_before = 0  # the contract state of the intervals before it is dropped (keep_steps)
        self.seen: set[str] = set()  # the ids in the chain so far, or since the last drop (``keep_steps``)
        self.seen_before: set[str] = set()  # with keep_steps: the ids between the last two drops
        self.last_nonce: dict[str, int] = {}  # per sender, the highest nonce in the chain so far
        self.used: set[tuple[int, str]] = set()  # the (height, kind) vote groups checked
        self.pending_epoch: tuple[int, int] | None = None  # (epoch, height of its last final block so far)

    def run(self, live: list[int], complete: bool) -> None:
        prev_hash, prev_time = GENESIS_PREV, -math.inf
        head: Block | None = None
        for index, row in enumerate(live):
            block = self._block(index, row, prev_hash, prev_time)
            prev_hash, prev_time, head = block.hash, block.time_s, block
        self._close_epoch(None)
        if extra := set(self.rows_of) - set(range(len(live))):
            h = min(extra)
            raise _Fail(
                f"tx {_text(self.t['tx_id'][self.rows_of[h][0]])}: in block {h}, which is not in the chain"
            )
        if complete:
            if head is None:
                raise _Fail("block 0: no genesis block")
            n_tx = sum(map(len, self.rows_of.values()))
            heads = [k for k in self.votes_of if k[1] == "head"]
            if heads != [(head.height, "head")]:
                got = ", ".join(str(h) for h, _ in heads) or "none"
                raise _Fail(
                    f"block {head.height}: the signed head names block {got}, the chain ends at {head.height}"
                )
            self.g.quorum(self.votes_of[heads[0]], head_message(head.height, head.hash, n_tx), "head")
            self.used.add(heads[0])
        if extra_votes := set(self.votes_of) - self.used:
            h, kind = min(extra_votes)
            raise _Fail(f"block {h}: {kind} votes that no check of this chain expects")

    def _block(self, index: int, row: int, prev_hash: str, prev_time: float) -> Block:
        b, g, where = self.b, self.g, f"block {index}"
        height, time_s, proposer = int(b["height"][row]), float(b["time_s"][row]), int(b["proposer"][row])
        if height != index:
            raise _Fail(f"{where}: height {height} out of sequence")
        if _text(b["prev_hash"][row]) != prev_hash:
            raise _Fail(f"{where}: prev_hash link broken")
        rows = self.rows_of[height].tolist() if height in self.rows_of else []
        txs = self._txs(rows, height)
        ids = tuple(t.tx_id for t in txs)
        if _text(b["merkle_root"][row]) != merkle_root(ids):
            raise _Fail(f"{where}: merkle root mismatch")
        if int(b["n_tx"][row]) != len(ids):
            raise _Fail(f"{where}: n_tx {int(b['n_tx'][row])} but {len(ids)} transactions")
        leaves = [
            receipt_leaf(tid, _text(self.t["status"][i]), int(self.t["gas_used"][i]),
                         float(self.t["submit_s"][i]),
                         float(self.t["include_s"][i]), float(self.t["final_s"][i]))
            for tid, i in zip(ids, rows, strict=True)
        ]  # fmt: skip
        receipts = sha256_hex(g.text.encode()) if index == 0 else merkle_root(leaves)
        if _text(b["receipts_root"][row]) != receipts:
            raise _Fail(f"{where}: receipts root mismatch (a receipt, time or the genesis registry changed)")
        gas = sum(int(self.t["gas_used"][i]) for i in rows)
        if int(b["gas_used"][row]) != gas:
            raise _Fail(f"{where}: gas_used {int(b['gas_used'][row])} but its receipts sum to {gas}")
        final_s = float(b["final_s"][row])
        block = Block(
            height, time_s, "genesis" if index == 0 else f"validator-{proposer}", prev_hash,
            merkle_root(ids), ids,
            receipts, gas, int(b["size_bytes"][row]), final_s, int(b["nonce"][row]),
        )  # fmt: skip
        if _text(b["hash"][row]) != block.hash:
            raise _Fail(f"{where}: hash mismatch")
        if not time_s >= max(prev_time, g.epoch_unix_s):
            raise _Fail(f"{where}: time {time_s} before genesis or before the previous block")
        if final_s < time_s:
            raise _Fail(f"{where}: final before its own time")
        if index == 0:
            if proposer != -1 or ids or time_s != g.epoch_unix_s or _text(b["signature"][row]):
                raise _Fail(f"{where}: not the genesis block of the registry")
            return block
        if not meets_target(block.hash, g.pow_bits):
            raise _Fail(f"{where}: no proof of work (hash above the target of {g.pow_bits} zero bits)")
        if not 0 <= proposer < len(g.keys):
            raise _Fail(f"{where}: proposer {proposer} is not a registered validator")
        if not signature_ok(g.keys[proposer], _text(b["signature"][row]), block_message(block.hash)):
            raise _Fail(f"{where}: bad proposer signature")
        if g.consensus == "bft":
            self.used.add((height, "commit"))
            g.quorum(
                self.votes_of.get((height, "commit"), []),
                commit_message(height, block.hash),
                f"{where} commit",
            )
        elif g.consensus == "pos":
            self._pos(height, time_s, final_s, block.hash)
        self._times(txs, rows, time_s)
        self._execute(txs, rows)
        return block

    def _pos(self, height: int, time_s: float, final_s: float, block_hash: str) -> None:
        """A final PoS block's epoch must end in a checkpoint block attested by > 2/3 of the stake."""
        epoch = -(-round((time_s - self.g.epoch_unix_s) / self.g.slot_s) // self.g.slots_per_epoch)
        self._close_epoch(epoch)
        attest = self.votes_of.get((height, "attest"))
        if attest is not None:
            self.used.add((height, "attest"))
            if math.isnan(final_s):
                raise _Fail(f"block {height}: attested but not final")
            self.g.quorum(attest, attest_message(epoch, block_hash), f"block {height} attestation")
            self.pending_epoch = None
        elif not math.isnan(final_s):
            self.pending_epoch = (epoch, height)

    def _close_epoch(self, epoch: int | None) -> None:
        if self.pending_epoch is not None and self.pending_epoch[0] != epoch:
            raise _Fail(f"block {self.pending_epoch[1]}: final, but no attested checkpoint ends its epoch")

    def _txs(self, rows: list[int], height: int) -> list[Transaction]:
        """The transactions of ``rows``, each checked (record, id, uniqueness, signatures, meter key) and the
        first problem raised in row order, as one at a time would; the signatures checked in one batch."""
        txs: list[Transaction] = []
        problem: _Fail | None = None
        for i in rows:
            try:
                txs.append(self._tx(i, height))
            except _Fail as err:
                problem = err
                break
        for tx, ok in zip(txs, verify_all(txs), strict=True):
            if not ok:
                raise _Fail(f"tx {tx.tx_id}: bad signature")
            if tx.kind == "meter" and self.g.meter_keys.get(str(tx.payload.get("owner"))) != tx.sender:
                raise _Fail(f"tx {tx.tx_id}: meter reading signed by a key not registered for its owner")
        if problem is not None:
            raise problem
        return txs

    def _tx(self, i: int, height: int) -> Transaction:
        """The transaction of row ``i``, its record checked (id, canonical form, uniqueness)."""
        t = self.t
        rec: dict[str, Any] = {
            k: _text(t[k][i]) for k in ("tx_id", "kind", "payload", "sender", "signatures")
        }
        rec["nonce"] = int(t["nonce"][i])
        try:
            tx = transaction_from_record(rec)
        except (KeyError, ValueError, TypeError):
            raise _Fail(f"tx record {i}: unreadable") from None
        if rec["tx_id"] != tx.tx_id:
            raise _Fail(f"tx {rec['tx_id']}: id mismatch")
        if transaction_record(tx) != rec:
            raise _Fail(f"tx {tx.tx_id}: non-canonical record")
        if tx.tx_id in self.seen or tx.tx_id in self.seen_before:
            raise _Fail(f"tx {tx.tx_id}: appears twice in the chain (replayed into block {height})")
        self.seen.add(tx.tx_id)
        return tx

    def _times(self, txs: list[Transaction], rows: list[int], block_time: float) -> None:
        """Each transaction submitted before its block's time, included at it, final after it (or NaN)."""
        for tx, i in zip(txs, rows, strict=True):
            submit, include, final = (float(self.t[k][i]) for k in ("submit_s", "include_s", "final_s"))
            if include != block_time or not submit <= include or final < include:
                raise _Fail(f"tx {tx.tx_id}: times out of order (submit, include, final vs its block)")

    def _execute(self, txs: list[Transaction], rows: list[int]) -> None:
        """Re-execute ``txs`` on the contract state; every stored receipt must match. Then the gateway's rule
        (``ledger.SenderNonces``): each transaction's nonce above every earlier one of its sender in the
        chain, so a replay recorded with the receipt its re-execution gives (``replay``) is still named."""
        ledger = self.g.ledger
        for tx, i in zip(txs, rows, strict=True):
            step = self._interval(tx)
            if step is not None and step < self.forgot_before:
                raise self._horizon(tx, f"refers to delivery interval {step}")
            last = ledger.nonces.get(tx.sender, -1)
            receipt = ledger.apply(tx, self.g.gas_limit, signatures_checked=True)
            stored = (_text(self.t["status"][i]), int(self.t["gas_used"][i]))
            if stored != (receipt.status, receipt.gas_used):
                token = tx.payload.get("token") if tx.kind in ("cancel", "settle") else None
                if self.forgot_before and isinstance(token, str) and token not in ledger.promises:
                    raise self._horizon(tx, f"refers to promise {token}, unknown here")
                why = f"nonce {tx.nonce} not above {last}; " if tx.nonce <= last else ""
                raise _Fail(
                    f"tx {tx.tx_id}: stored receipt {stored[0]}/{stored[1]} gas, re-execution gives "
                    f"{why}{receipt.status}/{receipt.gas_used} gas"
                )
            earlier = self.last_nonce.get(tx.sender, -1)
            if tx.nonce <= earlier:
                raise _Fail(
                    f"tx {tx.tx_id}: nonce {tx.nonce} not above {earlier}, its sender's earlier in the chain "
                    "(a replay, which the gateway refuses)"
                )
            self.last_nonce[tx.sender] = tx.nonce
            if step is not None and receipt.status == "ok":
                self.newest_step = max(self.newest_step, step)
        ledger.events.clear()  # the block's event log, as the co-simulation's ledger clears it
        if self.keep_steps is not None and self.newest_step - self.forgot_before >= 2 * self.keep_steps:
            self.forgot_before = self.newest_step - self.keep_steps  # dropped a window at a time: the
            ledger.forget_steps(self.forgot_before)  # drop walks the whole state
            self.seen_before, self.seen = self.seen, set()

    def _interval(self, tx: Transaction) -> int | None:
        """The delivery interval whose state ``tx`` reads: a trade's or reading's own, a settlement's
        promise's (None for the rest, or a malformed payload, which the contracts refuse)."""
        p = tx.payload
        step = p.get("step") if tx.kind in ("trade", "meter") else None
        if tx.kind == "settle" and isinstance(token := p.get("token"), str):
            promise = self.g.ledger.promises.get(token)
            step = None if promise is None else promise.step
        return step if type(step) is int else None

    def _horizon(self, tx: Transaction, what: str) -> HorizonError:
        return HorizonError(
            f"tx {tx.tx_id} {what}; the check keeps the contract state of the intervals from "
            f"{self.forgot_before} on (keep_steps={self.keep_steps}, the newest interval reached "
            f"{self.newest_step}): verify again with more intervals kept, or all"
        )
