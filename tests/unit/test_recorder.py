"""HDF5 recorder: appends across chunks, keeps units, never passes a partial file off as whole."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.recorder import H5Recorder, Series


def recorder(path: Path, chunk: int = 4) -> H5Recorder:
    series = [Series("time", "s", np.int64), Series("grid/x", "MW", np.float64, 3, columns="grid/name")]
    static = {"grid/name": (np.array(["a", "b", "c"], dtype=object), "")}
    return H5Recorder(path, series, static, {"seed": 7}, chunk_steps=chunk)


def test_append_across_chunks_and_complete(tmp_path: Path) -> None:
    """Ten steps with chunks of four land in order, with units, and the file is renamed when complete."""
    rec = recorder(tmp_path / "r.h5")
    for k in range(10):
        rec.append({"time": k, "grid/x": np.full(3, k * 1.5)})
    assert rec.close(complete=True) == tmp_path / "r.h5"
    assert not (tmp_path / "r.h5.partial").exists()
    with h5py.File(tmp_path / "r.h5") as f:
        np.testing.assert_array_equal(f["time"][:], np.arange(10))
        np.testing.assert_array_equal(f["grid/x"][:, 1], np.arange(10) * 1.5)
        assert f["grid/x"].attrs["units"] == "MW" and f["grid/x"].chunks == (4, 3)
        assert f["grid/x"].compression == "gzip"
        assert f.attrs["complete"] and f.attrs["n_steps"] == 10 and f.attrs["seed"] == 7
        assert list(f["grid/name"].asstr()[:]) == ["a", "b", "c"]


def test_interrupted_run_stays_partial(tmp_path: Path) -> None:
    """A run that stops keeps every recorded step in <path>.partial, marked incomplete, and no final file."""
    rec = recorder(tmp_path / "r.h5")
    for k in range(6):
        rec.append({"time": k, "grid/x": np.zeros(3)})
    assert rec.close(complete=False) == tmp_path / "r.h5.partial"
    assert not (tmp_path / "r.h5").exists()
    with h5py.File(tmp_path / "r.h5.partial") as f:
        assert not f.attrs["complete"] and f["time"].shape == (6,)


def test_step_must_name_every_series(tmp_path: Path) -> None:
    """A step missing a series is refused with the missing name."""
    rec = recorder(tmp_path / "r.h5")
    with pytest.raises(KeyError, match="grid/x"):
        rec.append({"time": 0})
    rec.close(complete=False)


def test_tables_grow_by_variable_rows(tmp_path: Path) -> None:
    """A table gets a variable number of rows per step, in order, across chunk flushes."""
    from cosim.recorder import Table

    table = Table("market/trades", (("step", np.int64, "1"), ("mwh", np.float64, "MWh")))
    rec = H5Recorder(
        tmp_path / "t.h5", [Series("time", "s", np.int64)], {}, {}, chunk_steps=2, tables=[table]
    )
    for k in range(5):
        rec.append({"time": k, "market/trades": {"step": np.full(k, k), "mwh": np.arange(k, dtype=float)}})
    rec.close(complete=True)
    with h5py.File(tmp_path / "t.h5") as f:
        np.testing.assert_array_equal(f["market/trades/step"][:], [1, 2, 2, 3, 3, 3, 4, 4, 4, 4])
        assert f["market/trades/mwh"].attrs["units"] == "MW h"


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_byte_strings_are_compressed_without_shuffling(tmp_path: Path, compression: str) -> None:
    """Numeric columns are shuffled before compression, byte-string columns (hashes, JSON) are not, and both
    read back exactly."""
    from cosim.recorder import Table

    table = Table("ledger/tx", (("nonce", np.int64, "1"), ("tx_id", "S64", "SHA-256 hex")))
    rec = H5Recorder(
        tmp_path / "t.h5",
        [Series("time", "s", np.int64)],
        {},
        {},
        chunk_steps=2,
        tables=[table],
        compression=compression,
    )
    ids = np.array([f"{k:064x}".encode() for k in range(6)])
    for k in range(3):
        rec.append({"time": k, "ledger/tx": {"nonce": np.arange(2) + 2 * k, "tx_id": ids[2 * k : 2 * k + 2]}})
    rec.close(complete=True)
    with h5py.File(tmp_path / "t.h5") as f:
        nonce, tx_id = f["ledger/tx/nonce"], f["ledger/tx/tx_id"]
        assert nonce.compression == tx_id.compression == compression
        assert nonce.shuffle and not tx_id.shuffle
        np.testing.assert_array_equal(tx_id[:], ids)
        np.testing.assert_array_equal(nonce[:], np.arange(6))


def test_dimension_scales_grow_with_resizable_datasets(tmp_path: Path) -> None:
    """Across chunk flushes every dataset keeps named dimensions: the group's own time (CF, a copy of /time),
    its labels, and a table's row numbers; xarray (h5netcdf) reads them as coordinates."""
    xr = pytest.importorskip("xarray")
    from cosim.recorder import Table

    series = [
        Series("time", "Unix s", np.int64),
        Series("grid/x", "MW", np.float64, 3, columns="grid/name"),
        Series("grid/ok", "1", np.bool_),
    ]
    static = {"grid/name": (np.array(["a", "b", "c"], dtype=object), ""), "grid/kv": (np.ones(3), "kV")}
    table = Table("market/trades", (("step", np.int64, "1"), ("price", np.float64, "$/MWh")))
    rec = H5Recorder(
        tmp_path / "d.h5", series, static, {}, chunk_steps=4, tables=[table], labels={"grid/name": "bus"}
    )
    start = 1451606400
    for k in range(10):
        rows = {"step": np.full(k % 3, k), "price": np.full(k % 3, 2.5 * k)}
        rec.append(
            {"time": start + 3600 * k, "grid/x": np.full(3, k), "grid/ok": True, "market/trades": rows}
        )
    rec.close(complete=True)
    with h5py.File(tmp_path / "d.h5") as f:
        np.testing.assert_array_equal(f["grid/time"][:], f["time"][:])
        assert f["grid/x"].dims[0][0].name == "/grid/time" and f["grid/kv"].dims[0][0].name == "/grid/bus"
        assert f["market/trades/price"].attrs["currency"] == "USD"
    grid = xr.open_dataset(tmp_path / "d.h5", group="grid", engine="h5netcdf")
    assert grid["x"].dims == ("time", "bus") and list(grid["bus"].values) == ["a", "b", "c"]
    assert grid["kv"].dims == ("bus",) and grid["ok"].dims == ("time",)
    times = np.datetime64("2016-01-01T00:00") + np.arange(10) * np.timedelta64(1, "h")
    np.testing.assert_array_equal(grid["time"].values, times)
    trades = xr.open_dataset(tmp_path / "d.h5", group="market/trades", engine="h5netcdf")
    n_rows = sum(k % 3 for k in range(10))
    assert trades["price"].dims == ("trade",) and trades.sizes["trade"] == n_rows
    np.testing.assert_array_equal(trades["trade"].values, np.arange(n_rows))
    root = xr.open_dataset(tmp_path / "d.h5", engine="h5netcdf")
    np.testing.assert_array_equal(root["time"].values, times)
    for ds in (grid, trades, root):
        ds.close()


def test_columns_not_named_as_labels_label_a_dimension_named_after_them(tmp_path: Path) -> None:
    """A series whose columns dataset is not among the labels runs along a dimension named after that
    dataset (its group for a "name" dataset), labelled by a copy of its names; where that name is taken
    in the series' group, the dimension is the labels' path joined by "_"."""
    xr = pytest.importorskip("xarray")
    series = [
        Series("time", "Unix s", np.int64),
        Series("market/q_mvar", "Mvar", np.float64, 2, columns="market/gen/name"),
        Series("grid/p_mw", "MW", np.float64, 2, columns="market/gen/name"),
        Series("market/soc", "MWh", np.float64, 1, columns="market/unit_name"),
    ]
    static = {
        "market/gen/name": (np.array(["g1", "g2"], dtype=object), ""),
        "market/unit_name": (np.array(["u"], dtype=object), ""),
    }
    rec = H5Recorder(tmp_path / "g.h5", series, static, {}, chunk_steps=2)
    for k in range(3):
        rec.append(
            {"time": k, "market/q_mvar": np.zeros(2), "grid/p_mw": np.ones(2), "market/soc": np.ones(1)}
        )
    rec.close(complete=True)
    with xr.open_dataset(tmp_path / "g.h5", group="market", engine="h5netcdf") as ds:
        assert ds["q_mvar"].dims == ("time", "market_gen_name")  # "gen" is the group /market/gen
        assert list(ds["market_gen_name"].values) == ["g1", "g2"]
        assert ds["soc"].dims == ("time", "unit") and ds["q_mvar"].attrs["units"] == "MV.A"
    with xr.open_dataset(tmp_path / "g.h5", group="grid", engine="h5netcdf") as ds:
        assert ds["p_mw"].dims == ("time", "gen") and list(ds["gen"].values) == ["g1", "g2"]
    with xr.open_dataset(tmp_path / "g.h5", group="market/gen", engine="h5netcdf") as ds:
        assert ds["name"].dims == ("gen",)


def test_a_table_column_may_not_take_the_row_dimension_name(tmp_path: Path) -> None:
    """A table whose column is named like its row dimension is refused (the scale would overwrite it)."""
    from cosim.recorder import Table

    table = Table("market/trades", (("trade", np.int64, "1"),))
    with pytest.raises(ValueError, match="row dimension"):
        H5Recorder(tmp_path / "x.h5", [Series("time", "Unix s", np.int64)], {}, {}, tables=[table])


def test_a_busy_table_is_written_before_its_chunk_of_steps_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table's rows go to the file once TABLE_ROWS_BUFFERED are held (memory bound), labelled by the start
    of their step even when that step's time is still buffered; the file equals a run holding them all."""
    import cosim.recorder
    from cosim.recorder import Table

    monkeypatch.setattr(cosim.recorder, "TABLE_CHUNK_ROWS", 1)  # a table's chunk: 64 rows, as the steps'

    def run(path: Path, bound: int) -> list[int]:
        monkeypatch.setattr(cosim.recorder, "TABLE_ROWS_BUFFERED", bound)
        table = Table("ledger/tx", (("step", np.int64, "1"), ("wh", np.int64, "W h")), step_column="step")
        rec = H5Recorder(path, [Series("time", "Unix s", np.int64)], {}, {}, chunk_steps=64, tables=[table])
        written = []
        for k in range(40):
            rec.append({"time": 1000 + 60 * k, "ledger/tx": {"step": np.full(k, k), "wh": np.arange(k)}})
            written.append(rec.table_rows()["ledger/tx"])
        rec.close(complete=True)
        return written

    held = run(tmp_path / "held.h5", 10**9)
    bounded = run(tmp_path / "bounded.h5", 100)
    assert (
        held[-1] == 0 < bounded[20]
    )  # held: nothing written before the close; bounded: while the run went on
    assert all(b - sum(range(k + 1)) > -100 for k, b in enumerate(bounded))  # never 100 rows or more held
    with h5py.File(tmp_path / "held.h5") as a, h5py.File(tmp_path / "bounded.h5") as b:
        for name in ("step", "wh", "tx"):
            np.testing.assert_array_equal(a[f"ledger/tx/{name}"][:], b[f"ledger/tx/{name}"][:])
        np.testing.assert_array_equal(b["ledger/tx/tx"][:], 1000 + 60 * b["ledger/tx/step"][:])


def test_a_table_chunk_once_written_is_never_rewritten(tmp_path: Path) -> None:
    """Tables go to the file in whole HDF5 chunks and no chunk moves afterwards (rewriting a grown chunk
    frees its space, which the next column may take before the index is flushed: a kill then mixed two
    columns); the rest of the rows is written at the close."""
    from cosim.recorder import Table

    table = Table("market/trades", (("step", np.int64, "1"), ("seller", np.int64, "1")), step_column="step")
    rec = H5Recorder(tmp_path / "t.h5", [Series("time", "Unix s", np.int64)], {}, {}, chunk_steps=16,
                     tables=[table])  # fmt: skip
    seen: dict[int, int] = {}
    for k in range(200):
        rec.append({"time": 60 * k, "market/trades": {"step": np.full(30, k), "seller": -np.ones(30, int)}})
        ds = rec._file["market/trades/step"]
        assert ds.shape[0] % ds.chunks[0] == 0
        for i in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(i)
            assert seen.setdefault(info.chunk_offset[0], info.byte_offset) == info.byte_offset
    assert len(seen) == 5  # 5 whole chunks of 1,024 rows during the run
    rec.close(complete=True)
    with h5py.File(tmp_path / "t.h5") as f:
        np.testing.assert_array_equal(f["market/trades/step"][:], np.repeat(np.arange(200), 30))


def test_a_resumed_recorder_counts_the_table_rows_it_took_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows a checkpoint kept in memory count towards TABLE_ROWS_BUFFERED after a resume: the reopened
    recorder writes their whole chunks as soon as one more step's rows reach the bound, not a chunk of
    steps later."""
    import cosim.recorder
    from cosim.recorder import Table

    monkeypatch.setattr(cosim.recorder, "TABLE_ROWS_BUFFERED", 10)
    monkeypatch.setattr(cosim.recorder, "TABLE_CHUNK_ROWS", 1)  # a table's chunk: 8 rows, as the steps'
    table = Table("ledger/tx", (("step", np.int64, "1"),), step_column="step")
    series = [Series("time", "Unix s", np.int64)]
    rec = H5Recorder(tmp_path / "r.h5", series, {}, {}, chunk_steps=8, tables=[table])
    for k in range(3):
        rec.append({"time": k, "ledger/tx": {"step": np.full(3, k)}})  # 9 rows held: below the bound
    state = rec.checkpoint_state()
    rec.close(complete=False)
    assert state["table_rows"]["ledger/tx"] == 0
    again = H5Recorder.reopen(
        tmp_path / "r.h5", series, 8, [table], state["n_steps"], state["table_rows"],
        buffered=state["buffered"], rows=state["rows"],
    )  # fmt: skip
    again.append({"time": 3, "ledger/tx": {"step": np.full(1, 3)}})  # the 10th row
    assert again.table_rows()["ledger/tx"] == 8  # a whole chunk; the 10th row waits for the next
    again.close(complete=True)
    with h5py.File(tmp_path / "r.h5") as f:
        np.testing.assert_array_equal(f["ledger/tx/step"][:], [0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
        np.testing.assert_array_equal(f["ledger/tx/tx"][:], f["ledger/tx/step"][:])
