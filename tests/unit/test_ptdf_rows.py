"""PTDF rows from a sparse factorisation (`DCNetwork.ptdf_rows`) against the dense `DCNetwork.ptdf`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import pickle
import warnings

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.accounting.emissions import MarginalEmissions
from cosim.models.market.clearing import Bids
from cosim.models.market.dcopf import DCOPF
from cosim.models.market.network_dc import DCNetwork, dc_network

logging.getLogger("pandapower").setLevel(logging.ERROR)
warnings.filterwarnings("ignore")
TOL = 1e-10


def _phase_shift_net() -> pp.pandapowerNet:
    """A meshed 110/20 kV net: two transformers in parallel, one off-nominal tap and a 30 degree shift."""
    net = pp.create_empty_network()
    hv = pp.create_bus(net, vn_kv=110.0)
    mv = [pp.create_bus(net, vn_kv=20.0) for _ in range(4)]
    pp.create_ext_grid(net, hv)
    pp.create_transformer(net, hv, mv[0], std_type="25 MVA 110/20 kV")
    pp.create_transformer_from_parameters(
        net, hv, mv[2], sn_mva=25.0, vn_hv_kv=110.0, vn_lv_kv=20.0, vk_percent=12.0, vkr_percent=0.4,
        pfe_kw=14.0, i0_percent=0.07, shift_degree=30.0, tap_side="hv", tap_neutral=0, tap_pos=3,
        tap_step_percent=1.5, tap_min=-9, tap_max=9, tap_changer_type="Ratio",
    )  # fmt: skip
    for a, b, km in [(0, 1, 2.0), (1, 2, 3.0), (2, 3, 1.5), (3, 0, 4.0), (1, 3, 2.5)]:
        pp.create_line(net, mv[a], mv[b], km, std_type="NA2XS2Y 1x185 RM/25 12/20 kV")
    for b in mv:
        pp.create_load(net, b, p_mw=2.0)
    return net


def _islands_net() -> pp.pandapowerNet:
    """case9 with a second island (three buses, two lines, its own sgen) and a bus connected to nothing."""
    net = pn.case9()
    isl = [pp.create_bus(net, vn_kv=345.0) for _ in range(3)]
    pp.create_line_from_parameters(net, isl[0], isl[1], 10.0, 0.5, 5.0, 10.0, 1.0)
    pp.create_line_from_parameters(net, isl[1], isl[2], 20.0, 0.5, 5.0, 10.0, 1.0)
    pp.create_sgen(net, isl[0], p_mw=10.0)
    pp.create_load(net, isl[2], p_mw=10.0)
    pp.create_bus(net, vn_kv=345.0)  # connected to nothing
    net.line.loc[2, "in_service"] = False  # and a line of the main island's loop out of service
    return net


def _slack_alone_net() -> pp.pandapowerNet:
    """case9 with the slack's only line out of service: the slack's island is the slack alone."""
    net = pn.case9()
    net.line.loc[0, "in_service"] = False
    return net


NETS = {
    "case14": pn.case14,
    "case30": pn.case30,
    "phase_shift": _phase_shift_net,
    "islands": _islands_net,
    "slack_alone": _slack_alone_net,
}


@functools.cache
def _network(name: str) -> DCNetwork:
    return dc_network(NETS[name]())


@pytest.mark.parametrize("name", sorted(NETS))
def test_all_rows_equal_the_dense_ptdf(name: str) -> None:
    """Every row solved from the sparse LU equals the dense inverse's PTDF to 1e-10 (fresh network)."""
    network = dc_network(NETS[name]())
    dense = network.ptdf()
    rows = network.ptdf_rows(np.arange(network.n_branch))
    assert rows.shape == dense.shape
    np.testing.assert_allclose(rows, dense, rtol=0, atol=TOL)


def test_cases_cover_taps_shifts_and_islands() -> None:
    """The test nets hold what they are meant to: an off-nominal tap, a phase shift, three islands."""
    shifted = _network("phase_shift")
    trafo = shifted.branch_name.index("trafo 1")
    assert shifted.shift_rad[trafo] == pytest.approx(np.deg2rad(30.0))
    neutral = NETS["phase_shift"]()
    neutral.trafo.loc[1, "tap_pos"] = 0
    assert abs(dc_network(neutral).b_pu[trafo] / shifted.b_pu[trafo] - 1.0) > 0.01  # the tap is in b_pu
    islands = _network("islands")
    assert len(islands.island_ref) == 3
    lonely = islands.position_of(int(NETS["islands"]().bus.index[-1]))[0]
    assert islands.island[lonely] != 0
    other = np.flatnonzero(islands.island[islands.branch_from] != 0)
    assert len(other) == 2  # the second island's two lines: zero rows
    np.testing.assert_array_equal(islands.ptdf_rows(other), 0.0)
    assert np.all(islands.ptdf_rows(np.arange(islands.n_branch))[:, islands.island != 0] == 0.0)
    alone = _network("slack_alone")
    assert np.sum(alone.island == 0) == 1
    np.testing.assert_array_equal(alone.ptdf_rows(np.arange(alone.n_branch)), 0.0)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(NETS)),
    picks=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=0, max_size=25),
    again=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=0, max_size=25),
)
def test_random_subsets_in_any_order_with_repeats(name: str, picks: list[float], again: list[float]) -> None:
    """Any subset of branches, in any order and with repeats, twice (the second time partly cached)."""
    network = _network(name)
    dense = network.ptdf()
    for draw in (picks, again):
        idx = np.array([int(u * network.n_branch) for u in draw], dtype=np.int64)
        rows = network.ptdf_rows(idx)
        assert rows.shape == (len(idx), network.n_bus)
        np.testing.assert_allclose(rows, dense[idx], rtol=0, atol=TOL)


def test_kept_rows_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for 3 rows, at most 3 are kept (the most recently used) and every answer stays right."""
    import cosim.models.market.network_dc as network_dc

    network = dc_network(pn.case30())
    dense = network.ptdf()
    monkeypatch.setattr(network_dc, "_ROWS_KEPT_VALUES", 3 * network.n_bus)
    monkeypatch.setattr(network_dc, "_ROWS_PER_SOLVE", 2)  # several solves in one call
    for idx in ([0, 1, 2, 3, 4], [4, 5], [5, 5, 0], [7, 3, 1, 8, 2, 0]):
        np.testing.assert_allclose(network.ptdf_rows(idx), dense[idx], rtol=0, atol=TOL)
        kept = network._rows["row"]
        assert len(kept) <= 3 and list(kept)[-1] == list(dict.fromkeys(idx))[-1]


def test_rows_of_another_topology_are_its_own() -> None:
    """A network derived by dataclasses.replace (other susceptances) does not reuse the rows of its source."""
    network = dc_network(pn.case14())
    before = network.ptdf_rows(np.arange(network.n_branch))
    b_pu = network.b_pu.copy()
    b_pu[3] *= 4.0
    other = dataclasses.replace(network, b_pu=b_pu)
    np.testing.assert_allclose(other.ptdf_rows(np.arange(other.n_branch)), other.ptdf(), rtol=0, atol=TOL)
    assert np.abs(other.ptdf_rows([0]) - before[[0]]).max() > 1e-3
    np.testing.assert_array_equal(network.ptdf_rows(np.arange(network.n_branch)), before)


def test_pickled_and_copied_networks_solve_again() -> None:
    """A pickled or deep-copied network carries no factorisation (not picklable) and gives the same rows."""
    network = dc_network(pn.case30())
    rows = network.ptdf_rows([5, 0, 7])
    for twin in (pickle.loads(pickle.dumps(network)), copy.deepcopy(network)):
        np.testing.assert_allclose(twin.ptdf_rows([5, 0, 7]), rows, rtol=0, atol=TOL)


def test_out_of_range_branch_is_an_error() -> None:
    """A branch position outside [0, n_branch) is an IndexError, not a silent wrong row."""
    network = _network("case14")
    with pytest.raises(IndexError, match="branch positions"):
        network.ptdf_rows([network.n_branch])
    with pytest.raises(IndexError):
        network.ptdf_rows([-1])
    assert network.ptdf_rows([]).shape == (0, network.n_bus)


def test_marginal_emissions_never_builds_the_dense_ptdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nodal factors of a congested case14 clearing take only the binding rows: `ptdf()` is never called."""
    network = dc_network(pn.case14())
    rate = np.full(network.n_branch, np.inf)
    rate[0] = 60.0  # the slack's main line binds
    network = dataclasses.replace(network, rate_mw=rate)
    bus = network.bus
    bids = Bids(
        demand_bus=bus[1:],
        demand_mw=np.full(len(bus) - 1, 20.0),
        demand_price=np.full(len(bus) - 1, 3000.0),
        supply_bus=np.array([bus[0], bus[1], bus[2]]),
        supply_max_mw=np.array([300.0, 300.0, 300.0]),
        supply_price=np.array([10.0, 20.0, 30.0]),
        supply_c2=np.array([0.01, 0.02, 0.03]),
    )

    def forbidden(self: DCNetwork) -> np.ndarray:
        raise AssertionError("the dense PTDF was built")

    monkeypatch.setattr(DCNetwork, "ptdf", forbidden)
    res = DCOPF(network, bids.demand_bus, bids.supply_bus).clear(bids)
    assert res.status == "optimal"
    me = MarginalEmissions(network, bids.demand_bus, bids.supply_bus)
    nodal = me.nodal(bids, res, np.array([950.0, 400.0, 41.0]), resolve=False)
    assert nodal.status == "sensitivity" and list(nodal.binding_branch) == [0]
    assert np.ptp(nodal.kg_per_mwh) > 1.0  # congestion separates the factors
    np.testing.assert_allclose(nodal.step_sign @ nodal.response, 1.0, atol=1e-9)
