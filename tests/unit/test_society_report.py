"""Tests for cosim.analysis.society_report on synthetic run files with /emissions, /equity and /privacy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.analysis import society_report
from cosim.analysis.report import compare_runs, write_report
from cosim.analysis.society_report import (
    COMPARE_FIGS,
    COMPARE_LABELS,
    EMISSIONS_FIGS,
    EQUITY_FIGS,
    LABELS,
    PRIVACY_FIGS,
    PRIVACY_LABELS,
    SOCIETY_FIGS,
    average_factor_kg_per_mwh,
    load_society,
    p2p_carbon_t,
    total_emissions_t,
)
from tests.unit.test_report import PNG_MAGIC, _make_run, _pngs, _summary

NAN = np.nan
N_BUS, N_AGENT = 6, 8  # as _make_run
NOTHING_SERVED = 5  # step with emissions but a NaN average factor (nothing served)
SURPLUS = np.array([-5.0, 0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0])
LOW_INCOME = np.array([True, True, False, False, False, False, False, True])
TRANSFER = np.array([3.0, 2.0, 0.0, 0.0, -1.0, -1.0, -1.0, 1.0])
P2P_FACTOR, GRID_FACTOR = -100.0, 450.0  # kg/MWh of each trade kind (plus small noise)
SERIES = ["bus 1 consumption_mwh", "bus 1 active_count", "bus 2 consumption_mwh", "bus 2 active_count"]
EPS_STEP, BUDGET = 0.1, 4.0  # the budget runs out after 40 releases
REFUSED_FROM = 40


def _ds(g: h5py.Group, name: str, data: object) -> None:
    g.create_dataset(name, data=data)


def _strs(g: h5py.Group, name: str, values: list[str]) -> None:
    g.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype())


def _add_emissions(f: h5py.File, t: int, nan: bool, marginal_nan: bool) -> None:
    """/emissions following the contract; nan: every series NaN and no trade row."""
    rng = np.random.default_rng(3)
    g = f.create_group("emissions")
    g.attrs.update(carbon_price_per_t=50.0, upstream="constant")
    k = np.arange(t, dtype=float)
    total, avg = 1000.0 + 10.0 * k, 400.0 + k
    if NOTHING_SERVED < t:
        total[NOTHING_SERVED], avg[NOTHING_SERVED] = 50.0, NAN
    if nan:
        total, avg = np.full(t, NAN), np.full(t, NAN)
    _ds(g, "total_kg", total)
    _ds(g, "average_kg_per_mwh", avg)
    _ds(g, "upstream_kg", 0.6 * total)
    marginal = 300.0 + 400.0 * rng.random((t, N_BUS))
    marginal[:, -1] = NAN  # a bus without a marginal factor
    marginal[::7, 0] = NAN
    if marginal_nan or nan:
        marginal[:] = NAN
    g.create_dataset("marginal_kg_per_mwh", data=marginal).attrs["columns"] = "grid/bus/name"
    g.create_dataset("marginal_lossless_kg_per_mwh", data=marginal - 20.0).attrs["columns"] = "grid/bus/name"
    tr = g.create_group("trades")
    mt = f.get("market/trades")
    if mt is None or nan:
        _ds(tr, "step", np.zeros(0, dtype=np.int64))
        _ds(tr, "kg", np.zeros(0))
        return
    mwh, buyer, seller = mt["mwh"][()], mt["buyer"][()], mt["seller"][()]
    p2p = (buyer >= 0) & (seller >= 0)
    factor = np.where(p2p, P2P_FACTOR, GRID_FACTOR) + rng.standard_normal(mwh.size)
    _ds(tr, "step", mt["step"][()].astype(np.int64))
    _ds(tr, "kg", mwh * factor)


def _add_equity(f: h5py.File, t: int, empty: bool, gini: float) -> None:
    """/equity following the contract; empty: no agent, no month, NaN attributes and Lorenz curve."""
    g = f.create_group("equity")
    g.attrs.update(rule="level_up", levy_per_mwh=1.5, gini_surplus=NAN if empty else gini,
                   gini_bill=0.2, absolute_gini_surplus=12.5, lorenz_shifted=empty)  # fmt: skip
    surplus = np.zeros(0) if empty else SURPLUS
    n = surplus.size
    for key, values in (("surplus", surplus), ("bill", np.abs(surplus) + 5), ("revenue", np.full(n, 2.0)),
                        ("net_cost", np.full(n, 3.0)), ("baseline_cost", 3.0 + surplus),
                        ("transfer", TRANSFER[:n]), ("energy_bought_mwh", np.ones(n)),
                        ("energy_sold_mwh", np.zeros(n))):  # fmt: skip
        _ds(g, key, np.asarray(values, dtype=np.float64))
    _ds(g, "low_income", LOW_INCOME[:n])
    time = f["time"][()]
    months = np.unique(time.astype("datetime64[s]").astype("datetime64[M]"))
    start = months.astype("datetime64[s]").astype(np.int64)
    if empty:
        start = start[:0]
    _ds(g, "month_start", start)
    _ds(g, "gini", np.full(start.size, 0.41) if start.size < 2 else np.array([0.41, NAN][: start.size]))
    _ds(g, "gini_bill", np.full(start.size, 0.19))
    if empty:
        lorenz = np.array([[0.0, NAN]])
    else:
        x = np.sort(surplus)
        lorenz = np.column_stack([np.arange(n + 1) / n, np.concatenate([[0.0], np.cumsum(x)]) / x.sum()])
    _ds(g, "lorenz", lorenz)


def _add_privacy(f: h5py.File, t: int, evaluate: bool, epsilon: float, mae: float, spend: bool) -> None:
    """/privacy following the contract: 4 series, the budget refuses the releases from step 40 on."""
    rng = np.random.default_rng(5)
    g = f.create_group("privacy")
    refused = np.arange(t) >= REFUSED_FROM
    g.attrs.update(epsilon=epsilon, budget=BUDGET, mechanism="laplace", delta=0.0,
                   n_refused=int(refused.sum()))  # fmt: skip
    true = np.column_stack([0.5 + 0.1 * rng.random(t), np.full(t, 3.0), 2.0 + rng.random(t), np.full(t, 5.0)])
    released = true + rng.laplace(0.0, 0.05, true.shape)
    released[refused] = NAN
    _ds(g, "released", released)
    _strs(g, "series_name", SERIES)
    spent = np.minimum(EPS_STEP * np.arange(1, t + 1), BUDGET) if spend else np.full(t, NAN)
    _ds(g, "epsilon_spent", spent)
    _ds(g, "refused", refused)
    if evaluate:
        _ds(g, "true", true)
        g.attrs.update(mae_consumption_mwh=mae, mae_count=0.05, relative_error_consumption=0.0123)


def _add_society(
    path: Path,
    emissions: bool = True,
    equity: bool = True,
    privacy: bool = True,
    nan: bool = False,
    marginal_nan: bool = False,
    evaluate: bool = True,
    epsilon: float = 1.0,
    mae: float = 0.04,
    gini: float = 0.4321,
) -> Path:
    """Add the society groups (each optional) following the report's HDF5 contract to a run file."""
    with h5py.File(path, "a") as f:
        t = f["time"].shape[0]
        if emissions:
            _add_emissions(f, t, nan, marginal_nan)
        if equity:
            _add_equity(f, t, nan, gini)
        if privacy:
            _add_privacy(f, t, evaluate and not nan, epsilon, mae, not nan)
    return path


def _float(s: str) -> float:
    """The first number in a cell (exponent allowed)."""
    m = re.search(r"-?\d+(\.\d+)?(e[+-]\d+)?", s.replace(",", ""))  # thousands separators dropped
    assert m is not None, s
    return float(m.group())


@dataclass
class Run:
    """One run with every society group, reported once (module-scoped: figures are slow)."""

    h5: Path
    html: Path
    rows: dict[str, str]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A 48-step uniform-market run with emissions, equity and privacy."""
    tmp = tmp_path_factory.mktemp("society")
    h5 = _add_society(_make_run(tmp / "soc.h5", market="uniform", name="soc"))
    html_path = write_report(h5, tmp / "out")
    return Run(h5, html_path, _summary(html_path))


def test_society_figures_written(run: Run) -> None:
    """All society figures are valid PNGs referenced by the page, under one heading naming the groups."""
    assert set(SOCIETY_FIGS) <= set(_pngs(run.html))
    assert "<h2>Society (emissions, equity, privacy)</h2>" in run.html.read_text(encoding="utf-8")


def test_all_rows_present(run: Run) -> None:
    """Every society row label is in the summary, beside the market rows (welfare stays the market's)."""
    assert set(LABELS) <= set(run.rows) and run.rows["Market design"] == "uniform"
    assert "Total welfare" in run.rows


def test_emissions_headline_numbers(run: Run) -> None:
    """Total t, energy-weighted average, mean marginal factor, carbon cost and P2P carbon from the inputs."""
    with h5py.File(run.h5) as f:
        total, avg = f["emissions/total_kg"][()], f["emissions/average_kg_per_mwh"][()]
        marginal = f["emissions/marginal_kg_per_mwh"][()]
        kg = f["emissions/trades/kg"][()]
        p2p = (f["market/trades/buyer"][()] >= 0) & (f["market/trades/seller"][()] >= 0)
    served = np.nansum(total / avg)  # the NaN-average step served nothing
    rows = run.rows
    assert _float(rows["Total emissions"]) == pytest.approx(total.sum() / 1000, abs=1e-3)
    assert _float(rows["Total emissions"].split("upstream")[1]) == pytest.approx(
        0.6 * total.sum() / 1000, abs=1e-3
    )
    assert _float(rows["Average emission factor"]) == pytest.approx(total.sum() / served, abs=0.01)
    assert f"over {served:.3f} MWh served" in rows["Average emission factor"]
    assert _float(rows["Mean marginal emission factor"]) == pytest.approx(np.nanmean(marginal), abs=0.01)
    assert "lossless" in rows["Mean marginal emission factor"]
    assert rows["Carbon price"].startswith("50.00 $/t (upstream constant); ")
    assert _float(rows["Carbon price"].split(";")[1]) == pytest.approx(50 * total.sum() / 1000, abs=0.01)
    assert 0 < p2p.sum() < p2p.size
    assert _float(rows["Carbon impact of P2P trades"]) == pytest.approx(kg[p2p].sum() / 1000, abs=1e-3)
    assert f"({int(p2p.sum())} trades)" in rows["Carbon impact of P2P trades"]


def test_equity_rows_show_attributes(run: Run) -> None:
    """Gini rows show the file's attributes and monthly range; rule, levy, transfers, low-income mean."""
    rows = run.rows
    assert rows["Gini of surplus (study)"] == "0.4321 (monthly 0.4100–0.4100 over 1 months)"
    assert rows["Gini of bills (study)"] == "0.2000 (monthly 0.1900–0.1900 over 1 months)"
    assert rows["Absolute Gini of surplus"] == "12.50 $"
    assert rows["Fairness rule and levy"] == (
        "level_up, levy 1.50 $/MWh; transfers +6.00 / -3.00 $ (net 6.00 $ to low-income agents)"
    )
    low, other = SURPLUS[LOW_INCOME].mean(), SURPLUS[~LOW_INCOME].mean()
    assert rows["Mean surplus low-income / other agents"] == f"{low:.2f} / {other:.2f} $ (3 / 5 agents)"


def test_privacy_rows(run: Run) -> None:
    """Epsilon spent against the budget, refused releases and the evaluated errors."""
    rows = run.rows
    assert rows["DP epsilon spent / budget"] == "4 / 4 (100.0 %); epsilon 1 per release, laplace"
    assert rows["Refused DP releases"] == "8 of 48"
    assert rows["DP error"] == "MAE 0.04 MWh (consumption), 0.05 (count); relative 1.23 % (consumption)"


def test_metric_functions(run: Run) -> None:
    """The reduced groups and their metric functions agree with the inputs."""
    with h5py.File(run.h5) as f:
        soc = load_society(f)
        total, avg = f["emissions/total_kg"][()], f["emissions/average_kg_per_mwh"][()]
        true, released = f["privacy/true"][()], f["privacy/released"][()]
    assert soc is not None and soc.emissions is not None and soc.privacy is not None
    em, pv = soc.emissions, soc.privacy
    assert total_emissions_t(em) == pytest.approx(total.sum() / 1000)
    assert average_factor_kg_per_mwh(em) == pytest.approx(total.sum() / np.nansum(total / avg))
    assert em.served_mwh[NOTHING_SERVED] == 0.0
    assert p2p_carbon_t(em) == pytest.approx(em.p2p_kg / 1000) and em.p2p_kg < 0 < em.grid_kg
    assert np.allclose(em.p2p_kg_per_mwh, P2P_FACTOR, atol=5) and np.allclose(
        em.grid_kg_per_mwh, GRID_FACTOR, atol=5
    )
    assert em.marginal_by_hour.shape == (N_BUS, 24) and np.isnan(em.marginal_by_hour[-1]).all()
    assert em.bus_names == [f"bus{i}" for i in range(N_BUS)]
    assert soc.equity is not None and not soc.equity.lorenz_shifted
    assert pv.series == "bus 2 consumption_mwh" and pv.evaluated
    assert np.array_equal(pv.true_series, true[:, 2], equal_nan=True)
    assert pv.abs_err_consumption.size == pv.abs_err_count.size == 2 * REFUSED_FROM
    assert pv.abs_err_consumption.mean() == pytest.approx(np.nanmean(np.abs(released - true)[:, [0, 2]]))
    assert soc.welfare_usd == pytest.approx(np.nansum(h5py.File(run.h5)["market/welfare"][()]))


def test_empty_and_nan_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All-NaN emissions, no trade, no agent or month, no spend, no evaluation: figures drawn with notes."""
    notes: list[str] = []
    real = society_report._note
    monkeypatch.setattr(society_report, "_note", lambda ax, text: (notes.append(text), real(ax, text)))
    h5 = _add_society(_make_run(tmp_path / "nan.h5", t=3, market="dcopf", name="nan"), nan=True)
    html_path = write_report(h5, tmp_path / "out")
    rows = _summary(html_path)
    assert set(SOCIETY_FIGS) <= set(_pngs(html_path))
    assert any("marginal" in n for n in notes) and any("Lorenz" in n for n in notes)
    assert any("not evaluated" in n for n in notes) and any("no spend" in n for n in notes)
    assert rows["Total emissions"] == "0.000 t (upstream 0.000 t)"
    assert rows["Average emission factor"] == "n/a"
    assert rows["Mean marginal emission factor"] == "n/a (no nodal marginal factor)"
    assert rows["Carbon impact of P2P trades"].startswith("n/a (no trade")
    assert rows["Gini of surplus (study)"] == "n/a" and rows["Gini of bills (study)"] == "0.2000"
    assert rows["Mean surplus low-income / other agents"] == "n/a / n/a $ (0 / 0 agents)"
    assert rows["DP epsilon spent / budget"].startswith("n/a / 4")
    assert rows["DP error"] == "n/a (not evaluated)"
    with h5py.File(h5) as f:
        soc = load_society(f)
    assert soc is not None and soc.equity is not None and soc.equity.lorenz_shifted


def test_marginal_all_nan_is_noted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A market design without a network model (all-NaN marginal factors): the map notes it."""
    notes: list[str] = []
    real = society_report._note
    monkeypatch.setattr(society_report, "_note", lambda ax, text: (notes.append(text), real(ax, text)))
    h5 = _add_society(_make_run(tmp_path / "u.h5", t=4, market="uniform"), equity=False, privacy=False,
                      marginal_nan=True)  # fmt: skip
    html_path = write_report(h5, tmp_path / "out")
    assert set(EMISSIONS_FIGS) == set(_pngs(html_path)) & set(SOCIETY_FIGS)
    assert notes == ["no nodal marginal factor (all NaN: market design without a network model?)"]


def test_trade_tables_of_different_lengths(tmp_path: Path) -> None:
    """Emission rows that do not match the market's trades are not paired: the P2P row says so."""
    h5 = _add_society(_make_run(tmp_path / "m.h5", t=4, market="uniform"), equity=False, privacy=False)
    with h5py.File(h5, "a") as f:
        kg = f["emissions/trades/kg"][()]
        del f["emissions/trades/kg"]
        f["emissions/trades/kg"] = kg[:-1]
    rows = _summary(write_report(h5, tmp_path / "out"))
    assert (
        rows["Carbon impact of P2P trades"]
        == f"n/a ({kg.size - 1} emission rows for {kg.size} trades: not matched)"
    )


def test_single_group_only_its_figures(tmp_path: Path) -> None:
    """A run with only /privacy (no market) gets the privacy figures and rows alone."""
    h5 = _add_society(
        _make_run(tmp_path / "p.h5", t=48, name="p"), emissions=False, equity=False, evaluate=False
    )
    html_path = write_report(h5, tmp_path / "out")
    rows = _summary(html_path)
    srcs = set(_pngs(html_path))
    assert set(PRIVACY_FIGS) <= srcs and not (set(EMISSIONS_FIGS) | set(EQUITY_FIGS)) & srcs
    assert "<h2>Society (privacy)</h2>" in html_path.read_text(encoding="utf-8")
    assert set(rows) & set(LABELS) == set(PRIVACY_LABELS)


def test_run_without_groups_has_no_society_section(tmp_path: Path) -> None:
    """No society group: no society figure, heading or row; the page is the same as before."""
    html_path = write_report(_make_run(tmp_path / "plain.h5", t=4, market="uniform"), tmp_path / "out")
    text = html_path.read_text(encoding="utf-8")
    assert not {p.name for p in (tmp_path / "out").glob("*.png")} & set(SOCIETY_FIGS)
    assert "Society" not in text and not set(LABELS) & set(_summary(html_path))


def test_long_run_daily_and_monthly(tmp_path: Path) -> None:
    """A 40-day run (daily series, two months with one NaN monthly Gini) gets every society figure."""
    h5 = _add_society(_make_run(tmp_path / "long.h5", t=24 * 40, nan_steps=(), market="uniform", name="long"))
    html_path = write_report(h5, tmp_path / "out")
    assert set(SOCIETY_FIGS) <= set(_pngs(html_path))
    assert _summary(html_path)["Gini of surplus (study)"] == "0.4321 (monthly 0.4100–0.4100 over 1 months)"


def test_compare_runs_society_table_and_figures(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two society runs and one plain run: table ('none' for the plain one), both comparison figures drawn."""
    notes: list[str] = []
    real = society_report._note
    monkeypatch.setattr(society_report, "_note", lambda ax, text: (notes.append(text), real(ax, text)))
    b = _add_society(
        _make_run(tmp_path / "b.h5", t=24, market="dcopf", name="b"), epsilon=0.1, mae=0.4, gini=0.2
    )
    plain = _make_run(tmp_path / "plain.h5", t=2, name="plain")
    path = compare_runs([run.h5, b, plain], tmp_path / "cmp")
    text = path.read_text(encoding="utf-8")
    table = text.split("<table id='society_comparison'>")[1].split("</table>")[0]
    assert "<th>soc</th><th>b</th><th>plain</th>" in table

    def cells(label: str) -> list[str]:
        m = re.search(rf"<tr><th>{re.escape(label)}</th>(.*?)</tr>", table)
        assert m is not None, label
        return re.findall(r"<td>(.*?)</td>", m.group(1))

    assert set(COMPARE_LABELS) == set(re.findall(r"<tr><th>(.*?)</th><td>", table))
    assert cells("Society data") == ["emissions, equity, privacy", "emissions, equity, privacy", "none"]
    assert [c[:6] for c in cells("Gini of surplus (study)")] == ["0.4321", "0.2000", "–"]
    with h5py.File(run.h5) as f:
        welfare = np.nansum(f["market/welfare"][()])
    assert _float(cells("Total welfare")[0]) == pytest.approx(welfare, abs=0.01)
    assert set(COMPARE_FIGS) <= set(_pngs(path)) and not notes
    for fn in COMPARE_FIGS:
        assert (tmp_path / "cmp" / fn).read_bytes()[:8] == PNG_MAGIC


def test_compare_runs_one_privacy_run_noted(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fewer than two runs with a DP release (or with both emissions and a Gini): the figures note it."""
    notes: list[str] = []
    real = society_report._note
    monkeypatch.setattr(society_report, "_note", lambda ax, text: (notes.append(text), real(ax, text)))
    b = _add_society(_make_run(tmp_path / "b.h5", t=4, name="b"), privacy=False, equity=False)
    compare_runs([run.h5, b], tmp_path / "cmp")
    assert notes == [
        "1 run(s) with a DP release: no comparison",
        "1 run(s) with both emissions and a Gini of surplus: no trade-off to read",
    ]


def test_compare_runs_without_groups_unchanged(tmp_path: Path) -> None:
    """No run with a society group: no society table or figure in the comparison."""
    a, b = _make_run(tmp_path / "a.h5", t=2, name="a"), _make_run(tmp_path / "b.h5", t=2, name="b")
    path = compare_runs([a, b], tmp_path / "cmp")
    assert _pngs(path) == ["comparison_prices.png"] and "Society" not in path.read_text(encoding="utf-8")
    assert not any((tmp_path / "cmp" / fn).exists() for fn in COMPARE_FIGS)
