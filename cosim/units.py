"""Units of the HDF5 file as UDUNITS-2 strings (what CF tools, xarray and cf_units read).

Code declares units the way the project writes them (``"MWh"``, ``"$/MWh"``, ``"pu"``, ``"Unix s"``);
the recorder stores the UDUNITS-2 form of :data:`UDUNITS`. UDUNITS-2 knows no currency and no var:
money is stored as a count of currency units (its ``units`` carry the rest: ``$/MWh`` -> ``(MW h)-1``)
with the attribute ``currency = "USD"``, and reactive power in its dimensional equivalent ``MV.A``
(the dataset name, ``q_mvar``, says it is reactive). Per-unit quantities, shares, counts, flags and
indices are ``"1"``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CF_TIME = "seconds since 1970-01-01 00:00:00 UTC"
CURRENCY = "USD"

# declared unit -> UDUNITS-2 string (every value parses with cf_units; tested)
UDUNITS: dict[str, str] = {
    "1": "1",
    "pu": "1",
    "percent": "percent",
    "degree": "degree",
    "s": "s",
    "h": "h",
    "1/s": "s-1",
    "Unix s": CF_TIME,
    "kV": "kV",
    "MW": "MW",
    "kW": "kW",
    "Mvar": "MV.A",
    "MWh": "MW h",
    "kWh": "kW h",
    "Mvarh": "MV.A h",
    "kg": "kg",
    "kg/MWh": "kg/(MW h)",
    "bytes": "byte",
    "$": "1",
    "$/MWh": "(MW h)-1",
    "$/Mvarh": "(MV.A h)-1",
    "$/MWh per MW": "MW-2 h-1",
    # dimensionless labels of integer columns
    "pandapower index": "1",
    "validator index": "1",
    "agent position": "1",
    "block height": "1",
    "gas": "1",
}
MONEY = frozenset(u for u in UDUNITS if u.startswith("$"))


def unit_attrs(declared: str, dtype: Any) -> dict[str, Any]:
    """Attributes (``units``, ``currency``, ``calendar``, ``comment``) of a dataset declared ``declared``.

    ``"per column: <dataset>"`` declares columns of different units, listed in that dataset (attribute
    ``column_units``, no ``units``). A declaration may add a note after its unit (``"Unix s, NaN if not
    final"``): the note goes to ``comment``. String datasets get no ``units`` (their declaration is a
    ``comment``). A declaration not in :data:`UDUNITS` is stored as it is (the contract test lists it).
    """
    if declared.startswith("per column: "):  # columns of different units, named by a dataset of units
        return {"column_units": declared.removeprefix("per column: ")}
    if np.dtype(dtype).kind in "OSUV" or dtype is object:
        return {"comment": declared} if declared else {}
    unit, _, note = (part.strip() for part in declared.partition(","))
    if unit not in UDUNITS and np.dtype(dtype).kind == "b":  # a flag described in words
        unit, note = "1", declared
    if unit not in UDUNITS:
        return {"units": declared}
    out: dict[str, Any] = {"units": UDUNITS[unit]}
    if unit in MONEY:
        out["currency"] = CURRENCY
    if unit == "Unix s":
        out["calendar"] = "standard"
    if note:
        out["comment"] = note
    return out
