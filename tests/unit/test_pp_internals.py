"""`pp_internals.to_ppc` (numpy in place of pandapower's JIT loops) gives pandapower's own PYPOWER case."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from cosim.models.grid import pp_internals


def _isolated(net: Any) -> Any:
    """``net`` with a bus (and its load) cut off by an out-of-service line, and a load out of service."""
    net = copy.deepcopy(net)
    bus = pp.create_bus(net, vn_kv=net.bus.vn_kv.iloc[-1])
    pp.create_load(net, bus, p_mw=0.01)
    pp.create_line(net, net.bus.index[-2], bus, 0.1, "NAYY 4x50 SE", in_service=False)
    net.load.loc[net.load.index[0], "in_service"] = False
    return net


NETS = {
    "multivoltage (trafo3w, xward, impedance)": pn.example_multivoltage,
    "case118": pn.case118,
    "isolated bus": lambda: _isolated(pn.example_simple()),
}


def _jit_ppc(net: Any) -> tuple[dict, dict]:
    """The case by pandapower's own converter, its JIT-compiled loops included."""
    from pandapower.pd2ppc import _pd2ppc

    return _pd2ppc(net)  # type: ignore[no-any-return]


def _same(a: Any, b: Any, where: str) -> None:
    """Equal nested dicts, tuples and arrays (NaN where NaN)."""
    if isinstance(a, tuple | list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) or hasattr(a, "to_numpy"):
        assert type(a) is type(b) and np.asarray(a).dtype == np.asarray(b).dtype, where
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
        assert a == b or (a != a and b != b), where


@pytest.mark.parametrize("name", list(NETS))
def test_to_ppc_equals_pandapowers_converter(name: str) -> None:
    """`to_ppc` with its numpy loops gives bit for bit the ppc, ppci and lookups of pandapower's jitted
    converter, on nets with three-winding transformers, wards, impedances and an isolated bus."""
    ours, theirs = NETS[name](), NETS[name]()
    for net in (ours, theirs):
        pp_internals.init_pf_options(net)
    _same(pp_internals.to_ppc(ours), _jit_ppc(theirs), name)
    _same(dict(ours._pd2ppc_lookups), dict(theirs._pd2ppc_lookups), "lookups")
    for key in ("_is_elements", "_is_elements_final"):
        _same(dict(ours[key]), dict(theirs[key]), key)


def test_init_pf_options_is_runpps() -> None:
    """`init_pf_options` leaves in the net the options of ``runpp(net, numba=False)``."""
    ours, theirs = pn.example_multivoltage(), pn.example_multivoltage()
    pp_internals.init_pf_options(ours)
    pp.runpp(theirs, numba=False)
    assert ours._options == theirs._options


def test_to_ppc_compiles_nothing() -> None:
    """`to_ppc` restores pandapower's JIT-compiled loops after its call and calls none of them."""
    import pandapower.auxiliary as aux
    import pandapower.build_branch as branch

    before = aux.set_elements_oos, aux.set_isolated_buses_oos, branch.get_values
    net = _isolated(pn.example_multivoltage())
    pp_internals.init_pf_options(net)
    hits = {f: f.stats.cache_hits.copy() | f.stats.cache_misses.copy() for f in before}
    pp_internals.to_ppc(net)
    assert (aux.set_elements_oos, aux.set_isolated_buses_oos, branch.get_values) == before
    assert {f: f.stats.cache_hits | f.stats.cache_misses for f in before} == hits
