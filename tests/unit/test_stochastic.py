"""Two-stage stochastic LPs and the stochastic day-ahead clearing (pure cores, no World, no mosaik)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from cosim.models.market.auction import UniformAuction
from cosim.models.market.clearing import Bids, clearing_price_interval
from cosim.models.market.stochastic import (
    DayScenarios,
    StochasticDayAhead,
    StochasticLP,
    TwoStageLP,
    clear_day,
    forecast_scenarios,
    row_bounds,
    solve_two_stage,
)
from tests.conftest import step_bids as _bids

TOL = 1e-6
VOLL = 1e4
SEEDS = st.integers(0, 2**31 - 1)


def rel(x: float) -> float:
    """Absolute tolerance on a dollar figure of size ``x`` (HiGHS solves to ~1e-9 relative)."""
    return 1e-6 * max(1.0, abs(x))


# ---- generic machinery -----------------------------------------------------------------------------


def test_row_bounds() -> None:
    lo, hi = row_bounds([[1.0, 2.0, 3.0]], ["<=", "==", ">="])
    np.testing.assert_array_equal(lo, [[-np.inf, 2.0, 3.0]])
    np.testing.assert_array_equal(hi, [[1.0, 2.0, np.inf]])
    with pytest.raises(ValueError, match="sense"):
        row_bounds([1.0], ["<"])


def test_probabilities_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="prob"):
        _random_lp(np.random.default_rng(0), n_s=2, prob=[0.5, 0.6])


def _random_lp(rng: np.random.Generator, n_s: int = 3, prob: list[float] | None = None) -> TwoStageLP:
    """A random two-stage LP with complete recourse: every recourse row has a +/- slack pair.

    Columns of y: [extra (bounded), slack+ (m2), slack- (m2)]; slacks at positive costs keep it bounded.
    T differs by scenario (a matrix per scenario), rows mix <=, == and >=.
    """
    n_x, m2, n_e = (int(k) for k in rng.integers(1, 4, 3))
    p = rng.dirichlet(np.ones(n_s)) if prob is None else np.asarray(prob)
    q_plus = rng.uniform(1.0, 10.0, m2)
    q = np.c_[
        rng.uniform(-5.0, 5.0, (n_s, n_e)),
        np.tile(q_plus, (n_s, 1)),
        np.tile(rng.uniform(0.1, 10.0, m2), (n_s, 1)),
    ]
    w = np.c_[rng.uniform(-2.0, 2.0, (m2, n_e)), np.eye(m2), -np.eye(m2)]
    y_hi = np.r_[rng.uniform(0.0, 5.0, n_e), np.full(2 * m2, np.inf)]
    sense = rng.choice(["<=", "==", ">="], m2)
    h_lo, h_hi = row_bounds(rng.uniform(-5.0, 5.0, (n_s, m2)), sense)
    return TwoStageLP(
        c=rng.uniform(-5.0, 5.0, n_x),
        x_lo=0.0,
        x_hi=rng.uniform(0.5, 5.0, n_x),
        A=np.ones((1, n_x)),
        a_lo=[-np.inf],
        a_hi=[rng.uniform(1.0, 5.0)],
        prob=p,
        q=q,
        y_lo=0.0,
        y_hi=y_hi,
        T=[rng.uniform(-2.0, 2.0, (m2, n_x)) for _ in range(n_s)],
        W=w,
        h_lo=h_lo,
        h_hi=h_hi,
    )


def _linprog(c, lo, hi, a, r_lo, r_hi) -> float:
    """min c x, lo <= x <= hi, r_lo <= a x <= r_hi with scipy (dense, written out independently)."""
    a = np.atleast_2d(a)
    a_ub = np.r_[a[np.isfinite(r_hi)], -a[np.isfinite(r_lo)]]
    b_ub = np.r_[r_hi[np.isfinite(r_hi)], -r_lo[np.isfinite(r_lo)]]
    res = linprog(c, A_ub=a_ub, b_ub=b_ub, bounds=list(zip(lo, hi, strict=True)), method="highs")
    assert res.status == 0, res.message
    return float(res.fun)


def _reference_measures(lp: TwoStageLP) -> dict[str, float]:
    """RP, WS, EV and EEV by scipy on the dense problems, assembled here by hand."""
    n_s, n_x, n_y, m1, m2 = lp.n_scenarios, lp.n_x, lp.n_y, lp.m1, lp.m2
    a = lp.A.toarray()
    ts = [lp.T_of(s).toarray() for s in range(n_s)]
    w = lp.W_of(0).toarray()

    def extensive(ts_, p, q, y_lo, y_hi, h_lo, h_hi, x_lo, x_hi):
        k = len(p)
        big = np.zeros((m1 + k * m2, n_x + k * n_y))
        big[:m1, :n_x] = a
        for s in range(k):
            big[m1 + s * m2 : m1 + (s + 1) * m2, :n_x] = ts_[s]
            big[m1 + s * m2 : m1 + (s + 1) * m2, n_x + s * n_y : n_x + (s + 1) * n_y] = w
        cost = np.r_[lp.c, (p[:, None] * q).ravel()]
        return _linprog(
            cost,
            np.r_[x_lo, y_lo.ravel()],
            np.r_[x_hi, y_hi.ravel()],
            big,
            np.r_[lp.a_lo, h_lo.ravel()],
            np.r_[lp.a_hi, h_hi.ravel()],
        )

    full = (lp.q, lp.y_lo, lp.y_hi, lp.h_lo, lp.h_hi)
    rp = extensive(ts, lp.prob, *full, lp.x_lo, lp.x_hi)
    z = [extensive([ts[s]], np.ones(1), *(v[s : s + 1] for v in full), lp.x_lo, lp.x_hi) for s in range(n_s)]
    mean_t = sum(p * t for p, t in zip(lp.prob, ts, strict=True))
    mean = [(lp.prob @ v)[None] for v in full]  # bounds here are finite or +inf in every scenario alike
    ev = extensive([mean_t], np.ones(1), *mean, lp.x_lo, lp.x_hi)
    return {"rp": rp, "ws": float(lp.prob @ np.array(z)), "ev": ev}


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, n_s=st.integers(1, 4))
def test_random_two_stage_lps(seed: int, n_s: int) -> None:
    """Random LPs: WS <= RP <= EEV (VSS, EVPI >= 0), RP/WS/EV as scipy finds them, EEV as defined."""
    lp = _random_lp(np.random.default_rng(seed), n_s)
    sol = solve_two_stage(lp)
    assert sol.status == "optimal"
    ref = _reference_measures(lp)
    for name in ("rp", "ws", "ev"):
        assert getattr(sol, name) == pytest.approx(ref[name], abs=rel(ref[name])), name
    assert sol.vss >= -rel(sol.rp) and sol.evpi >= -rel(sol.rp)
    assert sol.ws <= sol.rp + rel(sol.rp) <= sol.eev + 2 * rel(sol.rp)
    # EEV: the EV first stage fixed in the extensive form, by scipy
    fixed = _reference_fixed(lp, sol.x_ev)
    assert sol.eev == pytest.approx(fixed, abs=rel(fixed))
    # the stochastic solution's parts add up
    assert sol.rp == pytest.approx(sol.first_stage_cost + lp.prob @ sol.recourse_cost, abs=rel(sol.rp))
    if n_s == 1:
        assert sol.vss == pytest.approx(0.0, abs=rel(sol.rp)) and sol.evpi == pytest.approx(
            0.0, abs=rel(sol.rp)
        )


def _reference_fixed(lp: TwoStageLP, x: np.ndarray) -> float:
    """c x + sum_s p_s Q_s(x) with scipy, one recourse LP per scenario."""
    total = float(lp.c @ x)
    for s in range(lp.n_scenarios):
        shift = lp.T_of(s).toarray() @ x
        total += lp.prob[s] * _linprog(
            lp.q[s], lp.y_lo[s], lp.y_hi[s], lp.W_of(s).toarray(), lp.h_lo[s] - shift, lp.h_hi[s] - shift
        )
    return total


def test_eev_is_infinite_without_feasible_recourse() -> None:
    """x_EV that leaves a scenario without recourse gives EEV = +inf (VSS too), RP stays finite."""
    # x in [0, 2] at cost -1; recourse x + y == h, y in [0, 2] at cost 1, h = 0 or 2 (1/2 each).
    # RP: h = 0 forces x = 0 (y = 0 or 2). EV (h = 1): x = 1, y = 0. EEV: x = 1 with h = 0 needs y = -1.
    lp = TwoStageLP(
        c=[-1.0],
        x_lo=0.0,
        x_hi=2.0,
        A=np.zeros((0, 1)),
        a_lo=[],
        a_hi=[],
        prob=[0.5, 0.5],
        q=[[1.0]],
        y_lo=0.0,
        y_hi=2.0,
        T=np.ones((1, 1)),
        W=np.ones((1, 1)),
        h_lo=[[0.0], [2.0]],
        h_hi=[[0.0], [2.0]],
    )
    sol = solve_two_stage(lp)
    assert sol.rp == pytest.approx(1.0, abs=TOL)  # x = 0; y = 0 or 2 at cost 1: expected 1
    assert sol.ev == pytest.approx(-1.0, abs=TOL)
    assert sol.eev == np.inf and sol.vss == np.inf
    assert "EEV" in sol.status


def test_persistent_instances_match_fresh_ones() -> None:
    """A second, different problem of the same structure on the same solver equals a fresh solve."""
    rng = np.random.default_rng(3)
    first = _random_lp(rng, 3)
    second = _random_lp(np.random.default_rng(3), 3)  # the same problem, then new vectors and one new T value
    second = TwoStageLP(
        c=second.c * 0.7,
        x_lo=second.x_lo,
        x_hi=second.x_hi * 1.3,
        A=second.A,
        a_lo=second.a_lo,
        a_hi=second.a_hi,
        prob=second.prob,
        q=second.q * 1.1,
        y_lo=second.y_lo,
        y_hi=second.y_hi,
        T=[_scaled_first(second.T[0], 0.9), *second.T[1:]],
        W=second.W,
        h_lo=second.h_lo + 0.3,
        h_hi=second.h_hi + 0.3,
    )
    solver = StochasticLP()
    solver.solve(first)
    builds = solver.n_builds
    warm = solver.solve(second)
    assert solver.n_builds == builds  # only one coefficient and the vectors were pushed
    fresh = solve_two_stage(second)
    for name in ("rp", "ws", "ev", "eev"):
        assert getattr(warm, name) == pytest.approx(getattr(fresh, name), abs=rel(getattr(fresh, name)))


def _scaled_first(t, factor: float):
    out = t.toarray()
    out[0, 0] *= factor
    return out


# ---- scenarios -------------------------------------------------------------------------------------


def test_forecast_scenarios() -> None:
    """Seeded, equal probabilities, clipped at 0; antithetic pairs are symmetric around the forecast."""
    f = np.array([0.0, 1.0, 2.0, 3.0])
    a, p = forecast_scenarios(f, 6, 0.1, 5)
    b, _ = forecast_scenarios(f, 6, 0.1, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (6, 4) and (a >= 0).all() and (a[:, 0] == 0).all()
    np.testing.assert_allclose(p, 1.0 / 6.0)
    sym, _ = forecast_scenarios(f, 4, 0.1, 1, antithetic=True, rho=0.8)
    np.testing.assert_allclose(sym[0::2] + sym[1::2], np.broadcast_to(2.0 * f, (2, 4)), atol=1e-12)
    big, _ = forecast_scenarios(np.ones((24, 3)), 4000, 0.2, 2, rho=0.5)
    assert big.shape == (4000, 24, 3)
    assert np.std(big - 1.0) == pytest.approx(0.2, rel=0.03)  # stationary sd, every hour
    assert np.corrcoef(big[:, 3, 0], big[:, 4, 0])[0, 1] == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="pairs"):
        forecast_scenarios(f, 3, 0.1, antithetic=True)


def test_day_scenarios_validation() -> None:
    with pytest.raises(ValueError, match="some scenarios or hours"):
        d = np.full((2, 3, 2), np.nan)
        d[0, 0, 0] = 1.0
        DayScenarios(np.full(2, 0.5), d, np.ones((2, 3, 1)))
    sc = DayScenarios.of_steps([0.5, 0.5], 3, 2, demand={1: np.ones((2, 4))}, supply={0: np.zeros((2, 4))})
    np.testing.assert_array_equal(sc.uncertain_demand, [False, True, False])
    np.testing.assert_array_equal(sc.uncertain_supply, [True, False])
    assert sc.n_hours == 4 and sc.n_scenarios == 2


# ---- stochastic day-ahead clearing -----------------------------------------------------------------
# Layout of the test market, every hour:
#   demand: [uncertain load at VOLL, elastic firm loads..., upstream export (firm)]
#   supply: [uncertain PV steps..., firm local generators..., upstream import (firm)]

IMPORT_PRICE, EXPORT_PRICE = 50.0, 20.0


def _market(rng: np.random.Generator, n_t: int, n_el: int, n_pv: int, n_gen: int, n_s: int):
    """Random day: bids per hour with the forecast as the uncertain steps' quantity, and scenarios."""
    load_f = rng.uniform(5.0, 20.0, n_t)
    pv_f = rng.uniform(0.0, 10.0, (n_t, n_pv))
    bids = []
    for t in range(n_t):
        bids.append(
            _bids(
                d_mw=np.r_[load_f[t], rng.uniform(0.0, 5.0, n_el), 100.0],
                d_price=np.r_[VOLL, rng.uniform(21.0, 80.0, n_el), EXPORT_PRICE],
                s_mw=np.r_[pv_f[t], rng.uniform(0.0, 5.0, n_gen), 100.0],
                s_price=np.r_[rng.uniform(0.0, 5.0, n_pv), rng.uniform(21.0, 49.0, n_gen), IMPORT_PRICE],
            )
        )
    load, _ = forecast_scenarios(load_f, n_s, 0.2, rng)
    pv, _ = forecast_scenarios(pv_f, n_s, 0.4, rng)
    p = rng.dirichlet(np.ones(n_s))  # unequal probabilities
    sc = DayScenarios.of_steps(
        p, 2 + n_el, n_pv + n_gen + 1, demand={0: load}, supply={j: pv[:, :, j] for j in range(n_pv)}
    )
    return bids, sc


def _check_day(bids: list[Bids], sc: DayScenarios, res, up, down) -> None:
    """Balances hold; the day's figures add up."""
    assert res.status == "optimal"
    np.testing.assert_allclose(res.supply_mw.sum(axis=1), res.demand_mw.sum(axis=1), atol=TOL)
    unc_d, unc_s = sc.uncertain_demand, sc.uncertain_supply
    dev = np.nan_to_num(sc.demand_mw)[:, :, unc_d].sum(axis=2) - res.demand_mw[:, unc_d].sum(axis=1)
    dev -= np.nan_to_num(sc.supply_mw)[:, :, unc_s].sum(axis=2) - res.supply_mw[:, unc_s].sum(axis=1)
    np.testing.assert_allclose(res.balancing_up_mw - res.balancing_down_mw - res.spill_mw, dev, atol=1e-5)
    da = sum(
        float(b.supply_price @ res.supply_mw[t] - b.demand_price @ res.demand_mw[t])
        for t, b in enumerate(bids)
    )
    assert res.day_ahead_cost == pytest.approx(da, abs=rel(da))
    bal = sc.probability @ (res.balancing_up_mw * up - res.balancing_down_mw * down).sum(axis=1)
    assert res.expected_balancing_cost == pytest.approx(bal, abs=rel(da))
    assert res.expected_cost == pytest.approx(da + bal, abs=rel(da))


@settings(max_examples=25, deadline=None)
@given(
    seed=SEEDS,
    n_t=st.integers(1, 4),
    n_s=st.integers(1, 5),
    up=st.floats(0.0, 1000.0),
    spread=st.floats(0.0, 1000.0),
)
def test_random_days_vss_evpi_nonnegative(seed: int, n_t: int, n_s: int, up: float, spread: float) -> None:
    """Random days and balancing prices: EV <= WS <= RP <= EEV, so VSS >= 0 and EVPI >= 0.

    (EV <= WS because only right-hand sides and bounds are random: the optimum is convex in them.)
    """
    rng = np.random.default_rng(seed)
    bids, sc = _market(rng, n_t, n_el=2, n_pv=2, n_gen=1, n_s=n_s)
    down = up - spread
    res = clear_day(bids, sc, up, down)
    _check_day(bids, sc, res, up, down)
    tol = rel(res.expected_cost)
    assert res.vss >= -tol and res.evpi >= -tol
    assert res.ev <= res.ws + tol and res.ws <= res.expected_cost + tol and res.expected_cost <= res.eev + tol


@pytest.mark.parametrize("seed", range(8))
def test_one_scenario_is_the_deterministic_clearing(seed: int) -> None:
    """One scenario: RP = WS = EV = EEV, VSS = EVPI = 0, and the day-ahead schedule is what a uniform
    auction clears hour by hour with the uncertain steps at the scenario's quantities (no balancing)."""
    rng = np.random.default_rng(seed)
    n_t, n_pv = 4, 2
    bids, sc = _market(rng, n_t, n_el=3, n_pv=n_pv, n_gen=2, n_s=1)
    # bids carry the realisation as the uncertain steps' quantities
    real = []
    for t, b in enumerate(bids):
        d_mw, s_mw = b.demand_mw.copy(), b.supply_max_mw.copy()
        d_mw[0] = sc.demand_mw[0, t, 0]
        s_mw[:n_pv] = sc.supply_mw[0, t, :n_pv]
        real.append(_bids(d_mw, b.demand_price, s_mw, b.supply_price))
    up, down = 200.0, 10.0  # brackets every day-ahead price (20..50 $/MWh)
    res = clear_day(real, sc, up, down)
    _check_day(real, sc, res, up, down)
    tol = rel(res.expected_cost)
    for name in ("ws", "ev", "eev"):
        assert getattr(res, name) == pytest.approx(res.expected_cost, abs=tol)
    assert res.vss == pytest.approx(0.0, abs=tol) and res.evpi == pytest.approx(0.0, abs=tol)
    np.testing.assert_allclose(res.balancing_up_mw, 0.0, atol=TOL)
    np.testing.assert_allclose(res.balancing_down_mw, 0.0, atol=TOL)
    auction = UniformAuction(len(real[0].demand_mw), len(real[0].supply_max_mw))
    for t, b in enumerate(real):
        det = auction.clear(b)
        np.testing.assert_allclose(res.demand_mw[t], det.demand_mw, atol=1e-6)
        np.testing.assert_allclose(res.supply_mw[t], det.supply_mw, atol=1e-6)
        lo, hi = clearing_price_interval(b, det.demand_mw, det.supply_mw)
        assert lo - 1e-6 <= res.price_per_mwh[t] <= hi + 1e-6


def _newsvendor_day(n_t: int = 3, delta: float = 2.0):
    """Hours with a firm load (VOLL), one PV at 0 $/MWh offering its forecast m, the import at 50 $/MWh.

    PV scenarios m - delta, m, m + delta (1/3 each): symmetric around the forecast, which is their mean.
    """
    m = np.array([4.0, 6.0, 8.0])[:n_t]
    bids = [_bids([20.0, 100.0], [VOLL, 5.0], [m[t], 100.0], [0.0, IMPORT_PRICE]) for t in range(n_t)]
    pv = np.stack([m - delta, m, m + delta])
    sc = DayScenarios.of_steps(np.full(3, 1.0 / 3.0), 2, 2, supply={0: pv})
    return bids, sc, m


def test_symmetric_scenarios_cheap_balancing_give_expected_value_schedule() -> None:
    """Balancing 1 $/MWh either side of the day-ahead price: the stochastic schedule is the EV one
    (the PV scheduled at its scenarios' median, which is their mean), and VSS = 0."""
    bids, sc, m = _newsvendor_day()
    up, down = IMPORT_PRICE + 1.0, IMPORT_PRICE - 1.0
    res = clear_day(bids, sc, up, down)
    _check_day(bids, sc, res, up, down)
    np.testing.assert_allclose(res.supply_mw, res.ev_supply_mw, atol=TOL)
    np.testing.assert_allclose(res.demand_mw, res.ev_demand_mw, atol=TOL)
    np.testing.assert_allclose(res.supply_mw[:, 0], m, atol=TOL)
    np.testing.assert_allclose(res.price_per_mwh, IMPORT_PRICE, atol=TOL)
    assert res.vss == pytest.approx(0.0, abs=rel(res.expected_cost))
    # EVPI: with perfect information the low scenario schedules PV at m - delta: saves 1 $/MWh * delta
    assert res.evpi == pytest.approx(3 * 1.0 * 2.0 / 3.0, abs=1e-6)


def test_expensive_balancing_makes_vss_positive() -> None:
    """Balancing up at 500, down at 0 $/MWh: PV is scheduled at its low scenario, not its mean.

    Per hour (delta = 2): EV schedules m, EEV = EV + (500 * delta) / 3; RP schedules m - delta at
    50 * delta more day-ahead import; WS = EV + 50 * delta / 3 (only the low scenario costs).
    So VSS = (500 / 3 - 50) * delta and EVPI = (50 - 50 / 3) * delta per hour.
    """
    bids, sc, m = _newsvendor_day(n_t=3, delta=2.0)
    up, down = 500.0, 0.0
    res = clear_day(bids, sc, up, down)
    _check_day(bids, sc, res, up, down)
    np.testing.assert_allclose(res.supply_mw[:, 0], m - 2.0, atol=TOL)
    np.testing.assert_allclose(res.ev_supply_mw[:, 0], m, atol=TOL)
    assert res.vss == pytest.approx(3 * (500.0 / 3.0 - 50.0) * 2.0, abs=1e-6)
    assert res.evpi == pytest.approx(3 * (50.0 - 50.0 / 3.0) * 2.0, abs=1e-6)
    assert res.vss > 100.0
    assert res.eev - res.ev == pytest.approx(3 * 500.0 * 2.0 / 3.0, abs=1e-6)


def test_day_model_built_once_matches_fresh() -> None:
    """Several days on one market push parameters only and equal a freshly built market's results."""
    rng = np.random.default_rng(11)
    market = StochasticDayAhead(3, 5, 5)
    for _ in range(3):
        bids, sc = _market(rng, 3, n_el=3, n_pv=2, n_gen=2, n_s=4)
        res = market.clear_day(bids, sc, 120.0, 15.0)
    assert market.solver.n_builds == 3  # RP/EEV, WS and EV instances, each built on the first day
    fresh = clear_day(bids, sc, 120.0, 15.0)
    for name in ("expected_cost", "ws", "ev", "eev"):
        assert getattr(res, name) == pytest.approx(getattr(fresh, name), abs=rel(fresh.expected_cost))
    rp_only = market.clear_day(bids, sc, 120.0, 15.0, measures=False)
    assert rp_only.expected_cost == pytest.approx(fresh.expected_cost, abs=rel(fresh.expected_cost))
    assert np.isnan(rp_only.vss) and np.isnan(rp_only.evpi)


def test_quadratic_offers_are_refused() -> None:
    bids, sc, _ = _newsvendor_day(n_t=1)
    b = bids[0]
    quad = Bids(
        b.demand_bus,
        b.demand_mw,
        b.demand_price,
        b.supply_bus,
        b.supply_max_mw,
        b.supply_price,
        supply_c2=np.array([0.0, 0.1]),
    )
    with pytest.raises(ValueError, match="supply_c2"):
        clear_day([quad], sc, 100.0, 0.0)


def test_infeasible_day_reports_status_not_raise() -> None:
    """A must-run supply above all demand: the day comes back with the solver's status and NaN numbers."""
    b = Bids(
        np.zeros(1, dtype=np.int64),
        np.array([5.0]),
        np.array([100.0]),
        np.zeros(2, dtype=np.int64),
        np.array([3.0, 50.0]),
        np.array([0.0, 50.0]),
        supply_min_mw=np.array([0.0, 20.0]),
    )
    sc = DayScenarios.of_steps([0.5, 0.5], 1, 2, supply={0: np.array([[1.0], [4.0]])})
    res = clear_day([b], sc, 100.0, 0.0)
    assert res.status.startswith("RP:") and "nfeasible" in res.status
    assert np.isnan(res.expected_cost) and np.isnan(res.vss) and np.isnan(res.price_per_mwh).all()
