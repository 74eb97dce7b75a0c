"""Tests for cosim.analysis.ledger_report on synthetic run files with a /ledger group."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.analysis import ledger_report
from cosim.analysis.ledger_report import (
    COMPARE_FIG,
    LABELS,
    LEDGER_FIGS,
    energy_per_final_tx_kwh,
    load_ledger,
    mean_gas_per_trade,
    stale_rate,
)
from cosim.analysis.report import compare_runs, write_report
from tests.unit.test_report import PNG_MAGIC, _make_run, _pngs, _summary

T0 = 1_704_067_200  # first step start of _make_run (Unix s)
NAN = np.nan
# ten transactions: (kind, status, submit - T0, include - submit, final - submit, gas used)
TXS = [
    ("trade", "ok", 0.0, 2.0, 30.0, 100_000),
    ("trade", "ok", 10.0, 4.0, 40.0, 120_000),
    ("trade", "out_of_gas", 20.0, 6.0, 50.0, 140_000),
    ("trade", "pending", 30.0, NAN, NAN, 0),  # not included: left out of gas per trade
    ("meter", "ok", 40.0, 8.0, 60.0, 50_000),
    ("meter", "ok", 50.0, 10.0, NAN, 52_000),  # included, not final
    ("settle", "ok", 60.0, 12.0, 70.0, 70_000),
    ("settle", "replay", 70.0, NAN, NAN, 0),
    ("cancel", "ok", 80.0, 14.0, 80.0, 40_000),
    ("transfer", "ok", 90.0, 0.0, 90.0, 30_000),  # zero latency: drawn at the log-axis floor
]
STALE = [False, True, False, False, True, False]  # 4 canonical, 2 stale
ENERGY_KWH_PER_STEP = 0.5
LATE = {3: (2, 5.25), 10: (1, 1.5)}  # step: (late trades, cost $)


def _hex(s: str) -> str:
    """A 64-hex-digit id."""
    return hashlib.sha256(s.encode()).hexdigest()


def _strs(g: h5py.Group, name: str, values: list[str]) -> None:
    """A variable-length string column (also with 0 rows)."""
    g.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())


def _add_ledger(
    path: Path,
    txs: list[tuple[str, str, float, float, float, int]] = TXS,
    stale: list[bool] = STALE,
    consensus: str = "pos",
    series: bool = True,
) -> Path:
    """Add a /ledger group following the report's HDF5 contract to a run file."""
    with h5py.File(path, "a") as f:
        t = f["time"].shape[0]
        g = f.create_group("ledger")
        g.attrs.update(consensus=consensus, validators=4, faulty=1, permissioned=True,
                       notes=f"{consensus}: synthetic <ledger> & co", nakamoto_coefficient=2,
                       late_rule="cancel")  # fmt: skip
        n_late, late_cost = np.zeros(t, dtype=np.int64), np.zeros(t)
        for k, (n, cost) in LATE.items():
            if k < t:
                n_late[k], late_cost[k] = n, cost
        fill = np.full(t, NAN)
        g.create_dataset("throughput_tps", data=np.linspace(0.0, 2.0, t) if series else fill)
        for key in ("latency_p50_s", "latency_p95_s", "finality_p50_s", "finality_p95_s"):
            g.create_dataset(key, data=fill)
        g.create_dataset("energy_kwh", data=np.full(t, ENERGY_KWH_PER_STEP) if series else fill)
        g.create_dataset("n_late", data=n_late if series else np.zeros(t, dtype=np.int64))
        g.create_dataset("late_cost", data=late_cost if series else fill)
        tx = g.create_group("tx")
        kind, status, sub, inc, fin, gas = (list(c) for c in zip(*txs, strict=True)) if txs else ([],) * 6
        n = len(txs)
        submit_s = T0 + np.asarray(sub, dtype=float)
        include_s, final_s = submit_s + np.asarray(inc, dtype=float), submit_s + np.asarray(fin, dtype=float)
        _strs(tx, "tx_id", [_hex(f"tx{i}") for i in range(n)])
        _strs(tx, "kind", kind)
        _strs(tx, "sender", [f"agent{i % 3}" for i in range(n)])
        tx.create_dataset("nonce", data=np.arange(n, dtype=np.int64))
        _strs(tx, "payload", [json.dumps({"i": i}) for i in range(n)])
        _strs(tx, "signatures", [json.dumps([_hex(f"sig{i}")]) for i in range(n)])
        for key, col in (("submit_s", submit_s), ("include_s", include_s), ("final_s", final_s)):
            tx.create_dataset(key, data=col.astype(np.float64))
        height = np.where(np.isfinite(include_s), 1 + np.arange(n) % 4, -1).astype(np.int64)
        tx.create_dataset("height", data=height)
        tx.create_dataset("gas_used", data=np.asarray(gas, dtype=np.int64))
        _strs(tx, "status", status)
        b = g.create_group("blocks")
        m = len(stale)
        b.create_dataset("height", data=np.array([1, 1, 2, 3, 3, 4][:m], dtype=np.int64))
        b.create_dataset("time_s", data=T0 + 12.0 * np.arange(m))
        b.create_dataset("proposer", data=np.arange(m, dtype=np.int64) % 4)
        b.create_dataset("n_tx", data=np.full(m, 2, dtype=np.int64))
        b.create_dataset("gas_used", data=np.full(m, 150_000, dtype=np.int64))
        b.create_dataset("size_bytes", data=np.full(m, 580, dtype=np.int64))
        b.create_dataset("stale", data=np.array(stale, dtype=bool))
        for key in ("hash", "prev_hash", "merkle_root"):
            _strs(b, key, ["" if s else _hex(f"{key}{i}") for i, s in enumerate(stale)])
    return path


def _float(s: str) -> float:
    """The first number in a cell (exponent allowed)."""
    m = re.search(r"-?\d+(\.\d+)?(e[+-]\d+)?", s.replace(",", ""))  # thousands separators dropped
    assert m is not None, s
    return float(m.group())


@dataclass
class Run:
    """One ledger run reported once (module-scoped: figures are slow)."""

    h5: Path
    html: Path
    rows: dict[str, str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A 48-step PoS run with the ten transactions of TXS and the six blocks of STALE."""
    tmp = tmp_path_factory.mktemp("ledger")
    h5 = _add_ledger(_make_run(tmp / "led.h5", market="uniform", name="led"))
    html_path = write_report(h5, tmp / "out")
    return Run(h5, html_path, _summary(html_path))


def _final_mask() -> np.ndarray:
    return np.isfinite([x[4] for x in TXS])


def test_ledger_figures_written(run: Run) -> None:
    """The three ledger figures are valid PNGs referenced by the page, under a 'Ledger (pos)' heading."""
    assert set(LEDGER_FIGS) <= set(_pngs(run.html))
    assert "<h2>Ledger (pos)</h2>" in run.html.read_text(encoding="utf-8")


def test_all_summary_rows_present(run: Run) -> None:
    """Every ledger row label is in the summary, next to the market rows."""
    assert set(LABELS) <= set(run.rows) and run.rows["Market design"] == "uniform"


def test_summary_consensus_transactions_and_notes(run: Run) -> None:
    """Consensus with validators, faulty and access; counts by status; notes escaped."""
    rows = run.rows
    assert rows["Ledger consensus"] == "pos: 4 validators (1 faulty), permissioned, Nakamoto coefficient 2"
    assert rows["Ledger transactions"] == "10 total, 7 final; pending 1, replay 1, out_of_gas 1"
    assert rows["Ledger notes"] == "pos: synthetic &lt;ledger&gt; &amp; co"


def test_summary_blocks_energy_gas_late(run: Run) -> None:
    """Stale rate, energy per final tx and gas per trade equal the numbers built into the file."""
    rows = run.rows
    n_final = int(_final_mask().sum())
    assert rows["Blocks canonical / stale / stale rate"] == "4 / 2 / 33.33 %"
    energy = _float(rows["Consensus energy per final transaction"])
    assert energy == pytest.approx(48 * ENERGY_KWH_PER_STEP / n_final, rel=1e-3)
    assert _float(rows["Mean gas per trade"]) == pytest.approx(120_000)  # pending trade left out
    assert "3 included trades" in rows["Mean gas per trade"]
    assert rows["Late trades"] == "3 (cost 6.75 $, rule cancel)"
    assert rows["Throughput mean / peak"] == "1 / 2 tx/s"


def test_summary_latency_and_finality_percentiles(run: Run) -> None:
    """p50 / p95 are percentiles over the transactions (include - submit, final - submit)."""
    lat = np.array([x[3] for x in TXS])
    fin = np.array([x[4] for x in TXS])
    for label, x in (("Transaction latency p50 / p95", lat), ("Time to finality p50 / p95", fin)):
        p50, p95 = (float(v) for v in re.findall(r"[\d.]+", run.rows[label])[:2])
        x = x[np.isfinite(x)]
        assert p50 == pytest.approx(np.percentile(x, 50), rel=1e-3)
        assert p95 == pytest.approx(np.percentile(x, 95), rel=1e-3)


def test_metric_functions(run: Run) -> None:
    """The reduced ledger and its metric functions agree with the inputs."""
    with h5py.File(run.h5) as f:
        led = load_ledger(f)
    assert led is not None
    assert stale_rate(led) == pytest.approx(2 / 6)
    assert energy_per_final_tx_kwh(led) == pytest.approx(24.0 / 7)
    assert mean_gas_per_trade(led) == pytest.approx(120_000)
    assert led.latency_s.size == 8 and led.finality_s.size == 7
    assert list(led.gas_by_kind) == ["trade", "meter", "settle", "cancel", "transfer"]


def test_empty_ledger_tables_note_no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0-row tables and all-NaN series: figures still written, each noting 'no data', rows n/a."""
    notes: list[str] = []
    real = ledger_report._note
    monkeypatch.setattr(ledger_report, "_note", lambda ax, text: (notes.append(text), real(ax, text)))
    h5 = _add_ledger(_make_run(tmp_path / "empty.h5", t=3, name="empty"), txs=[], stale=[], series=False)
    html_path = write_report(h5, tmp_path / "out")
    rows = _summary(html_path)
    assert set(LEDGER_FIGS) <= set(_pngs(html_path))
    assert len(notes) == 3 and all("no data" in n for n in notes)
    assert rows["Ledger transactions"] == "0 total, 0 final"
    assert rows["Transaction latency p50 / p95"] == rows["Time to finality p50 / p95"] == "n/a"
    assert rows["Blocks canonical / stale / stale rate"] == "0 / 0 / n/a"
    assert rows["Mean gas per trade"] == rows["Throughput mean / peak"] == "n/a"
    assert rows["Consensus energy per final transaction"].startswith("n/a")
    assert rows["Late trades"].startswith("0 (cost 0.00 $")


def test_run_without_ledger_has_no_ledger_section(tmp_path: Path) -> None:
    """No /ledger: no ledger figure, heading or row."""
    html_path = write_report(_make_run(tmp_path / "plain.h5", t=4), tmp_path / "out")
    assert not list((tmp_path / "out").glob("ledger_*.png"))
    assert "Ledger" not in html_path.read_text(encoding="utf-8")
    assert not set(LABELS) & set(_summary(html_path))


def test_long_run_throughput_daily(tmp_path: Path) -> None:
    """A ten-day run (daily-mean throughput) gets all ledger figures."""
    h5 = _add_ledger(_make_run(tmp_path / "long.h5", t=240, name="long"), consensus="pow")
    assert set(LEDGER_FIGS) <= set(_pngs(write_report(h5, tmp_path / "out")))


def test_compare_runs_ledger_table_and_cdfs(run: Run, tmp_path: Path) -> None:
    """Comparison: ledger table with one column per run ('none' without ledger) and the CDF figure."""
    bft = _add_ledger(
        _make_run(tmp_path / "bft.h5", t=2, name="bft"), txs=TXS[:3], stale=[False], consensus="bft"
    )
    plain = _make_run(tmp_path / "plain.h5", t=2, name="plain")
    text = compare_runs([run.h5, bft, plain], tmp_path / "cmp").read_text(encoding="utf-8")
    table = text.split("<table id='ledger_comparison'>")[1].split("</table>")[0]
    assert "<th>led</th><th>bft</th><th>plain</th>" in table

    def cells(label: str) -> list[str]:
        m = re.search(rf"<tr><th>{re.escape(label)}</th>(.*?)</tr>", table)
        assert m is not None, label
        return re.findall(r"<td>(.*?)</td>", m.group(1))

    consensus = cells("Ledger consensus")
    assert consensus[0].startswith("pos:") and consensus[1].startswith("bft:") and consensus[2] == "none"
    assert cells("Blocks canonical / stale / stale rate") == ["4 / 2 / 33.33 %", "1 / 0 / 0.00 %", "–"]
    assert _float(cells("Mean gas per trade")[1]) == pytest.approx(120_000)
    assert (tmp_path / "cmp" / COMPARE_FIG).read_bytes()[:8] == PNG_MAGIC
    assert COMPARE_FIG in _pngs(tmp_path / "cmp" / "comparison.html")


def test_compare_runs_without_ledgers_unchanged(tmp_path: Path) -> None:
    """No run with a ledger: no ledger table or figure in the comparison."""
    a, b = _make_run(tmp_path / "a.h5", t=2, name="a"), _make_run(tmp_path / "b.h5", t=2, name="b")
    path = compare_runs([a, b], tmp_path / "cmp")
    assert _pngs(path) == ["comparison_prices.png"] and "ledger" not in path.read_text(encoding="utf-8")
    assert not (tmp_path / "cmp" / COMPARE_FIG).exists()


def test_gas_plot_turns_logarithmic_when_the_kinds_differ_a_hundredfold() -> None:
    """A reading settling thousands of trades (~10^8 gas) beside trades (~10^5): log scale, else linear."""
    from dataclasses import replace

    z = np.zeros(0)
    led = ledger_report.Ledger(
        "bft", 4, 0, True, 2, "cancel", "", z, 900.0, z, z, z, z, 0, 0, {}, z, z,
        {"trade": np.full(5, 113_000.0), "meter": np.array([2e7, 2.5e8])}, 0, 0,
    )  # fmt: skip
    assert ledger_report.plot_gas(led).axes[0].get_yscale() == "log"
    close = replace(led, gas_by_kind={"trade": np.full(5, 113_000.0), "meter": np.array([2e5, 3e5])})
    assert ledger_report.plot_gas(close).axes[0].get_yscale() == "linear"
