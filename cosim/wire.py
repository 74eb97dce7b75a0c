"""Plain data on the wire: numpy arrays as JSON-able dicts and back, exactly.

mosaik sends the data between processes as JSON. Within one process an adapter's outputs are numbers,
numpy arrays and dicts or lists of them; an output bound for another process is :func:`encode`-d (an array
becomes ``{"__array__": dtype, "shape": [...], "data": [...]}``) and every adapter :func:`decode`-s its
inputs. Floats survive the round trip bit for bit (JSON writes a float's shortest repr, which reads back to
the same double; NaN and infinities as ``NaN``/``Infinity``), fixed-width byte strings as Latin-1 text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KEY = "__array__"


def encode(value: Any) -> Any:
    """``value`` with every numpy array and scalar replaced by JSON-able data."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "S":
            data: Any = [b.decode("latin-1") for b in value.ravel().tolist()]
        elif value.dtype.kind == "O":
            data = [encode(v) for v in value.ravel().tolist()]
        else:
            data = value.ravel().tolist()
        return {KEY: value.dtype.str, "shape": list(value.shape), "data": data}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    """The inverse of :func:`encode`; anything else is returned as it is."""
    if isinstance(value, dict):
        if KEY in value:
            dtype = np.dtype(value[KEY])
            data = value["data"]
            if dtype.kind == "S":
                data = [s.encode("latin-1") for s in data]
            elif dtype.kind == "O":
                out = np.empty(len(data), dtype=object)
                out[:] = [decode(v) for v in data]
                return out.reshape(value["shape"])
            return np.array(data, dtype=dtype).reshape(value["shape"])
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
