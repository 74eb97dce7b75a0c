"""Ledger consensus mechanisms (PoW, Ethereum-like PoS, Tendermint-style BFT) as resumable SimPy engines.

An engine takes transactions as they are submitted (``submit``), advances its clock (``run``) and lists the
blocks whose fate is decided (``blocks``: canonical blocks in height order, with stale PoW blocks between)
and per-transaction timings (``ranges``). Transactions enter the network at a random honest node and reach a
block producer after the one-way network delay; mempools are FIFO, so a block takes the longest prefix of
pending transactions that have reached its producer (up to ``block_tx_limit``). A run can be driven step
by step (the co-simulation) or in one go (``simulate``); both give the same result for the same seed as
long as every transaction is submitted before the engine's clock passes its submission time.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import simpy

from .network import DEFAULT_ONE_WAY_DELAY_S, DEFAULT_REGIONS, GossipNetwork, GossipParams, Network

TX_SIZE_BYTES = 250  # typical simple transfer
HEADER_BYTES = 80  # Bitcoin block header; used for all mechanisms
Mechanism = Literal["pow", "pos", "bft"]


@dataclass(frozen=True)
class TxTiming:
    """Per-tx times (s) in submission order; ``final_s`` NaN if not final, ``height`` -1 if not included."""

    submit_s: np.ndarray
    include_s: np.ndarray
    final_s: np.ndarray
    height: np.ndarray


class Block(NamedTuple):
    """One produced block: transactions ``[first_tx, first_tx + n_tx)``; ``stale`` blocks lost a fork."""

    height: int
    time_s: float
    proposer: int
    n_tx: int
    size_bytes: int
    stale: bool
    first_tx: int = 0
    final_s: float = np.inf  # when the block became final (inf: not final)
    signers: tuple[int, ...] = ()  # BFT: validators whose precommits form the commit certificate


class Range(NamedTuple):
    """Transactions ``[lo, hi)`` included at ``include_s`` in block ``height``, final at ``final_s`` (one time
    for all, or an array of ``hi - lo``, one per transaction)."""

    lo: int
    hi: int
    include_s: float
    final_s: float | np.ndarray
    height: int


@dataclass(frozen=True)
class LedgerRun:
    """Result of one consensus simulation."""

    tx: TxTiming
    blocks: list[Block]
    finalized_height: int
    energy_j: float
    notes: str


class _Mempool:
    """FIFO mempool: submission times and entry nodes of the transactions, by their index in submission order.

    The engine says which transactions it may still ask about (``forget``: those below an index are in
    decided blocks); they are dropped when the arrays would otherwise grow, so the memory is in proportion
    to the transactions not yet in a block, not to the run (MVLV: ~11,000 a step).
    """

    def __init__(self, net: Network, honest: np.ndarray, rng: np.random.Generator) -> None:
        self.net, self.rng = net, rng
        self.entry_nodes = np.flatnonzero(honest) if honest.any() else np.zeros(1, int)
        self._submit_s, self._origin, self.n = np.empty(1024), np.empty(1024, int), 0
        self.base = 0  # index of the transaction at position 0 of the arrays
        self._last_s = -np.inf  # the latest submission time
        self._needed = 0  # the engine asks about no transaction below this index

    def submit_at(self, i: int) -> float:
        """Submission time of transaction ``i`` (s; inf if not submitted yet)."""
        return float(self._submit_s[i - self.base]) if i < self.n else np.inf

    def origin(self, lo: int, hi: int) -> np.ndarray:
        """Entry node of each transaction ``lo .. hi - 1``."""
        return self._origin[lo - self.base : hi - self.base]

    def forget(self, before: int) -> None:
        """The engine no longer asks about the transactions below index ``before``."""
        self._needed = max(self._needed, before)

    def add(self, submit_s: np.ndarray) -> None:
        """Append transactions submitted at ``submit_s`` (sorted, not before the last one)."""
        k = len(submit_s)
        if k == 0:
            return
        if submit_s[0] < self._last_s or (np.diff(submit_s) < 0).any():
            raise ValueError("transactions must be submitted in time order")
        self._last_s = float(submit_s[-1])
        live = self.n - self.base
        if live + k > len(self._submit_s) and self._needed > self.base:  # drop what is forgotten first
            cut = self._needed - self.base
            self._submit_s[: live - cut] = self._submit_s[cut:live]
            self._origin[: live - cut] = self._origin[cut:live]
            self.base, live = self._needed, live - cut
        if live + k > len(self._submit_s):
            size = max(2 * len(self._submit_s), live + k)
            self._submit_s = np.resize(self._submit_s, size)
            self._origin = np.resize(self._origin, size)
        self._submit_s[live : live + k] = submit_s
        self._origin[live : live + k] = self.rng.choice(self.entry_nodes, size=k)
        self.n += k

    def take(self, lo: int, producer: int, t_s: float, limit: int) -> int:
        """End index of the block's transaction range ``[lo, hi)`` built by ``producer`` at ``t_s``."""
        live = self._submit_s[: self.n - self.base]
        up = min(int(np.searchsorted(live, t_s, side="right")) + self.base, lo + limit)
        if up <= lo:
            return lo
        a, b = lo - self.base, up - self.base
        avail_s = self._submit_s[a:b] + self.net.base_delay_s[self._origin[a:b], producer]
        late = avail_s > t_s
        return lo + int(np.argmax(late)) if late.any() else up

    def next_available_s(self, lo: int, producer: int) -> float:
        """Time the transaction ``lo`` reaches ``producer`` (inf if not submitted yet)."""
        if lo >= self.n:
            return np.inf
        i = lo - self.base
        return float(self._submit_s[i] + self.net.base_delay_s[self._origin[i], producer])


class Consensus:
    """Common part of the engines: clock, network, mempool, decided blocks and transaction ranges.

    Parameters
    ----------
    validators : number of validators (miners for PoW)
    rng : the run's random generator
    faulty : number of Byzantine validators, drawn at random
    regions, one_way_delay_s, jitter_sd_s, bandwidth_mbps : the network (see ``Network``); default: five
        regions with the delays of ``network.DEFAULT_ONE_WAY_DELAY_S``
    gossip : relay over a random peer graph with these parameters (``GossipNetwork``; its jitter and
        bandwidth replace ``jitter_sd_s`` and ``bandwidth_mbps``); None: direct broadcast (``Network``)
    graph_seed : seed of the peer graph (None: drawn from ``rng``); gossip only
    """

    mechanism: Mechanism

    def __init__(
        self,
        validators: int,
        rng: np.random.Generator,
        *,
        faulty: int = 0,
        regions: list[str] | None = None,
        one_way_delay_s: np.ndarray | None = None,
        jitter_sd_s: float = 0.005,
        bandwidth_mbps: float = 100.0,
        gossip: GossipParams | None = None,
        graph_seed: int | None = None,
    ) -> None:
        if not 0 <= faulty <= validators:
            raise ValueError(f"faulty must be between 0 and validators ({validators})")
        self.env = simpy.Environment()
        self.rng, self.n = rng, validators
        regions = list(DEFAULT_REGIONS) if regions is None else regions
        delay = DEFAULT_ONE_WAY_DELAY_S if one_way_delay_s is None else one_way_delay_s
        self.net: Network
        if gossip is None:
            self.net = Network(self.env, rng, regions, delay, jitter_sd_s, bandwidth_mbps, validators)
        else:
            seed = int(rng.integers(2**63)) if graph_seed is None else graph_seed
            graph_rng = np.random.default_rng(seed)
            self.net = GossipNetwork(self.env, rng, regions, delay, gossip, validators, graph_rng)
        self.honest = np.ones(validators, bool)
        if faulty:
            self.honest[rng.choice(validators, size=faulty, replace=False)] = False
        # entry nodes from a stream of their own, so submitting in pieces draws the same nodes
        self.pool = _Mempool(self.net, self.honest, np.random.default_rng(rng.integers(2**63)))
        self.blocks: list[Block] = []  # decided since the last ``drain`` (all of them if never drained)
        self.ranges: list[Range] = []
        self.n_blocks = self.n_stale = 0  # blocks decided so far, and how many of them stale
        self.power_w = 0.0  # mean electric power of the whole validator set (W)
        self.notes = ""
        self._arrival = self.env.event()

    def submit(self, submit_s: np.ndarray) -> None:
        """Add transactions submitted at ``submit_s`` (sorted, not before the engine's clock)."""
        submit_s = np.asarray(submit_s, dtype=float)
        if len(submit_s) and submit_s[0] < self.env.now:
            raise ValueError(f"submission at {submit_s[0]} s is before the clock ({self.env.now} s)")
        self.pool.add(submit_s)
        if len(submit_s) and not self._arrival.triggered:
            self._arrival.succeed()

    def arrival(self) -> simpy.Event:
        """Event that fires at the next submission."""
        if self._arrival.triggered:
            self._arrival = self.env.event()
        return self._arrival

    def run(self, until_s: float) -> None:
        """Advance the clock to ``until_s`` (events at exactly ``until_s`` run on the next call)."""
        if until_s > self.env.now:
            self.env.run(until=until_s)

    def close(self) -> None:
        """End of the run: decide the blocks still open (PoW: the best chain wins)."""

    def drain(self) -> tuple[list[Block], list[Range]]:
        """The blocks and ranges decided since the last call, forgotten here: a caller that takes them as
        they come (the co-simulation's ledger) keeps the engine's memory bounded. ``blocks`` and ``ranges``
        then hold only what was decided since."""
        out = self.blocks, self.ranges
        self.blocks, self.ranges = [], []
        return out

    def finalized_height(self, at_s: float) -> int:
        """Highest canonical block final by ``at_s`` (among the blocks not drained)."""
        return max((b.height for b in self.blocks if not b.stale and b.final_s <= at_s), default=0)

    def _decide(self, block: Block, tx_final_s: float | np.ndarray) -> None:
        """Record a canonical block and the timings of its transactions."""
        self._add(block)
        lo, hi = block.first_tx, block.first_tx + block.n_tx
        final = float(tx_final_s) if np.ndim(tx_final_s) == 0 else np.asarray(tx_final_s, dtype=float)
        self.ranges.append(Range(lo, hi, block.time_s, final, block.height))

    def _add(self, block: Block) -> None:
        """Record a decided block (canonical or stale)."""
        self.blocks.append(block)
        self.n_blocks += 1
        self.n_stale += block.stale


def _size(n_tx: int) -> int:
    return HEADER_BYTES + n_tx * TX_SIZE_BYTES


# --------------------------------------------------------------------------------------------------- PoW
class ProofOfWork(Consensus):
    """Nakamoto proof of work: exponential block times, forks from propagation delay, longest chain wins.

    A miner mines on the highest block it has heard of (ties: the first seen). A block is final when the
    tallest chain so far (ties: the first found) holds it ``confirmations - 1`` blocks deep; its competitors
    at that height are then stale. A reorganisation deeper than that is counted in the notes (probabilistic
    finality). Faulty miners withhold (mine nothing), so honest blocks come ``1 / honest share`` slower.
    Defaults: ``hash_rate_hps`` 1e20 (~100 EH/s, Bitcoin 2021-22), ``j_per_hash`` 3e-11 (~30 J/TH,
    Antminer S19 class), so the network draws ~3 GW; ``block_tx_limit`` 4000 (~1 MB of 250-byte txs).
    """

    mechanism = "pow"

    def __init__(
        self,
        validators: int,
        rng: np.random.Generator,
        *,
        block_interval_s: float = 600.0,
        hash_share: np.ndarray | None = None,
        confirmations: int = 6,
        block_tx_limit: int = 4000,
        hash_rate_hps: float = 1e20,
        j_per_hash: float = 3e-11,
        **common: Any,
    ) -> None:
        super().__init__(validators, rng, **common)
        share = np.full(validators, 1.0) if hash_share is None else np.asarray(hash_share, dtype=float)
        share = share / share.sum()
        honest_share = float(share[self.honest].sum())
        self.share = np.where(self.honest, share, 0.0) / max(honest_share, 1e-300)
        self.interval_s = block_interval_s / honest_share if honest_share > 0 else np.inf
        self.confirmations, self.block_tx_limit = confirmations, block_tx_limit
        self.power_w = hash_rate_hps * j_per_hash
        # block 0 is genesis, known by everyone at t = 0
        self.parent, self.height_of, self.time_of, self.miner_of, self.hi_of = [-1], [0], [0.0], [-1], [0]
        self.at_height: dict[int, list[int]] = {0: [0]}
        self.tip = np.zeros(validators, dtype=int)
        self.tip_height, self.tip_seen_s = np.zeros(validators, dtype=int), np.zeros(validators)
        self.pending: list[tuple[int, np.ndarray]] = []  # (block, arrival_s per miner) not heard by all
        self.best, self.final_block, self.n_deep_reorgs = 0, 0, 0
        if np.isfinite(self.interval_s):
            self.env.process(self._mine())
        self._update_notes()

    def _hear(self, t_s: float) -> None:
        """Update every miner's tip with the blocks that reached it by ``t_s``."""
        keep = []
        for b, arrival_s in self.pending:
            heard = arrival_s <= t_s
            h = self.height_of[b]
            better = heard & (
                (h > self.tip_height) | ((h == self.tip_height) & (arrival_s < self.tip_seen_s))
            )
            self.tip[better], self.tip_height[better], self.tip_seen_s[better] = b, h, arrival_s[better]
            if not heard.all():
                keep.append((b, arrival_s))
        self.pending[:] = keep

    def _mine(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        while True:
            yield env.timeout(self.rng.exponential(self.interval_s))
            self._hear(env.now)
            m = int(self.rng.choice(self.n, p=self.share))
            p = int(self.tip[m])
            lo = self.hi_of[p]
            hi = self.pool.take(lo, m, env.now, self.block_tx_limit)
            b = len(self.parent)
            self.parent.append(p)
            self.height_of.append(self.height_of[p] + 1)
            self.time_of.append(env.now)
            self.miner_of.append(m)
            self.hi_of.append(hi)
            if self.height_of[b] <= self.height_of[self.final_block]:  # on a branch already lost
                self._add(Block(self.height_of[b], env.now, m, hi - lo, _size(hi - lo), True, lo))
            else:
                self.at_height.setdefault(self.height_of[b], []).append(b)
            self.pending.append((b, self.net.broadcast(m, _size(hi - lo))))
            self._hear(env.now)
            # a later block's parent is a miner's tip or a block not heard by all yet: its range starts at
            # that block's end, so nothing below the lowest of these is asked about again
            self.pool.forget(min(self.hi_of[t] for t in {*self.tip.tolist(), *(t for t, _ in self.pending)}))
            if self.height_of[b] > self.height_of[self.best]:
                self.best = b
                self._finalize(self.height_of[b] - self.confirmations + 1, env.now)

    def _finalize(self, height: int, final_s: float) -> None:
        """Decide every height up to ``height`` along the best chain (final at ``final_s``)."""
        first = self.height_of[self.final_block] + 1
        if height < first:
            return
        path, b = [], self.best
        while self.height_of[b] >= first:
            if self.height_of[b] <= height:
                path.append(b)
            b = self.parent[b]
        if b != self.final_block:
            self.n_deep_reorgs += 1
        for b in reversed(path):
            lo = self.hi_of[self.parent[b]]
            n_tx = self.hi_of[b] - lo
            for s in self.at_height[self.height_of[b]]:
                if s != b:
                    lo_s, n_s = self.hi_of[self.parent[s]], self.hi_of[s] - self.hi_of[self.parent[s]]
                    self._add(
                        Block(
                            self.height_of[s], self.time_of[s], self.miner_of[s], n_s, _size(n_s), True, lo_s
                        )
                    )
            del self.at_height[self.height_of[b]]
            block = Block(self.height_of[b], self.time_of[b], self.miner_of[b], n_tx, _size(n_tx), False, lo)
            self._decide(block._replace(final_s=final_s), final_s)
            self.final_block = b
        self._update_notes()

    def close(self) -> None:
        """Decide the rest of the best chain (not final) and mark its competitors stale."""
        self._finalize(self.height_of[self.best], np.inf)

    def _update_notes(self) -> None:
        rate = self.n_stale / max(self.n_blocks, 1)
        self.notes = f"pow: {self.n_blocks} blocks decided, {self.n_stale} stale ({rate:.2%})"
        if self.n_deep_reorgs:
            self.notes += f"; {self.n_deep_reorgs} reorganisations deeper than {self.confirmations} blocks"


# --------------------------------------------------------------------------------------------------- PoS
class ProofOfStake(Consensus):
    """Ethereum-like proof of stake with Casper FFG finality.

    A block at slot ``s`` is covered by the checkpoint of epoch ``c = ceil(s / slots_per_epoch)``; that
    checkpoint is justified at the end of epoch ``c`` and finalized at the end of epoch ``c + 1`` if honest
    stake >= 2/3 (faulty validators neither propose nor attest; no inactivity leak). So a transaction in an
    epoch's first slot is final after 2 epochs (768 s), one in its last slot after ~3 epochs.
    While no transaction is pending the slots' empty blocks are skipped (counted in ``n_idle_slots``), so a
    quiet year costs nothing. ``block_tx_limit`` 1400 ~ 30 Mgas / 21 kgas; ``node_power_w`` 100 W per
    validator node (assumption).
    """

    mechanism = "pos"

    def __init__(
        self,
        validators: int,
        rng: np.random.Generator,
        *,
        slot_s: float = 12.0,
        slots_per_epoch: int = 32,
        stake: np.ndarray | None = None,
        missed_slot_prob: float = 0.0,
        block_tx_limit: int = 1400,
        node_power_w: float = 100.0,
        **common: Any,
    ) -> None:
        super().__init__(validators, rng, **common)
        stake = np.ones(validators) if stake is None else np.asarray(stake, dtype=float)
        self.p_propose = stake / stake.sum()
        self.justifies = stake[self.honest].sum() >= 2.0 / 3.0 * stake.sum()
        self.slot_s, self.slots_per_epoch = slot_s, slots_per_epoch
        self.missed_slot_prob, self.block_tx_limit = missed_slot_prob, block_tx_limit
        self.power_w = validators * node_power_w
        self.n_idle_slots = 0
        self.notes = "pos: " + (
            "checkpoints justified" if self.justifies else "faulty stake >= 1/3: no checkpoint justified"
        )
        self.env.process(self._slots())

    def _slots(self) -> Generator[simpy.Event, Any, None]:
        env, lo, slot = self.env, 0, 0
        epoch_s = self.slot_s * self.slots_per_epoch
        mean_delay_s = float(self.net.base_delay_s.mean())
        while True:
            next_s = self.pool.submit_at(lo)
            if np.isinf(next_s):  # idle: wait for a submission
                yield self.arrival()
                continue
            skip_to = max(slot, int(np.ceil(max(next_s, env.now) / self.slot_s - 1e-9)))
            self.n_idle_slots += skip_to - slot  # slots with nothing submitted: their blocks are empty
            slot = skip_to
            if slot * self.slot_s > env.now:
                yield env.timeout(slot * self.slot_s - env.now)
            proposer = int(self.rng.choice(self.n, p=self.p_propose))
            if self.honest[proposer] and self.rng.random() >= self.missed_slot_prob:
                hi = self.pool.take(lo, proposer, env.now, self.block_tx_limit)
                checkpoint = -(-slot // self.slots_per_epoch)
                t_fin = (checkpoint + 2) * epoch_s + mean_delay_s if self.justifies else np.inf
                block = Block(self.n_blocks + 1, env.now, proposer, hi - lo, _size(hi - lo), False, lo, t_fin)
                self._decide(block, t_fin)
                lo = hi
                self.pool.forget(lo)
            slot += 1


# --------------------------------------------------------------------------------------------------- BFT
NIL, PHANTOM = -1, -2  # vote for no block; a block id only faulty validators vote for


def certificate(voters: np.ndarray, power: np.ndarray, need: float) -> tuple[int, ...]:
    """The first ``voters`` (by index) whose voting power together exceeds ``need`` (all if it never does)."""
    voters = np.sort(np.asarray(voters, dtype=int))
    enough = np.cumsum(power[voters]) > need
    k = int(np.argmax(enough)) + 1 if enough.any() else len(voters)
    return tuple(voters[:k].tolist())


def equal_quorum(power: np.ndarray, need: float) -> int | None:
    """With equal voting powers, how many votes first exceed ``need`` (``len(power) + 1`` if all never do);
    None if the powers differ. The cumulative sum is the one ``_quorum_s`` takes, in any order of voters."""
    if not len(power) or not (power == power[0]).all():
        return None
    enough = np.cumsum(power) > need
    return int(enough.argmax()) + 1 if enough.any() else len(power) + 1


def _quorum_s(arrival_s: np.ndarray, power: np.ndarray, need: float, k: int | None = None) -> np.ndarray:
    """Per receiver (column), the time the received voting power first exceeds ``need`` (inf if never).

    ``k``: ``equal_quorum(power, need)`` when the powers are equal; the time is then the k-th earliest
    arrival (one sort instead of a sort, a gather and a cumulative sum per column: the same result).
    """
    if k is not None:
        if k > len(arrival_s):
            return np.full(arrival_s.shape[1], np.inf)
        t = np.sort(arrival_s, axis=0)[k - 1]
        return np.where(t < np.inf, t, np.inf)  # (a NaN never arrives, as in the general case)
    order = np.argsort(arrival_s, axis=0)
    t_sorted = np.take_along_axis(arrival_s, order, axis=0)
    cum = np.cumsum(power[order], axis=0)
    ok = (cum > need) & np.isfinite(t_sorted)
    t = t_sorted[np.argmax(ok, axis=0), np.arange(arrival_s.shape[1])]
    return np.where(ok.any(axis=0), t, np.inf)


class Tendermint(Consensus):
    """Tendermint-style BFT: heights of rounds propose -> prevote -> precommit, commit on > 2/3 precommits.

    Timeouts default to CometBFT's (``timeout_commit_s`` 1 s is the pause before the next height). Locking
    follows Tendermint (lock on a polka, re-propose the valid value). Faulty validators are either
    ``"silent"`` (send nothing) or ``"equivocating"``: as proposers they send block A to half the honest
    validators and B to the rest, and then echo to each validator its own vote (to split the network);
    otherwise they vote for a phantom block (to stall it). A validator counts the first vote it receives
    from each validator (CometBFT). If two honest validators ever commit different blocks at a height (only
    possible with faulty power >= 1/3) the engine stops there, that height is not final, and notes report
    it. With ``create_empty_blocks=False`` (CometBFT option) a height starts only once a transaction is
    pending. A block is final when the first honest validator commits it; a transaction is final when the
    validator it entered through commits.
    """

    mechanism = "bft"

    def __init__(
        self,
        validators: int,
        rng: np.random.Generator,
        *,
        voting_power: np.ndarray | None = None,
        behaviour: Literal["silent", "equivocating"] = "silent",
        timeout_propose_s: float = 3.0,
        timeout_prevote_s: float = 1.0,
        timeout_precommit_s: float = 1.0,
        timeout_delta_s: float = 0.5,
        timeout_commit_s: float = 1.0,
        create_empty_blocks: bool = True,
        block_tx_limit: int = 10000,
        node_power_w: float = 100.0,
        **common: Any,
    ) -> None:
        super().__init__(validators, rng, **common)
        self.power = np.ones(validators) if voting_power is None else np.asarray(voting_power, dtype=float)
        self.need = 2.0 / 3.0 * self.power.sum()
        self._total_power = self.power.sum()
        self._k = equal_quorum(self.power, self.need)  # votes in a quorum if the powers are equal, else None
        self.equivocating = behaviour == "equivocating"
        self.timeouts = (timeout_propose_s, timeout_prevote_s, timeout_precommit_s, timeout_delta_s)
        self.timeout_commit_s, self.create_empty_blocks = timeout_commit_s, create_empty_blocks
        self.block_tx_limit = block_tx_limit
        self.power_w = validators * node_power_w
        self.priority = np.zeros(validators)
        self._all_honest = bool(self.honest.all())
        self.halted = False
        self.notes = "bft: no conflicting commit"
        self.env.process(self._heights())

    def _next_proposer(self) -> int:
        """CometBFT weighted round-robin (proposer priority)."""
        self.priority += self.power
        p = int(self.priority.argmax())
        self.priority[p] -= self._total_power
        return p

    def _votes(self, send_s: np.ndarray, own: np.ndarray, echo: bool) -> tuple[np.ndarray, np.ndarray]:
        """Arrival times [j, i] and the value validator i receives from j (one column, the same for every i,
        when all validators are honest)."""
        if self._all_honest:
            return self.net.all_to_all(send_s, 0.0), own[:, None]
        honest, hon, n = self.honest, np.flatnonzero(self.honest), self.n
        t_send = np.where(honest, send_s, np.inf)
        if self.equivocating and np.isfinite(send_s[hon]).any():
            t_send[~honest] = send_s[hon].min()
        arrival = self.net.all_to_all(t_send, 0.0)
        value = np.broadcast_to(own[:, None], (n, n)).copy()
        value[~honest] = own[None, :] if echo else PHANTOM
        return arrival, value

    def _quorum_for(self, v: int, value: np.ndarray, arrival: np.ndarray, any_s: np.ndarray) -> np.ndarray:
        """Per receiver, when the votes received for ``v`` first make a quorum; ``any_s``: the quorum time
        of all votes, the answer when every vote is for ``v``."""
        is_v = value == v
        if is_v.all():
            return any_s
        return _quorum_s(np.where(is_v, arrival, np.inf), self.power, self.need, self._k)

    def _stop(self, note: str) -> None:
        self.halted, self.notes = True, note

    def _heights(self) -> Generator[simpy.Event, Any, None]:
        env, n, honest, power, need, k = self.env, self.n, self.honest, self.power, self.need, self._k
        hon = np.flatnonzero(honest)
        t_propose, t_prevote, t_precommit, t_delta = self.timeouts
        content: dict[int, tuple[int, int, float, int]] = {}  # block id -> (lo, hi, proposed_s, proposer)
        height, lo, next_id = 1, 0, 0
        enter = np.where(honest, 0.0, np.inf)
        while True:
            locked_v, locked_r = np.full(n, NIL), np.full(n, -1)
            valid_v, valid_r = np.full(n, NIL), np.full(n, -1)
            polkas: set[tuple[int, int]] = set()
            rnd = 0
            while True:
                p = self._next_proposer()
                if rnd == 0 and not self.create_empty_blocks and honest[p]:
                    while np.isinf(t_avail := self.pool.next_available_s(lo, p)):
                        yield self.arrival()
                    enter[hon] += max(0.0, t_avail - enter[p])
                start_s = float(enter[p] if honest[p] else enter[hon].min())
                if start_s > env.now:  # the proposer builds its block when it enters the round
                    yield env.timeout(start_s - env.now)
                t_prop = t_propose + rnd * t_delta
                # propose
                prop_v, prop_vr = np.full(n, NIL), -1
                if honest[p]:
                    if valid_r[p] >= 0:
                        v = int(valid_v[p])
                    else:
                        v, next_id = next_id, next_id + 1
                        content[v] = (lo, self.pool.take(lo, p, start_s, self.block_tx_limit), start_s, p)
                    prop_v[:], prop_vr = v, int(valid_r[p])
                    prop_at = self.net.broadcast(p, _size(content[v][1] - content[v][0]), start_s)
                elif self.equivocating:
                    a, b, next_id = next_id, next_id + 1, next_id + 2
                    hi = self.pool.take(lo, p, start_s, self.block_tx_limit)
                    content[a] = content[b] = (lo, hi, start_s, p)
                    prop_v[:] = a
                    prop_v[hon[len(hon) // 2 :]] = b
                    prop_at = self.net.broadcast(p, HEADER_BYTES, start_s)
                else:
                    prop_at = np.full(n, np.inf)
                # prevote (honest validators, all at once): for the proposal if it came by the deadline and
                # the lock allows it, else nil at the deadline
                deadline = enter + t_prop
                got = honest & (prop_at <= deadline)
                if prop_vr < 0:
                    ok = (locked_r < 0) | (locked_v == prop_v)
                else:
                    polka_vs = [v for r, v in polkas if r == prop_vr]
                    ok = np.isin(prop_v, polka_vs) & ((locked_r <= prop_vr) | (locked_v == prop_v))
                pv_s = np.where(got, np.maximum(enter, prop_at), np.where(honest, deadline, np.inf))
                pv_v = np.where(got & ok, prop_v, NIL)
                split = self.equivocating and not honest[p]
                arrival, value = self._votes(pv_s, pv_v, split)
                any_s = _quorum_s(arrival, power, need, k)
                t_pv = t_prevote + rnd * t_delta
                pc_s, pc_v = np.where(honest, any_s + t_pv, np.inf), np.full(n, NIL)
                for v in {x for x in pv_v[hon].tolist() if x >= 0}:
                    polka_s = self._quorum_for(v, value, arrival, any_s)
                    if np.isfinite(polka_s[hon]).any():
                        polkas.add((rnd, v))
                    lock = honest & (polka_s <= any_s + t_pv)  # a polka in time: precommit it and lock
                    pc_s[lock], pc_v[lock] = np.maximum(pv_s, polka_s)[lock], v
                    locked_v[lock], locked_r[lock] = v, rnd
                    seen = honest & np.isfinite(polka_s)
                    valid_v[seen], valid_r[seen] = v, rnd
                # precommit
                arrival, value = self._votes(pc_s, pc_v, split)
                any_pc_s = _quorum_s(arrival, power, need, k)
                commit_s, commit_v = np.full(n, np.inf), np.full(n, NIL)
                for v in {x for x in pc_v[hon].tolist() if x >= 0}:
                    c_s = self._quorum_for(v, value, arrival, any_pc_s)
                    first = honest & (c_s < commit_s)
                    commit_s[first], commit_v[first] = c_s[first], v
                committed = {x for x in commit_v[hon].tolist() if x >= 0}
                if len(committed) > 1:
                    self._stop(
                        f"bft: SAFETY LOST at height {height} (faulty power >= 1/3 equivocating): "
                        "conflicting commit certificates; height not final, run stopped"
                    )
                    return
                end_s = np.where(honest, np.minimum(commit_s, any_pc_s + t_precommit), np.inf)
                if not np.isfinite(end_s[hon]).all():
                    self._stop(f"bft: no quorum at height {height} round {rnd} (faulty power >= 1/3): halted")
                    return
                yield env.timeout(max(0.0, float(end_s[hon].max()) - env.now))
                if committed:
                    v = committed.pop()
                    # validators that missed the certificate catch up from one that has it
                    catch = np.where(honest, commit_s, np.inf)
                    commit_s = np.minimum(catch, self.net.all_to_all(catch, 0.0).min(axis=0))
                    b_lo, b_hi, t_inc, proposer = content[v]
                    tx_final_s = commit_s[self.pool.origin(b_lo, b_hi)]
                    block = Block(height, t_inc, proposer, b_hi - b_lo, _size(b_hi - b_lo), False, b_lo)
                    # the certificate: precommits for v (faulty ones too when they echoed it)
                    voters = np.flatnonzero((honest & (pc_v == v)) | (~honest & split))
                    signers = certificate(voters, power, need)
                    self._decide(
                        block._replace(final_s=float(commit_s[hon].min()), signers=signers), tx_final_s
                    )
                    lo, height = b_hi, height + 1
                    self.pool.forget(lo)
                    enter = np.where(honest, commit_s + self.timeout_commit_s, np.inf)
                    content.clear()
                    break
                enter = np.where(honest, end_s, np.inf)
                rnd += 1


ENGINES: dict[str, type[Consensus]] = {"pow": ProofOfWork, "pos": ProofOfStake, "bft": Tendermint}


def _timing(submit_s: np.ndarray, ranges: list[Range], duration_s: float) -> TxTiming:
    """Per-tx timing from the ranges; a finality after ``duration_s`` is NaN."""
    n = len(submit_s)
    include_s, final_s, height = np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, dtype=int)
    for lo, hi, t_inc, t_fin, h in ranges:
        include_s[lo:hi], final_s[lo:hi], height[lo:hi] = t_inc, t_fin, h
    final_s[final_s > duration_s] = np.nan
    return TxTiming(submit_s, include_s, final_s, height)


def simulate(
    mechanism: Mechanism,
    submit_s: np.ndarray,
    *,
    validators: int,
    rng: np.random.Generator,
    duration_s: float,
    **params: Any,
) -> LedgerRun:
    """Run one consensus mechanism over ``duration_s`` for the submission times ``submit_s`` in one go."""
    submit = np.sort(np.asarray(submit_s, dtype=float))
    engine = ENGINES[mechanism](validators, rng, **params)
    engine.submit(submit)
    engine.run(duration_s)
    engine.close()
    blocks = [b for b in engine.blocks if b.time_s <= duration_s]
    return LedgerRun(
        _timing(submit, engine.ranges, duration_s),
        blocks,
        engine.finalized_height(duration_s),
        engine.power_w * duration_s,
        engine.notes,
    )
