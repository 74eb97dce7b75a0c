"""The ledger of a run: market trades and meter readings as signed transactions, through consensus, onto a
hash chain, executed by the energy contracts.

Clock: the ledger's SimPy time ``tau`` (s) starts ``gate_closure_s`` before the first delivery interval. The
trades of interval ``k`` are signed by buyer and seller and submitted at its gate closure
``tau = k * step_s``; their deadline is the start of delivery, ``gate_closure_s`` later. A trade not final by
then is *late*: under ``late_rule="cancel"`` the buyer submits a ``cancel`` at the deadline and both parties
settle that energy with the upstream grid instead (buyer at the import price, seller at the export price:
the imbalance cost recorded in ``late_cost``); under ``"settle_late"`` it stays and settles when final.
After the interval, each seller's meter signs its export (Wh) ``meter_delay_s`` after delivery ends; that
reading settles the seller's promises of the interval (``Ledger(settle_on_meter=True)``).
Only peer-to-peer trades go on chain; trades with the upstream grid are billed by the retailer off chain.

Signatures are checked once, when a gateway admits a transaction: a bad signature, or a nonce not above
the highest its sender had admitted (a replay: ``SenderNonces``), is rejected there (recorded, never in a
block). A block is executed (contract calls, gas, receipts) and
appended to the hash chain when it becomes final; at the end of the run the blocks decided but not yet
final are appended too, their transactions without a finality time.

Tamper evidence (see ``audit``): the genesis block commits to ``genesis_json`` (validator keys and power,
meter keys, balances, contract parameters); each block header commits to its receipts and times and is
signed by its proposer (PoW blocks also carry a proof of work); BFT blocks carry their commit certificate,
PoS checkpoint blocks the attestations that finalised their epoch, and at the end of the run a quorum of
validators signs the head (the ``/ledger/votes`` rows). The validator keys come from a child of ``rng``
(``rng.spawn``), so drawing them changes no other random number.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from cosim.models.ledger import audit
from cosim.models.ledger.chain import (
    Chain,
    KeyPair,
    Transaction,
    merkle_root,
    receipt_leaf,
    required_signers,
    sha256_hex,
    sign_all,
    sign_and_check,
    sign_messages,
    sign_messages_later,
    signatures_json,
    verify_signatures,
)
from cosim.models.ledger.consensus import Consensus, certificate
from cosim.models.ledger.contracts import Ledger

MICRO = 1_000_000
# Text columns are fixed-width ASCII (compressible, unlike variable-length strings); a value that does not
# fit is an error, never truncated. 512 bytes hold the largest payload (a trade, ~240) and two signatures.
TX_COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("tx_id", "S64", "SHA-256 hex"),
    ("kind", "S8", "trade, meter, settle, cancel or transfer"),
    ("sender", "S64", "public key hex"),
    ("nonce", np.int64, "1"),
    ("payload", "S512", "canonical JSON"),
    ("signatures", "S512", "canonical JSON [[public key hex, signature hex], ...]"),
    ("submit_s", np.float64, "Unix s"),
    ("include_s", np.float64, "Unix s, NaN if not included"),
    ("final_s", np.float64, "Unix s, NaN if not final"),
    ("height", np.int64, "block height, -1 if not in a block"),
    ("gas_used", np.int64, "gas"),
    ("status", "S24", "contract receipt, 'pending', or why the gateway rejected it"),
)
BLOCK_COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("height", np.int64, "1"),
    ("time_s", np.float64, "Unix s"),
    ("proposer", np.int64, "validator index"),
    ("n_tx", np.int64, "1"),
    ("gas_used", np.int64, "gas"),
    ("size_bytes", np.int64, "bytes"),
    ("stale", np.bool_, "lost a fork (not in the hash chain; hash fields empty)"),
    ("hash", "S64", "SHA-256 hex of the header"),
    ("prev_hash", "S64", "SHA-256 hex"),
    ("merkle_root", "S64", "SHA-256 hex"),
    ("receipts_root", "S64", "SHA-256 hex (genesis: SHA-256 of /ledger/genesis)"),
    ("final_s", np.float64, "Unix s, NaN if not final"),
    ("nonce", np.int64, "1, proof-of-work nonce (0 unless PoW)"),
    ("signature", "S128", "Ed25519 hex of the proposer over the hash (empty for genesis and stale)"),
)  # a block's transactions are the /ledger/tx rows of its height, in row order
VOTE_COLUMNS: tuple[tuple[str, Any, str], ...] = (
    ("height", np.int64, "block height"),
    ("kind", "S8", "commit (BFT certificate), attest (PoS checkpoint) or head (end of run)"),
    ("validator", np.int64, "validator index"),
    ("signature", "S128", "Ed25519 hex over the vote message (see docs/datasets.md)"),
)


@dataclass
class StepOutput:
    """What one ledger step reports: per-step figures and the new rows of the tx and block tables."""

    throughput_tps: float
    latency_p50_s: float
    latency_p95_s: float
    finality_p50_s: float
    finality_p95_s: float
    energy_kwh: float
    n_late: int
    late_cost: float
    tx: dict[str, np.ndarray] = field(default_factory=dict)
    blocks: dict[str, np.ndarray] = field(default_factory=dict)
    votes: dict[str, np.ndarray] = field(default_factory=dict)
    # with ``sign_elsewhere``: the rows whose signature the caller makes, (table, row, validator, message)
    unsigned: list[tuple[str, int, int, bytes]] = field(default_factory=list)


def percentiles_50_95(values: list[float]) -> tuple[float, float]:
    """``np.percentile(values, [50, 95])`` (numpy's default, linear interpolation), NaN for no values: the
    same floats, computed on the sorted list (a step's call to numpy cost ~30 us, more than its sort)."""
    if not values:
        return math.nan, math.nan
    if not all(map(math.isfinite, values)):  # (numpy's own NaN and infinity rules)
        p = np.percentile(values, [50, 95])
        return float(p[0]), float(p[1])
    ordered, last = sorted(values), len(values) - 1
    out = []
    for q in (0.5, 0.95):  # numpy's operations in numpy's order (``_quantile``, ``_get_indexes``, ``_lerp``)
        virtual = last * q
        below = -1 if virtual >= last else math.floor(virtual)
        a, b = ordered[below], ordered[-1 if below == -1 else below + 1]
        gamma, diff = virtual - below, b - a
        out.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return out[0], out[1]


class SenderNonces:
    """Replay protection at the gateway: per sender (a wallet or a meter key), the highest nonce admitted.

    A transaction whose nonce is not above its sender's highest admitted one is refused (``"replay"``), as
    an Ethereum node refuses "nonce too low": a replayed transaction (same id, so same sender and nonce)
    is refused forever, and so is a *new* transaction reusing a stale nonce, which honest senders never
    make (each numbers its transactions in the order it submits them, and the gateway admits them in that
    order), refused here rather than admitted and failing at execution. The memory is one entry per
    sender ever admitted (bounded by the accounts' wallets and meter keys), not one per transaction.
    Nonces may skip (a gap is not refused), as in the contracts (``Ledger.apply``).
    """

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def fresh(self, tx: Transaction) -> bool:
        """Whether ``tx``'s nonce is above every nonce admitted from its sender."""
        return tx.nonce > self._last.get(tx.sender, -1)

    def __len__(self) -> int:
        return len(self._last)

    def add(self, tx: Transaction) -> None:
        """Remember that ``tx`` (fresh) was admitted."""
        self._last[tx.sender] = tx.nonce


class _Rows:
    """Rows of a table collected during a step, returned as column arrays."""

    def __init__(self, columns: tuple[tuple[str, Any, str], ...]) -> None:
        self.columns = columns
        self.rows: list[tuple[Any, ...]] = []
        # per column: name, dtype, width in bytes of a text column (0: not text)
        self._types = [
            (name, dtype, int(dtype[1:]) if isinstance(dtype, str) else 0) for name, dtype, _ in columns
        ]

    def take(self) -> dict[str, np.ndarray]:
        rows, self.rows = self.rows, []
        if not rows:
            return {name: np.zeros(0, dtype) for name, dtype, _ in self._types}
        out = {}
        for (name, dtype, width), col in zip(self._types, zip(*rows, strict=True), strict=True):
            if width and max(map(len, col)) > width:  # fixed-width text: ASCII, never truncated
                raise ValueError(f"a value of column {name!r} is longer than its {width} bytes")
            out[name] = np.array(col, dtype=dtype)
        return out


class LedgerModel:
    """Signed transactions -> consensus engine -> executed, hash-linked blocks; one call per step.

    Parameters
    ----------
    engine : the consensus engine (fresh, clock at 0)
    n_accounts : agents (or workload accounts), each with a wallet and a meter key
    rng : draws the keys and the synthetic workload
    epoch_unix_s : Unix time of ledger time 0
    step_s : step length (s)
    gate_closure_s : trades are submitted this long before their delivery interval; their deadline
    late_rule : ``"cancel"`` or ``"settle_late"``
    meter_delay_s : a reading is submitted this long after its interval ends
    initial_balance : genesis balance of every account ($)
    gas_limit : gas limit of each transaction
    import_price_per_mwh, export_price_per_mwh : the upstream prices a cancelled trade settles at
    record_tables : collect the rows of the tx, block and vote tables (and sign the blocks)
    sign_elsewhere : (an attribute, default False) leave the validators' block and vote signatures to the
        caller, who has the same keys: the rows come with an empty signature and ``StepOutput.unsigned`` says
        what to sign (the ledger worker hands that work to the world's process)
    keep_history : keep every transaction, block and contract event in memory (``chain``, ``state.events``);
        False (a co-simulation, whose tables hold all of it) keeps only what later steps need: the
        transactions not yet executed or still awaiting their deadline, the head of the chain, and the
        highest nonce admitted per sender (``SenderNonces``, to reject replays), so the memory does not grow
        with the number of final transactions (see ``docs/architecture.md``)
    """

    def __init__(
        self,
        engine: Consensus,
        n_accounts: int,
        rng: np.random.Generator,
        *,
        epoch_unix_s: float,
        step_s: float,
        gate_closure_s: float = 900.0,
        late_rule: Literal["cancel", "settle_late"] = "cancel",
        meter_delay_s: float = 60.0,
        initial_balance: float = 1000.0,
        gas_limit: int = 5_000_000,
        import_price_per_mwh: float = 0.0,
        export_price_per_mwh: float = 0.0,
        record_tables: bool = True,
        keep_history: bool = True,
    ) -> None:
        self.engine, self.rng = engine, rng
        self.epoch_unix_s, self.step_s = float(epoch_unix_s), float(step_s)
        self.gate_closure_s, self.late_rule, self.meter_delay_s = gate_closure_s, late_rule, meter_delay_s
        self.gas_limit, self.record_tables, self.keep_history = gas_limit, record_tables, keep_history
        self.import_price, self.export_price = import_price_per_mwh, export_price_per_mwh
        self.wallets = [KeyPair.from_rng(rng) for _ in range(n_accounts)]
        self.meters = [KeyPair.from_rng(rng) for _ in range(n_accounts)]
        self.address = [w.public_hex for w in self.wallets]
        self.account_of = {a: i for i, a in enumerate(self.address)}
        self.validator_keys = [KeyPair.from_rng(child) for child in rng.spawn(1) for _ in range(engine.n)]
        self.power = audit.voting_power(engine)
        self.state = Ledger(
            {a: round(initial_balance * MICRO) for a in self.address},
            {a: m.public_hex for a, m in zip(self.address, self.meters, strict=True)},
            settle_on_meter=True,
        )
        self.pow_bits = audit.POW_BITS if engine.mechanism == "pow" else 0
        self.genesis_json = audit.genesis_json(
            engine, self.epoch_unix_s, [k.public_hex for k in self.validator_keys], self.power, self.state,
            gas_limit,
        )  # fmt: skip
        self.chain = Chain(history=keep_history)
        self.chain.seal([], epoch_unix_s, "genesis", receipts_root=sha256_hex(self.genesis_json.encode()))
        self.nonce: dict[str, int] = {}
        self.replay_guard = SenderNonces()  # the gateway's replay protection
        self.queue: list[tuple[float, int, Transaction]] = []  # (tau, seq, tx) not yet submitted
        # Submitted transactions in the engine's order, from the engine's index ``_base`` on (with
        # keep_history=False, those executed and past their deadline are dropped: ``_forget``); the
        # per-transaction lists and arrays below run alongside, ``index_of`` maps an id to the engine's index
        self._base = 0
        self.submitted: list[Transaction] = []
        self.submit_tau: list[float] = []
        self.deadlines: list[tuple[float, int, list[tuple[str, float]]]] = []  # (tau, seq, [(tx id, $)])
        self.to_execute: list[Any] = []  # decided canonical blocks, in height order
        self.index_of: dict[str, int] = {}
        self._cancel_step: dict[str, int] = {}  # cancel id -> step of its trade (keep_history=False)
        self.include_tau, self.final_tau = np.full(0, np.nan), np.full(0, np.nan)
        self.height = np.full(0, -1, dtype=np.int64)
        self.executed_final: list[float] = []
        self.executed_latency: list[float] = []
        self._executed = self._seq = 0  # engine index of the first transaction not executed
        self.n_rejected = 0
        self.n_out_of_gas = 0  # executed transactions whose receipt is out_of_gas
        self._unsigned: list[tuple[list[tuple[list[Any], int]], Future[list[str]]]] = []  # rows, signatures
        self.sign_elsewhere = False
        self._elsewhere: list[tuple[str, int, int, bytes]] = []  # the step's StepOutput.unsigned
        self.tx_rows, self.block_rows, self.vote_rows = (
            _Rows(TX_COLUMNS),
            _Rows(BLOCK_COLUMNS),
            _Rows(VOTE_COLUMNS),
        )
        self._block_row(self.chain.blocks[0], 0, 0.0, -1, 0, 0)

    # ----------------------------------------------------------------- transactions
    def _next_nonce(self, key: str) -> int:
        self.nonce[key] = self.nonce.get(key, -1) + 1
        return self.nonce[key]

    def _queue(self, tau: float, tx: Transaction) -> None:
        heapq.heappush(self.queue, (tau, self._seq, tx))
        self._seq += 1

    def trade_txs(self, step: int, trades: dict[str, np.ndarray]) -> list[tuple[Transaction, float]]:
        """``_trade_jobs`` signed."""
        jobs, costs = self._trade_jobs(step, trades)
        return list(zip(sign_all(jobs), costs, strict=True))

    def _trade_jobs(
        self, step: int, trades: dict[str, np.ndarray]
    ) -> tuple[list[tuple[Transaction, tuple[KeyPair, ...]]], list[float]]:
        """Unsigned on-chain trades of interval ``step`` (one per buyer-seller pair) and their imbalance cost.

        ``trades`` has agent positions ``buyer`` and ``seller`` (-1: upstream grid), ``mwh``, ``price`` (paid
        by the buyer) and ``seller_price`` ($/MWh). The cost is what the pair pays extra if the trade is
        cancelled: ``mwh * (import - price + seller_price - export)``.
        """
        buyer, seller, mwh = (np.asarray(trades[k]) for k in ("buyer", "seller", "mwh"))
        p2p = (buyer >= 0) & (seller >= 0) & (mwh > 0)
        if not p2p.any():
            return [], []
        pair = buyer[p2p].astype(np.int64) * len(self.address) + seller[p2p]
        pairs, inv = np.unique(pair, return_inverse=True)
        energy = np.bincount(inv, mwh[p2p])
        paid = np.bincount(inv, mwh[p2p] * np.asarray(trades["price"])[p2p])
        got = np.bincount(inv, mwh[p2p] * np.asarray(trades["seller_price"])[p2p])
        jobs, costs = [], []
        b_of, s_of = np.divmod(pairs, len(self.address))
        for b, s, e, pay, get in zip(*(a.tolist() for a in (b_of, s_of, energy, paid, got)), strict=True):
            wh = round(e * MICRO)
            if wh == 0:
                continue
            payload = {
                "seller": self.address[s], "buyer": self.address[b], "step": int(step), "wh": wh,
                "price_micro_per_mwh": round(pay / e * MICRO), "trade_ref": "p2p",
            }  # fmt: skip
            tx = Transaction("trade", payload, self.address[b], self._next_nonce(self.address[b]))
            jobs.append((tx, (self.wallets[b], self.wallets[s])))
            costs.append(float((self.import_price - self.export_price) * e - pay + get))
        return jobs, costs

    def meter_tx(self, owner: int, step: int, wh: int) -> Transaction:
        """The meter of ``owner`` signs its export in interval ``step`` (Wh)."""
        return sign_all([self._meter_job(owner, step, wh)])[0]

    def _meter_job(self, owner: int, step: int, wh: int) -> tuple[Transaction, tuple[KeyPair, ...]]:
        """The unsigned reading of ``meter_tx`` and the meter key that signs it."""
        meter = self.meters[owner]
        payload = {"owner": self.address[owner], "step": int(step), "wh": int(wh)}
        return Transaction("meter", payload, meter.public_hex, self._next_nonce(meter.public_hex)), (meter,)

    def transfer_txs(self, n: int) -> list[tuple[Transaction, bool]]:
        """``n`` signed transfers between random accounts (the standalone workload), each with the
        gateway's verdict on its signatures (``sign_and_check``)."""
        src = self.rng.integers(len(self.address), size=n)
        dst = (src + self.rng.integers(1, max(len(self.address), 2), size=n)) % len(self.address)
        amount = self.rng.integers(1, 1000, size=n)
        jobs = []
        for i, j, a in zip(src.tolist(), dst.tolist(), amount.tolist(), strict=True):
            payload = {"to": self.address[j], "amount_micro": a}
            tx = Transaction("transfer", payload, self.address[i], self._next_nonce(self.address[i]))
            jobs.append((tx, (self.wallets[i],)))
        return sign_and_check(jobs)

    def admit(self, tau: float, tx: Transaction, signatures_ok: bool | None = None) -> bool:
        """Gateway check at submission: valid signatures, then a nonce above the highest its sender had
        admitted (``SenderNonces``; else ``"replay"``: a replayed transaction, or a new one reusing a stale
        nonce); a transaction failing either is rejected, recorded.

        ``signatures_ok``: the verdict of ``sign_and_check`` on ``tx`` when the caller checked a batch.
        """
        status = None
        if not (verify_signatures(tx, required_signers(tx)) if signatures_ok is None else signatures_ok):
            status = "bad_signature"
        elif not self.replay_guard.fresh(tx):
            status = "replay"
        if status is None:
            self._queue(tau, tx)
            self.replay_guard.add(tx)
            return True
        self.n_rejected += 1
        self._tx_row(tx, self._unix(tau, np.nan, np.nan), -1, 0, status)
        return False

    # ----------------------------------------------------------------- stepping
    def step(
        self,
        k: int,
        trades: dict[str, np.ndarray] | None = None,
        export_mw: np.ndarray | None = None,
        n_transfers: int = 0,
        last: bool = False,
    ) -> StepOutput:
        """Ledger step ``k``: submit interval ``k``'s trades at its gate closure and its sellers' readings
        (``export_mw`` per agent, >= 0) after it, or ``n_transfers`` random transfers; apply the deadline
        rule, advance the clock to the next gate closure and execute what became final. ``last`` ends the
        run (see the module docstring).
        """
        t0, until = k * self.step_s, (k + 1) * self.step_s
        if trades is not None:
            jobs, costs = self._trade_jobs(k, trades)
            n_trades = len(jobs)
            if export_mw is not None:
                on_chain = np.asarray(trades["buyer"]) >= 0
                for s in np.unique(np.asarray(trades["seller"])[on_chain]).tolist():
                    if s >= 0:
                        wh = round(max(float(export_mw[s]), 0.0) * self.step_s / 3600.0 * MICRO)
                        jobs.append(self._meter_job(s, k, wh))
            # the step's trades and readings signed, and their signatures checked, in one batch; then
            # admitted one by one (the gateway's verdicts) in the same order as one at a time
            signed = sign_and_check(jobs)
            due = [
                (tx.tx_id, cost)
                for (tx, ok), cost in zip(signed[:n_trades], costs, strict=True)
                if self.admit(t0, tx, ok)
            ]
            if due:
                heapq.heappush(self.deadlines, (t0 + self.gate_closure_s, self._seq, due))
                self._seq += 1
            read_at = until + self.gate_closure_s + self.meter_delay_s
            for tx, ok in signed[n_trades:]:
                self.admit(read_at, tx, ok)
        if n_transfers:
            at = np.sort(self.rng.uniform(t0, until, n_transfers)).tolist()
            for tau, (tx, ok) in zip(at, self.transfer_txs(n_transfers), strict=True):
                self.admit(tau, tx, ok)
        n_late, late_cost = 0, 0.0
        while self.deadlines and self.deadlines[0][0] <= until:
            tau, _, due = heapq.heappop(self.deadlines)
            self._run(tau)
            for tx_id, cost in due:
                idx = self.index_of[tx_id] - self._base
                if not self.final_tau[idx] <= tau:
                    n_late += 1
                    if self.late_rule == "cancel":
                        late_cost += cost
                        self._cancel(tau, self.submitted[idx])
        self._run(until)
        if not self.keep_history:
            self._forget(k)
        if last:
            self.engine.close()
            self._collect(until, close=True)
            self._sign_head()
        return self._report(until, n_late, late_cost, last)

    def _cancel(self, tau: float, trade: Transaction) -> None:
        buyer = self.account_of[trade.payload["buyer"]]
        tx = Transaction("cancel", {"token": trade.tx_id}, trade.sender, self._next_nonce(trade.sender))
        if self.admit(tau, tx.signed(self.wallets[buyer])) and not self.keep_history:
            self._cancel_step[tx.tx_id] = trade.payload["step"]

    def _run(self, until: float) -> None:
        """Submit the queued transactions due by ``until``, advance the engine, execute what is final."""
        due: list[float] = []
        now = self.engine.env.now
        while self.queue and self.queue[0][0] <= until:
            tau, _, tx = heapq.heappop(self.queue)
            self.index_of[tx.tx_id] = self._base + len(self.submitted)
            self.submitted.append(tx)
            due.append(max(tau, now))
        self.submit_tau += due
        if len(self.submitted) > len(self.final_tau):  # grow by doubling: a copy per call grew with the run
            grow = max(len(self.final_tau), len(self.submitted) - len(self.final_tau), 1024)
            self.include_tau = np.concatenate([self.include_tau, np.full(grow, np.nan)])
            self.final_tau = np.concatenate([self.final_tau, np.full(grow, np.nan)])
            self.height = np.concatenate([self.height, np.full(grow, -1, dtype=np.int64)])
        self.engine.submit(np.asarray(due))
        self.engine.run(until)
        self._collect(until)

    def _collect(self, until: float, close: bool = False) -> None:
        """Take the engine's new ranges and blocks; execute the canonical blocks final by ``until`` (all when
        closing: their transactions not final by ``until`` get no finality time)."""
        blocks, ranges = self.engine.drain()
        for lo, hi, include, final, height in ranges:
            lo, hi = lo - self._base, hi - self._base
            self.include_tau[lo:hi], self.final_tau[lo:hi], self.height[lo:hi] = include, final, height
        for block in blocks:
            if block.stale:
                self._block_row(
                    None, block.height, block.time_s, block.proposer, block.n_tx, block.size_bytes
                )
            else:
                self.to_execute.append(block)
        done = 0
        for j, block in enumerate(self.to_execute):
            if block.final_s > until and not close:
                break
            after = self.to_execute[j + 1] if j + 1 < len(self.to_execute) else None
            self._execute(block, until, after)
            done += 1
        del self.to_execute[:done]

    def _execute(self, block: Any, until: float, after: Any) -> None:
        """Apply a canonical block's transactions to the contract state, append it to the hash chain (its
        header committing to the receipts), sign it and its certificate; ``after``: the next block to
        execute, if known (a PoS block is its epoch's checkpoint when ``after`` is in a later epoch)."""
        self._executed = block.first_tx + block.n_tx
        lo, hi = block.first_tx - self._base, self._executed - self._base
        txs = self.submitted[lo:hi]
        gas, leaves = 0, []
        self.final_tau[lo:hi][self.final_tau[lo:hi] > until] = np.nan
        include, final = self.include_tau[lo:hi].tolist(), self.final_tau[lo:hi].tolist()
        apply, gas_limit, unix = self.state.apply, self.gas_limit, self._unix
        for tx, submit, inc, fin in zip(txs, self.submit_tau[lo:hi], include, final, strict=True):
            receipt = apply(tx, gas_limit, signatures_checked=True)
            status, used = receipt.status, receipt.gas_used
            gas += used
            self.n_out_of_gas += status == "out_of_gas"
            self.executed_final.append(fin - submit)
            self.executed_latency.append(inc - submit)
            times = unix(submit, inc, fin)
            leaves.append(receipt_leaf(tx.tx_id, status, used, *times))
            self._tx_row(tx, times, block.height, used, status)
        if not self.keep_history:
            self.state.events.clear()  # the log of the block's receipts: its rows are in the tx table
        final_s = self.epoch_unix_s + block.final_s if block.final_s <= until else np.nan
        sealed = self.chain.seal(
            txs, self.epoch_unix_s + block.time_s, f"validator-{block.proposer}", self.pow_bits,
            receipts_root=merkle_root(leaves), gas_used=gas, size_bytes=block.size_bytes, final_s=final_s,
        )  # fmt: skip
        if not self.record_tables:  # nobody could check the signatures
            return
        votes: tuple[str, Any, bytes] | None = None
        if self.engine.mechanism == "bft":
            votes = "commit", block.signers, audit.commit_message(block.height, sealed.hash)
        elif self.engine.mechanism == "pos" and np.isfinite(final_s):
            epoch = audit.pos_epoch(block.time_s, self.engine)
            if after is None or audit.pos_epoch(after.time_s, self.engine) != epoch:  # the checkpoint
                attesters = certificate(
                    np.flatnonzero(self.engine.honest), self.power, 2 / 3 * self.power.sum()
                )
                votes = "attest", attesters, audit.attest_message(epoch, sealed.hash)
        # the proposer's signature and the votes: made on a signature thread while the next block executes,
        # written into their rows (signature: the last column) before the step returns them
        proposer = (self.validator_keys[block.proposer], audit.block_message(sealed.hash))
        jobs = [proposer, *self._vote_jobs(votes)]
        rows = [(self.block_rows.rows, len(self.block_rows.rows))]
        self._block_row(sealed, block.height, block.time_s, block.proposer, block.n_tx, block.size_bytes, gas)
        if votes is not None:
            rows += [(self.vote_rows.rows, len(self.vote_rows.rows) + j) for j in range(len(jobs) - 1)]
            self._vote_rows(block.height, votes, [""] * (len(jobs) - 1))
        if self.sign_elsewhere:
            self._leave_unsigned(rows, [block.proposer, *(() if votes is None else votes[1])], jobs)
        else:
            self._unsigned.append((rows, sign_messages_later(jobs)))

    def _leave_unsigned(
        self, rows: list[tuple[list[Any], int]], signers: Sequence[int], jobs: list[tuple[KeyPair, bytes]]
    ) -> None:
        """Name the rows (table, row of the step, validator, message) whose signatures the caller makes."""
        table = {id(self.block_rows.rows): "blocks", id(self.vote_rows.rows): "votes"}
        self._elsewhere += [
            (table[id(rows_of)], i, int(v), message)
            for (rows_of, i), v, (_, message) in zip(rows, signers, jobs, strict=True)
        ]

    def _vote_jobs(self, votes: tuple[str, Any, bytes] | None) -> list[tuple[KeyPair, bytes]]:
        """What the validators of ``votes`` (kind, signers, message) sign."""
        return [] if votes is None else [(self.validator_keys[v], votes[2]) for v in votes[1]]

    def _vote_rows(self, height: int, votes: tuple[str, Any, bytes], signatures: list[str]) -> None:
        kind, signers, _ = votes
        for v, sig in zip(signers, signatures, strict=True):
            self.vote_rows.rows.append((height, kind, int(v), sig))

    def _sign_head(self) -> None:
        """End of the run: a quorum of validators (the first by index, faulty ones too) signs the head."""
        if not self.record_tables:
            return
        head, n_tx = self.chain.blocks[-1], self.chain.n_tx
        signers = certificate(np.arange(len(self.power)), self.power, 2 / 3 * self.power.sum())
        votes = "head", signers, audit.head_message(head.height, head.hash, n_tx)
        jobs = self._vote_jobs(votes)
        if self.sign_elsewhere:
            rows = [(self.vote_rows.rows, len(self.vote_rows.rows) + j) for j in range(len(jobs))]
            self._vote_rows(head.height, votes, [""] * len(jobs))
            self._leave_unsigned(rows, signers, jobs)
        else:
            self._vote_rows(head.height, votes, sign_messages(jobs))

    def _forget(self, k: int) -> None:
        """After step ``k`` (with keep_history=False): drop the transactions executed and past their
        deadline (their rows are out), and the contract state of the intervals no transaction still to
        come or to execute refers to: memory in proportion to what is not final yet, not to the run."""
        pending = [tx for *_, tx in self.queue] + self.submitted[self._executed - self._base :]
        steps = [self._step_of(tx) for tx in pending]
        steps += [
            self._step_of(self.submitted[self.index_of[due[0][0]] - self._base]) for *_, due in self.deadlines
        ]
        self.state.forget_steps(min([k + 1, *(s for s in steps if s is not None)]))
        keep = self._executed  # the first not executed, or the first a pending deadline still checks
        for _, _, due in self.deadlines:
            keep = min([keep, *(self.index_of[tx_id] for tx_id, _ in due)])
        cut = keep - self._base
        if cut <= 0:
            return
        for tx in self.submitted[:cut]:
            del self.index_of[tx.tx_id]
            self._cancel_step.pop(tx.tx_id, None)
        del self.submitted[:cut], self.submit_tau[:cut]
        self.include_tau, self.final_tau = self.include_tau[cut:].copy(), self.final_tau[cut:].copy()
        self.height = self.height[cut:].copy()
        self._base = keep

    def _step_of(self, tx: Transaction) -> int | None:
        """The delivery interval a transaction refers to (None for a transfer)."""
        if tx.kind == "cancel":
            return self._cancel_step[tx.tx_id]
        return tx.payload["step"] if tx.kind in ("trade", "meter") else None

    def _unix(self, submit: float, include: float, final: float) -> tuple[float, float, float]:
        """Stored Unix times of ledger times (NaN when not included or not final)."""
        unix = self.epoch_unix_s
        return unix + submit, unix + include, unix + (final if math.isfinite(final) else math.nan)

    def _tx_row(
        self, tx: Transaction, times: tuple[float, float, float], height: int, gas: int, status: str
    ) -> None:
        if not self.record_tables:
            return
        sigs = signatures_json(tx.signatures)
        self.tx_rows.rows.append(
            (tx.tx_id, tx.kind, tx.sender, tx.nonce, tx.payload_json, sigs, *times, height, gas, status)
        )

    def _block_row(
        self,
        sealed: Any,
        height: int,
        time_s: float,
        proposer: int,
        n_tx: int,
        size: int,
        gas: int = 0,
        signature: str = "",
    ) -> None:
        if not self.record_tables:
            return
        if sealed is None:  # stale
            chain: tuple[Any, ...] = ("", "", "", "", np.nan, 0)
        else:
            chain = (sealed.hash, sealed.prev_hash, sealed.merkle_root, sealed.receipts_root, sealed.final_s,
                     sealed.nonce)  # fmt: skip
        time_unix = sealed.time_s if sealed is not None else self.epoch_unix_s + time_s
        self.block_rows.rows.append(
            (height, time_unix, proposer, n_tx, gas, size, sealed is None, *chain, signature)
        )

    def _fill_signatures(self) -> None:
        """Write the signatures made in the background into their rows."""
        for rows, signatures in self._unsigned:
            for (table, i), sig in zip(rows, signatures.result(), strict=True):
                table[i] = (*table[i][:-1], sig)
        self._unsigned.clear()

    def _report(self, until: float, n_late: int, late_cost: float, last: bool) -> StepOutput:
        if last:  # what never reached a final block: pending
            for i in range(len(self.submitted)):
                if self.height[i] < 0:
                    self._tx_row(self.submitted[i], self._unix(self.submit_tau[i], np.nan, np.nan), -1, 0,
                                 "pending")  # fmt: skip
            for tau, _, tx in sorted(self.queue):
                self._tx_row(tx, self._unix(tau, np.nan, np.nan), -1, 0, "pending")
            self.queue.clear()
        self._fill_signatures()
        final = [t for t in self.executed_final if math.isfinite(t)]
        p50, f50 = percentiles_50_95(self.executed_latency), percentiles_50_95(final)
        self.executed_final, self.executed_latency = [], []
        return StepOutput(
            throughput_tps=len(final) / self.step_s,
            latency_p50_s=p50[0], latency_p95_s=p50[1],
            finality_p50_s=f50[0], finality_p95_s=f50[1],
            energy_kwh=self.engine.power_w * self.step_s / 3.6e6,
            n_late=n_late, late_cost=late_cost,
            tx=self.tx_rows.take(), blocks=self.block_rows.take(), votes=self.vote_rows.take(),
            unsigned=self._take_unsigned(),
        )  # fmt: skip

    def _take_unsigned(self) -> list[tuple[str, int, int, bytes]]:
        out, self._elsewhere = self._elsewhere, []
        return out
