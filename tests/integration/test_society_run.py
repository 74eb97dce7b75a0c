"""Emissions and equity in the co-simulation: totals from the dispatch, carbon price, money and Gini."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import cosim
from cosim.errors import ScenarioError

STUDY = """
name: society
seed: 42
time: {{start: 2016-06-01T00:00:00, duration: 2d, step: 1h}}
grid: {{source: simbench, code: 1-LV-semiurb4--0-sw}}
agents: {{pv: {{share: 0.5}}, battery: {{share: 0.3}}, ev: {{share: 0.2}}}}
market: {market}
emissions: {{carbon_price_per_t: {carbon}}}
equity: {equity}
"""
DCOPF = "{design: dcopf}"


def run(tmp_path: Path, name: str, market: str = DCOPF, carbon: float = 0.0, equity: str = "{}") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(STUDY.format(market=market, carbon=carbon, equity=equity))
    return cosim.run(path, out=tmp_path / f"{name}.h5").path


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run(tmp_path_factory.mktemp("society"), "plain")


def test_total_emissions_are_dispatch_times_factors(plain: Path) -> None:
    """total = import x 527 + rooftop PV x 41 + other sgens x 48 (batteries 0) every hour; per-trade rows."""
    with h5py.File(plain) as f:
        award = f["market/award_mw"][:]
        kind = f["agents/kind"].asstr()[:]
        pv_mwh, sgen_mwh = (-award[:, kind == k].sum(axis=1) for k in ("pv", "sgen"))
        import_mwh = np.clip(award.sum(axis=1), 0.0, None)
        expected = 527.0 * import_mwh + 41.0 * pv_mwh + 48.0 * sgen_mwh
        np.testing.assert_allclose(f["emissions/total_kg"][:], expected, rtol=1e-6, atol=1e-9)
        assert len(f["emissions/trades/kg"]) == len(f["market/trades/mwh"])
        mef = f["emissions/marginal_kg_per_mwh"][:]
        assert mef.shape == (48, len(f["grid/bus/name"]))
        assert np.isfinite(mef).mean() > 0.9


def test_element_factors_override_their_kind(plain: Path, tmp_path: Path) -> None:
    """emissions.elements: the two PV agents supplying most and one sgen at their own factors, the other
    agents at their kind's: total = import x 527 + each agent's dispatch x its own factor, every hour."""
    with h5py.File(plain) as f:
        names, kind = f["agents/name"].asstr()[:], f["agents/kind"].asstr()[:]
        supplied_mwh = -f["market/award_mw"][:].clip(max=0.0).sum(axis=0)
    pv = np.flatnonzero(kind == "pv")
    top = pv[np.argsort(supplied_mwh[pv])[-2:]]
    assert supplied_mwh[top].min() > 0.01  # the overridden elements do supply
    elements = {str(names[top[0]]): 1000.0, str(names[top[1]]): 0.0}
    elements |= {str(names[a]): 300.0 for a in np.flatnonzero(kind == "sgen")[:1]}
    scenario = yaml.safe_load(STUDY.format(market=DCOPF, carbon=0.0, equity="{}"))
    scenario["emissions"]["elements"] = elements
    path = tmp_path / "elements.yaml"
    path.write_text(yaml.safe_dump(scenario))
    summary = cosim.run(path, out=tmp_path / "elements.h5")
    with h5py.File(summary.path) as f:
        award = f["market/award_mw"][:]
        factor = np.select([kind == "pv", kind == "sgen"], [41.0, 48.0], 0.0)
        factor[[list(names).index(n) for n in elements]] = list(elements.values())
        import_mwh = np.clip(award.sum(axis=1), 0.0, None)
        expected = 527.0 * import_mwh + -award.clip(max=0.0) @ factor
        np.testing.assert_allclose(f["emissions/total_kg"][:], expected, rtol=1e-6, atol=1e-9)
        with h5py.File(plain) as g:  # the same dispatch (no carbon price), other totals
            np.testing.assert_array_equal(award, g["market/award_mw"][:])
            assert not np.allclose(f["emissions/total_kg"][:], g["emissions/total_kg"][:])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gen 7", r"no generating element named 'gen 7'.*nearest: 'gen [0-2]'"),
        ("load 1", r"'load 1' is a load: it consumes"),
        ("ext_grid 0", r"upstream grid \(ext_grid\): set emissions.upstream"),
    ],
)
def test_unknown_element_is_refused_before_the_run(tmp_path: Path, name: str, message: str) -> None:
    """An element name that is no generating agent of the grid: ScenarioError at emissions.elements.<name>
    with the nearest valid names, and no results file is started."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ntime: {start: 2024-01-01T00:00:00, duration: 1h, step: 1h}\n"
        "grid: {source: pandapower, case: case5}\nmarket: {design: dcopf}\n"
        f"emissions: {{elements: {{gen 0: 10, '{name}': 5}}}}\n"
    )
    with pytest.raises(ScenarioError, match=message) as err:
        cosim.run(path, out=tmp_path / "bad.h5")
    assert [p for p, _ in err.value.problems] == [f"emissions.elements.{name}"]
    assert not (tmp_path / "bad.h5").exists()


def test_a_carbon_price_lowers_emissions(plain: Path, tmp_path: Path) -> None:
    """At 200 $/t the import costs 185 $/MWh: elastic demand below that is not served, emissions fall."""
    priced = run(tmp_path, "priced", carbon=200.0)
    with h5py.File(plain) as a, h5py.File(priced) as b:
        assert b["emissions/total_kg"][:].sum() < 0.95 * a["emissions/total_kg"][:].sum()
        assert np.nanmax(b["market/price_per_mwh"][:]) > np.nanmax(a["market/price_per_mwh"][:]) + 100.0


def test_surplus_is_zero_when_the_market_is_the_baseline_tariff(tmp_path: Path) -> None:
    """Under design tou with the baseline's own tariff every agent pays exactly the baseline."""
    tariff = "[{from_hour: 0, price_per_mwh: 60}, {from_hour: 17, price_per_mwh: 120}]"
    path = tmp_path / "tou.yaml"
    text = STUDY.format(market=f"{{design: tou, tariff: {tariff}}}", carbon=0, equity="{}")
    path.write_text(text.replace("emissions: {carbon_price_per_t: 0}\n", ""))
    out = cosim.run(path, out=tmp_path / "tou.h5").path
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["equity/surplus"][:], 0.0, atol=1e-9)
        assert f["equity/bill"][:].sum() > 0


def test_fairness_rule_conserves_money(plain: Path, tmp_path: Path) -> None:
    """A 20 $/MWh levy handed to the low-income households: money conserved, they gain, the others pay."""
    fair = run(tmp_path, "fair", equity="{rule: level_up, levy_per_mwh: 20}")
    with h5py.File(plain) as a, h5py.File(fair) as b:
        transfer, poor = b["equity/transfer"][:], b["equity/low_income"][:]
        assert abs(transfer.sum()) < 1e-9 and poor.sum() > 0
        assert transfer[poor].sum() > 0 and (transfer[~poor] <= 1e-12).all()
        np.testing.assert_allclose(b["equity/surplus"][:], a["equity/surplus"][:] + transfer, atol=1e-9)
        np.testing.assert_allclose(
            a["equity/surplus"][:], a["equity/baseline_cost"][:] - a["equity/net_cost"][:], atol=1e-9
        )
        lorenz = a["equity/lorenz"][:]
        assert lorenz[0].tolist() == [0.0, 0.0] and lorenz[-1].tolist() == [1.0, 1.0]


def test_private_release_stops_at_its_budget(tmp_path: Path) -> None:
    """1.0 per hour against a budget of 30: 30 releases, then refused (NaN) and the spend stays at 30."""
    path = tmp_path / "dp.yaml"
    text = STUDY.format(market=DCOPF, carbon=0, equity="{}")
    path.write_text(text + "privacy: {epsilon: 1.0, budget: 30.0, declared_max_kw: 15, evaluate: true}\n")
    out = cosim.run(path, out=tmp_path / "dp.h5").path
    with h5py.File(out) as f:
        spent, refused = f["privacy/epsilon_spent"][:], f["privacy/refused"][:]
        released, true = f["privacy/released"][:], f["privacy/true"][:]
        assert spent.max() == pytest.approx(30.0) and (np.diff(spent) >= 0).all()
        assert refused.sum() == 48 - 30 and np.isnan(released[refused]).all()
        assert np.isfinite(released[~refused]).all() and not np.allclose(released[~refused], true[~refused])
        assert f["privacy"].attrs["n_refused"] == 18 and f["privacy"].attrs["mae_consumption_mwh"] > 0
        n = released.shape[1] // 2
        assert (released[~refused, n:] == np.round(released[~refused, n:])).all()  # counts stay integers
