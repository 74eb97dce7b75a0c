"""Emissions under a branch outage: nodal marginal factors taken on the network the market cleared on."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import cosim
from tests.conftest import ROOT


@pytest.mark.parametrize("design", ["dcopf", "scopf"])
def test_outage_with_emissions_runs_and_accounts(design: str, tmp_path: Path) -> None:
    """A line outage in a nodal design with emissions (a crash before: the intact network's 14 branches
    against the outage's 13 flows): every interval accounted, finite factors during the outage."""
    data = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    data["time"] = {"start": "2016-06-09T12:00:00", "duration": "12h", "step": "1h"}
    data["market"]["design"] = design
    data["events"] = [
        {"kind": "line_outage", "element": "line 3", "start": "2016-06-09T17:00:00", "duration": "3h"}
    ]
    data.pop("ledger", None), data.pop("privacy", None)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    run = cosim.run(path, out=tmp_path / "o.h5")
    assert run.n_market_failed == 0
    with h5py.File(run.path, "r") as f:
        mef = f["emissions/marginal_lossless_kg_per_mwh"][()]
        total = f["emissions/total_kg"][()]
    assert np.isfinite(total).all()
    assert np.isfinite(mef[5:8]).any(axis=1).all()  # the outage's hours 17-19 have factors
