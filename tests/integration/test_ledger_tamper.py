"""A tamper corpus: each case alters a run's /ledger tables; verify-ledger names the first bad block or tx.

The cases are the probe's of issue 13 (plain edits, and consistent rewrites with every Merkle root and
hash recomputed, which only the signatures the rewriter does not hold can expose), plus the certificates.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

import cosim
import cosim.results
from cosim.cli import main
from cosim.errors import ResultsError
from cosim.models.ledger import audit
from cosim.models.ledger.chain import KeyPair, Transaction, canonical
from cosim.results import verify_ledger
from tests.ledger_tamper import insert, read, rehash, take, write

Case = Callable[[h5py.File], str]  # alters the open file, returns what the problem must name


def _busy_block(f: h5py.File, kind: str = "trade") -> int:
    """Height of the first block holding at least two ``kind`` transactions with an ok receipt."""
    t = read(f, "tx")
    ok = (t["kind"] == kind.encode()) & (t["status"] == b"ok") & (t["height"] > 0)
    heights, counts = np.unique(t["height"][ok], return_counts=True)
    return int(heights[counts >= 2][0])


def _row(f: h5py.File, height: int, kind: str = "trade") -> int:
    """Row of the first ``kind`` transaction in block ``height``."""
    t = read(f, "tx")
    return int(np.flatnonzero((t["height"] == height) & (t["kind"] == kind.encode()))[0])


def _set_tx(column: str, value: Callable[[object], object]) -> Case:
    def case(f: h5py.File) -> str:
        h = _busy_block(f)
        i = _row(f, h)
        f[f"ledger/tx/{column}"][i] = value(f[f"ledger/tx/{column}"][i])
        return f"block {h}: receipts root mismatch"

    return case


def _set_block(column: str, delta: int) -> Case:
    def case(f: h5py.File) -> str:
        h = _busy_block(f)
        f[f"ledger/blocks/{column}"][h] += delta
        return f"block {h}: {column}"

    return case


def _delete_last_block(with_votes: bool) -> Case:
    def case(f: h5py.File) -> str:
        b, t, v = read(f, "blocks"), read(f, "tx"), read(f, "votes")
        last = int(b["height"][~b["stale"]].max())
        write(f, "blocks", take(b, b["height"] != last))
        write(f, "tx", take(t, t["height"] != last))
        if with_votes:
            write(f, "votes", take(v, v["height"] != last))
        return f"the chain ends at {last - 1}"

    return case


def _replay(f: h5py.File) -> str:
    """A final trade copied into a later block, roots and hashes recomputed."""
    b, t = read(f, "blocks"), read(f, "tx")
    h = _busy_block(f)
    i, later = _row(f, h), h + 2
    rows = np.flatnonzero(t["height"] == later)
    row = {c: v[i] for c, v in t.items()} | {"height": later, "include_s": b["time_s"][later]}
    row |= {"final_s": b["final_s"][later], "submit_s": b["time_s"][later] - 1.0}
    t = insert(t, int(rows[-1]) + 1 if len(rows) else len(t["height"]), row)
    rehash(b, t, later)
    write(f, "tx", t)
    write(f, "blocks", b)
    return f"tx {t['tx_id'][i].decode()}: appears twice"


def _censor(f: h5py.File) -> str:
    """A trade removed from its block, roots and hashes recomputed."""
    b, t = read(f, "blocks"), read(f, "tx")
    h = _busy_block(f)
    t = take(t, np.arange(len(t["height"])) != _row(f, h))
    rehash(b, t, h)
    write(f, "tx", t)
    write(f, "blocks", b)
    return f"block {h}: bad proposer signature"


def _fake_meter(f: h5py.File) -> str:
    """A 1 GWh reading signed by an unregistered key, added to a block, roots and hashes recomputed."""
    b, t = read(f, "blocks"), read(f, "tx")
    owner = next(iter(json.loads(f["ledger/genesis"].asstr()[0])["meter_keys"]))
    key = KeyPair.generate(bytes(range(32)))
    tx = Transaction("meter", {"owner": owner, "step": 3, "wh": 10**9}, key.public_hex, 0).signed(key)
    h = _busy_block(f)
    rows = np.flatnonzero(t["height"] == h)
    row = {
        "tx_id": tx.tx_id, "kind": "meter", "sender": tx.sender, "nonce": 0, "payload": canonical(tx.payload),
        "signatures": canonical([list(s) for s in tx.signatures]), "submit_s": b["time_s"][h] - 1.0,
        "include_s": b["time_s"][h], "final_s": b["final_s"][h], "height": h, "gas_used": 60_000,
        "status": "ok",
    }  # fmt: skip
    t = insert(t, int(rows[-1]) + 1, row)
    rehash(b, t, h)
    write(f, "tx", t)
    write(f, "blocks", b)
    return f"tx {tx.tx_id}: meter reading signed by a key not registered"


def _before_genesis(f: h5py.File) -> str:
    """Block 1 (and its transactions) moved to an hour before genesis, roots and hashes recomputed."""
    b, t = read(f, "blocks"), read(f, "tx")
    at = b["time_s"][0] - 3600.0
    b["time_s"][1] = at
    mine = t["height"] == 1
    t["include_s"][mine], t["submit_s"][mine] = at, at - 1.0
    rehash(b, t, 1)
    write(f, "tx", t)
    write(f, "blocks", b)
    return "block 1: time"


def _new_proposer(f: h5py.File) -> str:
    """A block credited to another validator, hashes recomputed."""
    b, t = read(f, "blocks"), read(f, "tx")
    h = _busy_block(f)
    b["proposer"][h] = (b["proposer"][h] + 1) % 16
    rehash(b, t, h)
    write(f, "blocks", b)
    return f"block {h}: bad proposer signature"


def _thin_certificate(f: h5py.File) -> str:
    """A BFT commit certificate cut to 2/3 of the validators or fewer."""
    v, h = read(f, "votes"), _busy_block(f)
    commit = np.flatnonzero((v["height"] == h) & (v["kind"] == b"commit"))
    write(f, "votes", take(v, np.setdiff1d(np.arange(len(v["height"])), commit[: len(commit) - 10])))
    return f"block {h} commit: signatures of 10 validators"


def _foreign_genesis(f: h5py.File) -> str:
    """The genesis registry lists another meter key for an account."""
    genesis = json.loads(f["ledger/genesis"].asstr()[0])
    owner = next(iter(genesis["meter_keys"]))
    genesis["meter_keys"][owner] = KeyPair.generate(bytes(32)).public_hex
    f["ledger/genesis"][0] = canonical(genesis).decode()
    return "block 0: receipts root mismatch"


def _ragged_votes(f: h5py.File) -> str:
    """A vote column shorter than the others: reported, not a traceback."""
    sig = f["ledger/votes/signature"]
    sig.resize(sig.shape[0] - 1, axis=0)
    return "ledger tables malformed"


def _no_head(f: h5py.File) -> str:
    v = read(f, "votes")
    write(f, "votes", take(v, v["kind"] != b"head"))
    return "signed head names block none"


CORPUS: dict[str, Case] = {
    "tx submit_s": _set_tx("submit_s", lambda x: x - 60.0),  # type: ignore[operator]
    "tx final_s": _set_tx("final_s", lambda x: x + 60.0),  # type: ignore[operator]
    "receipt status": _set_tx("status", lambda _: b"double_spend"),
    "receipt gas_used": _set_tx("gas_used", lambda x: x + 1),  # type: ignore[operator]
    "block n_tx": _set_block("n_tx", 1),
    "block gas_used": _set_block("gas_used", -1000),
    "last block and its tx deleted": _delete_last_block(with_votes=False),
    "last block, its tx and votes deleted": _delete_last_block(with_votes=True),
    "rehashed: tx replayed into a later block": _replay,
    "rehashed: trade censored": _censor,
    "rehashed: 1 GWh reading by an unregistered meter key": _fake_meter,
    "rehashed: block time before genesis": _before_genesis,
    "rehashed: another proposer": _new_proposer,
    "commit certificate thinned": _thin_certificate,
    "genesis meter key replaced": _foreign_genesis,
    "head signatures removed": _no_head,
    "vote columns of unequal length": _ragged_votes,
}


@pytest.mark.parametrize(
    ("slice_rows", "keep_steps"), [(16_384, None), (7, None), (7, 3)], ids=["whole", "sliced", "sliced-keep3"]
)
@pytest.mark.parametrize("name", list(CORPUS))
def test_tamper_corpus_names_the_first_bad_block_or_tx(
    default_run: cosim.RunSummary,
    tmp_path: Path,
    name: str,
    slice_rows: int,
    keep_steps: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each tampering of a stored BFT chain is reported, naming the block or transaction altered; also when
    the transactions are read a few rows at a time (slices cut through the blocks), and when the check holds
    the contract state of the last 3 intervals only."""
    monkeypatch.setattr(cosim.results, "LEDGER_SLICE_ROWS", slice_rows)
    tampered = tmp_path / "tampered.h5"
    shutil.copy(default_run.path, tampered)
    with h5py.File(tampered, "r+") as f:
        expected = CORPUS[name](f)
    ok, problem, *_ = verify_ledger(tampered, keep_steps)
    assert not ok and expected in str(problem), problem
    keep = [] if keep_steps is None else ["--keep-steps", str(keep_steps)]
    assert main(["verify-ledger", str(tampered), *keep]) == 1


def test_untouched_default_run_verifies(
    default_run: cosim.RunSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The honest chain passes every check, with one commit certificate per block and a signed head, also
    read a few rows at a time."""
    ok, problem, n_blocks, n_tx = verify_ledger(default_run.path)
    assert (ok, problem) == (True, None) and n_blocks > 10 and n_tx > 100
    monkeypatch.setattr(cosim.results, "LEDGER_SLICE_ROWS", 7)
    assert verify_ledger(default_run.path) == (True, None, n_blocks, n_tx)
    assert verify_ledger(default_run.path, keep_steps=3) == (True, None, n_blocks, n_tx)
    with h5py.File(default_run.path) as f:
        v = read(f, "votes")
        commit = v["height"][v["kind"] == b"commit"]
        assert set(commit.tolist()) == set(range(1, n_blocks))
        assert (np.bincount(commit)[1:] == 11).all()  # 16 equal validators: 11 > 2/3 of the power
        assert (v["kind"] == b"head").sum() == 11


def test_a_horizon_holds_a_few_intervals_and_stops_clearly_when_too_short(
    default_run: cosim.RunSummary, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """With ``keep_steps`` the re-executed contracts hold the readings and trade references of the last 3
    to 6 intervals at the end (all without), and a horizon of 0 intervals, too short for the readings that
    follow the next interval's trades, stops the check with a message (exit 2), not a verdict."""
    held: dict[int | None, Any] = {}
    run = audit._Checker.run

    def keeping(self: Any, live: list[int], complete: bool) -> None:
        run(self, live, complete)
        held[self.keep_steps] = self.g.ledger

    monkeypatch.setattr(audit._Checker, "run", keeping)
    for keep in (None, 3):
        assert verify_ledger(default_run.path, keep)[:2] == (True, None)

    def intervals(ledger: Any) -> set[int]:
        readings = {int(k.split("|")[1]) for k in ledger.readings_wh}
        return readings | {int(k.split("|")[2]) for k in ledger.trade_refs}

    every, kept = intervals(held[None]), intervals(held[3])
    assert kept and min(kept) >= max(every) - 6 > min(every)
    assert len(held[3].promises) < len(held[None].promises)
    with pytest.raises(audit.HorizonError, match="refers to delivery interval .* verify again"):
        verify_ledger(default_run.path, keep_steps=0)
    assert main(["verify-ledger", str(default_run.path), "--keep-steps", "0"]) == 2
    assert "verify again with more intervals kept" in capsys.readouterr().err


def test_a_chain_too_big_for_memory_is_refused_before_the_check(
    default_run: cosim.RunSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When every interval's state would not fit in memory the check refuses at once, naming --keep-steps;
    with it, the same chain is checked."""
    monkeypatch.setattr(cosim.results, "AUDIT_BYTES_PER_TX", 10**15)
    with pytest.raises(ResultsError, match="transactions; checking it .* --keep-steps N"):
        verify_ledger(default_run.path)
    assert verify_ledger(default_run.path, keep_steps=3)[:2] == (True, None)


STANDALONE = """
name: alone
seed: 3
time: {{start: 2024-01-01T00:00:00, duration: {duration}, step: 1min}}
ledger:
  consensus: {consensus}
  validators: 8
  workload: {{tx_per_s: 1, accounts: 20}}
{extra}"""


def _standalone(tmp_path: Path, consensus: str, duration: str, extra: str = "") -> Path:
    path = tmp_path / f"{consensus}.yaml"
    path.write_text(STANDALONE.format(consensus=consensus, duration=duration, extra=extra))
    return cosim.run(path, out=tmp_path / f"{consensus}.h5").path


def test_pow_blocks_carry_a_proof_of_work(tmp_path: Path) -> None:
    """PoW headers meet the stored target; a block re-hashed with another nonce is named."""
    path = _standalone(tmp_path, "pow", "30min", "  block_interval_s: 60\n  confirmations: 3\n")
    assert verify_ledger(path)[:2] == (True, None)
    with h5py.File(path, "r+") as f:
        bits = json.loads(f["ledger/genesis"].asstr()[0])["pow_bits"]
        b = read(f, "blocks")
        live = b["hash"][~b["stale"]][1:]
        assert bits == 8 and len(live) > 5
        assert all(int(h, 16) >> (256 - bits) == 0 for h in live.astype(str))
        b["nonce"][3] += 1  # no longer meets the target
        rehash(b, read(f, "tx"), 3)
        write(f, "blocks", b)
    ok, problem, *_ = verify_ledger(path)
    assert not ok and "block 3: no proof of work" in str(problem), problem


def test_pos_checkpoints_carry_the_attestations_that_finalised_them(tmp_path: Path) -> None:
    """A final PoS epoch ends in a block attested by > 2/3 of the stake; without them it is named."""
    path = _standalone(tmp_path, "pos", "1h")
    assert verify_ledger(path)[:2] == (True, None)
    with h5py.File(path, "r+") as f:
        v, b = read(f, "votes"), read(f, "blocks")
        attested = np.unique(v["height"][v["kind"] == b"attest"])
        final = b["height"][np.isfinite(b["final_s"]) & (b["height"] > 0)]
        assert len(attested) > 3 and set(attested) <= set(final) and final.max() == attested.max()
        write(f, "votes", take(v, v["height"] != attested[1]))
    ok, problem, *_ = verify_ledger(path)
    assert not ok and "no attested checkpoint ends its epoch" in str(problem), problem
