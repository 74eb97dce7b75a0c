"""Shared fixtures: one short run of the default study, reused by the integration tests."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))

logging.getLogger("pandapower").setLevel(logging.ERROR)


def step_bids(d_mw, d_price, s_mw, s_price, d_bus=None, s_bus=None, s_min=None, s_c2=None):  # noqa: ANN001, ANN201
    """`Bids` from lists of step quantities and prices; all at bus 0 (copper plate) unless buses are given."""
    from cosim.models.market.clearing import Bids

    d_mw, s_mw = np.asarray(d_mw, dtype=float), np.asarray(s_mw, dtype=float)
    return Bids(
        demand_bus=np.zeros(len(d_mw), dtype=np.int64) if d_bus is None else np.asarray(d_bus),
        demand_mw=d_mw,
        demand_price=np.asarray(d_price, dtype=float),
        supply_bus=np.zeros(len(s_mw), dtype=np.int64) if s_bus is None else np.asarray(s_bus),
        supply_max_mw=s_mw,
        supply_price=np.asarray(s_price, dtype=float),
        supply_min_mw=None if s_min is None else np.asarray(s_min, dtype=float),
        supply_c2=None if s_c2 is None else np.asarray(s_c2, dtype=float),
    )


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory):
    """The default scenario run for two days (48 hourly steps)."""
    import cosim

    out = tmp_path_factory.mktemp("default") / "default.h5"
    return cosim.run(ROOT / "scenarios" / "default.yaml", days=2, out=out)
