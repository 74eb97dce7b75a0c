"""Plain data on the wire: every array an adapter sends survives JSON bit for bit."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cosim.wire import decode, encode

ARRAYS = st.one_of(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=2, max_side=5)),  # NaN, inf, -0.0 included
    hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=5)),
    hnp.arrays(np.bool_, hnp.array_shapes(max_side=5)),
    hnp.arrays(np.dtype("S8"), hnp.array_shapes(max_side=5)),
)


def _through_json(value: object) -> object:
    """What a simulator in another process receives: mosaik's JSON, both ways."""
    return decode(json.loads(json.dumps(encode(value))))


@given(ARRAYS)
def test_arrays_survive_json_bit_for_bit(array: np.ndarray) -> None:
    """dtype, shape and every bit of the values (NaN payload aside, sign of zero included) come back."""
    back = _through_json(array)
    assert isinstance(back, np.ndarray) and back.dtype == array.dtype and back.shape == array.shape
    if array.dtype.kind == "f":
        same = (back.view(np.int64) == array.view(np.int64)) | (np.isnan(back) & np.isnan(array))
        assert same.all()
    else:
        assert np.array_equal(back, array)


@given(
    st.dictionaries(st.sampled_from(["buyer", "mwh", "tx_id"]), ARRAYS),
    st.floats(),
    st.integers(-(2**63), 2**63 - 1),
)
def test_tables_and_scalars_survive(table: dict, x: float, n: int) -> None:
    """A table (dict of column arrays) with numpy scalars beside it: the same columns and numbers return."""
    value = {"table": table, "x": np.float64(x), "n": np.int64(n), "flag": np.bool_(True), "rows": [1, 2.5]}
    back = _through_json(value)
    assert set(back["table"]) == set(table)
    for k, column in table.items():
        assert (
            back["table"][k].dtype == column.dtype
            and back["table"][k].tobytes() == column.tobytes()
            or (column.dtype.kind == "f" and np.array_equal(back["table"][k], column, equal_nan=True))
        )
    assert (back["x"] == x or (x != x and back["x"] != back["x"])) and back["n"] == n and back["flag"] is True
    assert back["rows"] == [1, 2.5]


def test_inputs_in_the_process_pass_unchanged() -> None:
    """Data from an adapter in the world's process is not copied: decoding leaves arrays and objects be."""
    array, thing = np.arange(3.0), object()
    inputs = {"ledger": {"p_mw": {"Agents-0.fleet": array}, "bids": {"Agents-0.fleet": thing}}}
    out = decode(inputs)
    assert (
        out["ledger"]["p_mw"]["Agents-0.fleet"] is array and out["ledger"]["bids"]["Agents-0.fleet"] is thing
    )
