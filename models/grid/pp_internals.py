"""The one place that reaches into pandapower's private API (tested on the pinned pandapower 3.5).

Our Newton-Raphson power flow, its loss sensitivities and the markets' DC network are built from the
PYPOWER case pandapower converts a net into. pandapower keeps that converter and its lookups private
(``_pd2ppc``, ``net._pd2ppc_lookups``, ``_init_rundcopp_options``, ``_get_pf_variables_from_ppci``); every
use goes through the functions below, so an upgrade of pandapower is checked here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def to_ppc(net: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(ppc, ppci)``: the PYPOWER case of ``net`` and its internal (in-service, renumbered) form.

    The net must carry pandapower's options (a ``runpp`` or :func:`init_dc_opf_options` sets them).
    """
    from pandapower.pd2ppc import _pd2ppc

    with _numpy_helpers():
        return _pd2ppc(net)  # type: ignore[no-any-return]


def init_pf_options(net: Any) -> None:
    """Put the options ``pandapower.runpp(net, numba=False)`` would into ``net`` (without running it)."""
    from pandapower.auxiliary import _init_runpp_options

    passed = {"numba": False} if len(net.get("user_pf_options", {})) else None  # as runpp's own
    _init_runpp_options(
        net, algorithm="nr", calculate_voltage_angles=True, init="auto", max_iteration="auto",
        tolerance_mva=1e-8, trafo_model="t", trafo_loading="current", enforce_p_lims=False,
        enforce_q_lims=False, check_connectivity=True, voltage_depend_loads=True, passed_parameters=passed,
        consider_line_temperature=False, distributed_slack=False, tdpf=False, tdpf_delay_s=None, numba=False,
    )  # fmt: skip


# pandapower's converter calls three JIT-compiled (numba) loops; the first call in a process loads numba's
# typing context (~0.3-0.5 s of a run's set-up, for microseconds of work). These numpy forms give the same
# arrays; `to_ppc` swaps them in for its call only (one thread: mosaik steps and set-up run in one).
def _set_elements_oos(ti: np.ndarray, tis: np.ndarray, bis: np.ndarray, lis: np.ndarray) -> None:
    """``lis[i] = True`` where element ``i`` is in service and so is its bus ``ti[i]``."""
    on = np.flatnonzero(tis)
    lis[on[bis[ti[on]]]] = True


def _set_isolated_buses_oos(bus_in_service: np.ndarray, ppc_isolated: np.ndarray, lookup: np.ndarray) -> None:
    """``bus_in_service[k] = False`` where bus ``k``'s ppc bus is isolated."""
    k = np.arange(len(bus_in_service))
    bus_in_service[k[ppc_isolated[lookup[k]]]] = False


def _get_values(source: np.ndarray, selection: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """``source`` at the looked-up rows of ``selection`` (float)."""
    return np.asarray(source[lookup[np.asarray(selection, dtype=np.int64)]], dtype=np.float64)


@contextmanager
def _numpy_helpers() -> Iterator[None]:
    """pandapower's JIT-compiled converter loops replaced by `_set_elements_oos` and co. for the block."""
    import pandapower.auxiliary as aux
    import pandapower.build_branch as branch

    saved = aux.set_elements_oos, aux.set_isolated_buses_oos, branch.get_values
    aux.set_elements_oos, aux.set_isolated_buses_oos = _set_elements_oos, _set_isolated_buses_oos
    branch.get_values = _get_values
    try:
        yield
    finally:
        aux.set_elements_oos, aux.set_isolated_buses_oos, branch.get_values = saved


def bus_lookup(net: Any) -> np.ndarray:
    """ppc bus row of every pandapower bus index (after :func:`to_ppc`)."""
    return np.asarray(net._pd2ppc_lookups["bus"], dtype=np.int64)


def branch_lookups(net: Any) -> dict[str, tuple[int, int]]:
    """``{element table: (first, end) ppc branch rows}`` (after :func:`to_ppc`)."""
    return dict(net._pd2ppc_lookups.get("branch", {}))


def pf_variables(ppci: dict[str, Any]) -> tuple[Any, ...]:
    """``(baseMVA, bus, gen, branch, svc, tcsc, ssc, vsc, ref, pv, pq, *_, ref_gens, V0, ...)`` as
    pandapower's power flow reads them from a ppci."""
    from pandapower.pf.ppci_variables import _get_pf_variables_from_ppci

    return _get_pf_variables_from_ppci(ppci)  # type: ignore[no-any-return]


def init_dc_opf_options(net: Any, **options: Any) -> None:
    """Put the options ``pandapower.rundcopp`` would into ``net`` (without running it)."""
    from pandapower.auxiliary import _init_rundcopp_options

    _init_rundcopp_options(net, **options)
