"""Outputs any tool reads: every group of a run opens with xarray (h5netcdf) with named dimensions and
datetime times, every table opens through open_results, both agree, and every unit is UDUNITS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import cosim
from cosim.units import UDUNITS
from tests.conftest import ROOT

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")


@pytest.fixture(scope="module")
def runs(default_run: cosim.RunSummary, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default study (2 days, with ledger, emissions, equity and privacy), the stochastic study for
    2 days from the CLI, and a few steps of the admm, outage, PJM 5-bus AC-OPF (no transformer) and PJM 5-bus
    strategic-player studies."""
    out = tmp_path_factory.mktemp("outputs")
    cli = [sys.executable, "-m", "cosim.cli", "run", str(ROOT / "scenarios" / "stochastic.yaml")]
    subprocess.run([*cli, "--days", "2", "--out", str(out / "stochastic.h5"), "--quiet"], check=True)
    paths = {"default": default_run.path, "stochastic": out / "stochastic.h5"}
    for name in ("admm", "islanding", "pjm5_acopf", "pjm5_strategic"):
        paths[name] = cosim.run(ROOT / "scenarios" / f"{name}.yaml", steps=3, out=out / f"{name}.h5").path
    return paths


def _groups(path: Path) -> list[str]:
    found = [""]
    with h5py.File(path) as f:
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Group) else None)
    return found


def _datasets(path: Path) -> dict[str, tuple[str, np.dtype, dict]]:
    found: dict[str, tuple[str, np.dtype, dict]] = {}
    with h5py.File(path) as f:
        f.visititems(
            lambda name, obj: (
                found.__setitem__(name, (obj.dtype.kind, obj.dtype, dict(obj.attrs)))
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    return found


RUNS = ("default", "stochastic", "admm", "islanding", "pjm5_acopf", "pjm5_strategic")


@pytest.mark.parametrize("run", RUNS)
def test_every_group_opens_with_named_dimensions(runs: dict[str, Path], run: str) -> None:
    """Each group opens with xarray.open_dataset(engine="h5netcdf"): no unnamed (phony or fallback)
    dimension, and wherever there is a time dimension its coordinate is the run's UTC times."""
    path = runs[run]
    with h5py.File(path) as f:
        times = pd.to_datetime(f["time"][:], unit="s").to_numpy()
    seen_time = 0
    for group in _groups(path):
        with xr.open_dataset(path, group=group or None, engine="h5netcdf") as ds:
            for name, var in ds.variables.items():
                assert all(not d.startswith("phony_dim") and "_dim" not in d for d in var.dims), (group, name)
            if "time" in ds.dims:
                seen_time += 1
                assert ds["time"].dtype.kind == "M", group
                np.testing.assert_array_equal(ds["time"].values, times)
    assert seen_time >= 4  # root, grid, grid/bus, market, ...


@pytest.mark.parametrize("run", RUNS)
def test_every_units_attribute_is_documented_udunits(runs: dict[str, Path], run: str) -> None:
    """Numeric datasets carry a units attribute from the documented UDUNITS set (or point to their
    per-column units); string datasets carry none; money says its currency."""
    allowed = set(UDUNITS.values())
    for name, (kind, _, attrs) in _datasets(runs[run]).items():
        if kind in "OSU":
            assert "units" not in attrs, name
        elif "column_units" in attrs:
            assert "units" not in attrs, name
        else:
            assert attrs.get("units") in allowed, (name, attrs.get("units"))
        if attrs.get("units", "").startswith("seconds since"):
            assert attrs["calendar"] == "standard", name


def test_day_tables_have_their_own_group(runs: dict[str, Path]) -> None:
    """The stochastic design's per-day values live in /market/day along a 'day' dimension labelled by the
    days' start times, not in /market."""
    with cosim.open_results(runs["stochastic"]) as res:
        day = res["market/day"]
        assert list(day.columns) == ["day_step", "vss", "evpi", "expected_cost", "ws", "eev",
                                     "expected_balancing_cost"]  # fmt: skip
        assert day.index.name == "day" and list(day["day_step"]) == [0, 24]
        assert list(day.index) == list(res.index[[0, 24]])  # each day labelled by its start (UTC)
        ds = res.to_xarray("market")
        assert "vss" not in ds and "day" not in ds.dims and "time" in ds.dims
        days = res.to_xarray("market/day")
        np.testing.assert_array_equal(days["day"].values, ds["time"].values[[0, 24]])
        assert days["vss"].dims == ("day",) and days["vss"].attrs["currency"] == "USD"


TABLES = {
    "default": ("market/trades", "emissions/trades", "ledger/tx", "ledger/blocks", "ledger/votes"),
    "stochastic": ("market/trades", "market/day"),
    "admm": ("market/trades", "market/admm_residual"),
    "islanding": ("market/trades", "events"),
    "pjm5_acopf": ("market/trades",),
    "pjm5_strategic": ("market/trades",),
}


@pytest.mark.parametrize("run", RUNS)
def test_every_table_opens_and_agrees_with_xarray(runs: dict[str, Path], run: str) -> None:
    """Every table opens through open_results as a DataFrame with one row per stored row, and every
    dataset of up to two dimensions has the same values through open_results and to_xarray."""
    path = runs[run]
    with cosim.open_results(path) as res:
        tables = set(res.tables())
        assert set(TABLES[run]) <= tables
        for table in tables:
            df = res[table]
            assert isinstance(df, pd.DataFrame) and len(df.columns) > 0, table
        with h5py.File(path) as f:
            assert len(res["market/trades"]) == f["market/trades/step"].shape[0]
        for group in _groups(path):
            ds = res.to_xarray(group)
            for name, var in ds.data_vars.items():
                key = f"{group}/{name}" if group else str(name)
                if var.ndim > 2:
                    continue
                ours = res[key]
                _assert_same(ours.to_numpy(), var.values, key)
                _assert_same(np.asarray(ours.index), ds[var.dims[0]].values, f"{key} index")


def _assert_same(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    """pandas (as stored: Unix seconds, str, UTC times) against xarray (decoded: datetime64, bytes)."""
    if theirs.dtype.kind == "M":  # float seconds decode to the nanosecond up to rounding: 1 us apart at most
        flat = ours.ravel()
        stamps = pd.to_datetime(flat, unit="s") if flat.dtype.kind in "fi" else pd.to_datetime(flat)
        naive = np.asarray(
            stamps.tz_localize(None) if stamps.tz is not None else stamps, dtype="datetime64[ns]"
        )
        ns, theirs_ns = naive.astype("int64"), theirs.ravel().astype("int64")
        missing = np.isnat(theirs.ravel())
        np.testing.assert_array_equal(np.isnat(naive), missing, err_msg=what)
        np.testing.assert_allclose(ns[~missing], theirs_ns[~missing], rtol=0, atol=1000, err_msg=what)
    elif theirs.dtype.kind in "SUO":
        decode = np.vectorize(lambda v: v.decode() if isinstance(v, bytes) else str(v), otypes=[object])
        np.testing.assert_array_equal(decode(ours), decode(theirs), err_msg=what)
    else:
        np.testing.assert_array_equal(ours.astype(theirs.dtype), theirs, err_msg=what)
