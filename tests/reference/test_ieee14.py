"""The IEEE 14-bus load flow, run as a scenario, against its published solution."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import cosim
from tests.conftest import ROOT

# University of Washington Power Systems Test Case Archive (ieee14cdf), as printed by MATPOWER's
# runpf(case14). Bus 4: the archive's stored solution says 1.019 pu; MATPOWER's and pandapower's
# Newton-Raphson give 1.0177 (MATPOWER prints 1.018), which is the value used here.
VM_PU = [1.060, 1.045, 1.010, 1.018, 1.020, 1.070, 1.062, 1.090, 1.056, 1.051, 1.057, 1.055, 1.050, 1.036]
VA_DEGREE = [
    0,
    -4.98,
    -12.72,
    -10.33,
    -8.78,
    -14.22,
    -13.37,
    -13.36,
    -14.94,
    -15.10,
    -14.79,
    -15.07,
    -15.16,
    -16.04,
]
SLACK_MW = 232.4  # generation at bus 1


def test_case14_scenario_reproduces_published_load_flow(tmp_path: Path) -> None:
    """`scenarios/case14.yaml` records the published IEEE 14-bus voltages and slack generation."""
    summary = cosim.run(ROOT / "scenarios" / "case14.yaml", steps=2, out=tmp_path / "case14.h5")
    with cosim.open_results(summary.path) as res:
        assert list(res["grid/bus/index"]) == list(range(14))
        vm, va = res["grid/bus/vm_pu"].to_numpy(), res["grid/bus/va_degree"].to_numpy()
        slack_mw = res["grid/import_mw"].to_numpy()
    for k in range(2):
        np.testing.assert_allclose(vm[k], VM_PU, rtol=0, atol=1e-3)
        np.testing.assert_allclose(va[k], VA_DEGREE, rtol=0, atol=0.02)
        assert abs(slack_mw[k] - SLACK_MW) < 0.1
