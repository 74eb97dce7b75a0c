"""Agent cores: profile resampling, clear-sky PV, battery self-consumption, EV charging, placement."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandapower.networks as pn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.agents import profiles
from cosim.models.agents.fleet import Batteries, EVs, build_fleet
from cosim.scenario import AgentsConfig

JAN1_2016 = int(dt.datetime(2016, 1, 1, tzinfo=dt.UTC).timestamp())


def batteries(n: int, eta_c: float = 0.95, eta_d: float = 0.95, soc: float = 0.5) -> Batteries:
    cap = np.full(n, 0.01)
    return Batteries(
        capacity_mwh=cap,
        power_mw=np.full(n, 0.005),
        eta_charge=eta_c,
        eta_discharge=eta_d,
        soc_min_mwh=0.0 * cap,
        soc_max_mwh=cap.copy(),
        soc_mwh=soc * cap,
        household=np.arange(n),
        pv=np.full(n, -1),
        ev=np.full(n, -1),
    )


def test_hourly_rows_are_the_mean_of_four_quarter_hours() -> None:
    """An hourly step takes the mean of the four 15-min profile rows it covers (pandas resample agrees)."""
    rng = np.random.default_rng(0)
    values = rng.random((35136, 3))
    table = profiles.ProfileTable(values, 900)
    times = JAN1_2016 + 3600 * np.arange(50)
    got = np.array([table.mean(r) for r in table.rows_for(times, 3600)])
    expected = values[:200].reshape(50, 4, 3).mean(axis=1)
    np.testing.assert_allclose(got, expected)


def test_rows_wrap_by_time_since_new_year() -> None:
    """A step in another year uses the row of the same time since 1 January."""
    table = profiles.ProfileTable(np.arange(35136.0).reshape(-1, 1), 900)
    t2021 = int(dt.datetime(2021, 3, 1, 6, tzinfo=dt.UTC).timestamp())
    (row,) = table.rows_for(np.array([t2021]), 900)
    assert row[0] == ((59 * 24 + 6) * 4)


def test_clear_sky_pv_is_zero_at_night_and_peaks_at_noon() -> None:
    """Clear-sky PV: nothing at midnight, the day's maximum at solar noon, higher in June than December."""
    table = profiles.clear_sky_pv_pu(2016, 51.0)
    day = table.values[:, 0].reshape(-1, 96)
    assert day[:, 0].max() == 0.0
    assert set(np.argmax(day, axis=1) // 4) <= {11, 12}
    assert day[171].max() > day[355].max() > 0
    assert table.values.max() <= 0.75


@settings(max_examples=200, deadline=None)
@given(
    net_kw=st.lists(st.floats(-20, 20), min_size=1, max_size=8),
    soc=st.floats(0, 1),
    dt_h=st.sampled_from([0.25, 1.0]),
)
def test_battery_limits_and_energy_balance(net_kw: list[float], soc: float, dt_h: float) -> None:
    """Self-consumption never exceeds power or state-of-charge limits, follows the surplus sign and
    books energy through the efficiencies exactly."""
    n = len(net_kw)
    b = batteries(n, soc=soc)
    before = b.soc_mwh.copy()
    p = np.array(net_kw) / 1000.0
    p_bat = b.dispatch(p, dt_h)
    assert np.all(np.abs(p_bat) <= b.power_mw + 1e-15)
    assert np.all((b.soc_mwh >= -1e-15) & (b.soc_mwh <= b.capacity_mwh + 1e-15))
    assert np.all(p_bat * p <= 1e-18)  # charges from surplus (p<0), discharges into deficit
    assert np.all(np.abs(p_bat) <= np.abs(p) + 1e-15)  # never exports or imports to cycle
    charge, discharge = np.clip(p_bat, 0, None), np.clip(-p_bat, 0, None)
    np.testing.assert_allclose(b.soc_mwh - before, (charge * 0.95 - discharge / 0.95) * dt_h, atol=1e-15)


def test_storage_round_trip_sets_the_arbitrage_threshold() -> None:
    """A full cycle at 0.9/0.9 returns 81 % of the energy, so arbitrage pays only when
    p_sell/p_buy >= 1/(eta_c*eta_d) = 1.2346 (reference value in docs/references.md)."""
    b = batteries(1, eta_c=0.9, eta_d=0.9, soc=0.0)
    e_in = e_out = 0.0
    for _ in range(10):
        e_in += b.dispatch(np.array([-1.0]), 1.0)[0]  # big surplus: charge at full power
    for _ in range(10):
        e_out -= b.dispatch(np.array([1.0]), 1.0)[0]
    assert b.soc_mwh[0] == pytest.approx(0.0, abs=1e-15)
    assert e_in / e_out == pytest.approx(1.2346, abs=1e-4)


def test_ev_charges_its_daily_energy_inside_its_window() -> None:
    """An EV plugged 18:00-07:00 charges its 8 kWh at 11 kW right after arrival, never while away."""
    evs = EVs(
        charger_mw=np.array([0.011]),
        daily_mwh=np.array([0.008]),
        arrival_h=np.array([18.0]),
        departure_h=np.array([7.0]),
    )
    hours = np.arange(12, 84, 0.25) % 24  # from noon: three evenings
    p = np.array([evs.charge(h, 0.25)[0] for h in hours])
    away = (hours >= 7) & (hours < 18)
    assert np.all(p[away] == 0)
    assert p.sum() * 0.25 == pytest.approx(3 * 0.008)
    assert p.max() == pytest.approx(0.011)


def test_fleet_places_devices_by_seed_and_adds_them_to_the_net() -> None:
    """Placement follows the shares, repeats with the seed, and every device is an element of the net."""
    cfg = AgentsConfig.model_validate(
        {"pv": {"share": 0.5}, "battery": {"share": 0.25}, "ev": {"share": 0.5}}
    )

    def fleet(seed: int):
        net = pn.create_kerber_landnetz_kabel_1()
        tables = profiles.constant_tables(net)
        times = JAN1_2016 + 3600 * np.arange(24)
        pv = profiles.clear_sky_pv_pu(2016, 51.0)
        return net, build_fleet(net, cfg, np.random.default_rng(seed), tables, pv, times, 3600)

    net, f = fleet(1)
    n_home = len(net.load) - len(f.table.where("ev"))
    assert len(f.table.where("pv")) == round(0.5 * n_home)
    assert len(f.table.where("battery")) == round(0.25 * n_home)
    assert len(net.storage) == len(f.table.where("battery"))
    for (table, idx), bus in zip(f.table.elements, f.table.bus, strict=True):
        assert net[table].at[idx, "bus"] == bus
    assert list(fleet(1)[1].table.name) == list(f.table.name)
    assert list(fleet(2)[1].table.name) != list(f.table.name)
    noon = f.step(12)
    assert np.all(noon.p_mw[f.table.where("pv")] < 0)
    assert len(set(f.table.name)) == len(f.table)


def test_fleet_refuses_more_batteries_than_pv_homes() -> None:
    """Asking for batteries in more homes than have PV names the YAML key."""
    cfg = AgentsConfig.model_validate({"pv": {"share": 0.1}, "battery": {"share": 0.5}})
    net = pn.create_kerber_landnetz_kabel_1()
    tables = profiles.constant_tables(net)
    with pytest.raises(ValueError, match="agents.battery.share"):
        pv = profiles.clear_sky_pv_pu(2016, 51.0)
        build_fleet(net, cfg, np.random.default_rng(0), tables, pv, np.array([JAN1_2016]), 3600)


def test_simbench_tables_match_simbench_absolute_values() -> None:
    """SimBench tables hold simbench's own absolute profiles (element order of the net)."""
    import simbench

    from cosim.models.grid.network import load_network

    net = load_network("simbench", code="1-LV-rural1--0-sw")
    tables = profiles.simbench_tables(net)
    absolute = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    np.testing.assert_allclose(tables["load_p_mw"].values, absolute[("load", "p_mw")].to_numpy())
    np.testing.assert_allclose(tables["sgen_p_mw"].values, absolute[("sgen", "p_mw")].to_numpy())
    assert profiles.simbench_pv_pu(net, None) is not None
    with pytest.raises(ValueError, match="no renewables profile"):
        profiles.simbench_pv_pu(net, "PV99")
