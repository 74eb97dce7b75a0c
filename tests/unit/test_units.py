"""Units of the HDF5 file: every stored string is UDUNITS-2, money carries its currency, notes go aside."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from cosim.units import CF_TIME, UDUNITS, unit_attrs
from tests.conftest import ROOT


def test_every_stored_unit_parses_with_udunits() -> None:
    """Each stored unit parses with UDUNITS-2 (cf_units) and has the dimension its declaration says."""
    cf_units = pytest.importorskip("cf_units")
    for declared, stored in UDUNITS.items():
        assert cf_units.Unit(stored).is_udunits(), declared
    convertible = [("MWh", "J"), ("kWh", "J"), ("Mvar", "W"), ("kg/MWh", "kg/J"), ("pu", "1"), ("1/s", "Hz")]
    for declared, si in convertible:
        assert cf_units.Unit(UDUNITS[declared]).is_convertible(si), declared
    assert cf_units.Unit(UDUNITS["MWh"]).convert(1.0, "J") == pytest.approx(3.6e9)
    assert cf_units.Unit(UDUNITS["$/MWh"]).convert(1.0, "(kW h)-1") == pytest.approx(1e-3)
    assert cf_units.Unit(CF_TIME).is_time_reference()


def test_unit_attrs() -> None:
    """Money gets its currency, Unix time CF units and calendar, a note after the unit becomes a comment."""
    assert unit_attrs("$/MWh", np.float64) == {"units": "(MW h)-1", "currency": "USD"}
    assert unit_attrs("Unix s, NaN if not final", np.float64) == {
        "units": CF_TIME, "calendar": "standard", "comment": "NaN if not final",
    }  # fmt: skip
    assert unit_attrs("pu", np.float64) == {"units": "1"}
    assert unit_attrs("block height, -1 if not in a block", np.int64)["units"] == "1"
    assert unit_attrs("lost a fork", np.bool_) == {"units": "1", "comment": "lost a fork"}
    assert unit_attrs("SHA-256 hex", "S64") == {"comment": "SHA-256 hex"}
    assert unit_attrs("", h5py.string_dtype()) == {}
    assert unit_attrs("per column: privacy/series_units", np.float64) == {
        "column_units": "privacy/series_units"
    }
    assert unit_attrs("furlong", np.float64) == {"units": "furlong"}  # kept, for the contract test to list


def test_docs_document_the_mapping() -> None:
    """docs/output.md's table of units names every declared unit with the UDUNITS string stored for it."""
    text = (ROOT / "docs" / "output.md").read_text()
    for declared, stored in UDUNITS.items():
        assert f"| `{declared}` | `{stored}`" in text, declared
