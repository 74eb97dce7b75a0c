"""Shared fixtures: one short run of the default study, reused by the integration tests."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))

logging.getLogger("pandapower").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory):
    """The default scenario run for two days (48 hourly steps)."""
    import cosim

    out = tmp_path_factory.mktemp("default") / "default.h5"
    return cosim.run(ROOT / "scenarios" / "default.yaml", days=2, out=out)
