"""The one place that reaches into pandapower's private API (tested on the pinned pandapower 3.5).

Our Newton-Raphson power flow, its loss sensitivities and the markets' DC network are built from the
PYPOWER case pandapower converts a net into. pandapower keeps that converter and its lookups private
(``_pd2ppc``, ``net._pd2ppc_lookups``, ``_init_rundcopp_options``, ``_get_pf_variables_from_ppci``); every
use goes through the functions below, so an upgrade of pandapower is checked here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_ppc(net: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(ppc, ppci)``: the PYPOWER case of ``net`` and its internal (in-service, renumbered) form.

    The net must carry pandapower's options (a ``runpp`` or :func:`init_dc_opf_options` sets them).
    """
    from pandapower.pd2ppc import _pd2ppc

    return _pd2ppc(net)  # type: ignore[no-any-return]


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
