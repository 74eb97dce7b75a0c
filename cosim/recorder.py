"""Stream time series to one HDF5 file as the run goes: chunked along time, compressed, appended.

The file is written as ``<path>.partial`` and renamed to ``<path>`` only when the run completes, so a
file at the final path is always whole; an interrupted run leaves the partial file (root attribute
``complete = False``) with every step recorded so far.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np


@dataclass(frozen=True)
class Series:
    """A dataset filled one step at a time: shape (T,) when ``width`` is None, else (T, width)."""

    path: str
    units: str
    dtype: Any = np.float64
    width: int | None = None
    description: str = ""
    columns: str = ""  # path of the dataset naming the columns, e.g. "grid/bus/name"


@dataclass(frozen=True)
class Table:
    """A group of 1-D datasets that grow by a variable number of rows per step (e.g. trades)."""

    path: str
    columns: tuple[tuple[str, Any, str], ...]  # (name, dtype, units)
    description: str = ""


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
    ) -> None:
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.chunk_steps = chunk_steps
        self.series = {s.path: s for s in series}
        self._file = h5py.File(self.partial_path, "w", track_order=True)
        self._file.attrs["complete"] = False
        self._set_attrs(attrs)
        filters: dict[str, Any] = {}
        if compression == "gzip":
            filters = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        elif compression == "lzf":
            filters = {"compression": "lzf", "shuffle": True}
        for s in series:
            tail = () if s.width is None else (s.width,)
            chunk = (chunk_steps, *tail) if s.width != 0 else None
            ds = self._file.create_dataset(
                s.path, shape=(0, *tail), maxshape=(None, *tail), dtype=s.dtype, chunks=chunk, **filters
            )
            ds.attrs["units"] = s.units
            if s.description:
                ds.attrs["description"] = s.description
            if s.columns:
                ds.attrs["columns"] = s.columns
        for key, (data, units) in static.items():
            data = np.asarray(data)
            if data.dtype.kind in "OU":
                data = data.astype(h5py.string_dtype())
            self._file.create_dataset(key, data=data).attrs["units"] = units
        self.tables = {t.path: t for t in tables or []}
        for t in self.tables.values():
            group = self._file.require_group(t.path)
            if t.description:
                group.attrs["description"] = t.description
            for name, dtype, units in t.columns:
                col = group.create_dataset(
                    name,
                    shape=(0,),
                    maxshape=(None,),
                    dtype=h5py.string_dtype() if dtype is object else dtype,
                    chunks=(max(chunk_steps, 1024),),
                    **filters,
                )
                col.attrs["units"] = units
        self._rows: dict[str, list[dict[str, np.ndarray]]] = {path: [] for path in self.tables}
        self._buffers = {
            s.path: np.empty((chunk_steps, *(() if s.width is None else (s.width,))), dtype=s.dtype)
            for s in series
        }
        self._filled = 0
        self.n_steps = 0

    def append(self, values: dict[str, Any]) -> None:
        """Record one step; ``values`` must name every series."""
        expected = self._buffers.keys() | self.tables.keys()
        if values.keys() != expected:
            missing = sorted(expected - set(values))
            extra = sorted(set(values) - expected)
            raise KeyError(f"step values do not match the declared series: missing {missing}, extra {extra}")
        row = self._filled
        for key, buf in self._buffers.items():
            buf[row] = values[key]
        for key, rows in self._rows.items():
            rows.append(values[key])
        self._filled += 1
        if self._filled == self.chunk_steps:
            self.flush()

    def flush(self) -> None:
        """Write the buffered steps to the file."""
        n = self._filled
        if n == 0:
            return
        for key, buf in self._buffers.items():
            ds = self._file[key]
            ds.resize(self.n_steps + n, axis=0)
            ds[self.n_steps : self.n_steps + n] = buf[:n]
        for path, rows in self._rows.items():
            for name, _, _ in self.tables[path].columns:
                data = np.concatenate([r[name] for r in rows])
                ds = self._file[f"{path}/{name}"]
                start = ds.shape[0]
                ds.resize(start + len(data), axis=0)
                ds[start:] = data
            rows.clear()
        self.n_steps += n
        self._filled = 0

    def _set_attrs(self, attrs: dict[str, Any]) -> None:
        """Root attributes; a key ``"group/name"`` sets attribute ``name`` of that group."""
        for key, value in attrs.items():
            group, _, name = key.rpartition("/")
            (self._file.require_group(group) if group else self._file).attrs[name] = value

    def close(
        self,
        complete: bool,
        attrs: dict[str, Any] | None = None,
        datasets: dict[str, tuple[np.ndarray, str]] | None = None,
    ) -> Path:
        """Flush and close; rename to the final path when ``complete``. Returns the file written.

        ``datasets`` are written at the end, ``{path: (array, units)}`` (results of the whole run).
        """
        if not self._file.id.valid:
            return self.path if complete else self.partial_path
        self.flush()
        for key, (data, units) in (datasets or {}).items():
            self._file.create_dataset(key, data=np.asarray(data)).attrs["units"] = units
        self._set_attrs(attrs or {})
        self._file.attrs["complete"] = complete
        self._file.attrs["n_steps"] = self.n_steps
        self._file.close()
        if complete:
            os.replace(self.partial_path, self.path)
            return self.path
        return self.partial_path
