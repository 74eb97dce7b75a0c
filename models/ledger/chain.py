"""A hash chain of signed transactions: Ed25519 signatures, SHA-256 ids, Merkle roots and block links.

Everything hashed is canonical JSON (sorted keys, no whitespace), so ids and hashes are reproducible
across runs and machines. ``block_record``/``transaction_record`` flatten objects to str/int/float fields
for storage (HDF5); ``verify_records`` re-checks such records read back and names the first bad one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any, Generic, TypeVar

import numpy as np
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError, CryptoError

from cosim.errors import CosimError
from cosim.machine import usable_cores

GENESIS_PREV = "0" * 64
Record = dict[str, str | int | float]
T = TypeVar("T")
R = TypeVar("R")
# what json.dumps(obj, sort_keys=True, separators=(",", ":")) builds on every call, built once
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace."""
    return _ENCODER.encode(obj).encode()


def plain_json(text: str) -> bool:
    """Whether the JSON of ``text`` is ``text`` in quotes (printable ASCII without quote or backslash)."""
    return text.isascii() and text.isprintable() and '"' not in text and "\\" not in text


def _body_json(kind: str, payload: dict[str, Any], sender: str, nonce: int) -> bytes | None:
    """``canonical`` of a transaction's body formatted directly, when every key and text is plain and every
    number an int (the ledger's own transactions); None otherwise (then ``canonical`` encodes it)."""
    if type(kind) is not str or type(sender) is not str or type(nonce) is not int:
        return None
    try:
        keys = sorted(payload)
    except TypeError:  # keys of mixed types
        return None
    texts, items = [kind, sender], []
    for key in keys:
        value = payload[key]
        if type(key) is not str:
            return None
        if type(value) is str:
            texts += (key, value)
            items.append(f'"{key}":"{value}"')
        elif type(value) is int:
            texts.append(key)
            items.append(f'"{key}":{value}')
        else:
            return None
    if not plain_json("".join(texts)):
        return None
    return f'{{"kind":"{kind}","nonce":{nonce},"payload":{{{",".join(items)}}},"sender":"{sender}"}}'.encode()


def signatures_json(signatures: Sequence[tuple[str, str]]) -> str:
    """Canonical JSON ``[[public key hex, signature hex], ...]`` of a transaction's signatures (what the
    ``signatures`` column stores), formatted directly when every field is plain text."""
    if plain_json("".join(f"{pub}{sig}" for pub, sig in signatures)):  # (plain is per character)
        return "[" + ",".join(f'["{pub}","{sig}"]' for pub, sig in signatures) + "]"
    return canonical([list(s) for s in signatures]).decode()


ENV_THREADS = "COSIM_SIGNATURE_THREADS"


def _signature_threads() -> int:
    """``$COSIM_SIGNATURE_THREADS`` (1: none besides the caller), else 2 if this process may use 2 cores."""
    text = os.environ.get(ENV_THREADS, "").strip()
    if text:
        if not (text.isdigit() and int(text) >= 1):
            raise CosimError(f"{ENV_THREADS}={text!r}: must be a whole number >= 1 (1 turns the threads off)")
        return int(text)
    return min(2, usable_cores())


# Signature threads: Ed25519 in libsodium releases the GIL, so a batch of signatures (a step's trades and
# readings, a block's votes) is split over this many threads, the calling one included; results keep
# their order, so they are the same with any number of threads.
SIGNATURE_THREADS: int | None = None  # None: from the environment, at the first batch
_MIN_PER_THREAD = 4  # smaller batches run in the calling thread: a hand-off costs about one signature
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _threads() -> int:
    global SIGNATURE_THREADS
    if SIGNATURE_THREADS is None:
        SIGNATURE_THREADS = _signature_threads()
    return SIGNATURE_THREADS


def _executor() -> ThreadPoolExecutor:
    """The signature worker threads of this process (a forked child makes its own)."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max(_threads() - 1, 1), "cosim-ed25519"))
    return _pool[1]


def _map_chunk(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    return [fn(x) for x in items]


def parallel_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` split over ``SIGNATURE_THREADS`` threads (calls that release the GIL)."""
    n = len(items)
    threads = min(_threads(), n // _MIN_PER_THREAD)
    if threads <= 1:
        return _map_chunk(fn, items)
    cut = [n * i // threads for i in range(threads + 1)]
    pool = _executor()
    rest = [pool.submit(_map_chunk, fn, items[lo:hi]) for lo, hi in zip(cut[1:-1], cut[2:], strict=True)]
    out = _map_chunk(fn, items[: cut[1]])
    for future in rest:
        out += future.result()
    return out


def in_background(fn: Callable[[T], R], items: Sequence[T]) -> Future[list[R]]:
    """``[fn(x) for x in items]`` on a signature thread while the caller goes on (at once without threads)."""
    if _threads() > 1 and items:
        return _executor().submit(_map_chunk, fn, items)
    done: Future[list[R]] = Future()
    done.set_result(_map_chunk(fn, items))
    return done


def sha256_hex(data: bytes) -> str:
    """SHA-256 digest as lower-case hex."""
    return hashlib.sha256(data).hexdigest()


def _is_hex(text: str, n_bytes: int) -> bool:
    """Whether ``text`` is the canonical (lower-case) hex of exactly ``n_bytes`` bytes."""
    try:
        return len(text) == 2 * n_bytes and bytes.fromhex(text).hex() == text
    except ValueError:
        return False


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair (libsodium through PyNaCl; RFC 8032, so a seed gives the same keys and
    signatures as any other implementation).

    ``public``: the raw 32-byte public key; ``secret``: libsodium's 64-byte secret key (seed + public key).
    """

    public: bytes
    secret: bytes = field(repr=False)

    @classmethod
    def generate(cls, seed: bytes | None = None) -> KeyPair:
        """Key pair from a 32-byte seed (deterministic) or, without one, from the OS entropy."""
        return cls(*crypto_sign_seed_keypair(os.urandom(32) if seed is None else seed))

    @classmethod
    def from_rng(cls, rng: np.random.Generator) -> KeyPair:
        """Deterministic key pair whose seed is drawn from ``rng``."""
        return cls.generate(rng.bytes(32))

    @cached_property
    def public_hex(self) -> str:
        """Raw 32-byte public key as hex: the account address."""
        return self.public.hex()

    @cached_property
    def sound(self) -> bool:
        """Whether ``public`` and ``secret`` are what libsodium derives from the secret's seed (as
        ``generate`` makes them): then every signature ``sign`` makes verifies under ``public`` (Ed25519's
        correctness, RFC 8032 section 5.1), and checking it again proves nothing."""
        return crypto_sign_seed_keypair(self.secret[:32]) == (self.public, self.secret)

    def sign(self, data: bytes) -> bytes:
        """64-byte Ed25519 signature of ``data``."""
        return crypto_sign(data, self.secret)[:64]


def sign_messages(jobs: Sequence[tuple[KeyPair, bytes]]) -> list[str]:
    """Hex signatures of each ``(key, message)``, the batch split over the signature threads."""
    return parallel_map(_sign_hex, jobs)


def sign_messages_later(jobs: Sequence[tuple[KeyPair, bytes]]) -> Future[list[str]]:
    """``sign_messages`` on a signature thread while the caller goes on."""
    return in_background(_sign_hex, jobs)


def _sign_hex(job: tuple[KeyPair, bytes]) -> str:
    return job[0].sign(job[1]).hex()


class _Once(Generic[R]):
    """``functools.cached_property`` without its lock (Python 3.11 takes one on every first access, a cost
    per transaction): the value computed at the first access is stored in the instance's ``__dict__``."""

    def __init__(self, fn: Callable[[Any], R]) -> None:
        self.fn, self.name = fn, fn.__name__
        self.__doc__ = fn.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> R:
        if obj is None:
            return self  # type: ignore[return-value]  # (the descriptor itself, on the class)
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


@dataclass(frozen=True)
class Transaction:
    """A signed state-transition request.

    Parameters
    ----------
    kind : operation name ("trade", "meter", "settle", "transfer")
    payload : JSON-serialisable arguments
    sender : public-key hex of the account whose nonce is used
    nonce : per-sender, strictly increasing (replay protection)
    signatures : ``(public_key_hex, signature_hex)`` over ``signing_bytes()``
    """

    kind: str
    payload: dict[str, Any]
    sender: str
    nonce: int
    signatures: tuple[tuple[str, str], ...] = ()

    def signing_bytes(self) -> bytes:
        """Canonical bytes of everything except the signatures (computed once: do not mutate ``payload``)."""
        return self._signing_bytes

    @_Once
    def _signing_bytes(self) -> bytes:
        fast = _body_json(self.kind, self.payload, self.sender, self.nonce)
        if fast is not None:
            return fast
        body = {"kind": self.kind, "payload": self.payload, "sender": self.sender, "nonce": self.nonce}
        return canonical(body)

    @_Once
    def tx_id(self) -> str:
        """SHA-256 hex of ``signing_bytes()``."""
        return sha256_hex(self.signing_bytes())

    @_Once
    def payload_json(self) -> str:
        """Canonical JSON of the payload (what the ``payload`` column stores): the part of
        ``signing_bytes()`` between its keys ``payload`` and ``sender`` (sorted keys; inside a JSON string
        a quote is always escaped, so ``,"payload":`` and ``,"sender":`` occur there only as keys)."""
        body = self.signing_bytes()
        lo = body.index(b',"payload":') + len(b',"payload":')
        return body[lo : body.rindex(b',"sender":')].decode()

    def signed(self, *keys: KeyPair) -> Transaction:
        """Copy with the signatures of ``keys`` appended."""
        data = self.signing_bytes()
        new = tuple([(k.public_hex, k.sign(data).hex()) for k in keys])
        out = Transaction(self.kind, self.payload, self.sender, self.nonce, self.signatures + new)
        out.__dict__["_signing_bytes"] = data  # same body: keep the cached bytes
        return out


def sign_all(jobs: Sequence[tuple[Transaction, Sequence[KeyPair]]]) -> list[Transaction]:
    """``tx.signed(*keys)`` of each ``(tx, keys)``, the batch split over the signature threads."""
    for tx, _ in jobs:
        tx.signing_bytes()  # the canonical JSON here, so the threads only sign
    return parallel_map(_signed, jobs)


def _signed(job: tuple[Transaction, Sequence[KeyPair]]) -> Transaction:
    return job[0].signed(*job[1])


def sign_and_check(jobs: Sequence[tuple[Transaction, Sequence[KeyPair]]]) -> list[tuple[Transaction, bool]]:
    """Each ``(tx, keys)`` signed (``tx.signed(*keys)``), with the gateway's verdict on the signed transaction
    (``verify_signatures`` against ``required_signers``): one batch over the signature threads.

    A transaction signed here only by sound key pairs (``KeyPair.sound``) carries signatures valid by
    construction: its verdict is whether the required parties signed, without checking each signature's
    curve equation again (the same verdict, tested; ``verify-ledger`` still checks every stored signature).
    """
    for tx, _ in jobs:
        tx.signing_bytes()
    return parallel_map(_signed_and_checked, jobs)


def _signed_and_checked(job: tuple[Transaction, Sequence[KeyPair]]) -> tuple[Transaction, bool]:
    unsigned, keys = job
    tx = unsigned.signed(*keys)
    if not unsigned.signatures and all(key.sound for key in keys):
        return tx, required_signers(tx) <= {key.public_hex for key in keys}
    return tx, verify_signatures(tx, required_signers(tx))


def required_signers(tx: Transaction) -> set[str]:
    """Keys that must sign ``tx``: the sender, and for a trade both buyer and seller."""
    keys = {tx.sender}
    if tx.kind == "trade":
        for party in ("buyer", "seller"):
            if isinstance(key := tx.payload.get(party), str):
                keys.add(key)
    return keys


@lru_cache(maxsize=65_536)
def _public_key(pub_hex: str) -> bytes | None:
    """Raw public key of its hex, None unless canonical hex of 32 bytes (cached: an account signs many
    transactions)."""
    return bytes.fromhex(pub_hex) if _is_hex(pub_hex, 32) else None


def signature_ok(pub_hex: str, sig_hex: str, message: bytes) -> bool:
    """Whether ``sig_hex`` is a valid Ed25519 signature of ``message`` by ``pub_hex`` (both canonical hex)."""
    public = _public_key(pub_hex)
    if public is None or len(sig_hex) != 128:
        return False
    try:
        signature = bytes.fromhex(sig_hex)
        if signature.hex() != sig_hex:  # canonical: lower case, no whitespace
            return False
        crypto_sign_open(signature + message, public)
    except (BadSignatureError, CryptoError, ValueError):
        return False
    return True


def verify_signatures(tx: Transaction, required: set[str]) -> bool:
    """Whether every attached signature is valid (canonical hex) and every key of ``required`` signed."""
    data = tx.signing_bytes()
    for pub_hex, sig_hex in tx.signatures:
        if not signature_ok(pub_hex, sig_hex, data):
            return False
    return required <= {pub for pub, _ in tx.signatures}


def verify_all(txs: Sequence[Transaction]) -> list[bool]:
    """``verify_signatures(tx, required_signers(tx))`` of each, the batch split over the signature threads."""
    for tx in txs:
        tx.signing_bytes()
    return parallel_map(_verified, txs)


def _verified(tx: Transaction) -> bool:
    return verify_signatures(tx, required_signers(tx))


def merkle_root(tx_ids: Sequence[str]) -> str:
    """Binary SHA-256 Merkle root of the ids, Bitcoin-style (last node duplicated on odd levels).

    The empty list gives SHA-256 of ``b""``; one id is its own root. Because of the duplication,
    ``[a, b, c]`` and ``[a, b, c, c]`` share a root: blocks must not repeat ids (checked by ``Chain``).
    """
    if not tx_ids:
        return sha256_hex(b"")
    level = [bytes.fromhex(t) for t in tx_ids]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0].hex()


EMPTY_ROOT = sha256_hex(b"")


def receipt_leaf(
    tx_id: str, status: str, gas_used: int, submit_s: float, include_s: float, final_s: float
) -> str:
    """Receipts-root leaf: SHA-256 hex of the canonical ``[tx_id, status, gas, submit, include, final]``.

    Times are the stored Unix seconds (NaN as ``NaN``), so a block header commits to everything the
    ``/ledger/tx`` row of a transaction in the chain says.
    """
    if type(tx_id) is str and type(status) is str and plain_json(tx_id + status):  # formatted directly
        submit, include, final = float(submit_s), float(include_s), float(final_s)
        if submit - submit + include - include + final - final == 0.0:  # all finite: JSON is repr
            times = f"{submit!r},{include!r},{final!r}"
        else:
            times = ",".join(map(_float_json, (submit, include, final)))
        return sha256_hex(f'["{tx_id}","{status}",{int(gas_used)},{times}]'.encode())
    return sha256_hex(
        canonical([tx_id, status, int(gas_used), float(submit_s), float(include_s), float(final_s)])
    )


def _float_json(x: float) -> str:
    """JSON of a float as ``json`` writes it (``repr``; ``NaN``, ``Infinity``, ``-Infinity``)."""
    if x - x == 0.0:  # finite
        return repr(x)
    return "NaN" if x != x else "Infinity" if x > 0 else "-Infinity"


@dataclass(frozen=True)
class Block:
    """A block header and the ids of its transactions; ``hash`` covers the header only.

    The header commits to the transaction ids (``merkle_root``), to their receipts and times
    (``receipts_root``, see ``receipt_leaf``), to the block's gas, size and finality time, and to the
    previous header. ``nonce`` is the proof of work (``mine``); 0 for the other mechanisms.
    """

    height: int
    time_s: float
    proposer: str
    prev_hash: str
    merkle_root: str
    tx_ids: tuple[str, ...] = field(default=())
    receipts_root: str = EMPTY_ROOT
    gas_used: int = 0
    size_bytes: int = 0
    final_s: float = float("nan")
    nonce: int = 0

    @cached_property
    def header_bytes(self) -> bytes:
        """Canonical header without the nonce."""
        header = {
            "height": self.height, "time_s": float(self.time_s), "proposer": self.proposer,
            "prev_hash": self.prev_hash, "merkle_root": self.merkle_root, "receipts_root": self.receipts_root,
            "n_tx": len(self.tx_ids), "gas_used": int(self.gas_used), "size_bytes": int(self.size_bytes),
            "final_s": float(self.final_s),
        }  # fmt: skip
        return canonical(header)

    @cached_property
    def hash(self) -> str:
        """SHA-256 hex of the canonical header followed by the nonce (8 bytes, big-endian)."""
        return sha256_hex(self.header_bytes + self.nonce.to_bytes(8, "big"))


def meets_target(block_hash: str, pow_bits: int) -> bool:
    """Whether ``block_hash`` starts with ``pow_bits`` zero bits (is below ``2**(256 - pow_bits)``)."""
    return int(block_hash, 16) >> (256 - pow_bits) == 0 if pow_bits else True


def mine(block: Block, pow_bits: int) -> Block:
    """``block`` with the first nonce whose hash meets the ``pow_bits`` target (~``2**pow_bits`` hashes)."""
    if pow_bits <= 0:
        return block
    base = hashlib.sha256(block.header_bytes)
    nonce = 0
    while True:
        h = base.copy()
        h.update(nonce.to_bytes(8, "big"))
        if int.from_bytes(h.digest()) >> (256 - pow_bits) == 0:
            return replace(block, nonce=nonce)
        nonce += 1


def _block_problem(block: Block, index: int, prev_hash: str, root_checked: bool = False) -> str | None:
    """What is wrong with ``block`` at position ``index`` after a block hashing to ``prev_hash``
    (``root_checked``: its Merkle root was just made from its ids, so it is not made again)."""
    if block.height != index:
        return f"block {index}: height {block.height} out of sequence"
    if block.prev_hash != prev_hash:
        return f"block {index}: prev_hash link broken"
    if len(set(block.tx_ids)) != len(block.tx_ids):
        return f"block {index}: duplicate tx id"
    if not all(_is_hex(t, 32) for t in block.tx_ids) or (
        not root_checked and block.merkle_root != merkle_root(block.tx_ids)
    ):
        return f"block {index}: merkle root mismatch"
    return None


class Chain:
    """Append-only list of blocks, with the transactions they carry.

    ``history=False`` keeps only the head block (its hash and height are all that later blocks need) and
    the count of transactions; the blocks go to storage as they are sealed (the co-simulation's
    ``/ledger`` tables, which ``verify-ledger`` checks), so the memory does not grow with the chain.
    """

    def __init__(self, history: bool = True) -> None:
        self.history = history
        self.blocks: list[Block] = []  # all blocks, or with history=False the head only
        self.txs: dict[str, Transaction] = {}  # empty with history=False
        self._dropped, self._dropped_tx = 0, 0  # blocks (and their transactions) no longer held

    @property
    def head_hash(self) -> str:
        """Hash of the last block (``GENESIS_PREV`` when empty)."""
        return self.blocks[-1].hash if self.blocks else GENESIS_PREV

    @property
    def n_blocks(self) -> int:
        """Blocks appended so far (the height of the next block)."""
        return self._dropped + len(self.blocks)

    @property
    def n_tx(self) -> int:
        """Transactions in the blocks appended so far."""
        return self._dropped_tx + sum(len(b.tx_ids) for b in self.blocks)

    def append(self, block: Block, _root_checked: bool = False) -> None:
        """Append ``block`` after checking its height, link, time order and Merkle root (``ValueError``);
        ``_root_checked``: ``seal`` made the root of these ids (then only the ids' form is checked)."""
        problem = _block_problem(block, self.n_blocks, self.head_hash, _root_checked)
        if problem is None and self.blocks and block.time_s < self.blocks[-1].time_s:
            problem = f"block {block.height}: time goes backwards"
        if problem is not None:
            raise ValueError(problem)
        self.blocks.append(block)
        if not self.history:
            self._dropped += len(self.blocks) - 1
            self._dropped_tx += sum(len(b.tx_ids) for b in self.blocks[:-1])
            del self.blocks[:-1]

    def seal(
        self, txs: Iterable[Transaction], time_s: float, proposer: str, pow_bits: int = 0, **header: Any
    ) -> Block:
        """Make, append and return the next block carrying ``txs``; ``header``: the other ``Block`` fields
        (receipts_root, gas_used, size_bytes, final_s); ``pow_bits``: mine it to that target."""
        txs = list(txs)
        ids = tuple(tx.tx_id for tx in txs)
        block = Block(self.n_blocks, float(time_s), proposer, self.head_hash, merkle_root(ids), ids, **header)
        block = mine(block, pow_bits)
        self.append(block, _root_checked=True)
        if self.history:
            self.txs.update(zip(ids, txs, strict=True))
        return block

    def verify(self) -> tuple[bool, str | None]:
        """``verify_chain`` on this chain (ValueError without its history: verify the stored tables)."""
        if not self.history:
            raise ValueError("this chain keeps no history (history=False): verify the blocks where stored")
        return verify_chain(self.blocks, self.txs)


def verify_chain(blocks: Sequence[Block], txs_by_id: Mapping[str, Transaction]) -> tuple[bool, str | None]:
    """Re-check every link, Merkle root, transaction id and signature set.

    Returns
    -------
    ``(True, None)``, or ``(False, problem)`` naming the first bad block (by position) or transaction
    """
    prev = GENESIS_PREV
    for i, block in enumerate(blocks):
        if (problem := _block_problem(block, i, prev)) is not None:
            return False, problem
        for tx_id in block.tx_ids:
            tx = txs_by_id.get(tx_id)
            if tx is None:
                return False, f"block {i}: tx {tx_id} missing"
            if tx.tx_id != tx_id:
                return False, f"tx {tx_id}: id mismatch"
            if not verify_signatures(tx, required_signers(tx)):
                return False, f"tx {tx_id}: bad signature"
        prev = block.hash
    return True, None


def block_record(block: Block) -> Record:
    """Flat record of ``block`` (``tx_ids`` as a JSON list, plus its ``hash``)."""
    return {
        "height": block.height,
        "time_s": float(block.time_s),
        "proposer": block.proposer,
        "prev_hash": block.prev_hash,
        "merkle_root": block.merkle_root,
        "tx_ids": canonical(list(block.tx_ids)).decode(),
        "hash": block.hash,
    }


def block_from_record(rec: Mapping[str, Any]) -> Block:
    """Block back from ``block_record`` (the stored ``hash`` is not checked here)."""
    ids = json.loads(rec["tx_ids"])
    if not (isinstance(ids, list) and all(isinstance(t, str) for t in ids)):
        raise ValueError("tx_ids must be a JSON list of strings")
    head = (int(rec["height"]), float(rec["time_s"]), str(rec["proposer"]), str(rec["prev_hash"]))
    return Block(*head, str(rec["merkle_root"]), tuple(ids))


def transaction_record(tx: Transaction) -> Record:
    """Flat record of ``tx`` (payload and signatures as canonical JSON strings, plus its ``tx_id``)."""
    return {
        "tx_id": tx.tx_id,
        "kind": tx.kind,
        "payload": tx.payload_json,
        "sender": tx.sender,
        "nonce": tx.nonce,
        "signatures": signatures_json(tx.signatures),
    }


def transaction_from_record(rec: Mapping[str, Any]) -> Transaction:
    """Transaction back from ``transaction_record`` (the stored ``tx_id`` is not checked here)."""
    payload = json.loads(rec["payload"])
    sigs = json.loads(rec["signatures"])
    if not isinstance(payload, dict):
        raise ValueError("payload must be a JSON object")
    if not (isinstance(sigs, list) and all(isinstance(s, list) and len(s) == 2 for s in sigs)):
        raise ValueError("signatures must be a JSON list of pairs")
    if not all(isinstance(x, str) for s in sigs for x in s):
        raise ValueError("signature fields must be strings")
    pairs = tuple((s[0], s[1]) for s in sigs)
    return Transaction(str(rec["kind"]), payload, str(rec["sender"]), int(rec["nonce"]), pairs)


def verify_records(
    block_records: Sequence[Mapping[str, Any]], tx_records: Sequence[Mapping[str, Any]]
) -> tuple[bool, str | None]:
    """``verify_chain`` on records read back from storage, after checking each record.

    A record must parse, round-trip to itself (canonical form) and carry its own id/hash; every
    transaction must be in some block.
    """
    txs: dict[str, Transaction] = {}
    for i, rec in enumerate(tx_records):
        try:
            tx = transaction_from_record(rec)
        except (KeyError, ValueError, TypeError):
            return False, f"tx record {i}: unreadable"
        if rec.get("tx_id") != tx.tx_id:
            return False, f"tx {rec.get('tx_id')}: id mismatch"
        if transaction_record(tx) != dict(rec):
            return False, f"tx {tx.tx_id}: non-canonical record"
        txs[tx.tx_id] = tx
    blocks: list[Block] = []
    for i, rec in enumerate(block_records):
        try:
            block = block_from_record(rec)
        except (KeyError, ValueError, TypeError):
            return False, f"block {i}: unreadable"
        if rec.get("hash") != block.hash:
            return False, f"block {i}: hash mismatch"
        if block_record(block) != dict(rec):
            return False, f"block {i}: non-canonical record"
        blocks.append(block)
    ok, problem = verify_chain(blocks, txs)
    if ok and (orphans := set(txs) - {t for b in blocks for t in b.tx_ids}):
        return False, f"tx {min(orphans)}: not in any block"
    return ok, problem
