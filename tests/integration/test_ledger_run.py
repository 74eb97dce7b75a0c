"""The ledger in the co-simulation: HDF5 contract, trades match the market, verify-ledger, standalone mode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import cosim
from cosim.cli import main
from cosim.results import verify_ledger

SERIES = (
    "throughput_tps",
    "latency_p50_s",
    "latency_p95_s",
    "finality_p50_s",
    "finality_p95_s",
    "energy_kwh",
)
STANDALONE = """
name: alone
seed: 1
time: {{start: 2024-01-01T00:00:00, duration: {duration}, step: 1min}}
ledger:
  consensus: {consensus}
  validators: {validators}
  faulty: {faulty}
  workload: {{tx_per_s: 5, accounts: 50}}
"""


def test_default_study_records_its_p2p_trades_on_a_bft_chain(default_run: cosim.RunSummary) -> None:
    """Every peer-to-peer pair of /market/trades is one final on-chain trade of the same energy, on time."""
    with h5py.File(default_run.path) as f:
        T = len(f["time"])
        for name in SERIES:
            assert f[f"ledger/{name}"].shape == (T,), name
        assert f["ledger"].attrs["consensus"] == "bft" and f["ledger"].attrs["permissioned"]
        assert f["ledger/n_late"][:].sum() == 0  # BFT is final in seconds, gate closure is 15 min
        assert np.nanmax(f["ledger/finality_p95_s"][:]) < 10.0
        m = f["market/trades"]
        p2p = (m["buyer"][:] >= 0) & (m["seller"][:] >= 0)
        pairs = {
            (s, b, se)
            for s, b, se in zip(m["step"][:][p2p], m["buyer"][:][p2p], m["seller"][:][p2p], strict=True)
        }
        tx = f["ledger/tx"]
        kind = tx["kind"].asstr()[:]
        trade = kind == "trade"
        assert trade.sum() == len(pairs)
        wh = [json.loads(p)["wh"] for p in tx["payload"].asstr()[:][trade]]
        assert sum(wh) == pytest.approx(m["mwh"][:][p2p].sum() * 1e6, abs=len(wh))
        assert set(tx["status"].asstr()[:][trade]) == {"ok"}
        final = tx["final_s"][:][trade]
        assert (final <= tx["submit_s"][:][trade] + 900.0).all()
        blocks = f["ledger/blocks"]
        assert blocks["height"][0] == 0 and not blocks["stale"][:].any()
        assert blocks["n_tx"][:].sum() == (tx["height"][:] >= 0).sum()


def test_verify_ledger_names_the_altered_block_or_transaction(
    default_run: cosim.RunSummary, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """An untouched file verifies; one changed payload byte or one changed block time is named."""
    assert verify_ledger(default_run.path)[:2] == (True, None)
    assert main(["verify-ledger", str(default_run.path)]) == 0
    tampered = tmp_path / "tampered.h5"
    shutil.copy(default_run.path, tampered)
    with h5py.File(tampered, "r+") as f:
        payload = f["ledger/tx/payload"]
        i = int(np.flatnonzero(f["ledger/tx/kind"].asstr()[:] == "trade")[3])
        victim = f["ledger/tx/tx_id"].asstr()[i]
        payload[i] = payload.asstr()[i].replace('"wh":', '"wh":1')
    ok, problem, *_ = verify_ledger(tampered)
    assert not ok and victim in str(problem)
    assert main(["verify-ledger", str(tampered)]) == 1
    assert "ALTERED" in capsys.readouterr().err
    shutil.copy(default_run.path, tampered)
    with h5py.File(tampered, "r+") as f:
        f["ledger/blocks/time_s"][5] += 1.0
    assert verify_ledger(tampered)[:2] == (False, "block 5: hash mismatch")
    shutil.copy(default_run.path, tampered)
    with h5py.File(tampered, "r+") as f:  # move a transaction to another block
        height = f["ledger/tx/height"]
        i = int(np.flatnonzero(height[:] > 1)[0])
        height[i] = height[i] - 1
    ok, problem, *_ = verify_ledger(tampered)
    assert not ok and "merkle root mismatch" in str(problem)


@pytest.mark.parametrize(("consensus", "validators"), [("bft", 16), ("pos", 32), ("pow", 50)])
def test_standalone_workload(tmp_path: Path, consensus: str, validators: int) -> None:
    """The ledger alone on 5 tx/s: everything submitted before the finality lag is final, at the right lag."""
    path = tmp_path / "alone.yaml"
    extra = {"pow": "  block_interval_s: 60\n  confirmations: 3\n"}.get(consensus, "")
    text = STANDALONE.format(consensus=consensus, validators=validators, faulty=0, duration="40min")
    path.write_text(text + extra)
    summary = cosim.run(path, out=tmp_path / "alone.h5")
    lag_s = {"bft": (0.5, 3.0), "pos": (768.0, 1200.0), "pow": (100.0, 400.0)}[consensus]
    with h5py.File(summary.path) as f:
        assert "grid" not in f and "market" not in f
        submit, final = f["ledger/tx/submit_s"][:], f["ledger/tx/final_s"][:]
        start = f["time"][0]
        assert len(submit) == pytest.approx(5 * 2400, rel=0.05)
        early = submit < start + 2400 - 2 * lag_s[1]
        assert np.isfinite(final[early]).all()
        assert f["ledger/throughput_tps"][:].sum() * 60 == np.isfinite(final).sum()
        assert lag_s[0] <= np.nanmedian(final - submit) <= lag_s[1]
        assert f["ledger/energy_kwh"][0] > 0
    assert verify_ledger(summary.path)[0]


def test_standalone_bft_with_a_third_faulty_finalizes_nothing(tmp_path: Path) -> None:
    """f >= n/3 silent validators: no block is final, and the notes say so."""
    path = tmp_path / "halt.yaml"
    path.write_text(STANDALONE.format(consensus="bft", validators=4, faulty=2, duration="10min"))
    summary = cosim.run(path, out=tmp_path / "halt.h5")
    with h5py.File(summary.path) as f:
        assert (f["ledger/throughput_tps"][:] == 0).all()
        assert "1/3" in f["ledger"].attrs["notes"]
        assert len(f["ledger/blocks/height"]) == 1  # genesis only
        assert set(f["ledger/tx/status"].asstr()[:]) == {"pending"}
