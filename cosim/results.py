"""Read a run's HDF5 file as pandas objects indexed by time, element names as columns."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from cosim.errors import ResultsError
from cosim.units import CF_TIME


class ResultsWarning(UserWarning):
    """A results file that opens but may not be what the reader expects (a newer partial run beside it)."""


READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, IndexError, TypeError)
"""What h5py and numpy raise on a truncated, partly deleted or foreign file."""


class NotOneFrame(KeyError):
    """A name that exists but does not open as one Series or DataFrame (a usage error, not a damaged file)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().strip("'\"")
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def open_h5(path: str | Path) -> h5py.File:
    """Open a run's HDF5 file read-only; ResultsError for a missing path, a directory or a non-HDF5 file."""
    path = Path(path)
    if path.is_dir():
        raise ResultsError(f"{path} is a directory, not a results file")
    if not path.is_file():
        partial = path.with_name(path.name + ".partial")
        hint = f"; an interrupted run left {partial}" if partial.is_file() else ""
        raise ResultsError(f"no results file {path}{hint}")
    try:
        return h5py.File(path, "r")
    except READ_ERRORS as exc:
        raise ResultsError(
            f"{path} is not a readable HDF5 file (empty, truncated or another format): {_first_line(exc)}"
        ) from None


@contextlib.contextmanager
def reading(path: str | Path) -> Iterator[None]:
    """Turn any failure to read ``path`` inside the block into one ResultsError naming the file."""
    try:
        yield
    except (ResultsError, NotOneFrame):
        raise
    except READ_ERRORS as exc:
        raise ResultsError(
            f"cannot read {path} (truncated, partly deleted or not written by cosim): {_first_line(exc)}"
        ) from None


def stale_partial(path: str | Path) -> str | None:
    """A warning when ``<path>.partial`` is newer than ``path``: a later run writing it stopped."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        newer = partial.is_file() and partial.stat().st_mtime > path.stat().st_mtime
    except OSError:
        return None
    if not newer:
        return None
    return f"{partial} is newer than {path}: a later run writing it stopped; {path} holds an earlier run"


def is_complete(f: h5py.File) -> bool:
    """Whether the run that wrote ``f`` completed (stopped or killed runs store ``complete = False``)."""
    return bool(f.attrs.get("complete", True))


class Results:
    """One run's results; ``res["grid/bus/vm_pu"]`` is a DataFrame (time x bus names).

    Each axis of a dataset is indexed by the coordinate of its dimension (its HDF5 dimension scale):
    time series by UTC time, element axes by element names, table rows by row number (the per-day
    table by the days' UTC start times). 1-D datasets
    come back as a pandas Series, 2-D ones as a DataFrame, and a group of 1-D datasets along one
    dimension (a table such as ``market/trades``, ``ledger/tx``, ``market/day``) as a DataFrame of its
    columns. Values are as stored (Unix seconds stay numbers; :meth:`to_xarray` decodes them). Use as
    a context manager or call :meth:`close`. A missing, empty, truncated or foreign file raises
    ResultsError; a newer ``.partial`` beside the file gives a ResultsWarning; ``complete`` says whether
    the run completed.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open_h5(self.path)
        try:
            with reading(self.path):
                if "time" not in self._file or "scenario_yaml" not in self._file.attrs:
                    raise ResultsError(f"{self.path} is not a cosim results file (no /time or scenario_yaml)")
                times = self._file["time"][:]
                self.complete = is_complete(self._file)
                self.index = pd.DatetimeIndex(pd.to_datetime(times, unit="s", utc=True), name="time")
        except ResultsError:
            self._file.close()
            raise
        stale = stale_partial(self.path)
        if stale is not None:
            warnings.warn(stale, ResultsWarning, stacklevel=3)

    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes: scenario_yaml, seed, versions, code_version, complete, ..."""
        return dict(self._file.attrs)

    @property
    def file(self) -> h5py.File:
        """The open h5py file, for readers that reduce whole groups (the report's loaders)."""
        return self._file

    def keys(self) -> list[str]:
        """Paths of every time series in the file."""
        found: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and not _is_scale(obj):
                if self._timed(obj) and name != "time":
                    found.append(name)

        with reading(self.path):
            self._file.visititems(visit)
        return found

    def tables(self) -> list[str]:
        """Paths of the groups that open as one DataFrame (tables: ``market/trades``, ``ledger/tx``, ...)."""
        found: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and self._columns(obj)[1]:
                found.append(name)

        with reading(self.path):
            self._file.visititems(visit)
        return found

    def _dim(self, ds: h5py.Dataset, axis: int) -> str | None:
        """Name of the dimension of ``axis`` (None when it has no scale)."""
        scales = ds.dims[axis]
        return str(scales[0].name).rpartition("/")[2] if len(scales) else None

    def _timed(self, ds: h5py.Dataset) -> bool:
        """The first axis is the run's time (files without scales: a growing axis of T rows)."""
        if len(ds.dims[0]):
            return self._dim(ds, 0) == "time" and ds.shape[0] == len(self.index)
        return ds.maxshape[0] is None and ds.shape[0] == len(self.index)

    def _coordinate(self, ds: h5py.Dataset, axis: int) -> pd.Index:
        """The labels of ``axis``: UTC times, names, or positions (files without scales: time or 0..n-1)."""
        if axis == 0 and self._timed(ds):
            return self.index
        scales = ds.dims[axis]
        if not len(scales):
            return pd.RangeIndex(ds.shape[axis])
        name = str(scales[0].name).rpartition("/")[2]
        if str(scales[0].attrs.get("units", "")) == CF_TIME:  # a time coordinate (day, month): UTC times
            return pd.DatetimeIndex(pd.to_datetime(scales[0][()], unit="s", utc=True), name=name)
        return pd.Index(_values(scales[0]), name=name)

    def _columns(self, group: h5py.Group) -> tuple[str | None, list[str]]:
        """The dimension and names of the group's 1-D datasets when they all run along one dimension."""
        names = [
            k for k, v in group.items() if isinstance(v, h5py.Dataset) and v.ndim == 1 and not _is_scale(v)
        ]
        dims = {self._dim(group[k], 0) for k in names}
        if len(dims) != 1 or None in dims:
            return None, []
        return dims.pop(), names

    def _table(self, name: str, group: h5py.Group) -> pd.DataFrame:
        """A group of 1-D datasets along one dimension as a DataFrame (columns in file order)."""
        dim, names = self._columns(group)
        if not names:
            inside = ", ".join(f"{k}{group[k].shape}" for k in group if isinstance(group[k], h5py.Dataset))
            raise NotOneFrame(
                f"{name!r} is a group whose datasets do not run along one dimension ({inside}); "
                f"open one of them, e.g. res['{name}/<dataset>'], or use res.to_xarray({name!r})"
            )
        index = self._coordinate(group[names[0]], 0)
        return pd.DataFrame({k: _values(group[k]) for k in names}, index=index)

    def __getitem__(self, name: str) -> pd.DataFrame | pd.Series:
        name = name.strip("/")
        if name not in self._file:
            raise KeyError(f"{name!r} is not in {self.path}; it has {', '.join(self.keys())}")
        with reading(self.path):
            return self._read(name)

    def _read(self, name: str) -> pd.DataFrame | pd.Series:
        obj = self._file[name]
        if isinstance(obj, h5py.Group):
            return self._table(name, obj)
        if obj.ndim == 1:
            return pd.Series(_values(obj), index=self._coordinate(obj, 0), name=name)
        if obj.ndim != 2:
            raise NotOneFrame(f"{name!r} has {obj.ndim} dimensions; use res.to_xarray() for it")
        columns = str(obj.attrs.get("columns", ""))
        labels = self._coordinate(obj, 1)
        return pd.DataFrame(
            obj[()], index=self._coordinate(obj, 0), columns=pd.Index(labels, name=columns or labels.name)
        )

    def to_xarray(self, group: str = "/") -> Any:
        """The datasets of ``group`` as an ``xarray.Dataset`` (named dimensions, times decoded, in memory).

        Reads the file with ``xarray.open_dataset(path, group=group, engine="h5netcdf")``: the same
        view any netCDF-4 tool has. Times are UTC (``datetime64``, timezone-naive, as xarray has them).
        """
        import xarray as xr

        group = group.strip("/")
        if group and not isinstance(self._file.get(group), h5py.Group):
            raise KeyError(f"{group!r} is not a group of {self.path}")
        with xr.open_dataset(self.path, group=group or None, engine="h5netcdf") as ds:
            return ds.load()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_scale(ds: h5py.Dataset) -> bool:
    """The dataset is the coordinate of a dimension (an HDF5 dimension scale)."""
    return bool(ds.attrs.get("CLASS") == b"DIMENSION_SCALE")


def _values(ds: h5py.Dataset) -> np.ndarray:
    """A dataset's values, strings decoded (variable-length UTF-8 and fixed-length ASCII)."""
    if h5py.check_string_dtype(ds.dtype) is not None or ds.dtype.kind == "S":
        return np.asarray(ds.asstr()[()], dtype=object)
    return np.asarray(ds[()])


def open_results(path: str | Path) -> Results:
    """Open a run's HDF5 file; see :class:`Results`."""
    return Results(path)


AUDIT_BYTES_PER_TX = 2_200
"""Memory the re-check holds per transaction when it keeps every interval's contract state (measured on the
default study's year: the promises, trade references and ids it keeps, with the allocator's overhead)."""


def verify_ledger(path: str | Path, keep_steps: int | None = None) -> tuple[bool, str | None, int, int]:
    """Re-check the chain stored in a run's ``/ledger`` tables against its genesis registry.

    Recomputes every hash link, Merkle root, receipts root and transaction id; checks every proposer
    signature, BFT commit certificate, PoS checkpoint attestation and PoW target against the validator keys
    of ``/ledger/genesis``, transaction-id uniqueness, the gateway's nonce rule (each nonce above its
    sender's earlier ones), the meter key registry and time order; re-executes the
    contracts from genesis to recompute every receipt; and, for a complete run, the validators' signed head
    (so a chain cut short is caught). See ``cosim.models.ledger.audit``.

    ``keep_steps``: hold the contract state of that many delivery intervals only (``audit.HorizonError``
    when the chain needs more); None holds all of it, and a chain whose state would not fit in this
    machine's memory (``AUDIT_BYTES_PER_TX`` a transaction) is refused before the check starts.

    Returns
    -------
    ``(ok, problem, n_blocks, n_tx)``: ``problem`` names the first bad block (by height) or transaction.
    Raises ResultsError when the file has no stored chain.
    """
    from cosim.models.ledger.audit import verify_tables
    from cosim.models.ledger.ledger import BLOCK_COLUMNS, TX_COLUMNS, VOTE_COLUMNS

    names = ("ledger/genesis", "ledger/blocks", "ledger/tx", "ledger/votes")
    with h5py.File(path, "r") as f:
        if not all(n in f for n in names):
            raise ResultsError(
                f"{path} has no {', '.join('/' + n for n in names)} (ledger.record_tables false, or a file "
                "written before the chain was signed)"
            )
        tables: dict[str, dict[str, Any]] = {}
        for name, columns in (("blocks", BLOCK_COLUMNS), ("votes", VOTE_COLUMNS)):
            group = f[f"ledger/{name}"]
            tables[name] = {
                c: (group[c].asstr()[:] if isinstance(dtype, str) else group[c][:]).tolist()
                for c, dtype, _ in columns
            }
        tx = f["ledger/tx"]  # the big one: read in slices as the check goes
        _fits(path, int(tx["tx_id"].shape[0]), keep_steps)
        tables["tx"] = {c: SlicedColumn(tx[c], isinstance(dtype, str)) for c, dtype, _ in TX_COLUMNS}
        genesis = f["ledger/genesis"].asstr()[0]
        complete = bool(f.attrs.get("complete", False))
        return verify_tables(genesis, tables["blocks"], tables["tx"], tables["votes"], complete, keep_steps)


def _fits(path: str | Path, n_tx: int, keep_steps: int | None) -> None:
    """ResultsError when holding every interval's contract state of ``n_tx`` transactions would need more
    than this machine's memory."""
    need = n_tx * AUDIT_BYTES_PER_TX
    have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
    if keep_steps is None and have and need > have:
        raise ResultsError(
            f"{path}: its chain has {n_tx:,} transactions; checking it with every interval's contract state "
            f"needs ~{need / 2**30:.0f} GiB, this machine has {have / 2**30:.0f} GiB: verify it with "
            "--keep-steps N (the state of the last N delivery intervals, e.g. 24)"
        )


LEDGER_SLICE_ROWS = 16_384
"""Rows of a ``/ledger/tx`` column that ``verify_ledger`` holds at a time (~20 MB of text for a slice of
every column), whatever the length of the chain."""


class SlicedColumn(Sequence[Any]):
    """A stored column read ``LEDGER_SLICE_ROWS`` rows at a time as it is indexed (text decoded to str).

    The check walks the rows in about their order, so a column costs the two slices around the rows of a
    block, not the table; ``np.asarray`` of it reads it whole (the heights, 8 bytes a row).
    """

    def __init__(self, ds: h5py.Dataset, text: bool) -> None:
        self._ds, self._text, self._n = ds, text, int(ds.shape[0])
        self._slices: dict[int, list[Any]] = {}  # first row -> its slice's values (the last two read)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if not isinstance(i, int | np.integer):
            raise TypeError(f"a SlicedColumn takes one row index, not {type(i).__name__}")
        i = int(i) + (self._n if i < 0 else 0)
        if not 0 <= i < self._n:
            raise IndexError(f"row {i} of a column of {self._n}")
        lo = i - i % LEDGER_SLICE_ROWS
        part = self._slices.get(lo)
        if part is None:
            read = self._ds.asstr() if self._text else self._ds
            part = read[lo : lo + LEDGER_SLICE_ROWS].tolist()
            self._slices[lo] = part
            if len(self._slices) > 2:
                del self._slices[next(iter(self._slices))]  # the one read first
        return part[i - lo]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self._ds[()], dtype=dtype)
