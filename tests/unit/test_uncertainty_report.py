"""Tests for cosim.analysis.uncertainty_report on synthetic run files (N-1, stochastic, ADMM, outages)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.analysis import uncertainty_report
from cosim.analysis.report import compare_runs, write_report
from cosim.analysis.uncertainty_report import (
    ADMM_FIG,
    ADMM_LABELS,
    ISLANDING_FIG,
    LABELS,
    OUTAGE_LABELS,
    SECURITY_FIG,
    UNCERTAINTY_FIGS,
    load_uncertainty,
    uncertainty_figures,
    uncertainty_rows,
    uncertainty_section,
)
from tests.unit.test_report import FAILED_CLEARINGS, PNG_MAGIC, _make_run, _pngs, _summary

NAN = np.nan
N_AGENT = 8  # as _make_run: load, load, load, sgen, pv, battery, battery, ev
CRITICAL = np.array([True, False, False, False, False, False, False, False])
SECURED, ISLANDING = ["line 1", "line 2", "trafo <0>"], ["line 3", "line 4"]
VSS, EVPI, EXPECTED = np.array([12.5, 7.25]), np.array([3.0, NAN]), np.array([1000.0, 1100.0])
ISLAND_STEPS = (10, 11, 12, 31)  # /grid/islanded; the events: [10, 13) and [30.5, 32) in steps
LINE_OUT = (20, 22)


def _ds(g: h5py.Group | h5py.File, name: str, data: object) -> None:
    g.create_dataset(name, data=data)


def _strs(g: h5py.Group, name: str, values: list[str]) -> None:
    g.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())


def _add_security(f: h5py.File, t: int, nan: bool = False) -> None:
    cost = np.random.default_rng(11).random(t) * 10
    cost[[k for k in FAILED_CLEARINGS if k < t]] = NAN
    _ds(f, "market/security_cost", np.full(t, NAN) if nan else cost)
    market = f.require_group("market")
    market.attrs.update(secured_outages=json.dumps(SECURED), islanding_outages=json.dumps(ISLANDING))


def _add_stochastic(f: h5py.File, t: int) -> None:
    n = max(t // 24, 1)
    _ds(f, "market/day/day_step", 24 * np.arange(n, dtype=np.int64))
    for key, value in (("vss", VSS), ("evpi", EVPI), ("expected_cost", EXPECTED)):
        _ds(f, f"market/day/{key}", np.resize(value, n))


def _add_admm(f: h5py.File, t: int, iterations: bool = True) -> None:
    """Iterations per interval (0 at failed clearings), messages and one residual row per iteration."""
    rng = np.random.default_rng(12)
    it = rng.integers(5, 60, t).astype(np.int64)
    it[[k for k in FAILED_CLEARINGS if k < t]] = 0
    if iterations:
        _ds(f, "market/admm_iterations", it)
        _ds(f, "market/admm_messages", 2 * N_AGENT * it)
    g = f.create_group("market/admm_residual")
    step = np.repeat(np.arange(t, dtype=np.int64), it)
    iteration = np.concatenate([np.arange(1, n + 1) for n in it]).astype(np.int64)
    _ds(g, "step", step)
    _ds(g, "iteration", iteration)
    _ds(g, "primal_residual", 10.0 * 0.8**iteration)
    _ds(g, "dual_residual", 5.0 * 0.85**iteration)
    _ds(g, "rho", np.ones(step.size))
    _ds(g, "price", 50 + 0.5**iteration)


def _add_outages(f: h5py.File, t: int, events: bool = True, islanded: bool = True, shed: bool = True) -> None:
    """Two islands and a line outage; shed energy during the islands, curtailment of the EV."""
    time = f["time"][()]
    if events:
        g = f.create_group("events")
        _strs(g, "kind", ["island", "line_outage", "island"])
        _strs(g, "element", ["", "line3", ""])
        _ds(g, "start", np.array([time[10], time[LINE_OUT[0]], time[30] + 1800], dtype=np.int64))
        _ds(g, "end", np.array([time[13], time[LINE_OUT[1]], time[32]], dtype=np.int64))
    if islanded:
        isl = np.zeros(t, dtype=np.int8)
        isl[list(ISLAND_STEPS)] = 1
        _ds(f, "grid/islanded", isl)
    if shed:
        _ds(f, "agents/critical", CRITICAL)
        un = np.zeros((t, N_AGENT))
        un[list(ISLAND_STEPS), 1] = 0.4
        un[list(ISLAND_STEPS), 2] = 0.25
        un[11, 0] = 0.05  # a critical load shed too
        cu = np.zeros((t, N_AGENT))
        cu[list(ISLAND_STEPS), 7] = 0.3
        cu[40:44, 7] = 0.1
        _ds(f, "agents/unserved_mwh", un)
        _ds(f, "agents/curtailed_mwh", cu)


def _add_storage(f: h5py.File, t: int) -> None:
    profit = np.random.default_rng(13).standard_normal((t, 2)) + np.array([0.5, -0.2])
    profit[3, 1] = NAN
    _ds(f, "agents/storage_profit", profit)


def _add(path: Path, *parts: str, **kw: bool) -> Path:
    """Add the named parts ('security', 'stochastic', 'admm', 'outages', 'storage') to a run file."""
    adders = {"security": _add_security, "stochastic": _add_stochastic, "admm": _add_admm,
              "outages": _add_outages, "storage": _add_storage}  # fmt: skip
    with h5py.File(path, "a") as f:
        t = f["time"].shape[0]
        for part in parts:
            adders[part](f, t, **kw)
    return path


def _float(s: str, k: int = 0) -> float:
    """The k-th number in a cell."""
    return float(re.findall(r"-?\d+(?:\.\d+)?", s.replace(",", ""))[k])  # thousands separators dropped


@dataclass
class Run:
    """One run with every part, reported once (module-scoped: figures are slow)."""

    h5: Path
    html: Path
    rows: dict[str, str]


ALL = ("security", "stochastic", "admm", "outages", "storage")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A 48-step uniform-market run with every uncertainty dataset."""
    tmp = tmp_path_factory.mktemp("uncertainty")
    h5 = _add(_make_run(tmp / "unc.h5", market="uniform", name="unc"), *ALL)
    html_path = write_report(h5, tmp / "out")
    return Run(h5, html_path, _summary(html_path))


def test_figures_and_section(run: Run) -> None:
    """Every figure is a valid PNG referenced by the page, under one heading naming the parts."""
    assert set(UNCERTAINTY_FIGS) <= set(_pngs(run.html))
    text = run.html.read_text(encoding="utf-8")
    assert "<h2>Uncertainty and outages (security, stochastic, admm, outages, storage)</h2>" in text
    assert set(LABELS) <= set(run.rows) and run.rows["Market design"] == "uniform"


def test_rows_carry_the_totals(run: Run) -> None:
    """Each row's numbers computed independently from the datasets."""
    with h5py.File(run.h5) as f:
        cost = f["market/security_cost"][()]
        it, msgs = f["market/admm_iterations"][()], f["market/admm_messages"][()]
        un, cu = f["agents/unserved_mwh"][()], f["agents/curtailed_mwh"][()]
        profit = np.nansum(f["agents/storage_profit"][()], axis=0)
    r = run.rows
    n_fin = int(np.isfinite(cost).sum())
    assert r["Security cost (N-1)"] == f"{np.nansum(cost):.2f} $ over {n_fin} intervals (2 not computed)"
    assert r["Secured / islanding outages"] == (
        "3 / 2 (secured: line 1, line 2, trafo &lt;0&gt;; islanding: line 3, line 4)"
    )
    assert r["VSS / EVPI (stochastic)"] == "19.75 $ / 3.00 $ over 2 days (1 failed)"
    assert r["Expected cost (stochastic)"] == "2,100.00 $ over 2 of 2 days"
    pos = it[it > 0]
    assert r["ADMM iterations mean / p95 / max"] == (
        f"{pos.mean():.1f} / {np.percentile(pos, 95):.1f} / {pos.max()} (over 46 of 48 intervals)"
    )
    assert r["ADMM messages"] == f"{msgs.sum():,}"
    assert (
        r["Unserved energy of agents (critical loads)"]
        == f"{un.sum():.3f} MWh (critical {un[:, 0].sum():.3f} MWh)"
    )
    assert r["Curtailed flexible demand"] == f"{cu.sum():.3f} MWh"
    assert r["Island events / islanded hours"] == "2 / 4.00 h; 1 line_outage events"
    label = "Storage profit total (min / median / max per battery)"
    assert _float(r[label]) == pytest.approx(profit.sum(), abs=0.006)
    assert [_float(r[label], k) for k in (1, 2, 3)] == pytest.approx(
        [profit.min(), np.median(profit), profit.max()], abs=0.006
    )


def test_reduced_data(run: Run) -> None:
    """ADMM traces of the longest and median interval plus random ones; outage and storage reductions."""
    with h5py.File(run.h5) as f:
        unc = load_uncertainty(f)
        it = f["market/admm_iterations"][()]
        p = f["agents/p_mw"][()]
    assert unc is not None and unc.admm is not None and unc.outages is not None and unc.storage is not None
    ad = unc.admm
    assert sorted(ad.why.values()) == ["median", "most iterations", "random", "random", "random"]
    longest = next(s for s, w in ad.why.items() if w == "most iterations")
    assert it[longest] == it.max() and ad.traces[longest][0].size == it.max()
    assert np.allclose(ad.traces[longest][1], 10.0 * 0.8 ** np.arange(1, it.max() + 1))
    ou = unc.outages
    assert np.flatnonzero(ou.islanded).tolist() == list(ISLAND_STEPS)
    assert np.allclose(ou.served_critical, p[:, 0].clip(0, None))
    assert np.allclose(ou.served_other, p[:, [1, 2, 7]].clip(0, None).sum(axis=1))  # loads and the EV
    assert np.isfinite(ou.price_mean[5]) and np.isnan(ou.price_mean[FAILED_CLEARINGS[0]])
    assert unc.storage.names == ["a5", "a6"] and np.isfinite(unc.storage.per_step).all()


def test_compare_runs_rows(run: Run, tmp_path: Path) -> None:
    """The comparison table gets the uncertainty rows; a run without them shows '–'."""
    plain = _make_run(tmp_path / "plain.h5", t=2, name="plain")
    text = compare_runs([run.h5, plain], tmp_path / "cmp").read_text(encoding="utf-8")
    table = text.split("<table id='comparison'>")[1].split("</table>")[0]
    row = re.search(r"<tr><th>Island events / islanded hours</th>(.*?)</tr>", table)
    assert row is not None and re.findall(r"<td>(.*?)</td>", row.group(1)) == [
        "2 / 4.00 h; 1 line_outage events",
        "–",
    ]
    assert set(LABELS) <= set(re.findall(r"<tr><th>(.*?)</th><td>", table))


def test_without_datasets_none_and_report_unchanged(tmp_path: Path) -> None:
    """No dataset with content (zero iterations and shed, all-NaN cost, empty events): None, no section."""
    h5 = _make_run(tmp_path / "market.h5", t=2, market="uniform")
    with h5py.File(h5) as f:
        assert load_uncertainty(f) is None  # market prices, p_mw and storage names alone are no content
    with h5py.File(h5, "a") as f:
        _ds(f, "market/security_cost", np.full(2, NAN))
        _ds(f, "market/admm_iterations", np.zeros(2, dtype=np.int64))
        _ds(f, "agents/unserved_mwh", np.zeros((2, N_AGENT)))
        _ds(f, "agents/critical", CRITICAL)
        f.create_group("events")
        _ds(f, "grid/islanded", np.zeros(2, dtype=np.int8))
    with h5py.File(h5) as f:
        assert load_uncertainty(f) is None
    bare = tmp_path / "bare.h5"  # the page itself, without the slow grid and market figures
    with h5py.File(bare, "w") as f:
        _ds(f, "time", 1_704_067_200 + 3600 * np.arange(3, dtype=np.int64))
        f.create_group("events")
    html_path = write_report(bare, tmp_path / "out")
    assert "Uncertainty" not in html_path.read_text(encoding="utf-8")
    assert not set(LABELS) & set(_summary(html_path)) and not set(UNCERTAINTY_FIGS) & set(_pngs(html_path))


def _section(h5: Path, out: Path) -> tuple[list[str], dict[str, str], str]:
    """Parts, rows and section of a file, figures written into out."""
    out.mkdir()
    with h5py.File(h5) as f:
        unc = load_uncertainty(f)
    assert unc is not None
    return uncertainty_report.parts(unc), dict(uncertainty_rows(unc)), uncertainty_section(unc, out)


def test_admm_only(tmp_path: Path) -> None:
    """Only ADMM datasets (8 days, daily values): its figure and rows alone; iterations from the table."""
    h5 = _add(_make_run(tmp_path / "a.h5", t=24 * 8, nan_steps=()), "admm")
    parts, rows, section = _section(h5, tmp_path / "out")
    assert parts == ["admm"] and set(rows) == set(ADMM_LABELS)
    assert re.findall(r'<img src="([^"]+)"', section) == [ADMM_FIG]
    assert (tmp_path / "out" / ADMM_FIG).read_bytes()[:8] == PNG_MAGIC
    h5 = _add(_make_run(tmp_path / "b.h5", t=24), "admm", iterations=False)
    with h5py.File(h5) as f:
        unc = load_uncertainty(f)
        step = f["market/admm_residual/step"][()]
    assert unc is not None and unc.admm is not None
    assert np.array_equal(unc.admm.iterations, np.bincount(step, minlength=24))
    assert dict(uncertainty_rows(unc))["ADMM messages"] == "n/a"


def test_islanding_only(tmp_path: Path) -> None:
    """Only /grid/islanded (no events, no shed data): islands are its runs of steps; the timeline drawn."""
    h5 = _add(_make_run(tmp_path / "i.h5", t=48, market="dcopf"), "outages", events=False, shed=False)
    parts, rows, section = _section(h5, tmp_path / "out")
    assert parts == ["outages"] and rows == {OUTAGE_LABELS[2]: "2 / 4.00 h"}
    assert re.findall(r'<img src="([^"]+)"', section) == [ISLANDING_FIG]


def test_events_only_and_shed_only(tmp_path: Path) -> None:
    """Events without /grid/islanded: steps starting inside an island; shed data alone: rows, no figure."""
    h5 = _add(_make_run(tmp_path / "e.h5", t=48), "outages", islanded=False, shed=False)
    with h5py.File(h5) as f:
        unc = load_uncertainty(f)
    assert unc is not None and unc.outages is not None
    assert np.flatnonzero(unc.outages.islanded).tolist() == [10, 11, 12, 31]
    assert dict(uncertainty_rows(unc)) == {OUTAGE_LABELS[2]: "2 / 4.00 h; 1 line_outage events"}
    h5 = _add(_make_run(tmp_path / "s.h5", t=48), "outages", events=False, islanded=False)
    parts, rows, section = _section(h5, tmp_path / "out")
    assert parts == ["shed energy"] and set(rows) == set(OUTAGE_LABELS[:2]) and "<img" not in section


def test_security_not_computed(tmp_path: Path) -> None:
    """scopf ran (outage lists) but every interval failed: rows say so, the figure is skipped."""
    h5 = _add(_make_run(tmp_path / "n.h5", t=4), "security", nan=True)
    parts, rows, section = _section(h5, tmp_path / "out")
    assert parts == ["security"] and rows["Security cost (N-1)"] == "n/a (not computed in any interval)"
    assert "<img" not in section


def test_long_run_daily(tmp_path: Path) -> None:
    """An 8-day run: security cost as daily sums, VSS and EVPI totals over 8 days."""
    h5 = _add(_make_run(tmp_path / "l.h5", t=24 * 8, nan_steps=()), "security", "stochastic")
    (tmp_path / "out").mkdir()
    with h5py.File(h5) as f:
        unc = load_uncertainty(f)
    assert unc is not None and unc.stochastic is not None and unc.stochastic.day_s.size == 8
    assert dict(uncertainty_rows(unc))["VSS / EVPI (stochastic)"] == (
        f"{4 * VSS.sum():.2f} $ / {4 * EVPI[0]:.2f} $ over 8 days (4 failed)"
    )
    unc.stochastic = None  # its figure is drawn in the other tests: saves time
    assert uncertainty_figures(unc, tmp_path / "out") == [SECURITY_FIG]
