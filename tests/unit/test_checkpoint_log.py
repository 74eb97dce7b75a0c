"""The checkpoint's side files: the ledger's append-only input log, and the recorder's buffered steps kept
in the checkpoint instead of being written as a partial chunk."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.checkpoint import InputLog, capture, log_path, remove, restore
from cosim.errors import CosimError
from cosim.recorder import H5Recorder, Series, Table


def _entry(k: int) -> tuple[int, dict[str, np.ndarray], np.ndarray]:
    """A step's ledger inputs: the step, its trades and the agents' meter readings."""
    return k, {"mwh": np.full(k % 3 + 1, k / 10)}, np.arange(4.0) * k


def _same_entries(got: list[tuple[int, dict[str, np.ndarray], np.ndarray]], ks: range) -> bool:
    want = [_entry(k) for k in ks]
    return len(got) == len(want) and all(
        a[0] == b[0] and np.array_equal(a[1]["mwh"], b[1]["mwh"]) and np.array_equal(a[2], b[2])
        for a, b in zip(got, want, strict=True)
    )


def test_commit_appends_only_the_new_entries(tmp_path: Path) -> None:
    """Each commit syncs just the entries since the previous one: the file grows by their frames only,
    and reads back every entry in order."""
    log = InputLog(tmp_path / "run.h5.ckpt.log")
    sizes = []
    for first in (0, 12, 24):
        for k in range(first, first + 12):
            log.append(_entry(k))
        sizes.append(log.commit())
        assert log.n_written == 0
    assert [s["entries"] for s in sizes] == [12, 24, 36]
    frames = sum(len(pickle.dumps([_entry(k)], protocol=pickle.HIGHEST_PROTOCOL)) for k in range(12, 24))
    assert sizes[1]["bytes"] - sizes[0]["bytes"] == frames  # not the whole log again
    assert (tmp_path / "run.h5.ckpt.log").stat().st_size == sizes[2]["bytes"]
    assert _same_entries(list(log.entries()), range(36))


def test_resume_cuts_a_tail_a_crash_left(tmp_path: Path) -> None:
    """Entries appended after the checkpoint (a crash before the checkpoint file was replaced, even a
    half-written frame) are cut off: the resume reads exactly the checkpoint's entries and appends after
    them."""
    path = tmp_path / "run.h5.ckpt.log"
    log = InputLog(path)
    for k in range(10):
        log.append(_entry(k))
    extent = log.commit()  # what the checkpoint records
    for k in range(10, 20):
        log.append(_entry(k))
    log.commit()  # the next checkpoint's frame, but the run died before writing that checkpoint
    with open(path, "ab") as f:
        f.write(pickle.dumps([_entry(20)])[:-7])  # and a half-written frame after it
    resumed = InputLog.reopen(path, extent)
    assert path.stat().st_size == extent["bytes"]
    assert _same_entries(list(resumed.entries()), range(10))
    for k in range(10, 15):
        resumed.append(_entry(k))
    assert resumed.commit()["entries"] == 15
    assert _same_entries(list(InputLog.reopen(path, resumed.commit()).entries()), range(15))


def test_entries_go_to_the_file_as_they_come(tmp_path: Path) -> None:
    """An appended entry is in the file at once (the log holds none in memory between checkpoints, a week
    of them at scale); the extent a checkpoint records moves only at a commit."""
    path = tmp_path / "run.h5.ckpt.log"
    log = InputLog(path)
    log.append(_entry(0))
    extent = log.commit()
    for k in range(1, 4):
        log.append(_entry(k))
        log._file.flush()
        assert path.stat().st_size > extent["bytes"] and log.n_bytes == extent["bytes"]
    assert vars(log).keys() == {"path", "n_bytes", "n_entries", "n_written", "_file"}  # nothing held
    assert _same_entries(list(InputLog.reopen(path, extent).entries()), range(1))


def test_a_short_or_foreign_log_is_refused(tmp_path: Path) -> None:
    """A log shorter than its checkpoint records, or one holding other entries, stops the resume with a
    message naming the log and what to do; a fresh run's first commit starts the log anew."""
    path = tmp_path / "run.h5.ckpt.log"
    log = InputLog(path)
    log.append(_entry(0))
    extent = log.commit()
    with pytest.raises(CosimError, match="shorter than its checkpoint.*without --resume"):
        InputLog.reopen(path, {"bytes": extent["bytes"] + 1, "entries": 2})
    with pytest.raises(CosimError, match="holds 1 entries, its checkpoint 2"):
        list(InputLog.reopen(path, {"bytes": extent["bytes"], "entries": 2}).entries())
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(CosimError, match="cannot read the input log"):
        list(InputLog.reopen(path, {"bytes": 8, "entries": 1}).entries())
    fresh = InputLog(path)  # a new run over a stale log: the stale bytes go
    fresh.append(_entry(3))
    assert fresh.commit()["bytes"] == path.stat().st_size
    assert _same_entries(list(fresh.entries()), range(3, 4))


def test_captured_as_a_core_state_the_log_commits_and_restores_its_extent(tmp_path: Path) -> None:
    """Captured (the ledger component's state), the log commits its entries and is stored as its extent
    only; restored into a fresh log, the file is cut back to that extent and reads those entries."""
    path = tmp_path / "run.h5.ckpt.log"
    log = InputLog(path)
    for k in range(5):
        log.append(_entry(k))
    tree = pickle.loads(pickle.dumps(capture(log)))
    assert log.n_written == 0 and path.stat().st_size == log.n_bytes > 0
    assert tree == ("fields", {"n_bytes": ("value", log.n_bytes), "n_entries": ("value", 5)})
    log.append(_entry(5))
    log.commit()  # after the checkpoint, before a crash
    fresh = restore(InputLog(path), tree)
    assert path.stat().st_size == fresh.n_bytes and _same_entries(list(fresh.entries()), range(5))


def test_remove_takes_the_checkpoint_and_its_log(tmp_path: Path) -> None:
    """At the end of a run both the checkpoint and its input log are removed (missing ones are fine)."""
    ckpt = tmp_path / "run.h5.ckpt"
    ckpt.write_bytes(b"x")
    log_path(ckpt).write_bytes(b"y")
    assert log_path(ckpt).name == "run.h5.ckpt.log"
    remove(ckpt)
    remove(ckpt)
    assert list(tmp_path.iterdir()) == []


def _recorder(path: Path) -> H5Recorder:
    series = [Series("time", "s", np.int64), Series("grid/x", "MW", np.float64, 2)]
    table = Table("market/trades", (("step", np.int64, "1"), ("mwh", np.float64, "MWh")))
    return H5Recorder(path, series, {}, {}, chunk_steps=4, tables=[table])


def _step(k: int) -> dict[str, object]:
    trades = {"step": np.full(k % 2 + 1, k, dtype=np.int64), "mwh": np.full(k % 2 + 1, k * 0.5)}
    return {"time": k, "grid/x": np.array([k, -k], dtype=float), "market/trades": trades}


def test_recorder_checkpoint_keeps_buffered_steps_without_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint after 6 steps with chunks of 4 writes nothing: the file holds 4 steps and the table's
    whole chunks of 4 rows, the checkpoint the other 2 steps and rows; a recorder reopened from it after a
    kill (the file then held 8 steps) writes the file an uninterrupted recorder writes."""
    import cosim.recorder

    monkeypatch.setattr(cosim.recorder, "TABLE_CHUNK_ROWS", 1)  # a table's chunk: 4 rows, as the steps'
    whole = _recorder(tmp_path / "whole.h5")
    for k in range(11):
        whole.append(_step(k))
    whole.close(complete=True)

    run = _recorder(tmp_path / "run.h5")
    for k in range(6):
        run.append(_step(k))
    state = pickle.loads(pickle.dumps(run.checkpoint_state()))
    assert state["n_steps"] == 4 and state["table_rows"] == {"market/trades": 4}  # 6 rows: a chunk written
    assert list(state["buffered"]["time"]) == [4, 5]
    assert [list(block["step"]) for block in state["rows"]["market/trades"]] == [[3, 3, 4, 5, 5]]
    with h5py.File(tmp_path / "run.h5.partial", "r") as f:  # readable: nothing half-written
        assert f["time"].shape == (4,)
    for k in range(6, 9):  # the run went on past a chunk, then was killed
        run.append(_step(k))
    run._file.close()

    resumed = H5Recorder.reopen(
        tmp_path / "run.h5", [Series("time", "s", np.int64), Series("grid/x", "MW", np.float64, 2)], 4,
        [Table("market/trades", (("step", np.int64, "1"), ("mwh", np.float64, "MWh")))],
        state["n_steps"], state["table_rows"], buffered=state["buffered"], rows=state["rows"],
    )  # fmt: skip
    for k in range(6, 11):
        resumed.append(_step(k))
    resumed.close(complete=True)
    with h5py.File(tmp_path / "whole.h5") as a, h5py.File(tmp_path / "run.h5") as b:
        for name in ("time", "grid/x", "market/trades/step", "market/trades/mwh", "market/trades/trade"):
            assert np.array_equal(a[name][()], b[name][()]), name
