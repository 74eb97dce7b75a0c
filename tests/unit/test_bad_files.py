"""A corpus of bad results files: every reader gives one message and exit 1, never a traceback.

Readers: ``cosim report``, ``cosim verify-ledger`` and ``cosim.open_results``. Files: missing, a directory,
empty, random bytes, text, truncated, overwritten in the middle, foreign HDF5, partly deleted.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

import cosim
from cosim.cli import main
from cosim.errors import ResultsError
from cosim.results import ResultsWarning

GRID = """
name: tiny
time: {start: 2016-01-01T00:00:00, duration: 1d, step: 1h}
grid: {source: pandapower, case: case9}
"""
LEDGER = """
name: chain
time: {start: 2024-01-01T00:00:00, duration: 1h, step: 1min}
ledger: {consensus: bft, validators: 4, workload: {tx_per_s: 2, accounts: 10}}
"""


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A short grid run and a short ledger-alone run, both complete."""
    root = tmp_path_factory.mktemp("good")
    files = {}
    for name, text, steps in (("grid", GRID, 6), ("ledger", LEDGER, 3)):
        scenario = root / f"{name}.yaml"
        scenario.write_text(textwrap.dedent(text))
        files[name] = cosim.run(scenario, steps=steps, out=root / f"{name}.h5").path
    return files


def _truncated(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])


def _overwritten(at: float) -> Callable[[Path, Path], None]:
    def damage(src: Path, dst: Path) -> None:
        data = bytearray(src.read_bytes())
        start = max(96, int(len(data) * at))  # past the superblock
        data[start : start + 4096] = np.random.default_rng(1).bytes(4096)
        dst.write_bytes(bytes(data))

    return damage


def _foreign(src: Path, dst: Path) -> None:
    with h5py.File(dst, "w") as f:
        f["x"] = np.arange(3)


def _deleted(group: str) -> Callable[[Path, Path], None]:
    def damage(src: Path, dst: Path) -> None:
        shutil.copy(src, dst)
        with h5py.File(dst, "a") as f:
            del f[group]

    return damage


DAMAGES: dict[str, Callable[[Path, Path], None]] = {
    "missing": lambda src, dst: None,
    "directory": lambda src, dst: dst.mkdir(),
    "empty": lambda src, dst: dst.write_bytes(b""),
    "random": lambda src, dst: dst.write_bytes(np.random.default_rng(0).bytes(5000)),
    "text": lambda src, dst: dst.write_text("name: not a results file\n"),
    "truncated": _truncated,
    "overwritten": _overwritten(1 / 3),  # raw data may be hit: can go unnoticed
    "header overwritten": _overwritten(0.0),  # the root group's metadata
    "foreign": _foreign,
    "no time": _deleted("time"),
    "no grid": _deleted("grid"),
    "no ledger": _deleted("ledger"),
    "no blocks": _deleted("ledger/blocks"),
}
FOR_GRID = ["missing", "directory", "empty", "random", "text", "truncated", "overwritten", "foreign"]
FOR_GRID += ["header overwritten", "no time"]
UNNOTICED = ("overwritten", "no grid")  # may leave a file whose damage no reader can see
FOR_LEDGER = [*FOR_GRID[:-1], "no ledger", "no blocks"]


def damaged(good: dict[str, Path], base: str, kind: str, tmp_path: Path) -> Path:
    """A damaged copy of a good file."""
    path = tmp_path / f"{kind.replace(' ', '_')}.h5"
    DAMAGES[kind](good[base], path)
    return path


def one_message(err: str) -> None:
    """stderr holds one error line and no traceback."""
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()][-1].startswith("error: ")


@pytest.mark.parametrize("kind", [*FOR_GRID, "no grid"])
def test_report_on_bad_files(
    kind: str, good: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`cosim report` on a damaged file: exit 1 with one message (or a report when what is left is whole)."""
    path = damaged(good, "grid", kind, tmp_path)
    code = main(["report", str(path), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    if kind in UNNOTICED:  # a report of what is left, or one message
        assert code in (0, 1) and "Traceback" not in err
        return
    assert code == 1
    one_message(err)


@pytest.mark.parametrize("kind", FOR_LEDGER)
def test_verify_ledger_on_bad_files(
    kind: str, good: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`cosim verify-ledger` on a damaged file: exit 1 with one message."""
    path = damaged(good, "ledger", kind, tmp_path)
    assert main(["verify-ledger", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()


@pytest.mark.parametrize("base", ["grid", "ledger"])
@pytest.mark.parametrize("kind", FOR_GRID)
def test_open_results_on_bad_files(kind: str, base: str, good: dict[str, Path], tmp_path: Path) -> None:
    """open_results on a damaged file raises ResultsError, or opens and reads every series."""
    path = damaged(good, base, kind, tmp_path)
    try:
        with cosim.open_results(path) as res:
            for key in res.keys():
                res[key]
    except ResultsError as exc:
        assert str(exc).count("\n") == 0
        return
    assert kind == "overwritten"  # only a hit in unused bytes can leave a file whole


def test_incomplete_report_says_so_in_its_title(good: dict[str, Path], tmp_path: Path) -> None:
    """The report of a stopped run's file says INCOMPLETE in its title."""
    path = tmp_path / "stopped.h5.partial"
    shutil.copy(good["grid"], path)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    assert main(["report", str(path), "--out", str(tmp_path / "rep")]) == 0
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "<title>INCOMPLETE run (6 steps recorded" in html


def test_newer_partial_beside_a_complete_file_warns(
    good: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A newer .partial beside a complete file: report and open_results warn that a later run stopped."""
    path = tmp_path / "run.h5"
    shutil.copy(good["grid"], path)
    partial = tmp_path / "run.h5.partial"
    shutil.copy(good["grid"], partial)
    old = time.time() - 60
    os.utime(path, (old, old))
    with pytest.warns(ResultsWarning, match="is newer than"):
        cosim.open_results(path).close()
    assert main(["report", str(path), "--out", str(tmp_path / "rep")]) == 0
    assert "warning: " in capsys.readouterr().err
    os.utime(partial, (old - 60, old - 60))  # an older partial is history: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResultsWarning)
        cosim.open_results(path).close()
