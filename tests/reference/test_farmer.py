"""The two-stage stochastic LP machinery against the farmer problem of Birge & Louveaux.

Birge, J. R. and Louveaux, F. (2011), Introduction to Stochastic Programming, 2nd ed., Springer,
Section 1.1 "A farming example and the news vendor problem": 500 acres of wheat, corn and sugar
beets, yields 20% above average, average or 20% below average with probability 1/3 each. Published:
RP = -108,390 (plant 170 / 80 / 250 acres), WS = -115,406, EV = -118,600 (120 / 80 / 300 acres),
EEV = -107,240, so VSS = 1,150 and EVPI = 7,016. The same values (WS = -115,405.56,
EVPI = 7,015.56 before rounding) are the reference result of the farmer problem in the test suite of
StochasticPrograms.jl (martinbiel/StochasticPrograms.jl, test/problems/farmer.jl).

Costs are minimised (profits negative), as in the book.
"""

from __future__ import annotations

import numpy as np
import pytest

from cosim.models.market.stochastic import StochasticLP, TwoStageLP, row_bounds, solve_two_stage

MEAN_YIELD = np.array([2.5, 3.0, 20.0])  # T/acre: wheat, corn, sugar beets
YIELD_FACTOR = (1.2, 1.0, 0.8)  # above average, average, below average
DOLLAR = 0.5  # "to the dollar": the published values are rounded to whole dollars


def farmer() -> TwoStageLP:
    """x = acres (wheat, corn, beets); y = (buy wheat, buy corn, sell wheat, sell corn, sell beets
    within the 6000 T quota at 36 $/T, sell beets beyond it at 10 $/T)."""
    techs = []
    for f in YIELD_FACTOR:
        y = MEAN_YIELD * f
        techs.append(np.array([[y[0], 0.0, 0.0], [0.0, y[1], 0.0], [0.0, 0.0, -y[2]]]))
    recourse = np.array(
        [[1.0, 0.0, -1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]]
    )
    # wheat: yield + bought - sold >= 200 T; corn: >= 240 T; beets sold <= beets grown
    h_lo, h_hi = row_bounds([200.0, 240.0, 0.0], [">=", ">=", "<="])
    return TwoStageLP(
        c=[150.0, 230.0, 260.0],  # planting cost $/acre
        x_lo=0.0,
        x_hi=np.inf,
        A=np.ones((1, 3)),  # land: at most 500 acres
        a_lo=[-np.inf],
        a_hi=[500.0],
        prob=np.full(3, 1.0 / 3.0),
        q=[238.0, 210.0, -170.0, -150.0, -36.0, -10.0],
        y_lo=0.0,
        y_hi=[np.inf, np.inf, np.inf, np.inf, 6000.0, np.inf],
        T=techs,
        W=recourse,
        h_lo=h_lo,
        h_hi=h_hi,
    )


def test_farmer_published_values() -> None:
    """RP, WS, EEV, VSS and EVPI as published, to the dollar; EV and both plantings too."""
    sol = solve_two_stage(farmer())
    assert sol.status == "optimal"
    assert sol.rp == pytest.approx(-108_390.0, abs=DOLLAR)
    assert sol.ws == pytest.approx(-115_406.0, abs=DOLLAR)
    assert sol.eev == pytest.approx(-107_240.0, abs=DOLLAR)
    assert sol.vss == pytest.approx(1_150.0, abs=DOLLAR)
    assert sol.evpi == pytest.approx(7_016.0, abs=DOLLAR)
    assert sol.ev == pytest.approx(-118_600.0, abs=DOLLAR)
    np.testing.assert_allclose(sol.x, [170.0, 80.0, 250.0], atol=1e-6)
    np.testing.assert_allclose(sol.x_ev, [120.0, 80.0, 300.0], atol=1e-6)


def test_farmer_exact_values() -> None:
    """Unrounded: the scenarios' perfect-information profits are 167,666.67, 118,600 and 59,950."""
    sol = solve_two_stage(farmer())
    np.testing.assert_allclose(sol.ws_by_scenario, [-167_666.0 - 2.0 / 3.0, -118_600.0, -59_950.0], atol=1e-5)
    assert sol.ws == pytest.approx(-(167_666.0 + 2.0 / 3.0 + 118_600.0 + 59_950.0) / 3.0, abs=1e-5)
    assert sol.evpi == pytest.approx(7_015.0 + 5.0 / 9.0, abs=1e-5)
    # the recourse of the stochastic solution: wheat and corn sold/bought, beets within the quota
    above, average, below = sol.y
    np.testing.assert_allclose(above, [0.0, 0.0, 310.0, 48.0, 6000.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(average, [0.0, 0.0, 225.0, 0.0, 5000.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(below, [0.0, 48.0, 140.0, 0.0, 4000.0, 0.0], atol=1e-6)


def test_farmer_resolved_on_persistent_instances() -> None:
    """A second solve on the same instances (warm, matrices reused) gives the same numbers."""
    solver = StochasticLP()
    first = solver.solve(farmer())
    builds = solver.n_builds
    again = solver.solve(farmer())
    assert solver.n_builds == builds
    for name in ("rp", "ws", "ev", "eev"):
        assert getattr(again, name) == pytest.approx(getattr(first, name), abs=1e-6)
