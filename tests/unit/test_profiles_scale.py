"""Profiles at scale: a sliced table reads what the whole one reads; profiles once; devices added at once."""

from __future__ import annotations

import copy
import datetime as dt

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.agents import profiles
from cosim.models.agents.fleet import add_elements

JAN1_2016 = int(dt.datetime(2016, 1, 1, tzinfo=dt.UTC).timestamp())
STEPS_S = (900, 1800, 3600, 7200, 86400)


def _factored_table(rng: np.random.Generator, n_rows: int = 35136) -> profiles.ProfileTable:
    """A table of 7 elements over 3 relative profiles and the ones column, NaN factors and scalings."""
    base = np.column_stack([rng.random((n_rows, 3)), np.ones(n_rows)])
    factor = np.array([0.1, np.nan, 0.3, 0.02, 0.5, 0.0, 1.5])
    return profiles.ProfileTable(
        base, 900, np.array([0, 1, 2, 3, 0, 1, 3]), factor, rng.uniform(0.5, 2.0, size=7)
    )


@settings(max_examples=40, deadline=None)
@given(
    start_s=st.integers(0, 3 * 366 * 86400),
    n_steps=st.integers(1, 200),
    step_s=st.sampled_from(STEPS_S),
)
def test_sliced_table_reads_what_the_whole_table_reads(start_s: int, n_steps: int, step_s: int) -> None:
    """For any start (across year ends), period and step, a table sliced to the run gives every step's mean
    exactly as the whole table, while holding only the rows the run reads."""
    whole = _factored_table(np.random.default_rng(start_s % 1000))
    times = JAN1_2016 + start_s + step_s * np.arange(n_steps, dtype=np.int64)
    part = whole.sliced(times, step_s)
    rows_whole, rows_part = whole.rows_for(times, step_s), part.rows_for(times, step_s)
    for k in range(n_steps):
        assert whole.mean(rows_whole[k]).tobytes() == part.mean(rows_part[k]).tobytes()
    assert len(part.base) == len(np.unique(rows_whole)) <= n_steps * max(1, step_s // 900)


def test_factored_table_is_the_dense_arithmetic() -> None:
    """Element j is base[:, column[j]] * factor[j] (its factor where that is NaN) times scaling[j]."""
    rng = np.random.default_rng(3)
    t = _factored_table(rng, 96)
    t.base[5, 2] = np.nan
    dense = t.base[:, t.column] * t.factor
    dense = np.where(np.isnan(dense), t.factor, dense) * t.scaling
    assert t.values.tobytes() == dense.tobytes()
    assert t.values[5, 2] == 0.3 * t.scaling[2]  # a NaN profile value: the element's own power
    assert np.isnan(t.values).any(axis=0).tolist() == [False, True] + [False] * 5  # its factor NaN: NaN


def test_a_step_outside_the_slice_is_refused() -> None:
    """A sliced table refuses rows of another period instead of reading wrong ones."""
    t = _factored_table(np.random.default_rng(0))
    part = t.sliced(JAN1_2016 + 3600 * np.arange(24), 3600)
    with pytest.raises(ValueError, match="outside the period"):
        part.rows_for(np.array([JAN1_2016 + 40 * 86400]), 3600)
    assert profiles.constant(np.ones(3)).sliced(np.array([JAN1_2016]), 900).row_s == 0


def _net_with_partial_profiles() -> pp.pandapowerNet:
    """A small LV net whose loads have SimBench-style profiles, some of them none (NaN)."""
    net = pn.create_kerber_landnetz_kabel_1()
    n = len(net.load)
    net.load["profile"] = [("H0-A" if i % 3 else "G1-B") if i % 4 else np.nan for i in range(n)]
    net.load["scaling"] = np.linspace(0.5, 1.5, n)
    net.load["q_mvar"] = 0.001
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {f"{p}_{pq}load": rng.random(35136) for p in ("H0-A", "G1-B", "L0-A") for pq in ("p", "q")}
    )
    pp.create_sgen(net, int(net.load.bus.iloc[0]), p_mw=0.005, type="PV")
    net.sgen["profile"] = ["PV3"]
    net.profiles = {
        "load": frame,
        "powerplants": pd.DataFrame({"x": np.zeros(35136)}),
        "renewables": pd.DataFrame({"PV3": rng.random(35136)}),
    }
    return net


def test_elements_without_profiles_keep_their_value_and_profiles_are_stored_once() -> None:
    """Loads without a profile read their own power (times scaling) at every row; each distinct profile is
    one column, however many elements use it."""
    net = _net_with_partial_profiles()
    tables = profiles.simbench_tables(net)
    load_p = tables["load_p_mw"]
    assert load_p.base.shape == (35136, 3)  # H0-A, G1-B and the ones column: not one per load
    rows = np.arange(0, 35136, 977)
    got = load_p.values[rows]
    no_profile = net.load["profile"].isna().to_numpy()
    own = (net.load.p_mw * net.load.scaling).to_numpy()
    np.testing.assert_array_equal(
        got[:, no_profile], np.broadcast_to(own[no_profile], got[:, no_profile].shape)
    )
    h0 = (net.load.profile == "H0-A").to_numpy()
    expected = net.profiles["load"]["H0-A_pload"].to_numpy()[rows, None] * own[h0]
    np.testing.assert_allclose(got[:, h0], expected, rtol=1e-15)
    assert tables["sgen_p_mw"].values[rows, 0] == pytest.approx(
        net.profiles["renewables"]["PV3"].to_numpy()[rows] * 0.005
    )


def test_a_profile_missing_from_the_grid_names_the_element_table() -> None:
    """An element whose profile the grid does not ship is an error naming the table and the profile."""
    net = _net_with_partial_profiles()
    net.load.loc[net.load.index[1], "profile"] = "XX-1"
    with pytest.raises(ValueError, match=r"load profiles \['XX-1_pload'\]"):
        profiles.simbench_tables(net)


@pytest.mark.parametrize(
    ("table", "fixed"),
    [("sgen", {"type": "PV"}), ("storage", {"max_e_mwh": 0.01, "type": "battery"}), ("load", {})],
)
def test_add_elements_is_one_create_call_per_element(table: str, fixed: dict[str, object]) -> None:
    """Adding elements at once leaves the same table (values, dtypes, index) as pandapower's create calls."""
    net = pn.create_kerber_landnetz_kabel_1()
    buses = net.load.bus.to_numpy()[:5]
    p_mw = np.array([0.003, 0.004, 0.0, 0.006, 0.01])
    names = [f"home {b}" for b in buses]
    one_by_one, at_once = copy.deepcopy(net), copy.deepcopy(net)
    create = {"sgen": pp.create_sgen, "storage": pp.create_storage, "load": pp.create_load}[table]
    made = [
        create(one_by_one, int(b), p_mw=float(p), name=n, **fixed)
        for b, p, n in zip(buses, p_mw, names, strict=True)
    ]
    idx = add_elements(at_once, table, buses, names, p_mw, **fixed)
    assert list(idx) == list(made)
    pd.testing.assert_frame_equal(at_once[table], one_by_one[table])
    assert len(add_elements(at_once, table, buses[:0], [], p_mw[:0], **fixed)) == 0
