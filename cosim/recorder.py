"""Stream time series to one HDF5 file as the run goes: chunked along time, compressed, appended.

The file is written as ``<path>.partial`` and renamed to ``<path>`` only when the run completes, so a
file at the final path is always whole; an interrupted run leaves the partial file (root attribute
``complete = False``) with every step recorded so far. The file is flushed to disk after it is laid out and
after every chunk, so even a killed process (``kill -9``) leaves a partial file that opens, holding every
chunk completed before the kill. A failed write (a full disk) raises :class:`RecorderError`; the recorder
then writes nothing more and only closes the file.

Every dataset has HDF5 dimension scales (the netCDF-4 data model), so netCDF tools and
``xarray.open_dataset(path, group=..., engine="h5netcdf")`` see named dimensions. Each group is
self-contained: a group with time series holds its own ``time`` coordinate (a copy of ``/time``, CF
units), and its own copy of the labels of its other dimensions (``/grid/bus/bus``, ``/market/agent``);
a table's rows are numbered by a ``<table>/<dim>`` coordinate.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.errors import CosimError
from cosim.units import unit_attrs


class RecorderError(CosimError):
    """Writing the results file failed (a full disk, a lost mount, a size limit)."""

    exit_now = False  # True after a failed write: HDF5's own cleanup at exit would retry it and crash


@contextlib.contextmanager
def _quiet_release() -> Iterator[None]:
    """Silence the errors h5py reports while releasing handles of a file whose writes failed."""
    previous = sys.unraisablehook
    sys.unraisablehook = lambda _: None
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        sys.unraisablehook = previous


CHUNK_CACHE_BYTES = 0
"""HDF5's chunk cache of each dataset the recorder writes. None: the series and the tables are written a
whole chunk at a time (a table's last, partial chunk at the close), so a cache would save nothing, while
HDF5's default (1 MiB per dataset, kept for the whole run) grows with the run up to a megabyte for every one
of the file's datasets."""

TABLE_ROWS_BUFFERED = 4096
"""A table whose buffered rows reach this many is written before its steps' chunk is full, so a busy table
(a ledger's transactions: ~1.3 kB a row) holds at most about 5 MB in memory, whatever ``chunk_steps``."""

TABLE_CHUNK_ROWS = 1024
"""Rows of a table's HDF5 chunk (``chunk_steps`` when more); tables go to the file in whole chunks."""

SPACE_MARGIN_BYTES = 2**20
"""Space reserved beyond twice the next chunk's raw size; when it cannot be had, the run stops cleanly."""


def write_failure(path: Path, exc: Exception) -> RecorderError:
    """One line on why a write failed, without HDF5's error stack."""
    text = str(exc)
    if getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in text:
        why = "the disk is full (No space left on device)"
    elif getattr(exc, "errno", None) == errno.EDQUOT:
        why = "the disk quota is exhausted"
    elif getattr(exc, "errno", None) == errno.EFBIG or "File too large" in text:
        why = "the file size limit was reached (File too large)"
    else:
        why = getattr(exc, "strerror", None) or (text.splitlines() or [type(exc).__name__])[0][:200]
    return RecorderError(f"cannot write {path}: {why}")


@dataclass(frozen=True)
class Series:
    """A dataset filled one step at a time: shape (T,) when ``width`` is None, else (T, width)."""

    path: str
    units: str
    dtype: Any = np.float64
    width: int | None = None
    description: str = ""
    columns: str = ""  # path of the dataset naming the columns, e.g. "grid/bus/name"

    @property
    def group(self) -> str:
        """The HDF5 group the series lives in ("" for the root)."""
        return self.path.rpartition("/")[0]


@dataclass(frozen=True)
class Table:
    """A group of 1-D datasets that grow by a variable number of rows per step (e.g. trades)."""

    path: str
    columns: tuple[tuple[str, Any, str], ...]  # (name, dtype, units)
    description: str = ""
    dim: str = ""  # name of the row dimension; default: the table's name without a plural "s"
    step_column: str = ""  # label the rows by the start time of the step in this column (else: 0..N-1)

    @property
    def row_dim(self) -> str:
        """The dimension the table's rows run along (``trades`` -> ``trade``, ``tx`` -> ``tx``)."""
        name = self.path.rpartition("/")[2]
        return self.dim or (name[:-1] if name.endswith("s") else name)


class H5Recorder:
    """Buffer ``chunk_steps`` steps per series in memory and append them to the HDF5 file.

    Parameters
    ----------
    path : final file path
    series : the time series to record
    static : datasets written once, ``{path: (array, units)}`` (element names, bus indices, ...)
    attrs : root attributes (scenario YAML, seed, versions, ...); a key "group/name" sets a group attribute
    chunk_steps : steps per chunk and per write
    compression : ``"gzip"``, ``"lzf"`` or ``"none"``
    tables : variable-length tables; a step's value is a dict of equal-length column arrays (a column of
        dtype ``object`` holds variable-length strings)
    labels : ``{static dataset: dimension name}``: datasets labelling a dimension (``"grid/bus/name":
        "bus"``); a series whose ``columns`` is one of them runs along that dimension (a ``columns``
        dataset not named here labels a dimension named after it, see :func:`_labels_dim`; in a group
        where that name is taken, the dimension is the labels' path joined by "_": ``market_gen_name``)
    dims : dimension names of static and end-of-run datasets, ``{path: ("agent",)}``; without an entry a
        labels dataset runs along its own dimension and any other along the labels of its group of the
        same length (else along a dimension of its own, ``<name>_dim<axis>``)

    Units are declared as the project writes them and stored as UDUNITS-2 (:mod:`cosim.units`).
    """

    def __init__(
        self,
        path: str | Path,
        series: list[Series],
        static: dict[str, tuple[np.ndarray, str]],
        attrs: dict[str, Any],
        chunk_steps: int = 256,
        compression: str = "gzip",
        tables: list[Table] | None = None,
        labels: dict[str, str] | None = None,
        dims: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._declare(path, chunk_steps, series, tables, labels, dims)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if series and "time" not in self.series:
            raise ValueError("the series must include 'time' (Unix s of each step), the time coordinate")
        self._file = h5py.File(self.partial_path, "w", track_order=True, rdcc_nbytes=CHUNK_CACHE_BYTES)
        self._file.attrs["complete"] = False
        self._set_attrs(attrs)
        self._compression = compression
        self._times: list[h5py.Dataset] = []  # the groups' copies of /time
        for key, (data, units) in static.items():
            self._write(key, data, units)
        for s in series:
            tail = () if s.width is None else (s.width,)
            chunk = (chunk_steps, *tail) if s.width != 0 else None
            self._group(s.group)
            ds = self._file.create_dataset(
                s.path,
                shape=(0, *tail),
                maxshape=(None, *tail),
                dtype=s.dtype,
                chunks=chunk,
                **self._filters(s.dtype),
            )
            ds.attrs.update(unit_attrs(s.units, s.dtype))
            if s.description:
                ds.attrs["description"] = ds.attrs["long_name"] = s.description
            if s.columns:
                ds.attrs["columns"] = s.columns
        if series:
            self._file["time"].make_scale("time")
        for s in series:
            if s.path != "time":
                axes = ("time",) if s.width is None else ("time", self.labels.get(s.columns, ""))
                self._attach(s.path, axes)
        for t in self.tables.values():
            group = self._group(t.path)
            if t.description:
                group.attrs["description"] = t.description
            rows = self._growing(f"{t.path}/{t.row_dim}", np.int64, self.table_chunk)
            if t.step_column:
                rows.attrs.update(unit_attrs("Unix s", np.int64))
                rows.attrs["long_name"] = f"start of the step {t.step_column}"
            else:
                rows.attrs.update({"units": "1", "long_name": "row number"})
            rows.make_scale(t.row_dim)
            for name, dtype, units in t.columns:
                if name == t.row_dim:
                    raise ValueError(f"table {t.path}: column {name!r} is also its row dimension")
                stored = h5py.string_dtype() if dtype is object else dtype
                col = self._growing(f"{t.path}/{name}", stored, self.table_chunk)
                col.attrs.update(unit_attrs(units, dtype))
                col.dims[0].attach_scale(rows)
        for key in static:
            self._attach(key, self._static_dims(key))
        self._rows: dict[str, list[dict[str, np.ndarray]]] = {path: [] for path in self.tables}
        self._pending = dict.fromkeys(self.tables, 0)  # rows buffered per table (in ``_rows``)
        self._buffers = {
            s.path: np.empty((chunk_steps, *(() if s.width is None else (s.width,))), dtype=s.dtype)
            for s in series
        }
        self._filled = 0
        self.n_steps = 0
        self.failed: RecorderError | None = None
        self._write_error = False  # a write failed half-way: HDF5's state is not to be trusted
        self._datasets: dict[str, Any] = {}  # open handles: chunks are flushed by _sync, not on release
        self._sync()

    def _declare(
        self,
        path: str | Path,
        chunk_steps: int,
        series: Sequence[Series],
        tables: Sequence[Table] | None,
        labels: dict[str, str] | None,
        dims: dict[str, tuple[str, ...]] | None,
    ) -> None:
        """What the file holds: its paths, series, tables, and the dimension labels of both."""
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.chunk_steps = chunk_steps
        self.table_chunk = max(chunk_steps, TABLE_CHUNK_ROWS)
        self.series = {s.path: s for s in series}
        self.labels, self.dims = dict(labels or {}), dict(dims or {})
        for s in series:
            if s.columns and s.columns not in self.labels:
                self.labels[s.columns] = _labels_dim(s.columns)
        self.tables = {t.path: t for t in tables or []}
        self._row_bytes = {p: sum(np.dtype(c[1]).itemsize for c in t.columns) for p, t in self.tables.items()}
        self._expected = frozenset(self.series) | frozenset(self.tables)  # the keys of a step's values
        self._scales: dict[tuple[str, str], h5py.Dataset] = {}  # (group, dimension) -> its scale

    @classmethod
    def reopen(
        cls,
        path: str | Path,
        series: list[Series],
        chunk_steps: int,
        tables: list[Table] | None,
        n_steps: int,
        table_rows: dict[str, int],
        labels: dict[str, str] | None = None,
        dims: dict[str, tuple[str, ...]] | None = None,
        buffered: dict[str, np.ndarray] | None = None,
        rows: dict[str, list[dict[str, np.ndarray]]] | None = None,
    ) -> H5Recorder:
        """The recorder of a resumed run: its ``.partial`` file cut back to ``n_steps`` steps (and each
        table to its ``table_rows``), appended to from there; ``buffered`` and ``rows`` are the steps the
        checkpointed recorder held in memory (see :meth:`checkpoint_state`)."""
        self = cls.__new__(cls)
        self._declare(path, chunk_steps, series, tables, labels, dims)
        try:
            self._file = h5py.File(self.partial_path, "r+", rdcc_nbytes=CHUNK_CACHE_BYTES)
        except OSError as exc:
            raise RecorderError(f"--resume: cannot open {self.partial_path} to continue it ({exc})") from None
        self._times = []
        self._file.visititems(
            lambda name, obj: self._times.append(obj)
            if isinstance(obj, h5py.Dataset) and obj.attrs.get("source") == "/time" else None
        )  # fmt: skip
        for ds in [*(self._file[s.path] for s in series), *self._times]:
            if ds.shape[0] < n_steps:
                raise RecorderError(f"--resume: {self.partial_path} holds fewer steps than its checkpoint")
            ds.resize(n_steps, axis=0)
        for tpath, t in self.tables.items():
            for name in [t.row_dim, *(c[0] for c in t.columns)]:
                self._file[f"{tpath}/{name}"].resize(table_rows[tpath], axis=0)
        self._rows = {tpath: [] for tpath in self.tables}
        self._buffers = {
            s.path: np.empty((chunk_steps, *(() if s.width is None else (s.width,))), dtype=s.dtype)
            for s in series
        }
        self._filled = 0
        for key, data in (buffered or {}).items():
            self._buffers[key][: len(data)] = data
            self._filled = len(data)
        self._rows |= {tpath: list(kept) for tpath, kept in (rows or {}).items()}
        self._pending = {tpath: sum(map(_n_rows, kept)) for tpath, kept in self._rows.items()}
        self.n_steps = n_steps
        self.failed = None
        self._write_error = False
        self._datasets = {}
        self._sync()
        return self

    def table_rows(self) -> dict[str, int]:
        """Rows written to each table (after a flush: all rows recorded)."""
        return {tpath: int(self._file[f"{tpath}/{t.row_dim}"].shape[0]) for tpath, t in self.tables.items()}

    def checkpoint_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the recorder, for :meth:`reopen`: the steps and table rows in the file
        (as of the last chunk written) and the steps buffered in memory (less than a chunk).

        Nothing is written: a checkpoint costs no partial chunk (compressed now, then read, completed and
        compressed again), and the chunks are those of a run without checkpoints.
        """
        return {
            "n_steps": self.n_steps,
            "table_rows": self.table_rows(),
            "buffered": {key: buf[: self._filled].copy() for key, buf in self._buffers.items()},
            "rows": {tpath: _merged(kept) for tpath, kept in self._rows.items()},
        }

    def _sync(self) -> None:
        """Flush HDF5's buffers and metadata to disk (the file then opens whatever happens next)."""
        self._file.flush()

    def _group(self, path: str) -> h5py.Group:
        """The group at ``path``, created (with its parents) to list its members in creation order."""
        group: h5py.Group = self._file
        for name in filter(None, path.split("/")):
            group = group[name] if name in group else group.create_group(name, track_order=True)
        return group

    def _growing(self, path: str, dtype: Any, chunk: int) -> h5py.Dataset:
        """An empty 1-D dataset that grows along its only axis."""
        self._group(path.rpartition("/")[0])
        return self._file.create_dataset(
            path, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(chunk,), **self._filters(dtype)
        )

    def _filters(self, dtype: Any) -> dict[str, Any]:
        """The compression filters of a growing dataset of ``dtype``.

        Numbers are shuffled (their bytes grouped by significance) before compression. Byte strings (the
        ledger's hashes, signatures and JSON) are not: HDF5 shuffles a string's bytes across the whole
        row, which breaks up its text; and their gzip level is 1. Over 30 days of the default study's
        ledger tables that takes 2.4x less CPU time and a file 8 % smaller than level 4 with shuffling.
        """
        text = np.dtype(dtype).kind == "S"
        if self._compression == "gzip":
            return {"compression": "gzip", "compression_opts": 1 if text else 4, "shuffle": not text}
        if self._compression == "lzf":
            return {"compression": "lzf", "shuffle": not text}
        return {}

    def _write(self, key: str, data: Any, units: str) -> None:
        """A dataset written whole (static or end of run), strings as variable-length UTF-8."""
        data = np.asarray(data)
        self._group(key.rpartition("/")[0])
        if data.dtype.kind in "OU":
            data = data.astype(h5py.string_dtype())
        self._file.create_dataset(key, data=data).attrs.update(unit_attrs(units, data.dtype))

    def _static_dims(self, key: str) -> tuple[str, ...]:
        """Dimension names of a dataset written whole (see the class docstring)."""
        if key in self.dims:
            return self.dims[key]
        if key in self.labels:
            return (self.labels[key],)
        ds, group = self._file[key], key.rpartition("/")[0]
        same = [
            dim
            for path, dim in self.labels.items()
            if path.rpartition("/")[0] == group and path in self._file and len(self._file[path]) == len(ds)
        ]
        if ds.ndim == 1 and same:
            return (same[0],)
        return tuple(f"{key.rpartition('/')[2]}_dim{axis}" for axis in range(ds.ndim))

    def _attach(self, key: str, dims: tuple[str, ...]) -> None:
        """Attach to each axis of ``key`` the scale of its dimension in the dataset's own group."""
        ds = self._file[key]
        group = key.rpartition("/")[0]
        for axis, dim in enumerate(dims):
            dim = dim or f"{key.rpartition('/')[2]}_dim{axis}"
            ds.dims[axis].attach_scale(self._scale(group, dim, ds.shape[axis]))

    def _scale(self, group: str, dim: str, size: int) -> h5py.Dataset:
        """The scale of dimension ``dim`` in ``group``, created on first use (and then kept at hand: the
        file's series share a few scales, and looking one up in HDF5 costs more than the attaching).

        ``time`` copies ``/time`` and grows with it; a labelled dimension copies its labels; any other
        is the positions 0..size-1.
        """
        if (group, dim) not in self._scales:
            self._scales[group, dim] = self._find_scale(group, dim, size)
        return self._scales[group, dim]

    def _find_scale(self, group: str, dim: str, size: int) -> h5py.Dataset:
        """The scale of :meth:`_scale`, looked up in the file or created."""
        source = "time" if dim == "time" else next((p for p, d in self.labels.items() if d == dim), None)
        path = f"{group}/{dim}" if group else dim
        if path in self._file and self._file[path].attrs.get("CLASS") != b"DIMENSION_SCALE":
            dim = source.replace("/", "_") if source else f"{dim}_index"  # the name is taken in this group
            path = f"{group}/{dim}" if group else dim
        if path in self._file:
            return self._file[path]
        if dim == "time":
            time = self._file["time"]
            scale = self._growing(path, time.dtype, self.chunk_steps)
            self._times.append(scale)
        elif source is not None and source in self._file and len(self._file[source]) == size:
            labels = self._file[source]
            scale = self._file.create_dataset(path, data=labels[()], dtype=labels.dtype)
        else:
            source = None
            scale = self._file.create_dataset(path, data=np.arange(size, dtype=np.int64))
            scale.attrs.update({"units": "1", "long_name": f"position along {dim}"})
        if source is not None:
            hidden = ("CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST")
            scale.attrs.update({k: v for k, v in self._file[source].attrs.items() if k not in hidden})
            scale.attrs["source"] = f"/{source}"
        scale.make_scale(dim)
        return scale

    def append(self, values: dict[str, Any]) -> None:
        """Record one step; ``values`` must name every series."""
        if values.keys() != self._expected:
            missing = sorted(self._expected - set(values))
            extra = sorted(set(values) - self._expected)
            raise KeyError(f"step values do not match the declared series: missing {missing}, extra {extra}")
        row = self._filled
        for key, buf in self._buffers.items():
            buf[row] = values[key]
        pending = self._pending
        for key, rows in self._rows.items():
            rows.append(values[key])
            pending[key] += _n_rows(values[key])
        self._filled += 1
        if self._filled == self.chunk_steps:
            self.flush()
            return
        early = max(TABLE_ROWS_BUFFERED, self.table_chunk)
        for key, n in pending.items():  # a busy table (a ledger's transactions) goes ahead of its steps
            if n >= early:
                self._write_now(key)

    def flush(self, final: bool = False) -> None:
        """Write the buffered steps to the file and flush it to disk; RecorderError when writing fails.

        Tables are written in whole chunks (see :meth:`_write_table`), all their rows when ``final``.
        """
        n = self._filled
        if self.failed is not None or (n == 0 and not (final and any(self._pending.values()))):
            return
        self._check_space(n)
        try:
            self._write_chunk(n, final)
            self._sync()
        except (OSError, RuntimeError) as exc:
            self.failed = write_failure(self.partial_path, exc)
            self._abandon()
            raise self.failed from None
        self.n_steps += n
        self._filled = 0

    def _abandon(self) -> None:
        """After a failed write: release the file without writing (HDF5 would retry the failed writes)."""
        self._write_error = True
        if self.failed is not None:
            self.failed.exit_now = True
        with _quiet_release(), contextlib.suppress(OSError, RuntimeError):
            self._datasets.clear()
            self._file.id.close()

    def _trim(self) -> None:
        """Cut the space reserved but not used off the closed file."""
        with contextlib.suppress(OSError):
            with h5py.File(self.partial_path, "r") as f:
                end = f.id.get_filesize()
            if self.partial_path.stat().st_size > end:
                os.truncate(self.partial_path, end)

    def _dataset(self, key: str) -> Any:
        if key not in self._datasets:
            self._datasets[key] = self._file[key]
        return self._datasets[key]

    def _check_space(self, n: int) -> None:
        """Reserve disk space for the next chunk; stop before writing when it cannot be had.

        The file is extended (``posix_fallocate``) to twice the chunk's raw size plus a margin beyond the
        end of HDF5's allocated space, where HDF5 places the new data (``close`` trims the rest). A full
        disk or a file size limit then stops the run while the file on disk is still whole, instead of
        failing half-way through HDF5's writes.
        """
        need = sum(buf[:n].nbytes for buf in self._buffers.values())
        need += sum(8 * n * self._row_bytes[key] for key, n in self._pending.items())
        need = 2 * need + SPACE_MARGIN_BYTES
        try:
            fd = os.open(self.partial_path, os.O_WRONLY)
        except OSError:
            return
        try:
            target = self._file.id.get_filesize() + need  # HDF5's end of allocation + the reserve
            if target > os.fstat(fd).st_size:
                os.posix_fallocate(fd, 0, target)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                return  # fallocate unsupported here: write and see
            self.failed = write_failure(self.partial_path, exc)
            self.failed.args = (f"{self.failed} before the next chunk ({need / 2**20:.1f} MiB)",)
            raise self.failed from None
        finally:
            os.close(fd)

    def _write_now(self, path: str) -> None:
        """Write the buffered rows of table ``path`` before the steps' chunk is full (memory bound)."""
        if self.failed is not None:
            return
        self._check_space(0)
        try:
            self._write_table(path, self._rows[path])
            self._sync()
        except (OSError, RuntimeError) as exc:
            self.failed = write_failure(self.partial_path, exc)
            self._abandon()
            raise self.failed from None

    def _write_chunk(self, n: int, final: bool = False) -> None:
        for key, buf in self._buffers.items() if n else ():
            ds = self._dataset(key)
            ds.resize(self.n_steps + n, axis=0)
            ds[self.n_steps : self.n_steps + n] = buf[:n]
        for ds in self._times if n else ():
            ds.resize(self.n_steps + n, axis=0)
            ds[self.n_steps : self.n_steps + n] = self._buffers["time"][:n]
        for path, rows in self._rows.items():
            self._write_table(path, rows, whole=final)

    def _write_table(self, path: str, rows: list[dict[str, np.ndarray]], whole: bool = False) -> None:
        """Append a table's buffered ``rows`` (and their row labels) to the file, in whole HDF5 chunks
        unless ``whole`` (the end of the run); the rest stays in ``rows``.

        A chunk once written is never rewritten: growing a compressed chunk moves it and frees its old
        space, which HDF5 may hand to the next column's chunk before the file's index is flushed, so a
        run killed in between would resume with that column's rows in this one's place.
        """
        block = _merged(rows)
        n_rows = _n_rows(block[0]) if block else 0
        n = n_rows if whole else n_rows - n_rows % self.table_chunk
        if n == 0:  # all written ahead of the steps (``TABLE_ROWS_BUFFERED``), or less than a chunk
            rows[:] = block
            return
        table = self.tables[path]
        for name, _, _ in table.columns:
            data = block[0][name][:n]
            ds = self._dataset(f"{path}/{name}")
            start = ds.shape[0]
            ds.resize(start + len(data), axis=0)
            ds[start:] = data
        scale = self._file[f"{path}/{table.row_dim}"]
        start = scale.shape[0]
        scale.resize(ds.shape[0], axis=0)
        if table.step_column:
            steps = self._file[f"{path}/{table.step_column}"][start:]
            written = self._file["time"][()]  # the steps not written yet are in the buffer
            scale[start:] = np.concatenate([written, self._buffers["time"][: self._filled]])[steps]
        else:
            scale[start:] = np.arange(start, ds.shape[0])
        rows[:] = [{name: col[n:].copy() for name, col in block[0].items()}] if n < n_rows else []
        self._pending[path] = n_rows - n

    def _set_attrs(self, attrs: dict[str, Any]) -> None:
        """Root attributes; a key ``"group/name"`` sets attribute ``name`` of that group."""
        for key, value in attrs.items():
            group, _, name = key.rpartition("/")
            self._group(group).attrs[name] = value

    def close(
        self,
        complete: bool,
        attrs: dict[str, Any] | None = None,
        datasets: dict[str, tuple[np.ndarray, str]] | None = None,
    ) -> Path:
        """Flush and close; rename to the final path when ``complete``. Returns the file written.

        ``datasets`` are written at the end, ``{path: (array, units)}`` (results of the whole run).
        After a failed write the file is only closed, and stays partial; RecorderError when the file
        could not be completed.
        """
        if not self._file.id.valid:
            return self.path if complete else self.partial_path
        try:
            if self._write_error:  # write nothing more: close what is on disk
                raise self.failed or RecorderError(f"cannot write {self.partial_path}")
            if self.failed is None:
                self.flush(final=True)
            for key, (data, units) in (datasets or {}).items():
                self._write(key, data, units)
            for key in datasets or {}:
                self._attach(key, self._static_dims(key))
            self._set_attrs(attrs or {})
            self._file.attrs["complete"] = complete
            self._file.attrs["n_steps"] = self.n_steps
            self._file.close()
            self._trim()
        except (OSError, RuntimeError, RecorderError) as exc:
            if self.failed is None:
                self.failed = exc if isinstance(exc, RecorderError) else write_failure(self.partial_path, exc)
            self._abandon()
            if complete:
                raise self.failed from None
            return self.partial_path
        if complete:
            os.replace(self.partial_path, self.path)
            return self.path
        return self.partial_path


def _n_rows(block: dict[str, np.ndarray]) -> int:
    """Rows in one step's block of a table (the length of its first column; 0 without columns)."""
    return len(next(iter(block.values()), ()))


def _merged(rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """A table's buffered rows as one block (a column each): written alike, pickled in one go."""
    if len(rows) < 2:
        return list(rows)
    return [{name: np.concatenate([r[name] for r in rows]) for name in rows[0]}]


def _labels_dim(columns: str) -> str:
    """Dimension named after a labels dataset: ``"market/unit_name"`` -> ``unit``, ``"grid/gen/name"`` ->
    ``gen``."""
    group, _, name = columns.rpartition("/")
    return group.rpartition("/")[2] if name == "name" else name.removesuffix("_name")
