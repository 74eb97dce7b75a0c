"""ADMM clearing core (market design admm): converges to the central uniform auction's optimum."""

from __future__ import annotations

import logging

import numpy as np
import pandapower.networks as pn
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.errors import ModelNotConverged
from cosim.models.market.admm import ADMMClearing, ADMMResult, _step_arrays, _Steps
from cosim.models.market.auction import UniformAuction
from cosim.models.market.bidding import UPSTREAM, Bidder, BidRules
from cosim.models.market.clearing import Bids, Clearing, clearing_price_interval
from tests.conftest import step_bids as _bids

logging.getLogger("pandapower").setLevel(logging.ERROR)
TOL = 1e-6
PRICE_TOL = 0.01  # $/MWh, the acceptance
WELFARE_REL = 1e-4


def _converged_within_tolerance(res: ADMMResult) -> None:
    assert res.converged and res.clearing.status == "optimal"
    n = res.iterations
    for trace in (res.primal_residual, res.dual_residual, res.eps_primal, res.eps_dual, res.rho, res.price):
        assert trace.shape == (n,) and np.all(np.isfinite(trace))
    assert res.primal_residual[-1] <= res.eps_primal[-1]
    assert res.dual_residual[-1] <= res.eps_dual[-1]
    assert res.messages == 2 * res.n_agents * (n + res.polish_rounds)


def _matches_central(bids: Bids, res: ADMMResult, central: Clearing, lo_hi: tuple[float, float]) -> None:
    """Same welfare; same price where the central rule fixes it (finite interval), else a clearing price.

    Where HiGHS's QP fails (degenerate quadratic instances, see test_clearing.py) the ADMM result must still
    be a certified optimum: balanced, with a non-empty interval of supporting prices holding its price.
    """
    got = res.clearing
    if central.status != "optimal":
        lo, hi = clearing_price_interval(bids, got.demand_mw, got.supply_mw)
        assert got.demand_mw.sum() == pytest.approx(got.supply_mw.sum(), abs=1e-6)
        assert lo <= hi + 1e-9 and lo - 1e-9 <= got.price_per_mwh[0] <= hi + 1e-9
        return
    assert got.welfare == pytest.approx(central.welfare, rel=WELFARE_REL, abs=1e-6)
    assert got.demand_mw.sum() == pytest.approx(got.supply_mw.sum(), abs=1e-6)
    assert np.all(got.demand_mw >= -TOL) and np.all(got.demand_mw <= bids.demand_mw + TOL)
    assert np.all(got.supply_mw >= bids.supply_min_mw - TOL) and np.all(
        got.supply_mw <= bids.supply_max_mw + TOL
    )
    lo, hi = lo_hi
    if np.isfinite(lo) and np.isfinite(hi):
        assert got.price_per_mwh[0] == pytest.approx(central.price_per_mwh[0], abs=PRICE_TOL)
    else:  # the central auction reports HiGHS's dual clipped into a half-line: any point of it is valid
        assert lo - PRICE_TOL <= got.price_per_mwh[0] <= hi + PRICE_TOL


def _central(bids: Bids) -> tuple[Clearing, tuple[float, float]]:
    auc = UniformAuction(len(bids.demand_mw), len(bids.supply_max_mw))
    return auc.clear(bids), auc.last_price_interval


# ---- reference cases ----------------------------------------------------------------------------------


def test_design_double_auction() -> None:
    """docs/references.md's double auction: 60 MW at 30 $/MWh, welfare 1,600 $/h, as the central auction."""
    # docs/references.md, reference values: sellers 50 MW @10 and 50 MW @30, buyers 60 MW @40 and 30 MW @20.
    bids = _bids([60, 30], [40, 20], [50, 50], [10, 30])
    res = ADMMClearing().solve(bids)
    _converged_within_tolerance(res)
    assert res.clearing.demand_mw.sum() == pytest.approx(60.0, abs=TOL)
    assert res.clearing.supply_mw == pytest.approx([50.0, 10.0], abs=TOL)
    assert res.clearing.price_per_mwh[0] == pytest.approx(30.0, abs=TOL)
    assert res.clearing.welfare == pytest.approx(1600.0, abs=1e-6)
    assert res.admm_price == pytest.approx(30.0, abs=0.5)  # ADMM itself got close; the polish made it exact
    assert res.polish_free_steps == 1  # only the marginal seller was re-balanced, not a central solve
    assert res.n_agents == 4 and res.clearing.congestion_rent == 0.0 and len(res.clearing.line_flow_mw) == 0
    _matches_central(bids, res, *_central(bids))


def test_tie_rule_midpoint_at_step_boundary() -> None:
    """Nothing marginal: the price is the midpoint of [20, 35], wherever in it ADMM stopped."""
    bids = _bids([50, 30], [40, 20], [50, 50], [10, 35])
    res = ADMMClearing().solve(bids)
    _converged_within_tolerance(res)
    assert res.price_interval == pytest.approx((20.0, 35.0))
    assert res.clearing.price_per_mwh[0] == pytest.approx(27.5, abs=TOL)
    assert res.admm_price != pytest.approx(27.5, abs=0.1)  # ADMM's own dual is elsewhere in the interval
    _matches_central(bids, res, *_central(bids))


def test_partial_step_sets_price() -> None:
    """A partly cleared step pins the price to its offer."""
    bids = _bids([70], [100], [50, 50], [10, 30])
    res = ADMMClearing().solve(bids)
    assert res.clearing.supply_mw == pytest.approx([50.0, 20.0], abs=TOL)
    assert res.price_interval == pytest.approx((30.0, 30.0))
    assert res.clearing.price_per_mwh[0] == pytest.approx(30.0, abs=TOL)


def test_quadratic_cost_sets_price_at_marginal_cost() -> None:
    """A seller of cost 10 s + 0.5 s^2 inside its range sets the price at its marginal cost 10 + s."""
    bids = _bids([60], [100], [100], [10], s_c2=[0.5])  # demand binds: 60 MW at mc 70 < bid 100
    res = ADMMClearing().solve(bids)
    _converged_within_tolerance(res)
    assert res.clearing.supply_mw == pytest.approx([60.0], abs=TOL)
    assert res.price_interval == pytest.approx((70.0, 70.0))  # the seller is interior: pinned
    assert res.clearing.price_per_mwh[0] == pytest.approx(70.0, abs=TOL)
    bids = _bids([100], [50], [100], [10], s_c2=[0.5])  # mc = 10 + s = 50 at s = 40: interior
    res = ADMMClearing().solve(bids)
    assert res.clearing.supply_mw == pytest.approx([40.0], abs=TOL)
    assert res.clearing.price_per_mwh[0] == pytest.approx(50.0, abs=TOL)
    assert res.clearing.welfare == pytest.approx(50 * 40 - (10 * 40 + 0.5 * 1600), abs=1e-6)


def test_steep_quadratic_step_balances_exactly() -> None:
    """c2 = 1e-10 (slope 5e9 MW per $/MWh) amplifies rounding of the price; the dispatch still balances."""
    # found by a stress run: before the rounding repair the polish could not balance and gave up
    bids = _bids([0.0, 0.0, 2.0], [0.0, 0.0, 11.0], [0.0, 0.0, 100.0], [0.0, 88.0, 6.0], s_min=[0, 0, 2 / 3])
    bids = Bids(**{**bids.__dict__, "supply_c2": np.array([2.0, 2.0, 1e-10])})
    res = ADMMClearing(np.array([1, 1, 0]), np.array([0, 0, 1])).solve(bids)
    _converged_within_tolerance(res)
    assert res.clearing.supply_mw == pytest.approx([0.0, 0.0, 2.0], abs=1e-9)
    assert res.clearing.demand_mw.sum() == pytest.approx(res.clearing.supply_mw.sum(), abs=1e-12)
    _matches_central(bids, res, *_central(bids))


def test_denormal_quantities_clear_without_error() -> None:
    """A 5e-324 MW offer and no demand (found by a stress run: rho overflowed and the price step divided
    by zero) clears to nothing."""
    bids = _bids([0.0], [0.0], [5e-324], [0.0])
    res = ADMMClearing(np.array([1]), np.array([0])).solve(bids)
    assert res.clearing.status == "optimal" and res.clearing.supply_mw.sum() == pytest.approx(0.0, abs=1e-12)


def test_infeasible_must_run_reports_status_not_raise() -> None:
    """Must-run supply above all demand gives NaN results and status infeasible, as the central auction."""
    res = ADMMClearing().solve(_bids([10], [50], [100], [5], s_min=[50]))
    assert res.clearing.status == "infeasible" and not res.converged
    assert np.isnan(res.clearing.price_per_mwh).all() and np.isnan(res.clearing.welfare)


# ---- random bid sets against the central auction ------------------------------------------------------

# Prices from 0.5 $/MWh: HiGHS's QP fails on all-zero prices with c2 > 0 (see test_clearing.py); numbers
# on a grid of 0.001 (ties and zeros still come up) keep HiGHS away from subnormal-sized inputs it fails on.
mw = st.integers(0, 100_000).map(lambda v: v / 1000)
price = st.integers(500, 200_000).map(lambda v: v / 1000)
frac = st.integers(0, 1000).map(lambda v: v / 1000)
steps = st.lists(st.tuples(mw, price), min_size=1, max_size=10)


@settings(max_examples=40, deadline=None)
@given(demand=steps, supply=steps, owners=st.lists(st.integers(-1, 4), min_size=20, max_size=20))
def test_random_linear_bids_match_central(demand, supply, owners) -> None:
    """Step bids, steps grouped into random agents: the central auction's price (0.01) and welfare (1e-4)."""
    d_mw, d_p = np.array(demand).T
    s_mw, s_p = np.array(supply).T
    bids = _bids(d_mw, d_p, s_mw, s_p)
    own = np.array(owners)
    res = ADMMClearing(own[: len(d_mw)], own[10 : 10 + len(s_mw)]).solve(bids)
    _converged_within_tolerance(res)
    _matches_central(bids, res, *_central(bids))


@settings(max_examples=40, deadline=None)
@given(
    demand=steps,
    supply=steps,
    c2=st.lists(frac.map(lambda v: 2.0 * v), min_size=10, max_size=10),
    s_min=st.lists(frac, min_size=10, max_size=10),
)
def test_random_quadratic_bids_match_central(demand, supply, c2, s_min) -> None:
    """Quadratic costs and minimum outputs (every step its own agent): same price and welfare."""
    d_mw, d_p = np.array(demand).T
    s_mw, s_p = np.array(supply).T
    n_s = len(s_mw)
    lo = np.minimum(np.array(s_min[:n_s]) * s_mw, d_mw.sum() / n_s)  # feasible: must-run below demand
    bids = _bids(d_mw, d_p, s_mw, s_p, s_min=lo, s_c2=np.array(c2[:n_s]))
    res = ADMMClearing().solve(bids)
    _converged_within_tolerance(res)
    _matches_central(bids, res, *_central(bids))


def _household_layout(rng: np.random.Generator, pv_max: float) -> tuple[Bids, np.ndarray, np.ndarray]:
    """~200 steps laid out as `Bidder` does: 40 households (VOLL + 3 utility steps), 25 PV, 5 batteries,
    the upstream grid (import 80, export 30, 100 MW each); kW-sized agents next to a 100 MW grid."""
    n_c, n_pv, n_b = 40, 25, 5
    load = rng.uniform(0.002, 0.01, n_c)
    d_mw = np.r_[np.repeat(load, 4) * np.tile([0.7, 0.1, 0.1, 0.1], n_c), rng.uniform(0, 0.005, n_b), 100.0]
    d_p = np.r_[np.tile([3000.0, 250.0, 150.0, 90.0], n_c), np.full(n_b, 40.0), 30.0]
    s_mw = np.r_[rng.uniform(0, pv_max * 0.01, n_pv), rng.uniform(0, 0.005, n_b), 100.0]
    s_p = np.r_[np.zeros(n_pv), np.full(n_b, 70.0), 80.0]
    batt = n_c + n_pv + np.arange(n_b)
    d_own = np.r_[np.repeat(np.arange(n_c), 4), batt, UPSTREAM]
    s_own = np.r_[n_c + np.arange(n_pv), batt, UPSTREAM]
    return _bids(d_mw, d_p, s_mw, s_p), d_own, s_own


@pytest.mark.parametrize("pv_max", [0.5, 1.5, 4.0, 6.0])
def test_household_layout_of_200_steps(pv_max: float) -> None:
    """Importing and exporting feeders of ~200 steps and 71 agents: central optimum in few iterations."""
    rng = np.random.default_rng(int(pv_max * 10))
    bids, d_own, s_own = _household_layout(rng, pv_max)
    assert len(d_own) + len(s_own) == 197
    res = ADMMClearing(d_own, s_own).solve(bids)
    _converged_within_tolerance(res)
    assert res.n_agents == 71
    central, lo_hi = _central(bids)
    _matches_central(bids, res, central, lo_hi)
    assert res.iterations < 150  # measured 9-62 over 60 draws
    assert res.polish_free_steps <= 2


def test_bidder_layout_on_case9() -> None:
    """A real `Bidder` layout (owners include UPSTREAM) clears as the central auction does."""
    rules = BidRules(3000.0, 0.7, (250.0, 150.0, 90.0), 0.0, 40.0, 70.0, 80.0, 30.0, 100.0, 100.0)
    net = pn.case9()
    kind = np.array(["load", "load", "load", "gen", "gen", "pv", "battery"])
    bus = np.r_[net.load.bus, net.gen.bus, 4, 4]
    elements = [("load", 0), ("load", 1), ("load", 2), ("gen", 0), ("gen", 1), ("sgen", 0), ("storage", 0)]
    bidder = Bidder(net, kind, bus, elements, rules)
    bids = bidder.bids(
        np.array([90.0, 100.0, 125.0, -163.0, -85.0, -0.5, 0.0]), np.array([5.0]), np.array([3.0])
    )
    model = ADMMClearing(bidder.demand_owner, bidder.supply_owner)
    clearing = model.clear(bids)
    res = model.last_result
    assert res is not None and res.clearing is clearing
    _converged_within_tolerance(res)
    assert res.n_agents == 8  # seven agents and the upstream grid
    _matches_central(bids, res, *_central(bids))


# ---- the algorithm's parts ----------------------------------------------------------------------------


def test_adaptive_rho_follows_residual_balancing() -> None:
    """rho is multiplied by tau when ||r|| > mu ||s||, divided when ||s|| > mu ||r||, else kept; tau becomes
    its square root at every reversal of direction."""
    bids = _bids([60, 30], [40, 20], [50, 50], [10, 30])
    mu, tau = 10.0, 2.0
    res = ADMMClearing(rho0=1e-3, mu=mu, tau=tau).solve(bids)  # far too small: the primal residual dominates
    _converged_within_tolerance(res)
    r, s, rho = res.primal_residual, res.dual_residual, res.rho
    move = np.where(r > mu * s, 1, np.where(s > mu * r, -1, 0))[:-1]
    expected, factor, last = np.ones(len(move)), tau, 0
    for k, m in enumerate(move):
        if m:
            factor = np.sqrt(factor) if m == -last else factor
            expected[k], last = factor**m, m
    expected[ADMMClearing().adapt_max_iter :] = 1.0  # then rho is frozen
    np.testing.assert_allclose(rho[1:] / rho[:-1], expected)
    assert rho[1] == pytest.approx(2e-3) and rho.max() > 0.1  # it did increase, and a lot
    fixed = ADMMClearing(rho0=1e-3, adaptive=False, max_iter=20000).solve(bids)
    assert np.all(fixed.rho == 1e-3)
    assert res.iterations < fixed.iterations  # balancing pays off when rho0 is badly chosen
    assert res.clearing.price_per_mwh[0] == pytest.approx(fixed.clearing.price_per_mwh[0], abs=TOL)


def test_adaptation_stops_after_adapt_max_iter() -> None:
    """After adapt_max_iter iterations rho is frozen (the convergence guarantee of fixed rho)."""
    bids = _bids([60, 30], [40, 20], [50, 50], [10, 30])
    res = ADMMClearing(adapt_max_iter=5).solve(bids)
    assert np.all(res.rho[6:] == res.rho[5])


def test_rescaling_keeps_price_when_rho_changes() -> None:
    """Rescaling the scaled dual with rho keeps the price: a pure rho change does not move it."""
    bids = _bids([60, 30], [40, 20], [50, 50], [10, 30])
    a = ADMMClearing(rho0=1e-3, max_iter=1).solve(bids, price0=25.0)
    b = ADMMClearing(rho0=1e-3, max_iter=2, adapt_max_iter=1).solve(bids, price0=25.0)
    assert b.rho[1] == 2 * b.rho[0]  # changed after the first iteration ...
    assert b.price[0] == a.price[0]  # ... from the same price


def test_max_iter_flags_or_raises() -> None:
    """Without convergence: converged False, status max_iter, NaN clearing; or ModelNotConverged."""
    bids = _bids([60, 30], [40, 20], [50, 50], [10, 30])
    res = ADMMClearing(max_iter=3).solve(bids)
    assert not res.converged and res.iterations == 3 and res.clearing.status == "max_iter"
    assert np.isnan(res.clearing.price_per_mwh).all() and np.isnan(res.clearing.welfare)
    assert res.messages == 2 * 4 * 3 and len(res.primal_residual) == 3
    assert res.primal_residual[-1] > res.eps_primal[-1] or res.dual_residual[-1] > res.eps_dual[-1]
    model = ADMMClearing(max_iter=3, raise_on_max_iter=True)
    with pytest.raises(ModelNotConverged, match="did not converge in 3 iterations"):
        model.clear(bids)
    assert model.last_result is not None and not model.last_result.converged


def test_warm_start_reuses_price_and_rho() -> None:
    """With warm_start the next interval starts from the last price and rho."""
    bids = _bids([60, 30], [40, 20], [50, 50], [10, 30])
    model = ADMMClearing(warm_start=True)
    first = model.solve(bids)
    second = model.solve(bids)
    assert second.rho[0] == pytest.approx(
        first.rho[-1] * (1.0 if first.iterations > 100 else second.rho[0] / first.rho[-1])
    )
    assert abs(second.price[0] - 30.0) < abs(first.price[0] - 30.0)
    assert second.clearing.price_per_mwh[0] == pytest.approx(30.0, abs=TOL)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    v=st.floats(-150.0, 150.0),
    inv_rho=st.sampled_from([0.0, 0.01, 1.0, 100.0]),
)
def test_agent_proximal_step_is_exact(n, seed, v, inv_rho) -> None:
    """The closed-form local step meets the KKT conditions: x = v + lam/rho, steps are price takers at lam."""
    rng = np.random.default_rng(seed)
    n_d = int(rng.integers(0, n + 1))
    n_s = n - n_d
    prices = rng.choice([10.0, 20.0, 30.0, 40.0], n)  # ties on purpose
    s_hi = rng.uniform(0, 50, n_s)
    bids = _bids(
        rng.uniform(0, 50, n_d),
        prices[:n_d],
        s_hi,
        prices[n_d:],
        s_min=s_hi * rng.uniform(0, 0.5, n_s) * (rng.random(n_s) < 0.3),
        s_c2=rng.uniform(0, 0.5, n_s) * (rng.random(n_s) < 0.5),
    )
    a, lo, hi, p, c1, c2, quad = _step_arrays(bids)
    steps = _Steps(a, lo, hi, p, c1, c2, quad, np.zeros(n, dtype=np.int64), 1)
    lam, ok = steps.prox(np.array([v]), np.array([inv_rho]))
    x_min, x_max = float(np.dot(a, np.where(a > 0, lo, hi))), float(np.dot(a, np.where(a > 0, hi, lo)))
    if inv_rho == 0.0 and not x_min - 1e-9 <= v <= x_max + 1e-9:
        assert not ok[0]  # no price makes the steps take v
        return
    if inv_rho == 0.0 and not x_min + 1e-9 <= v <= x_max - 1e-9:
        return  # at an end of the range, up to rounding: either answer is right
    assert ok[0]
    x = v + lam[0] * inv_rho
    q = steps.dispatch(lam, np.array([x]))
    assert float(np.dot(a, q)) == pytest.approx(x, abs=1e-7)
    assert np.all(q >= lo - 1e-9) and np.all(q <= hi + 1e-9)
    mc = np.where(quad, c1 + 2 * c2 * q, p)  # marginal value (demand) / cost (supply) at the dispatch
    value = np.where(a > 0, mc - lam[0], lam[0] - mc)  # surplus per MW of taking more at lam
    assert np.all(q[value > 1e-7] >= hi[value > 1e-7] - 1e-7)
    assert np.all(q[value < -1e-7] <= lo[value < -1e-7] + 1e-7)


def test_tiny_and_large_agents_with_a_partly_cleared_top_step() -> None:
    """A case hypothesis found (0.14 MW sellers beside a 16.8 MW buyer): converges to the central 67.229."""
    bids = Bids(
        demand_bus=np.zeros(3, int), demand_mw=np.array([0.185, 0.544, 16.835]),
        demand_price=np.array([5.128, 67.229, 0.5]), supply_bus=np.zeros(2, int),
        supply_max_mw=np.array([0.139, 0.297]), supply_price=np.array([0.5, 0.5]),
    )  # fmt: skip
    res = ADMMClearing().solve(bids)
    _converged_within_tolerance(res)
    assert res.clearing.price_per_mwh[0] == pytest.approx(67.229, abs=TOL)
