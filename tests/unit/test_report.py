"""Tests for cosim.analysis.report on a synthetic HDF5 run file."""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.analysis.report import MARKET_FIGS, compare_runs, write_report
from cosim.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN_STEPS = (5, 17)
FAILED_CLEARINGS = (3, 17)


def _ds(g: h5py.Group, name: str, data: object, units: str = "-") -> None:
    """Create a dataset with a units attribute."""
    g.create_dataset(name, data=data).attrs["units"] = units


def _add_market(f: h5py.File, design: str, t: int, n_bus: int, n_agent: int, failed: tuple[int, ...]) -> None:
    """Add a /market group (prices, totals, awards, payments, trades) with NaN at failed clearings."""
    rng = np.random.default_rng(1)
    ok = np.ones(t, dtype=bool)
    ok[[k for k in failed if k < t]] = False
    base = 50 + 20 * rng.random((t, 1))
    price = np.repeat(base, n_bus, axis=1) if design == "uniform" else base + 5 * rng.random((t, n_bus))
    price[~ok] = np.nan
    _ds(f, "market/price_per_mwh", price, "$/MWh")
    if design == "acopf":
        _ds(f, "market/price_q_per_mvarh", 0.1 * price, "$/Mvarh")
    for name, scale, units in (("cleared_mwh", 3, "MWh"), ("welfare", 400, "$"), ("cost", 150, "$"),
                               ("congestion_rent", 10, "$"), ("unserved_mwh", 0.1, "MWh")):  # fmt: skip
        _ds(f, f"market/{name}", np.where(ok, scale * rng.random(t), np.nan), units)
    _ds(f, "market/ok", ok)
    for name, units in (("award_mw", "MW"), ("payment", "$")):
        _ds(f, f"market/{name}", np.where(ok[:, None], rng.standard_normal((t, n_agent)), np.nan), units)
    steps = np.repeat(np.flatnonzero(ok), 3)
    n = steps.size
    _ds(f, "market/trades/step", steps)
    _ds(f, "market/trades/buyer", rng.integers(-1, n_agent, n), "agent position")
    _ds(f, "market/trades/seller", rng.integers(-1, n_agent, n), "agent position")
    _ds(f, "market/trades/mwh", rng.random(n), "MWh")
    _ds(f, "market/trades/price", 60 + rng.random(n), "$/MWh")
    _ds(f, "market/trades/seller_price", 55 + rng.random(n), "$/MWh")


def _make_run(
    path: Path,
    t: int = 48,
    nan_steps: tuple[int, ...] = NAN_STEPS,
    market: str | None = None,
    failed: tuple[int, ...] = FAILED_CLEARINGS,
    name: str = "demo",
) -> Path:
    """Synthesise a run file in the fixed HDF5 layout (6 buses, 5 lines, 1 trafo, 8 agents), optionally with a market."""  # noqa: E501
    rng = np.random.default_rng(0)
    n_bus, n_line = 6, 5
    time = 1_704_067_200 + 3600 * np.arange(t, dtype=np.int64)
    vm = 1.0 + 0.04 * rng.standard_normal((t, n_bus))
    va = rng.standard_normal((t, n_bus))
    line = 100 * rng.random((t, n_line)) + 20
    trafo = 90 * rng.random((t, 1))
    losses = rng.random(t)
    imp = 2 * rng.standard_normal(t)
    conv = np.ones(t, dtype=bool)
    for k in nan_steps:
        if k < t:
            for a in (vm, va, line, trafo):
                a[k] = np.nan
            losses[k] = imp[k] = np.nan
            conv[k] = False
    kinds = [b"load", b"load", b"load", b"sgen", b"pv", b"battery", b"battery", b"ev"]
    p = rng.standard_normal((t, len(kinds)))
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update(
            scenario_yaml=f"name: {name}\nnote: <b>&</b>\n"
            + (f"market:\n  design: {market}\n" if market else ""),
            seed=7,
            versions=json.dumps({"numpy": np.__version__}),
            code_version="test",
            name=name,
            step_s=3600,
        )
        _ds(f, "time", time, "s")
        _ds(f, "grid/bus/vm_pu", vm, "pu")
        _ds(f, "grid/bus/va_degree", va, "degree")
        _ds(f, "grid/bus/name", np.array([f"bus{i}".encode() for i in range(n_bus)]))
        _ds(f, "grid/bus/vn_kv", np.array([20.0, 0.4, 0.4, 0.4, 0.4, 0.4]), "kV")
        _ds(f, "grid/bus/index", np.arange(10, 10 + n_bus))
        _ds(f, "grid/line/loading_percent", line, "%")
        _ds(f, "grid/line/name", np.array([f"line{i}" for i in range(n_line)], dtype=s))
        _ds(f, "grid/line/from_bus", np.array([11, 12, 12, 11, 15]))
        _ds(f, "grid/line/to_bus", np.array([12, 13, 14, 15, 13]))
        _ds(f, "grid/trafo/loading_percent", trafo, "%")
        _ds(f, "grid/trafo/name", np.array([b"trafo0"]))
        _ds(f, "grid/trafo/hv_bus", np.array([10]))
        _ds(f, "grid/trafo/lv_bus", np.array([11]))
        _ds(f, "grid/losses_mw", losses, "MW")
        _ds(f, "grid/import_mw", imp, "MW")
        _ds(f, "grid/converged", conv)
        _ds(f, "agents/p_mw", p, "MW")
        _ds(f, "agents/q_mvar", 0.1 * p, "Mvar")
        _ds(f, "agents/name", np.array([f"a{i}" for i in range(len(kinds))], dtype=s))
        _ds(f, "agents/bus", np.array([11, 12, 13, 14, 15, 13, 14, 15]))
        _ds(f, "agents/kind", np.array(kinds))
        _ds(f, "agents/soc_mwh", rng.random((t, 2)), "MWh")
        _ds(f, "agents/storage_name", np.array([b"a5", b"a6"]))
        if market:
            _add_market(f, market, t, n_bus, len(kinds), failed)
    return path


def _summary(html_path: Path) -> dict[str, str]:
    """Parse the summary table rows into {header: cell text}."""
    text = html_path.read_text(encoding="utf-8")
    return dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", text))


def _first_float(s: str) -> float:  # thousands separators dropped
    """Return the first number in a string."""
    m = re.search(r"-?\d+\.?\d*", s.replace(",", ""))
    assert m is not None, s
    return float(m.group())


@dataclass
class Reports:
    """Two market runs reported and compared once through the CLI (module-scoped: figures are slow)."""

    a: Path  # 48 steps, uniform design, failed power flows and failed clearings
    b: Path  # 1 step, acopf design
    out: Path
    code: int
    stdout: str


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Reports:
    """`cosim report a.h5 b.h5 --out DIR` on two synthetic market runs."""
    tmp = tmp_path_factory.mktemp("reports")
    a = _make_run(tmp / "a.h5", market="uniform")
    b = _make_run(tmp / "b.h5", t=1, nan_steps=(), market="acopf", failed=(), name="beta")
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["report", str(a), str(b), "--out", str(tmp / "out")])
    return Reports(a, b, tmp / "out", code, buf.getvalue())


def _pngs(html_path: Path) -> list[str]:
    """Image sources of a report page, each checked to be a non-trivial valid PNG."""
    srcs = re.findall(r'<img src="([^"]+)"', html_path.read_text(encoding="utf-8"))
    for src in srcs:
        png = html_path.parent / src
        assert png.stat().st_size > 1000, src
        assert png.read_bytes()[:8] == PNG_MAGIC, src
    return srcs


def test_report_writes_html_and_pngs(reports: Reports) -> None:
    """A market run's report references the grid and the four market figures, all valid PNGs."""
    srcs = _pngs(reports.out / "a" / "index.html")
    assert len(srcs) >= 9 and set(MARKET_FIGS) <= set(srcs)


def test_summary_values_match_independent_computation(reports: Reports) -> None:
    """Summary reports non-converged count, min voltage and net import energy correctly."""
    rows = _summary(reports.out / "a" / "index.html")
    with h5py.File(reports.a) as f:
        vm = f["grid/bus/vm_pu"][()]
        imp = f["grid/import_mw"][()]
        nonconv = int((~f["grid/converged"][()]).sum())
    assert int(rows["Non-converged steps"]) == nonconv == len(NAN_STEPS)
    assert _first_float(rows["Min voltage (pu)"]) == pytest.approx(np.nanmin(vm), abs=1e-4)
    assert _first_float(rows["Total import (net)"]) == pytest.approx(np.nansum(imp), abs=1e-3)
    exported = -np.nansum(np.minimum(imp, 0))
    assert _first_float(rows["Export (negative part)"]) == pytest.approx(exported, abs=1e-3)


def test_market_summary_matches_independent_sums(reports: Reports) -> None:
    """Market rows: design, cleared MWh and welfare equal nansums, failed clearings and trades are counted."""
    rows = _summary(reports.out / "a" / "index.html")
    with h5py.File(reports.a) as f:
        cleared, welfare = f["market/cleared_mwh"][()], f["market/welfare"][()]
        traded = f["market/trades/mwh"][()]
        vm = f["grid/bus/vm_pu"][()]
    assert rows["Market design"] == "uniform"
    assert _first_float(rows["Total cleared energy"]) == pytest.approx(np.nansum(cleared), abs=1e-3)
    assert _first_float(rows["Total welfare"]) == pytest.approx(np.nansum(welfare), abs=1e-2)
    assert rows["Failed clearings"] == f"{len(FAILED_CLEARINGS)} of 48"
    assert int(rows["Trades"]) == traded.size and _first_float(rows["Traded energy"]) == pytest.approx(
        traded.sum(), abs=1e-3
    )
    bad = int(((np.fmin.reduce(vm, axis=1) < 0.95) | (np.fmax.reduce(vm, axis=1) > 1.05)).sum())
    assert int(rows["Steps with voltage outside 0.95-1.05 pu"]) == bad


def test_yaml_is_escaped_in_details_block(reports: Reports) -> None:
    """The scenario YAML appears HTML-escaped inside a <details><pre> block."""
    text = (reports.out / "a" / "index.html").read_text(encoding="utf-8")
    assert "<details>" in text and "&lt;b&gt;&amp;&lt;/b&gt;" in text and "<b>&</b>" not in text


def test_single_step_market_file(reports: Reports) -> None:
    """A market run with T=1 gets a full report, its price heat map included."""
    html_path = reports.out / "b" / "index.html"
    assert _summary(html_path)["Steps"] == "1"
    assert "lmp_heatmap.png" in _pngs(html_path)


def test_cli_reports_several_runs_and_compares(reports: Reports) -> None:
    """`cosim report a b --out DIR` exits 0, writes DIR/a/, DIR/b/ and DIR/comparison.html, printing paths."""
    assert reports.code == 0
    comparison = reports.out / "comparison.html"
    for path in (reports.out / "a" / "index.html", reports.out / "b" / "index.html", comparison):
        assert path.is_file() and str(path) in reports.stdout
    assert _pngs(comparison) == ["comparison_prices.png"]


def test_compare_runs_names_runs_and_designs(reports: Reports, tmp_path: Path) -> None:
    """compare_runs writes one column per run with names and designs, also without market or clearings."""
    plain = _make_run(tmp_path / "plain.h5", t=4, name="plain")
    failed = _make_run(tmp_path / "f.h5", t=2, market="dcopf", failed=(0, 1), name="failed")
    path = compare_runs([reports.a, reports.b, plain, failed], tmp_path / "cmp")
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "cmp" / "comparison.html"
    assert "<th>demo</th><th>beta</th><th>plain</th><th>failed</th>" in text

    def cells(label: str) -> str:
        m = re.search(rf"<tr><th>{re.escape(label)}</th>(.*?)</tr>", text)
        assert m is not None, label
        return m.group(1)

    assert cells("Market design") == "<td>uniform</td><td>acopf</td><td>none</td><td>dcopf</td>"
    assert cells("Failed clearings").endswith("<td>–</td><td>2 of 2</td>")
    assert (tmp_path / "cmp" / "comparison_prices.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_missing_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing results file among several ends with exit code 1 and a message naming it, no traceback."""
    missing = tmp_path / "nope.h5"
    assert main(["report", str(_make_run(tmp_path / "ok.h5", t=2)), str(missing)]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_all_nan_run(tmp_path: Path) -> None:
    """All power flows and clearings failed: default folder, n/a extremes and prices, market figures drawn."""
    path = _make_run(tmp_path / "bad.h5", t=3, nan_steps=(0, 1, 2), market="dcopf", failed=(0, 1, 2))
    html_path = write_report(path)
    rows = _summary(html_path)
    assert html_path == tmp_path / "bad_report" / "index.html"
    assert rows["Non-converged steps"] == "3" and rows["Min voltage (pu)"] == "n/a"
    assert rows["Failed clearings"] == "3 of 3" and rows["Price mean / min / max"] == "n/a"
    assert _first_float(rows["Total welfare"]) == 0 and set(MARKET_FIGS) <= set(_pngs(html_path))
