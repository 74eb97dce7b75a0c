"""Outages during a run: islanding around a grid-forming battery, and a line outage that cuts off a feeder."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import cosim
from cosim.errors import ScenarioError

EVENTS = """
name: events
seed: 3
time: {{start: 2016-06-01T00:00:00, duration: 1d, step: 1h}}
grid: {{source: simbench, code: 1-LV-semiurb4--0-sw}}
agents: {{pv: {{share: 0.5}}, battery: {{share: 0.3}}, ev: {{share: 0.2}}}}
market: {{design: {design}, critical_loads: [LV4.101 Load 3, LV4.101 Load 30]}}
events:
  - {{kind: island, start: 2016-06-01T12:00:00, duration: 10h, reserve_share: 0.2}}
  - {{kind: line_outage, element: line 3, start: 2016-06-01T05:00:00, duration: 3h}}
"""


@pytest.fixture(scope="module", params=["dcopf", "uniform"])
def events_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp(request.param)
    path = tmp / "events.yaml"
    path.write_text(EVENTS.format(design=request.param))
    return cosim.run(path, out=tmp / "events.h5").path


def test_island_runs_alone_around_the_grid_forming_battery(events_run: Path) -> None:
    """Islanded 12:00-22:00: no import, no trade with the upstream grid, and the grid-forming battery (the
    power flow's slack) delivers what the other agents' net consumption and the losses need."""
    with h5py.File(events_run) as f:
        islanded = f["grid/islanded"][:].astype(bool)
        np.testing.assert_array_equal(np.flatnonzero(islanded), np.arange(12, 22))
        assert np.all(f["grid/import_mw"][islanded] == 0.0) and np.all(f["grid/import_mw"][~islanded] != 0.0)
        trades = {k: f[f"market/trades/{k}"][:] for k in ("step", "buyer", "seller")}
        during = np.isin(trades["step"], np.flatnonzero(islanded))
        assert during.any() and np.all(trades["buyer"][during] >= 0) and np.all(trades["seller"][during] >= 0)
        unit = int(np.argmax(f["agents/soc_mwh"][11]))  # (the battery with most energy holds the reserve)
        names, kind = f["agents/name"][:].astype(str), f["agents/kind"][:].astype(str)
        gf = np.flatnonzero(names == f["agents/storage_name"][unit].decode())[0]
        p_mw = np.delete(f["agents/p_mw"][:], gf, axis=1)
        balance = p_mw.sum(axis=1) + f["grid/losses_mw"][:]
        np.testing.assert_allclose(f["grid/grid_forming_mw"][islanded], balance[islanded], atol=1e-7)  # 0.1 W
        assert np.isnan(f["grid/grid_forming_mw"][~islanded]).all()
        assert f["grid/converged"][:].all()
        assert set(kind) >= {"battery", "pv"}


def test_critical_loads_are_served_first_and_shed_last(events_run: Path) -> None:
    """In the island the price rises to the value of lost load where demand is shed; a critical load is shed
    only in hours when no other load is served; unserved energy is only in island or cut-off hours."""
    with h5py.File(events_run) as f:
        critical = f["agents/critical"][:]
        kind = f["agents/kind"][:].astype(str)
        unserved, award = f["agents/unserved_mwh"][:], f["market/award_mw"][:]
        price, islanded = f["market/price_per_mwh"][:], f["grid/islanded"][:].astype(bool)
    assert critical.sum() == 2
    shed = unserved.sum(axis=1) > 1e-9
    assert shed[islanded].any() and not shed[~islanded & ~np.isin(np.arange(24), [5, 6, 7])].any()
    assert np.all(np.nanmax(price[shed & islanded], axis=1) >= 3000.0 - 1e-6)
    normal = (kind == "load") & ~critical
    first = (unserved[:, normal].sum(axis=1) > 1e-9) & (unserved[:, critical].sum(axis=1) == 0)
    assert np.any(first & (award[:, critical].min(axis=1) > 0))  # hours when only the critical are served
    for t in np.flatnonzero(unserved[:, critical].sum(axis=1) > 1e-9):
        assert np.all(award[t, normal] <= 1e-9), t  # a critical load is shed: no other load is served then
        assert np.nanmax(price[t]) >= 10000.0 - 1e-6


def test_line_outage_cuts_off_its_feeder(events_run: Path) -> None:
    """Line 3 out 05:00-08:00: the buses behind it are dark (NaN), their agents unserved, the rest normal."""
    with h5py.File(events_run) as f:
        vm = f["grid/bus/vm_pu"][:]
        unserved, p_mw = f["agents/unserved_mwh"][:], f["agents/p_mw"][:]
        bus, index = f["agents/bus"][:], f["grid/bus/index"][:]
        kind = f["agents/kind"][:].astype(str)
        loading = f["grid/line/loading_percent"][:, 3]
    dark = np.isnan(vm[5])
    assert dark.any() and np.isfinite(vm[[4, 8]]).all()
    np.testing.assert_array_equal(np.isnan(vm[5:8]), np.broadcast_to(dark, (3, len(dark))))
    cut_off = np.isin(bus, index[dark])
    loads = cut_off & (kind == "load")
    assert loads.any() and np.all(p_mw[5:8][:, cut_off] == 0.0) and np.all(unserved[5:8][:, loads] > 0)
    assert np.all(loading[5:8] == 0.0) and np.all(loading[[4, 8]] > 0.0)


def test_bad_events_are_refused_with_their_path(tmp_path: Path) -> None:
    """An unknown branch or grid-forming unit names the event; islands need a market that balances alone."""
    text = (
        EVENTS.format(design="dcopf")
        .replace("line 3", "line 999")
        .replace("reserve_share: 0.2", "reserve_share: 0.2, grid_forming: LV4.101 Load 3")
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as info:
        cosim.run(path, out=tmp_path / "bad.h5")
    problems = dict(info.value.problems)
    assert "line 999" in problems["events.1.element"] and "not a battery" in problems["events.0.grid_forming"]
    path.write_text(EVENTS.format(design="acopf"))
    with pytest.raises(ScenarioError, match="balance the microgrid alone"):
        cosim.load_scenario(path)


def test_island_goes_dark_when_the_grid_forming_battery_is_empty(tmp_path: Path) -> None:
    """No reserve, an island at night: the grid-forming battery sells out, then nothing can be served: no
    trade, every load's demand unserved, the slack idle; the upstream grid's return ends it."""
    path = tmp_path / "dark.yaml"
    text = EVENTS.format(design="uniform").replace("critical_loads: [LV4.101 Load 3, LV4.101 Load 30]", "")
    text = text.replace("start: 2016-06-01T12:00:00, duration: 10h, reserve_share: 0.2", "start: "
                        "2016-06-01T00:00:00, duration: 6h, reserve_share: 0.0")  # fmt: skip
    path.write_text(text)
    with h5py.File(cosim.run(path, out=tmp_path / "dark.h5").path) as f:
        soc, unserved = f["agents/soc_mwh"][:], f["agents/unserved_mwh"][:]
        cleared, p_mw = f["market/cleared_mwh"][:], f["agents/p_mw"][:]
        kind = f["agents/kind"][:].astype(str)
        gf_mw = f["grid/grid_forming_mw"][:]
    unit = 0  # equal batteries: the first forms the island
    dark = np.flatnonzero(soc[:6, unit] <= soc[:, unit].min() + 1e-12) + 1
    dark = dark[dark < 6]
    assert len(dark) >= 3
    np.testing.assert_array_equal(cleared[dark], 0.0)
    np.testing.assert_array_equal(p_mw[dark], 0.0)
    loads = kind == "load"
    assert np.all(unserved[dark][:, loads] > 0) and np.all(np.abs(gf_mw[dark]) < 1e-4)
    assert cleared[6:].min() > 0 and unserved[8:].sum() == 0  # (line 3 is out until 08:00)


def test_line_outage_moves_the_lmps_to_those_of_the_outaged_network(tmp_path: Path) -> None:
    """PJM 5-bus, line 3 (B-C) out in the second hour: the run's LMPs are those of a DC-OPF built separately
    on the net with that line out of service, and differ from the first (intact) hour's published LMPs."""
    import copy

    from cosim.cores import build_market, build_models
    from cosim.models.market.dcopf import DCOPF
    from cosim.models.market.network_dc import dc_network
    from tests.conftest import ROOT

    text = (ROOT / "scenarios" / "pjm5.yaml").read_text().replace("duration: 1h", "duration: 2h")
    text += "events: [{kind: line_outage, element: line 3, start: 2024-01-01T01:00:00, duration: 1h}]\n"
    path = tmp_path / "pjm5_outage.yaml"
    path.write_text(text)
    with h5py.File(cosim.run(path, out=tmp_path / "o.h5").path) as f:
        price = f["market/price_per_mwh"][:]
        loading = f["grid/line/loading_percent"][:, 3]
    np.testing.assert_allclose(price[0], [16.98, 26.38, 30.00, 39.94, 10.00], atol=0.005)
    scenario = cosim.load_scenario(path)
    net, fleet, _, _, _ = build_models(scenario)
    bids = build_market(scenario, net, fleet).bidder.bids(fleet.baseline(1)[0], np.zeros(0), np.zeros(0))
    outaged = copy.deepcopy(net)
    outaged.line.loc[3, "in_service"] = False
    ref = DCOPF(dc_network(outaged), bids.demand_bus, bids.supply_bus).clear(bids)
    assert ref.status == "optimal"
    np.testing.assert_allclose(price[1], ref.price_per_mwh, atol=1e-6)
    assert np.abs(price[1] - price[0]).max() > 1.0
    assert loading[1] == 0.0 and loading[0] > 0.0
