"""Ledger consensus mechanisms (PoW, Ethereum-like PoS, Tendermint-style BFT) as SimPy processes.

Each mechanism consumes a transaction arrival stream (``submit_s``) and returns when every transaction
was included in a block and when it became final. Transactions enter the network at a random honest node
and reach a block producer after the one-way network delay; mempools are FIFO, so a block takes the longest
prefix of pending transactions that have reached its producer (up to ``block_tx_limit``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import simpy

from .network import DEFAULT_ONE_WAY_DELAY_S, DEFAULT_REGIONS, Network

TX_SIZE_BYTES = 250  # typical simple transfer
HEADER_BYTES = 80  # Bitcoin block header; used for all mechanisms


@dataclass(frozen=True)
class TxTiming:
    """Per-tx times (s) in submission order; ``final_s`` NaN if not final, ``height`` -1 if not included."""

    submit_s: np.ndarray
    include_s: np.ndarray
    final_s: np.ndarray
    height: np.ndarray


class Block(NamedTuple):
    """One produced block; ``stale`` blocks are off the winning chain."""

    height: int
    time_s: float
    proposer: int
    n_tx: int
    size_bytes: int
    stale: bool


@dataclass(frozen=True)
class LedgerRun:
    """Result of one consensus simulation."""

    tx: TxTiming
    blocks: list[Block]
    finalized_height: int
    energy_j: float
    notes: str


class _Mempool:
    """FIFO mempool view: which pending transactions have reached a producer."""

    def __init__(self, submit_s: np.ndarray, net: Network, honest: np.ndarray, rng: np.random.Generator):
        self.submit_s = submit_s
        origin = rng.choice(np.flatnonzero(honest), size=len(submit_s)) if honest.any() else np.zeros(0, int)
        self.origin = origin.astype(int) if len(submit_s) else np.zeros(0, int)
        self.net = net

    def take(self, lo: int, producer: int, t_s: float, limit: int) -> int:
        """End index of the block's transaction range ``[lo, hi)`` built by ``producer`` at ``t_s``."""
        up = min(int(np.searchsorted(self.submit_s, t_s, side="right")), lo + limit)
        if up <= lo:
            return lo
        avail_s = self.submit_s[lo:up] + self.net.base_delay_s[self.origin[lo:up], producer]
        late = avail_s > t_s
        return lo + int(np.argmax(late)) if late.any() else up

    def next_available_s(self, lo: int, producer: int) -> float:
        """Time the transaction ``lo`` reaches ``producer`` (inf if none left)."""
        if lo >= len(self.submit_s):
            return np.inf
        return float(self.submit_s[lo] + self.net.base_delay_s[self.origin[lo], producer])


def _make_network(
    env: simpy.Environment,
    rng: np.random.Generator,
    validators: int,
    regions: list[str] | None,
    one_way_delay_s: np.ndarray | None,
    jitter_sd_s: float,
    bandwidth_mbps: float,
) -> Network:
    regions = list(DEFAULT_REGIONS) if regions is None else regions
    delay = DEFAULT_ONE_WAY_DELAY_S if one_way_delay_s is None else one_way_delay_s
    return Network(env, rng, regions, delay, jitter_sd_s, bandwidth_mbps, validators)


def _timing(
    submit_s: np.ndarray, ranges: list[tuple[int, int, float, float, int]], duration_s: float
) -> TxTiming:
    """Per-tx timing from ``(lo, hi, include_s, final_s, height)`` ranges; final after the end is NaN."""
    n = len(submit_s)
    include_s, final_s, height = np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, dtype=int)
    for lo, hi, t_inc, t_fin, h in ranges:
        include_s[lo:hi], final_s[lo:hi], height[lo:hi] = t_inc, t_fin, h
    final_s[final_s > duration_s] = np.nan
    return TxTiming(submit_s, include_s, final_s, height)


# --------------------------------------------------------------------------------------------------- PoW
def simulate_pow(
    submit_s: np.ndarray,
    *,
    validators: int,
    rng: np.random.Generator,
    duration_s: float,
    block_interval_s: float = 600.0,
    hash_share: np.ndarray | None = None,
    confirmations: int = 6,
    block_tx_limit: int = 4000,
    hash_rate_hps: float = 1e20,
    j_per_hash: float = 3e-11,
    regions: list[str] | None = None,
    one_way_delay_s: np.ndarray | None = None,
    jitter_sd_s: float = 0.005,
    bandwidth_mbps: float = 100.0,
) -> LedgerRun:
    """Nakamoto proof of work: exponential block times, forks from propagation delay, longest chain wins.

    Defaults: ``hash_rate_hps`` 1e20 (~100 EH/s, Bitcoin 2021-22) and ``j_per_hash`` 3e-11 (~30 J/TH,
    Antminer S19 class), so the network draws ~3 GW; ``block_tx_limit`` 4000 (~1 MB of 250-byte txs).
    A miner mines on the highest block it has heard of (ties: the first seen).
    """
    env = simpy.Environment()
    net = _make_network(env, rng, validators, regions, one_way_delay_s, jitter_sd_s, bandwidth_mbps)
    share = (
        np.full(validators, 1.0 / validators)
        if hash_share is None
        else np.asarray(hash_share) / np.sum(hash_share)
    )
    pool = _Mempool(submit_s, net, np.ones(validators, bool), rng)
    # block 0 is genesis, known by everyone at t = 0
    parent, height_of, time_of, miner_of, hi_of = [-1], [0], [0.0], [-1], [0]
    tip = np.zeros(validators, dtype=int)
    tip_height, tip_seen_s = np.zeros(validators, dtype=int), np.zeros(validators)
    pending: list[tuple[int, np.ndarray]] = []  # (block, arrival_s per miner) not yet heard of by all

    def hear(t_s: float) -> None:
        """Update every miner's tip with the blocks that reached it by ``t_s``."""
        keep = []
        for b, arrival_s in pending:
            heard = arrival_s <= t_s
            better = heard & (
                (height_of[b] > tip_height) | ((height_of[b] == tip_height) & (arrival_s < tip_seen_s))
            )
            tip[better], tip_height[better], tip_seen_s[better] = b, height_of[b], arrival_s[better]
            if not heard.all():
                keep.append((b, arrival_s))
        pending[:] = keep

    def mine() -> Any:
        while True:
            yield env.timeout(rng.exponential(block_interval_s))
            if env.now > duration_s:
                return
            hear(env.now)
            m = int(rng.choice(validators, p=share))
            p = int(tip[m])
            lo = hi_of[p]
            hi = pool.take(lo, m, env.now, block_tx_limit)
            b = len(parent)
            parent.append(p)
            height_of.append(height_of[p] + 1)
            time_of.append(env.now)
            miner_of.append(m)
            hi_of.append(hi)
            pending.append((b, net.broadcast(m, HEADER_BYTES + (hi - lo) * TX_SIZE_BYTES)))
            hear(env.now)

    env.process(mine())
    env.run()
    heights = np.asarray(height_of)
    best = int(np.flatnonzero(heights == heights.max())[0])  # ties: the first found
    chain = [best]
    while parent[chain[-1]] > 0:
        chain.append(parent[chain[-1]])
    chain.reverse()  # winning chain, heights 1..H
    on_chain = np.zeros(len(parent), bool)
    on_chain[chain] = True
    blocks = [
        Block(height_of[b], time_of[b], miner_of[b], hi_of[b] - hi_of[parent[b]],
              HEADER_BYTES + (hi_of[b] - hi_of[parent[b]]) * TX_SIZE_BYTES, not on_chain[b])
        for b in range(1, len(parent))
    ]  # fmt: skip
    ranges = []
    for k, b in enumerate(chain):
        deep = k + confirmations - 1
        t_fin = time_of[chain[deep]] if deep < len(chain) else np.inf
        ranges.append((hi_of[parent[b]], hi_of[b], time_of[b], t_fin, height_of[b]))
    n_stale = len(blocks) - len(chain)
    notes = f"pow: {len(blocks)} blocks, {n_stale} stale ({n_stale / max(len(blocks), 1):.2%})"
    return LedgerRun(
        _timing(submit_s, ranges, duration_s),
        blocks,
        max(len(chain) - confirmations + 1, 0),
        hash_rate_hps * j_per_hash * duration_s,
        notes,
    )


# --------------------------------------------------------------------------------------------------- PoS
def simulate_pos(
    submit_s: np.ndarray,
    *,
    validators: int,
    rng: np.random.Generator,
    duration_s: float,
    slot_s: float = 12.0,
    slots_per_epoch: int = 32,
    stake: np.ndarray | None = None,
    faulty: int = 0,
    missed_slot_prob: float = 0.0,
    block_tx_limit: int = 1400,
    node_power_w: float = 100.0,
    regions: list[str] | None = None,
    one_way_delay_s: np.ndarray | None = None,
    jitter_sd_s: float = 0.005,
    bandwidth_mbps: float = 100.0,
) -> LedgerRun:
    """Ethereum-like proof of stake with Casper FFG finality.

    A block at slot ``s`` is covered by the checkpoint of epoch ``c = ceil(s / slots_per_epoch)``; that
    checkpoint is justified at the end of epoch ``c`` and finalized at the end of epoch ``c + 1`` if honest
    stake >= 2/3 (faulty validators neither propose nor attest; no inactivity leak). So a transaction in an
    epoch's first slot is final after 2 epochs (768 s), one in its last slot after ~3 epochs.
    ``block_tx_limit`` 1400 ~ 30 Mgas / 21 kgas; ``node_power_w`` 100 W per validator node (assumption).
    """
    env = simpy.Environment()
    net = _make_network(env, rng, validators, regions, one_way_delay_s, jitter_sd_s, bandwidth_mbps)
    stake = np.ones(validators) if stake is None else np.asarray(stake, dtype=float)
    honest = np.ones(validators, bool)
    honest[rng.choice(validators, size=faulty, replace=False)] = False
    justifies = stake[honest].sum() >= 2.0 / 3.0 * stake.sum()
    pool = _Mempool(submit_s, net, honest, rng)
    epoch_s = slot_s * slots_per_epoch
    blocks: list[Block] = []
    ranges: list[tuple[int, int, float, float, int]] = []
    lo = 0
    mean_delay_s = net.base_delay_s.mean()

    def slots() -> Any:
        nonlocal lo
        slot = 0
        while slot * slot_s <= duration_s:
            proposer = int(rng.choice(validators, p=stake / stake.sum()))
            if honest[proposer] and rng.random() >= missed_slot_prob:
                hi = pool.take(lo, proposer, env.now, block_tx_limit)
                checkpoint = -(-slot // slots_per_epoch)
                t_fin = (checkpoint + 2) * epoch_s + mean_delay_s if justifies else np.inf
                h = len(blocks) + 1
                blocks.append(
                    Block(h, env.now, proposer, hi - lo, HEADER_BYTES + (hi - lo) * TX_SIZE_BYTES, False)
                )
                ranges.append((lo, hi, env.now, t_fin, h))
                lo = hi
            slot += 1
            yield env.timeout(slot_s)

    env.process(slots())
    env.run()
    final = [h for _, _, _, t_fin, h in ranges if t_fin <= duration_s]
    notes = "pos: " + (
        "checkpoints justified" if justifies else "faulty stake >= 1/3: no checkpoint justified"
    )
    return LedgerRun(
        _timing(submit_s, ranges, duration_s),
        blocks,
        max(final, default=0),
        validators * node_power_w * duration_s,
        notes,
    )


# --------------------------------------------------------------------------------------------------- BFT
NIL, PHANTOM = -1, -2  # vote for no block; a block id only faulty validators vote for


def _quorum_s(arrival_s: np.ndarray, power: np.ndarray, need: float) -> np.ndarray:
    """Per receiver (column), the time the received voting power first exceeds ``need`` (inf if never)."""
    order = np.argsort(arrival_s, axis=0)
    t_sorted = np.take_along_axis(arrival_s, order, axis=0)
    cum = np.cumsum(power[order], axis=0)
    ok = (cum > need) & np.isfinite(t_sorted)
    t = t_sorted[np.argmax(ok, axis=0), np.arange(arrival_s.shape[1])]
    return np.where(ok.any(axis=0), t, np.inf)


def simulate_bft(
    submit_s: np.ndarray,
    *,
    validators: int,
    rng: np.random.Generator,
    duration_s: float,
    voting_power: np.ndarray | None = None,
    faulty: int = 0,
    behaviour: Literal["silent", "equivocating"] = "silent",
    timeout_propose_s: float = 3.0,
    timeout_prevote_s: float = 1.0,
    timeout_precommit_s: float = 1.0,
    timeout_delta_s: float = 0.5,
    timeout_commit_s: float = 1.0,
    create_empty_blocks: bool = True,
    block_tx_limit: int = 10000,
    node_power_w: float = 100.0,
    regions: list[str] | None = None,
    one_way_delay_s: np.ndarray | None = None,
    jitter_sd_s: float = 0.005,
    bandwidth_mbps: float = 100.0,
) -> LedgerRun:
    """Tendermint-style BFT: heights of rounds propose -> prevote -> precommit, commit on > 2/3 precommits.

    Timeouts default to CometBFT's (``timeout_commit_s`` 1 s is the pause before the next height). Locking
    follows Tendermint (lock on a polka, re-propose the valid value). Faulty validators are either
    ``"silent"`` (send nothing) or ``"equivocating"``: as proposers they send block A to half the honest
    validators and B to the rest, and then echo to each validator its own vote (to split the network);
    otherwise they vote for a phantom block (to stall it). A validator counts the first vote it receives
    from each validator (CometBFT). If two honest validators ever commit different blocks at a height (only
    possible with faulty power >= 1/3) the run stops there, that height is not final, and notes report it.
    """
    env = simpy.Environment()
    net = _make_network(env, rng, validators, regions, one_way_delay_s, jitter_sd_s, bandwidth_mbps)
    n = validators
    power = np.ones(n) if voting_power is None else np.asarray(voting_power, dtype=float)
    need = 2.0 / 3.0 * power.sum()
    honest = np.ones(n, bool)
    honest[rng.choice(n, size=faulty, replace=False)] = False
    hon = np.flatnonzero(honest)
    equivocating = behaviour == "equivocating"
    pool = _Mempool(submit_s, net, honest, rng)
    priority = np.zeros(n)
    blocks: list[Block] = []
    ranges: list[tuple[int, int, float, float, int]] = []
    content: dict[int, tuple[int, int, float, int]] = {}  # block id -> (lo, hi, proposed_s, proposer)
    notes = [""]
    next_id = [0]

    def next_proposer() -> int:
        """CometBFT weighted round-robin (proposer priority)."""
        priority[:] += power
        p = int(np.argmax(priority))
        priority[p] -= power.sum()
        return p

    def new_block(lo: int, proposer: int, t_s: float) -> int:
        bid = next_id[0]
        next_id[0] += 1
        content[bid] = (lo, pool.take(lo, proposer, t_s, block_tx_limit), t_s, proposer)
        return bid

    def votes(send_s: np.ndarray, own: np.ndarray, echo: bool) -> tuple[np.ndarray, np.ndarray]:
        """Arrival times [j, i] and the value validator i receives from j."""
        t_send = np.where(honest, send_s, np.inf)
        if equivocating and np.isfinite(send_s[hon]).any():
            t_send[~honest] = np.min(send_s[hon])
        arrival = net.all_to_all(t_send, 0.0)
        value = np.broadcast_to(own[:, None], (n, n)).copy()
        value[~honest] = own[None, :] if echo else PHANTOM
        return arrival, value

    def height_process() -> Any:
        height, lo = 1, 0
        enter = np.zeros(n)
        while np.min(enter[hon]) <= duration_s:
            locked_v, locked_r = np.full(n, NIL), np.full(n, -1)
            valid_v, valid_r = np.full(n, NIL), np.full(n, -1)
            polkas: set[tuple[int, int]] = set()
            rnd = 0
            while True:
                p = next_proposer()
                if rnd == 0 and not create_empty_blocks:
                    enter += max(0.0, pool.next_available_s(lo, p) - enter[p]) if honest[p] else 0.0
                    if not np.isfinite(enter).all():
                        return
                t_prop = timeout_propose_s + rnd * timeout_delta_s
                # propose
                prop_v, prop_vr = np.full(n, NIL), -1
                if honest[p]:
                    v = int(valid_v[p]) if valid_r[p] >= 0 else new_block(lo, p, float(enter[p]))
                    prop_v[:], prop_vr = v, int(valid_r[p])
                    size = HEADER_BYTES + (content[v][1] - content[v][0]) * TX_SIZE_BYTES
                    prop_at = net.broadcast(p, size, float(enter[p]))
                elif equivocating:
                    t0 = float(np.min(enter[hon]))
                    a, b = new_block(lo, p, t0), new_block(lo, p, t0)
                    prop_v[:] = a
                    prop_v[hon[len(hon) // 2 :]] = b
                    prop_at = net.broadcast(p, HEADER_BYTES, t0)
                else:
                    prop_at = np.full(n, np.inf)
                # prevote
                pv_s, pv_v = np.full(n, np.inf), np.full(n, NIL)
                for i in hon:
                    deadline = enter[i] + t_prop
                    if prop_at[i] <= deadline:
                        v = int(prop_v[i])
                        if prop_vr < 0:
                            ok = locked_r[i] < 0 or locked_v[i] == v
                        else:
                            ok = (prop_vr, v) in polkas and (locked_r[i] <= prop_vr or locked_v[i] == v)
                        pv_s[i], pv_v[i] = max(enter[i], prop_at[i]), v if ok else NIL
                    else:
                        pv_s[i] = deadline
                split = equivocating and not honest[p]
                arrival, value = votes(pv_s, pv_v, split)
                any_s = _quorum_s(arrival, power, need)
                t_pv = timeout_prevote_s + rnd * timeout_delta_s
                pc_s, pc_v = np.where(honest, any_s + t_pv, np.inf), np.full(n, NIL)
                for v in {int(x) for x in pv_v[hon] if x >= 0}:
                    polka_s = _quorum_s(np.where(value == v, arrival, np.inf), power, need)
                    if np.isfinite(polka_s[hon]).any():
                        polkas.add((rnd, v))
                    for i in hon:
                        if polka_s[i] <= any_s[i] + t_pv:
                            pc_s[i], pc_v[i] = max(pv_s[i], polka_s[i]), v
                            locked_v[i], locked_r[i] = v, rnd
                        if np.isfinite(polka_s[i]):
                            valid_v[i], valid_r[i] = v, rnd
                # precommit
                arrival, value = votes(pc_s, pc_v, split)
                any_pc_s = _quorum_s(arrival, power, need)
                commit_s, commit_v = np.full(n, np.inf), np.full(n, NIL)
                for v in {int(x) for x in pc_v[hon] if x >= 0}:
                    c_s = _quorum_s(np.where(value == v, arrival, np.inf), power, need)
                    first = honest & (c_s < commit_s)
                    commit_s[first], commit_v[first] = c_s[first], v
                committed = {int(x) for x in commit_v[hon] if x >= 0}
                if len(committed) > 1:
                    notes[0] = (
                        f"bft: SAFETY LOST at height {height} (faulty power >= 1/3 equivocating): "
                        "conflicting commit certificates; height not final, run stopped"
                    )
                    return
                end_s = np.where(honest, np.minimum(commit_s, any_pc_s + timeout_precommit_s), np.inf)
                if not np.isfinite(end_s[hon]).all():
                    notes[0] = f"bft: no quorum at height {height} round {rnd} (faulty power >= 1/3): halted"
                    return
                yield env.timeout(max(0.0, float(np.max(end_s[hon])) - env.now))
                if committed:
                    v = committed.pop()
                    # validators that missed the certificate catch up from one that has it
                    catch = np.where(honest, commit_s, np.inf)
                    commit_s = np.minimum(catch, np.min(net.all_to_all(catch, 0.0), axis=0))
                    b_lo, b_hi, t_inc, proposer = content[v]
                    size = HEADER_BYTES + (b_hi - b_lo) * TX_SIZE_BYTES
                    blocks.append(Block(height, t_inc, proposer, b_hi - b_lo, size, False))
                    fin = commit_s[pool.origin[b_lo:b_hi]] if b_hi > b_lo else np.zeros(0)
                    for k in range(b_lo, b_hi):
                        ranges.append((k, k + 1, t_inc, float(fin[k - b_lo]), height))
                    lo, height = b_hi, height + 1
                    enter = commit_s + timeout_commit_s
                    enter[~honest] = np.inf
                    content.clear()
                    break
                enter = np.where(honest, end_s, np.inf)
                rnd += 1

    env.process(height_process())
    env.run()
    last = [h for _, _, _, t_fin, h in ranges if t_fin <= duration_s]
    last_block = max((b.height for b in blocks if b.time_s <= duration_s), default=0)
    summary = notes[0] or f"bft: {len(blocks)} heights committed, no conflicting commit"
    return LedgerRun(
        _timing(submit_s, ranges, duration_s),
        blocks,
        max(max(last, default=0), last_block),
        n * node_power_w * duration_s,
        summary,
    )


def simulate(
    mechanism: Literal["pow", "pos", "bft"],
    submit_s: np.ndarray,
    *,
    validators: int,
    rng: np.random.Generator,
    duration_s: float,
    **params: Any,
) -> LedgerRun:
    """Run one consensus mechanism over ``duration_s`` for the (sorted) submission times ``submit_s``."""
    submit = np.sort(np.asarray(submit_s, dtype=float))
    runners: dict[str, Callable[..., LedgerRun]] = {
        "pow": simulate_pow,
        "pos": simulate_pos,
        "bft": simulate_bft,
    }
    return runners[mechanism](submit, validators=validators, rng=rng, duration_s=duration_s, **params)
