"""Markets in the co-simulation: published LMPs from the CLI path, awards as set-points, money balance."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import cosim
from cosim.errors import CosimError, ScenarioError
from tests.conftest import ROOT

LV_MARKET = """
name: lv-market
seed: 3
time: {{start: 2016-06-01T00:00:00, duration: {duration}, step: 1h}}
grid: {{source: simbench, code: 1-LV-semiurb4--0-sw}}
agents: {{pv: {{share: 0.5}}, battery: {{share: 0.3}}, ev: {{share: 0.2}}}}
market: {{design: {design}, on_failure: {on_failure}}}
"""


def lv_market(tmp_path: Path, design: str, duration: str = "1d", on_failure: str = "continue") -> Path:
    path = tmp_path / f"{design}.yaml"
    path.write_text(LV_MARKET.format(design=design, duration=duration, on_failure=on_failure))
    return path


def test_pjm5_scenario_gives_published_lmps(tmp_path: Path) -> None:
    """scenarios/pjm5.yaml (case5, dcopf, one step) records the LMPs and cost of Li & Bo (2010)."""
    summary = cosim.run(ROOT / "scenarios" / "pjm5.yaml", out=tmp_path / "pjm5.h5")
    with cosim.open_results(summary.path) as res:
        np.testing.assert_allclose(
            res["market/price_per_mwh"].iloc[0], [16.98, 26.38, 30.00, 39.94, 10.00], atol=0.005
        )
        assert res["market/cost"].iloc[0] == pytest.approx(17479.90, abs=0.01)
        assert res["market/congestion_rent"].iloc[0] > 0
        # the AC power flow then runs the awarded dispatch: generators at their awards
        np.testing.assert_allclose(res["agents/p_mw"].iloc[0], res["market/award_mw"].iloc[0])


def test_acopf_on_a_distribution_grid(tmp_path: Path) -> None:
    """AC-OPF clears the LV grid (its 150-degree trafo shift left out: the net is radial), with loss-driven
    price differences between buses and reactive prices, and its awards and voltages drive the grid."""
    summary = cosim.run(lv_market(tmp_path, "acopf", "2h"), out=tmp_path / "ac.h5")
    with cosim.open_results(summary.path) as res:
        assert res["market/ok"].all()
        price = res["market/price_per_mwh"].to_numpy()
        assert np.all(np.nanmax(price, axis=1) - np.nanmin(price, axis=1) > 1e-3)
        assert np.isfinite(res["market/price_q_per_mvarh"].to_numpy()).any()
        np.testing.assert_allclose(res["agents/p_mw"], res["market/award_mw"], atol=1e-9)
        # the grid runs at the OPF's state, the loads at each hour's own power factor (as in the bids)
        np.testing.assert_allclose(res["grid/bus/vm_pu"], res["market/vm_pu"], atol=1e-4, rtol=0)


@pytest.mark.parametrize("design", ["uniform", "dcopf"])
def test_awards_are_setpoints_and_money_balances(tmp_path: Path, design: str) -> None:
    """A day of a P2P market on the LV grid: awards drive the grid, trades carry the cleared energy, and
    agents' payments plus the upstream grid's equal the congestion rent each hour."""
    summary = cosim.run(lv_market(tmp_path, design), out=tmp_path / f"{design}.h5")
    assert summary.n_market_failed == 0
    with cosim.open_results(summary.path) as res, h5py.File(summary.path) as f:
        assert res["market/ok"].all()
        np.testing.assert_allclose(res["agents/p_mw"], res["market/award_mw"], atol=1e-9)
        trades = {k: f[f"market/trades/{k}"][:] for k in ("step", "buyer", "seller", "mwh", "price")}
        traded = np.bincount(trades["step"], trades["mwh"], minlength=24)
        np.testing.assert_allclose(traded, res["market/cleared_mwh"], atol=1e-9)
        kinds = res["agents/kind"].to_numpy()
        soc = res["agents/soc_mwh"].to_numpy()
        assert np.all(soc >= 0.05 * 0.01 - 1e-12) and np.all(soc <= 0.95 * 0.01 + 1e-12)
        assert (res["market/unserved_mwh"] == 0).all()
        assert (res["market/congestion_rent"] >= -1e-6).all()
        price = res["market/price_per_mwh"]
        if design == "uniform":
            assert np.allclose(price.to_numpy(), price.to_numpy()[:, :1])
            # agents' payments are the upstream grid's receipts: money balances at one price
            upstream_net_mwh = res["market/award_mw"].sum(axis=1)  # + = agents bought from upstream
            np.testing.assert_allclose(
                res["market/payment"].sum(axis=1), upstream_net_mwh * price.iloc[:, 0], rtol=1e-6, atol=1e-9
            )
        assert "pv" in set(kinds)


def test_failed_clearing_continues_or_stops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clearing that fails at step 3 is flagged and the agents follow their forecast (continue), or the
    run stops naming the step and design (stop)."""
    from cosim.models.market.auction import UniformAuction

    original = UniformAuction.clear
    calls = {"n": 0}

    def flaky(self, bids):  # noqa: ANN001, ANN202
        calls["n"] += 1
        result = original(self, bids)
        if calls["n"] == 4:
            from dataclasses import replace

            return replace(result, status="solver error")
        return result

    monkeypatch.setattr(UniformAuction, "clear", flaky)
    summary = cosim.run(lv_market(tmp_path, "uniform", "6h"), out=tmp_path / "c.h5")
    assert summary.n_market_failed == 1
    with cosim.open_results(summary.path) as res:
        assert list(res["market/ok"]) == [True, True, True, False, True, True]
        assert res["market/price_per_mwh"].iloc[3].isna().all()
        assert res["grid/converged"].all()
    calls["n"] = 0
    with pytest.raises(CosimError, match="market design 'uniform' failed at step 3"):
        cosim.run(lv_market(tmp_path, "uniform", "6h", "stop"), out=tmp_path / "s.h5")


BASELINES = """
name: baseline
seed: 3
time: {{start: 2016-07-01T00:00:00, duration: 1d, step: 1h}}
grid: {{source: simbench, code: 1-LV-semiurb4--0-sw}}
agents: {{pv: {{share: 0.5}}, battery: {{share: 0.3}}}}
market:
  design: {design}
  tariff:
    - {{from_hour: 0, price_per_mwh: 100}}
    - {{from_hour: 7, price_per_mwh: 200}}
    - {{from_hour: 21, price_per_mwh: 120}}
{extra}
"""


def baseline_run(tmp_path: Path, design: str, extra: str = "") -> cosim.Results:
    path = tmp_path / f"{design}.yaml"
    path.write_text(BASELINES.format(design=design, extra=extra))
    if design == "central":
        path.write_text(path.read_text().split("  tariff:")[0])
    return cosim.open_results(cosim.run(path, out=tmp_path / f"{design}.h5").path)


def test_tou_dr_and_central_baselines(tmp_path: Path) -> None:
    """tou: posted prices, elastic demand drops at the peak; dr: an event raises the price and cuts demand
    further inside it only; central: fixed demand fully served at least cost, batteries idle."""
    event = "  dr_events: [{start: 2016-07-01T17:00:00, end: 2016-07-01T19:00:00, price_adder_per_mwh: 500}]"
    tou, dr, central = (
        baseline_run(tmp_path, "tou"),
        baseline_run(tmp_path, "dr", event),
        baseline_run(tmp_path, "central"),
    )
    with tou, dr, central:
        price_tou, price_dr = tou["market/price_per_mwh"].iloc[:, 0], dr["market/price_per_mwh"].iloc[:, 0]
        assert list(price_tou.iloc[[3, 12, 22]]) == [100.0, 200.0, 120.0]
        assert list((price_dr - price_tou).iloc[16:20]) == [0.0, 500.0, 500.0, 0.0]
        loads = (tou["agents/kind"] == "load").to_numpy()
        use_tou = tou["agents/p_mw"].loc[:, loads].sum(axis=1)
        use_dr = dr["agents/p_mw"].loc[:, loads].sum(axis=1)
        assert (use_dr.iloc[17:19] < use_tou.iloc[17:19] - 1e-9).all()
        np.testing.assert_allclose(use_dr.drop(use_dr.index[17:19]), use_tou.drop(use_tou.index[17:19]))
        assert central["market/ok"].all() and (central["market/unserved_mwh"] == 0).all()
        soc = central["agents/soc_mwh"].to_numpy()
        np.testing.assert_allclose(soc - soc[:1], 0.0)  # idle batteries
        assert tou["market/cleared_mwh"].sum() > 0 and len(tou.keys()) > 0


def test_case9_acopf_scenario_reproduces_matpower(tmp_path: Path) -> None:
    """case9 with an acopf market for one hour: `/market/cost` is MATPOWER's runopf objective 5296.69 $/h,
    constant cost terms (150 + 600 + 335) included; `/market/variable_cost` leaves them out."""
    (tmp_path / "c9.yaml").write_text(
        "name: c9\ntime: {start: 2024-01-01, duration: 1h}\n"
        "grid: {source: pandapower, case: case9}\nmarket: {design: acopf}\n"
    )
    with cosim.open_results(cosim.run(tmp_path / "c9.yaml", out=tmp_path / "c9.h5").path) as res:
        assert res["market/cost"].iloc[0] == pytest.approx(5296.69, abs=0.01)
        assert res["market/variable_cost"].iloc[0] + 1085.0 == pytest.approx(5296.69, abs=0.01)
        assert res["market/price_q_per_mvarh"].notna().all().all()
        np.testing.assert_allclose(res["agents/p_mw"].iloc[0], res["market/award_mw"].iloc[0], atol=1e-6)


@pytest.mark.parametrize("case", ["case9", "case30"])
def test_acopf_state_is_the_grid_state(tmp_path: Path, case: str) -> None:
    """With acopf the recorded AC power flow runs at the OPF's voltages and reactive dispatch: its bus
    voltages equal the OPF's (`/market/vm_pu`) to 1e-4 pu every hour (at the cases' own set-points they
    differ by 0.11 pu on case9)."""
    (tmp_path / "s.yaml").write_text(
        f"name: s\ntime: {{start: 2024-01-01, duration: 2h}}\n"
        f"grid: {{source: pandapower, case: {case}}}\nmarket: {{design: acopf}}\n"
    )
    with cosim.open_results(cosim.run(tmp_path / "s.yaml", out=tmp_path / "s.h5").path) as res:
        assert res["market/ok"].all() and res["grid/converged"].all()
        vm_opf = res["market/vm_pu"].to_numpy()
        assert vm_opf.shape == (2, len(res["grid/bus/name"])) and np.isfinite(vm_opf).all()
        np.testing.assert_allclose(res["grid/bus/vm_pu"].to_numpy(), vm_opf, atol=1e-4, rtol=0)
        q_opf = res["market/q_mvar"].to_numpy()
        assert np.isfinite(q_opf).all() and np.abs(q_opf).max() > 1.0  # reactive power was dispatched


def test_pjm5_acopf_scenario_reproduces_matpower_under_both_branch_limits(tmp_path: Path) -> None:
    """scenarios/pjm5_acopf.yaml: case5's AC-OPF costs 17551.89 $/h with MATPOWER's MVA limits (PGLib-OPF
    case5_pjm); limiting current instead (pandapower's default) gives pandapower's runopp optimum 16160.45."""
    scenario = (ROOT / "scenarios" / "pjm5_acopf.yaml").read_text()
    assert "branch_limit: mva" in scenario
    (tmp_path / "current.yaml").write_text(scenario.replace("branch_limit: mva", "branch_limit: current"))
    mva = cosim.run(ROOT / "scenarios" / "pjm5_acopf.yaml", out=tmp_path / "mva.h5")
    current = cosim.run(tmp_path / "current.yaml", out=tmp_path / "current.h5")
    with cosim.open_results(mva.path) as a, cosim.open_results(current.path) as b:
        assert a["market/ok"].all() and b["market/ok"].all()
        assert a["market/cost"].iloc[0] == pytest.approx(17551.89, abs=0.02)
        assert b["market/cost"].iloc[0] == pytest.approx(16160.45, abs=0.02)
        np.testing.assert_allclose(a["grid/bus/vm_pu"].to_numpy(), a["market/vm_pu"].to_numpy(), atol=1e-4)


def test_scarce_supply_sheds_inelastic_demand_at_voll(tmp_path: Path) -> None:
    """With no import from upstream at night, the market sheds load at the value of lost load
    and records the unserved energy; the grid runs what was served."""
    path = lv_market(tmp_path, "dcopf", "3h")
    path.write_text(
        path.read_text().replace(
            "market: {design: dcopf", "market: {upstream: {max_import_mw: 0.0}, design: dcopf"
        )
    )
    with cosim.open_results(cosim.run(path, out=tmp_path / "scarce.h5").path) as res:
        shed = (res["market/unserved_mwh"] > 1e-6).to_numpy()
        assert shed[-1]  # batteries cover the first night hours, then load is shed
        assert (res["market/price_per_mwh"].to_numpy()[shed] == 3000.0).all()  # shedding prices at VOLL
        served = res["market/award_mw"].sum(axis=1)
        np.testing.assert_allclose(res["grid/import_mw"], served + res["grid/losses_mw"], atol=1e-6)


def test_scopf_run_records_security_cost_and_the_outages_it_secures(tmp_path: Path) -> None:
    """scopf on the MV grid: security cost >= 0 per hour; with no contingency it is the dcopf result."""
    base = "name: n1\ntime: {start: 2016-06-01T00:00:00, duration: 6h, step: 1h}\n"
    base += "grid: {source: simbench, code: 1-MV-rural--0-sw}\n"
    runs = {}
    for name, market in [
        ("dc", "{design: dcopf}"),
        ("n1", "{design: scopf}"),
        ("none", "{design: scopf, contingencies: []}"),
    ]:
        (tmp_path / f"{name}.yaml").write_text(base + f"market: {market}\n")
        runs[name] = cosim.run(tmp_path / f"{name}.yaml", out=tmp_path / f"{name}.h5").path
    with h5py.File(runs["n1"]) as f, h5py.File(runs["none"]) as g, h5py.File(runs["dc"]) as d:
        assert (f["market/security_cost"][:] >= -1e-6).all()
        secured, islanding = (
            json.loads(f["market"].attrs[k]) for k in ("secured_outages", "islanding_outages")
        )
        assert len(secured) >= 2 and len(islanding) > 50  # a radial grid: most outages island a feeder
        np.testing.assert_allclose(g["market/price_per_mwh"][:], d["market/price_per_mwh"][:], atol=1e-6)
        np.testing.assert_allclose(g["market/security_cost"][:], 0.0, atol=1e-6)
    (tmp_path / "bad.yaml").write_text(base + "market: {design: scopf, contingencies: [line 9999]}\n")
    with pytest.raises(ScenarioError, match="market.contingencies"):
        cosim.run(tmp_path / "bad.yaml", out=tmp_path / "bad.h5")


def test_admm_reaches_the_uniform_auction(tmp_path: Path) -> None:
    """Decentralised clearing gives the central prices (0.01 $/MWh) and welfare (1e-4), with its traces."""
    upstream = "upstream: {max_import_mw: 0.5, max_export_mw: 0.5}"
    out = {}
    for design in ("admm", "uniform"):
        path = lv_market(tmp_path, design)
        path.write_text(path.read_text().replace(f"design: {design},", f"design: {design}, {upstream},"))
        out[design] = cosim.run(path, out=tmp_path / f"{design}.h5").path
    with h5py.File(out["admm"]) as a, h5py.File(out["uniform"]) as u:
        assert a["market/ok"][:].all()
        np.testing.assert_allclose(a["market/price_per_mwh"][:], u["market/price_per_mwh"][:], atol=0.01)
        np.testing.assert_allclose(a["market/welfare"][:], u["market/welfare"][:], rtol=1e-4)
        iterations = a["market/admm_iterations"][:]
        assert (iterations >= 1).all()
        trace = a["market/admm_residual"]
        assert len(trace["step"]) == iterations.sum()
        assert (a["market/admm_messages"][:] >= 2 * iterations).all()


@pytest.mark.parametrize(
    ("import_price", "export_price", "cycles"), [(80.0, 30.0, True), (100.0, 90.0, False)]
)
def test_arbitrage_batteries_cycle_only_above_breakeven(
    tmp_path: Path, import_price: float, export_price: float, cycles: bool
) -> None:
    """Batteries (eta 0.9/0.9) plan against yesterday's prices: with import/export = 2.67 they buy the PV
    surplus at the export price and sell in the evening at a profit; at 1.11 < 1.2346 they never move."""
    path = tmp_path / "arb.yaml"
    path.write_text(
        LV_MARKET.format(design="uniform", duration="2d", on_failure="continue")
        .replace("pv: {share: 0.5}", "pv: {share: 1.0, kwp_min: 8, kwp_max: 12}")
        .replace("battery: {share: 0.3}", "battery: {share: 0.3, eta_charge: 0.9, eta_discharge: 0.9}")
        .replace("on_failure: continue}", "on_failure: continue, battery_bidding: arbitrage, upstream: "
                 f"{{import_price_per_mwh: {import_price}, export_price_per_mwh: {export_price}}}}}")
    )  # fmt: skip
    with cosim.open_results(cosim.run(path, out=tmp_path / "arb.h5").path) as res:
        battery = [c for c in res["agents/p_mw"].columns if c.endswith("battery")]
        p_mw = res["agents/p_mw"][battery].to_numpy()
        profit = res["agents/storage_profit"].to_numpy()
        payment = res["market/payment"][battery].to_numpy()
    assert np.all(p_mw[:24] == 0.0)  # the first day: no forecast yet
    np.testing.assert_allclose(profit, -payment)
    if cycles:
        assert (p_mw > 1e-4).any() and (p_mw < -1e-4).any()
        assert profit.sum() > 0.0
    else:
        assert np.all(np.abs(p_mw) < 1e-12) and np.all(profit == 0.0)


def _stochastic(tmp_path: Path, extra: str, battery_share: float = 0.3) -> Path:
    path = tmp_path / "sto.yaml"
    text = LV_MARKET.format(design="stochastic", duration="2d", on_failure="continue")
    text = text.replace("battery: {share: 0.3}", f"battery: {{share: {battery_share}}}")
    path.write_text(text.replace("on_failure: continue}", f"on_failure: continue{extra}}}"))
    return path


def test_stochastic_day_ahead_settles_deviations_in_real_time(tmp_path: Path) -> None:
    """Two days cleared ahead against 6 scenarios: per day VSS >= 0 and EVPI >= 0; in real time loads and PV
    follow their profiles and every agent pays the day-ahead price for its schedule plus its deviation at
    the balancing prices (short at up, long at down)."""
    extra = ", stochastic: {n_scenarios: 6, up_price_per_mwh: 150, down_price_per_mwh: 10}"
    summary = cosim.run(_stochastic(tmp_path, extra), out=tmp_path / "sto.h5")
    with h5py.File(summary.path) as f:
        np.testing.assert_array_equal(f["market/day/day_step"][:], [0, 24])
        vss, evpi = f["market/day/vss"][:], f["market/day/evpi"][:]
        assert np.all(vss >= -1e-6) and np.all(evpi >= -1e-6) and evpi.sum() > 0
        assert f["market/ok"][:].all()
        kind = f["agents/kind"][:].astype(str)
        p_mw, award, pay = f["agents/p_mw"][:], f["market/award_mw"][:], f["market/payment"][:]
        price, balancing = f["market/price_per_mwh"][:, 0], f["market/balancing_cost"][:]
        scheduled = f["market/scheduled_mw"][:]
    with cosim.open_results(cosim.run(lv_market(tmp_path, "uniform", "2d"), out=tmp_path / "u.h5").path) as r:
        profile = r["agents/p_mw"].to_numpy()  # same seed, same agents: the profiles that happen
    follows = np.isin(kind, ("load", "ev", "pv", "sgen"))
    np.testing.assert_allclose(p_mw[:, follows], award[:, follows], atol=1e-12)
    loads = kind == "load"
    assert np.abs(p_mw[:, loads] - profile[:, loads]).max() < 1e-12  # loads are never curtailed here
    np.testing.assert_array_equal(p_mw[:, kind == "battery"], 0.0)
    dev = award - scheduled
    np.testing.assert_allclose(
        pay, price[:, None] * scheduled + 150.0 * dev.clip(0) + 10.0 * dev.clip(None, 0)
    )
    np.testing.assert_allclose(balancing, (pay - price[:, None] * scheduled).sum(axis=1))
    assert np.abs(dev[:, kind == "load"]).max() > 0  # forecast errors: loads deviated from the schedule


def test_stochastic_with_a_perfect_forecast_is_the_deterministic_auction(tmp_path: Path) -> None:
    """No forecast error (one scenario, sd 0): VSS = EVPI = 0, nothing to balance, and every hour's welfare
    and cleared energy equal the uniform auction's on the same bids (batteries out of both)."""
    extra = ", stochastic: {n_scenarios: 1, pv_error_sd: 0, load_error_sd: 0}"
    sto = cosim.run(_stochastic(tmp_path, extra, battery_share=0.0), out=tmp_path / "sto.h5")
    uni = tmp_path / "uni.yaml"
    uni.write_text(lv_market(tmp_path, "uniform", "2d").read_text().replace("share: 0.3", "share: 0.0"))
    with h5py.File(sto.path) as f, h5py.File(cosim.run(uni, out=tmp_path / "uni.h5").path) as g:
        np.testing.assert_allclose(f["market/day/vss"][:], 0.0, atol=1e-6)
        np.testing.assert_allclose(f["market/day/evpi"][:], 0.0, atol=1e-6)
        np.testing.assert_allclose(f["market/balancing_cost"][:], 0.0, atol=1e-9)
        for key in ("welfare", "cleared_mwh"):
            np.testing.assert_allclose(f[f"market/{key}"][:], g[f"market/{key}"][:], rtol=1e-7, atol=1e-7)
