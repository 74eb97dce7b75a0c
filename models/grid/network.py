"""Build the pandapower network a scenario names (SimBench code, pandapower case or JSON file)."""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path
from typing import Any

import pandapower as pp

from cosim.models.grid import netcache

# SimBench and pandapower log (and warn) freely while reading nets; keep the run's output clean.
logging.getLogger("pandapower").setLevel(logging.ERROR)
logging.getLogger("simbench").setLevel(logging.ERROR)


@functools.lru_cache(maxsize=4)
def _simbench_net(code: str) -> Any:
    """The parsed SimBench net of ``code``: from the on-disk cache (`netcache`), else parsed and cached."""
    net = netcache.load(code) if netcache.enabled() else None
    if net is None:
        import simbench

        net = simbench.get_simbench_net(code)
        if netcache.enabled():
            netcache.store(code, net)
    return net


def load_network(source: str, *, code: str = "", case: str = "", path: Path | None = None) -> Any:
    """Return a fresh pandapower net for one grid source.

    Parameters
    ----------
    source : ``"simbench"``, ``"pandapower"`` or ``"file"``
    code : SimBench code (``source="simbench"``); the net keeps its ``profiles`` tables
    case : name of a function in ``pandapower.networks`` (``source="pandapower"``)
    path : pandapower JSON file (``source="file"``)

    Returns
    -------
    pandapowerNet
        a deep copy: callers may modify it (SimBench nets are cached in memory and on disk, see
        `netcache`: parsing one takes seconds).
    """
    if source == "simbench":
        net = copy.deepcopy(_simbench_net(code))
    elif source == "pandapower":
        import pandapower.networks as pn

        net = getattr(pn, case)()
    elif source == "file":
        net = pp.from_json(str(path))
    else:
        raise ValueError(f"unknown grid source {source!r}")
    if len(net.ext_grid) == 0 or not net.ext_grid.in_service.any():
        raise ValueError(f"grid {code or case or path} has no in-service external grid (slack)")
    return net


def element_names(table: Any, kind: str) -> list[str]:
    """Names of a pandapower table's rows; unnamed rows become ``"<kind> <index>"``."""
    names = table["name"] if "name" in table else [None] * len(table)
    return [n if isinstance(n, str) and n else f"{kind} {i}" for n, i in zip(names, table.index, strict=True)]
