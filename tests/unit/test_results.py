"""open_results: datasets along their dimension scales, tables as DataFrames, files without scales."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import cosim
from cosim.recorder import H5Recorder, Series, Table

START = 1451606400  # 2016-01-01 UTC


def _recorded(path: Path) -> Path:
    series = [
        Series("time", "Unix s", np.int64),
        Series("grid/x", "MW", np.float64, 2, columns="grid/name"),
        Series("grid/ok", "1", np.bool_),
    ]
    static = {"grid/name": (np.array(["a", "b"], dtype=object), ""), "grid/kv": (np.array([0.4, 20.0]), "kV")}
    table = Table("ledger/tx", (("tx_id", "S4", "hex"), ("submit_s", np.float64, "Unix s")))
    rec = H5Recorder(
        path, series, static, {"scenario_yaml": "x"}, 2, tables=[table], labels={"grid/name": "bus"}
    )
    for k in range(3):
        rows = {"tx_id": np.array([b"ab%d" % k]), "submit_s": np.array([START + k + 0.5])}
        step = {"time": START + 3600 * k, "grid/x": np.array([k, -k]), "grid/ok": True}
        rec.append(step | {"ledger/tx": rows})
    return rec.close(complete=True)


def test_datasets_and_tables_open_along_their_dimensions(tmp_path: Path) -> None:
    """A series is indexed by UTC time and labels, a static dataset by its labels, a table group is one
    DataFrame (strings decoded), and a group of mixed dimensions says how to open it."""
    with cosim.open_results(_recorded(tmp_path / "r.h5")) as res:
        x = res["grid/x"]
        assert list(x.columns) == ["a", "b"] and x.index[1] == pd.Timestamp("2016-01-01 01:00", tz="UTC")
        assert res["grid/kv"]["b"] == 20.0 and res["grid/kv"].index.name == "bus"
        tx = res["ledger/tx"]
        assert list(tx.columns) == ["tx_id", "submit_s"] and list(tx["tx_id"]) == ["ab0", "ab1", "ab2"]
        assert tx.index.name == "tx" and list(tx.index) == [0, 1, 2]
        assert sorted(res.keys()) == ["grid/ok", "grid/x"] and res.tables() == ["ledger/tx"]
        with pytest.raises(KeyError, match="to_xarray"):
            res["grid"]
        ds = res.to_xarray("ledger/tx")
        assert ds["submit_s"].values[2] == np.datetime64("2016-01-01T00:00:02.500")


def test_files_without_dimension_scales_still_open(tmp_path: Path) -> None:
    """A file written before dimension scales: growing (T,) datasets are time series, others positional."""
    with h5py.File(tmp_path / "old.h5", "w") as f:
        f.attrs["scenario_yaml"] = "x"
        f.create_dataset("time", data=START + 3600 * np.arange(4), maxshape=(None,))
        f.create_dataset("grid/losses_mw", data=np.arange(4.0), maxshape=(None,))
        f.create_dataset("grid/bus/name", data=np.array(["a", "b"], dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("market/trades/mwh", data=np.ones(5), maxshape=(None,))
    with cosim.open_results(tmp_path / "old.h5") as res:
        assert res.keys() == ["grid/losses_mw"]
        assert res["grid/losses_mw"].index[3] == pd.Timestamp("2016-01-01 03:00", tz="UTC")
        assert list(res["grid/bus/name"]) == ["a", "b"]
        assert res["market/trades/mwh"].sum() == 5.0
