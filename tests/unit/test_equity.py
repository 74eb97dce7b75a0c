"""Equity accounting: Gini and Lorenz properties, accounts against the tariff baseline, redistribution."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cosim.models.accounting.equity import (
    EquityAccumulator,
    absolute_gini,
    gini,
    gini_rows,
    lorenz_curve,
    redistribute,
    round_to_cents,
    study_month_of_step,
)

# money of a study in $, to the micro-dollar: no subnormal values to defeat the brute-force references
money = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 6))
non_negative = st.floats(0.0, 1e4, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 6))
values = arrays(np.float64, st.integers(1, 40), elements=money)
non_negative_values = arrays(np.float64, st.integers(1, 40), elements=non_negative)


def brute_gini(x: np.ndarray) -> float:
    """O(n^2) definition: sum |xi - xj| / (2 n^2 mu*), mu* = (T+ + T-) / n."""
    n = len(x)
    scale = np.abs(x).sum() / n
    return float(np.abs(x[:, None] - x[None, :]).sum() / (2 * n**2 * scale)) if scale > 0 else 0.0


# --------------------------------------------------------------------------------------------- Gini


def test_reference_values_use_the_n_squared_form() -> None:
    """The reference values (docs/references.md): 4/15 and 3/4, not the n (n - 1) values 1/3 and 1."""
    assert gini([1, 2, 3, 4, 5]) == pytest.approx(4 / 15, abs=1e-15)
    assert round(gini([1, 2, 3, 4, 5]), 4) == 0.2667
    assert gini([0, 0, 0, 1]) == 0.75
    assert gini([5, 0, 0, 0], method="shift") == 0.75


def test_rsv_reproduces_the_papers_example() -> None:
    """Raffinetti, Siletti and Vernizzi (2015): 0.555, 1 and 0.8346, which are G_RSV * n / (n - 1)."""
    cases = {
        0.5556: [-5.0] * 9 + [45.01],
        1.0: [-45.0] + [0.0] * 8 + [45.01],
        0.8346: [-15.0, -10, -8, -7, -5, 0, 0, 0, 0, 45.01],
    }
    for expected, x in cases.items():
        assert gini(x) * 10 / 9 == pytest.approx(expected, abs=1e-4)
    # the polarised case is the maximum (n - 1) / n of the n^2 form
    assert gini([-3.0, 0, 0, 0, 7]) == pytest.approx(4 / 5)


@settings(max_examples=100, deadline=None)
@given(values, st.floats(1e-3, 1e3))
def test_scale_invariance(x: np.ndarray, c: float) -> None:
    for method in ("rsv", "shift"):
        assert gini(c * x, method) == pytest.approx(gini(x, method), rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(values, st.randoms(use_true_random=False))
def test_permutation_invariance(x: np.ndarray, rnd) -> None:
    y = x.copy()
    rnd.shuffle(y)
    assert gini(y) == pytest.approx(gini(x), rel=1e-12, abs=1e-15)
    assert absolute_gini(y) == pytest.approx(absolute_gini(x), rel=1e-12, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(non_negative_values)
def test_non_negative_in_unit_interval_and_ordinary(x: np.ndarray) -> None:
    """For non-negative data RSV is the ordinary Gini (mean as denominator), in [0, (n - 1)/n]."""
    n, g = len(x), gini(x)
    assert 0.0 <= g <= (n - 1) / n + 1e-12 and g < 1.0
    if x.sum() > 0:
        ordinary = np.abs(x[:, None] - x[None, :]).sum() / (2 * n**2 * x.mean())
        assert g == pytest.approx(ordinary, rel=1e-9, abs=1e-12)
        assert absolute_gini(x) == pytest.approx(g * x.mean(), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(values)
def test_negative_values_documented_behaviour(x: np.ndarray) -> None:
    """RSV: at most (n - 1)/n, symmetric in sign. shift: the ordinary Gini of x - min(x), translation free."""
    n, g = len(x), gini(x)
    assert 0.0 <= g <= (n - 1) / n + 1e-9
    assert gini(-x) == pytest.approx(g, rel=1e-12, abs=1e-15)
    shifted = gini(x, "shift")
    assert 0.0 <= shifted < 1.0
    assert shifted == pytest.approx(gini(x - x.min()), rel=1e-9, abs=1e-12)
    cents = np.round(x, 2)  # differences far above the rounding of the translation
    assert gini(cents + 123.0, "shift") == pytest.approx(gini(cents, "shift"), rel=1e-9, abs=1e-12)


def test_negative_mean_would_break_the_ordinary_gini() -> None:
    """With negatives the plain-mean Gini exceeds 1 (or is negative); RSV stays in range."""
    x = np.array([-10.0, -1.0, 0.0, 5.0, 8.0])
    plain = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert plain > 1.0
    assert 0.0 < gini(x) < 0.8


@settings(max_examples=200, deadline=None)
@given(values)
def test_sorting_gini_equals_brute_force(x: np.ndarray) -> None:
    assert gini(x) == pytest.approx(brute_gini(x), rel=1e-9, abs=1e-12)


def test_sorting_gini_equals_brute_force_on_random_rows() -> None:
    rng = np.random.default_rng(7)
    x = rng.lognormal(3.0, 1.0, size=(20, 300)) - rng.uniform(0, 40, size=(20, 1))
    expected = [brute_gini(row) for row in x]
    np.testing.assert_allclose(gini_rows(x), expected, rtol=1e-10)


def test_degenerate_inputs() -> None:
    assert gini([0.0, 0.0, 0.0]) == 0.0
    assert gini([4.0, 4.0], "shift") == 0.0
    assert gini([-3.0]) == 0.0
    assert np.isnan(gini([]))
    assert np.isnan(absolute_gini([]))
    with pytest.raises(ValueError):
        gini([1.0, np.nan])
    with pytest.raises(ValueError):
        gini([1.0, 2.0], "plain")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- Lorenz


@settings(max_examples=100, deadline=None)
@given(non_negative_values)
def test_lorenz_endpoints_monotone_convex_and_area(x: np.ndarray) -> None:
    p, share = lorenz_curve(x)
    assert (p[0], share[0]) == (0.0, 0.0) and (p[-1], share[-1]) == (1.0, 1.0)
    slope = np.diff(share)
    assert np.all(slope >= -1e-12)
    assert np.all(np.diff(slope) >= -1e-9)
    assert np.all(share <= p + 1e-9)  # below the line of equality
    area = float(np.sum(np.diff(p) * (share[1:] + share[:-1]) / 2))
    assert 1 - 2 * area == pytest.approx(gini(x), abs=1e-9)


def test_lorenz_with_negatives_and_degenerate_totals() -> None:
    p, share = lorenz_curve([-2.0, 1.0, 5.0])
    np.testing.assert_allclose(share, [0.0, -0.5, -0.25, 1.0])
    assert np.all(np.diff(np.diff(share)) >= 0)
    _, shifted = lorenz_curve([-2.0, 1.0, 5.0], shift=True)
    np.testing.assert_allclose(shifted, [0.0, 0.0, 0.3, 1.0])
    np.testing.assert_array_equal(lorenz_curve([0.0, 0.0])[1], [0.0, 0.5, 1.0])
    assert np.all(np.isnan(lorenz_curve([-1.0, 1.0])[1]))


# --------------------------------------------------------------------------------------------- accounts


def study(seed: int = 3, n_step: int = 96, n_agent: int = 7):
    rng = np.random.default_rng(seed)
    energy = rng.normal(0.0, 1.0, size=(n_step, n_agent))
    energy[:, 0] = np.abs(energy[:, 0])  # a pure consumer
    energy[:, 1] = -np.abs(energy[:, 1])  # a pure producer
    price = rng.uniform(20.0, 300.0, size=n_step)
    payment = energy * rng.uniform(0.0, 350.0, size=(n_step, n_agent))
    months = np.repeat(np.arange(4), n_step // 4)
    return payment, energy, price, months


def test_accounts_match_direct_sums() -> None:
    payment, energy, price, months = study()
    acc = EquityAccumulator.from_arrays(payment, energy, price, months)
    total = acc.total()
    np.testing.assert_allclose(total.bill_usd, np.clip(payment, 0, None).sum(0))
    np.testing.assert_allclose(total.revenue_usd, np.clip(-payment, 0, None).sum(0))
    np.testing.assert_allclose(total.net_cost_usd, payment.sum(0))
    np.testing.assert_allclose(total.energy_bought_mwh, np.clip(energy, 0, None).sum(0))
    np.testing.assert_allclose(total.energy_sold_mwh, np.clip(-energy, 0, None).sum(0))
    np.testing.assert_allclose(total.baseline_cost_usd, price @ energy)
    np.testing.assert_allclose(total.surplus_usd, price @ energy - payment.sum(0))
    assert total.revenue_usd[0] == 0.0 and total.energy_sold_mwh[0] == 0.0
    assert total.bill_usd[1] == 0.0 and total.energy_bought_mwh[1] == 0.0
    monthly = acc.monthly()
    assert monthly.bill_usd.shape == (4, 7)
    np.testing.assert_allclose(monthly.net_cost_usd[2], payment[months == 2].sum(0))
    np.testing.assert_array_equal(acc.steps_per_month, [24, 24, 24, 24])
    assert acc.complete


def test_step_by_step_equals_whole_arrays() -> None:
    payment, energy, price, months = study()
    whole = EquityAccumulator.from_arrays(payment, energy, price, months)
    stepwise = EquityAccumulator(payment.shape[1], months)
    for step in np.random.default_rng(1).permutation(len(price)):
        assert not stepwise.complete
        stepwise.add(int(step), payment[step], energy[step], float(price[step]))
    assert stepwise.complete
    for name in ("monthly", "total"):
        a, b = getattr(whole, name)(), getattr(stepwise, name)()
        for field in a.__dataclass_fields__:
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-12, atol=1e-9)
    blocks = EquityAccumulator(payment.shape[1], months)
    blocks.add_many(np.arange(50, 96), payment[50:], energy[50:], price[50:])
    blocks.add_many(np.arange(50), payment[:50], energy[:50], price[:50])
    np.testing.assert_allclose(blocks.total().surplus_usd, whole.total().surplus_usd, rtol=1e-12)


def test_surplus_zero_when_paying_the_tariff() -> None:
    """Net metering: paying energy * posted price every interval is exactly the baseline."""
    _, energy, price, months = study(seed=5)
    payment = energy * price[:, None]
    acc = EquityAccumulator.from_arrays(payment, energy, price, months)
    assert np.all(acc.total().surplus_usd == 0.0)
    assert np.all(acc.monthly().surplus_usd == 0.0)
    stepwise = EquityAccumulator(energy.shape[1], months)
    for step in range(len(price)):
        stepwise.add(step, payment[step], energy[step], price[step])
    assert np.all(stepwise.total().surplus_usd == 0.0)


def test_export_price_baseline() -> None:
    """A lower export price under the baseline: injections credited at the posted price are a gain."""
    _, energy, price, months = study(seed=6)
    payment = energy * price[:, None]
    export = 0.4 * price
    acc = EquityAccumulator.from_arrays(payment, energy, price, months, export_price_per_mwh=export)
    sold = np.clip(-energy, 0, None)
    np.testing.assert_allclose(acc.total().surplus_usd, (price - export) @ sold)
    assert acc.total().surplus_usd[0] == 0.0 and acc.total().surplus_usd[1] > 0.0


def test_gini_by_month_and_guards() -> None:
    payment, energy, price, months = study()
    months = np.where(months == 3, 4, months)  # month 3 has no step
    acc = EquityAccumulator.from_arrays(payment, energy, price, months)
    by_month = acc.gini_by_month("bill_usd")
    assert by_month.shape == (5,) and np.isnan(by_month[3]) and not np.isnan(by_month[[0, 1, 2, 4]]).any()
    assert by_month[1] == pytest.approx(gini(acc.monthly().bill_usd[1]))
    households = np.array([True, False, True, True, False, True, True])
    assert acc.gini_by_month("surplus_usd", agents=households)[0] == pytest.approx(
        gini(acc.monthly().surplus_usd[0, households])
    )
    with pytest.raises(ValueError):
        acc.gini_by_month("welfare")
    with pytest.raises(ValueError):
        acc.add(0, payment[0], energy[0], price[0])  # already added
    fresh = EquityAccumulator(7, months)
    with pytest.raises(IndexError):
        fresh.add(len(months), payment[0], energy[0], price[0])
    with pytest.raises(ValueError):
        fresh.add(0, payment[0, :3], energy[0], price[0])
    with pytest.raises(ValueError):
        fresh.add(0, payment[0], np.full(7, np.nan), price[0])
    with pytest.raises(ValueError):
        fresh.add_many([1, 1], payment[:2], energy[:2], price[:2])


def test_study_month_of_step() -> None:
    start = int(dt.datetime(2016, 1, 31, 22, tzinfo=dt.UTC).timestamp())
    times = start + 3600 * np.arange(4)  # 22:00, 23:00 on Jan 31, then Feb 1
    np.testing.assert_array_equal(study_month_of_step(times), [0, 0, 1, 1])
    dec = int(dt.datetime(2016, 12, 31, 23, tzinfo=dt.UTC).timestamp())
    np.testing.assert_array_equal(study_month_of_step([dec, dec + 3600]), [0, 1])


# --------------------------------------------------------------------------------------------- fairness


@settings(max_examples=100, deadline=None)
@given(values, money, st.sampled_from(["level_up", "proportional"]), st.booleans())
def test_redistribution_conserves_money(s: np.ndarray, pot: float, rule, masked: bool) -> None:
    weights = (np.arange(len(s)) % 2 == 0).astype(float) if masked else None
    t = redistribute(s, pot, weights, rule=rule)
    assert t.shape == s.shape
    assert t.sum() == pytest.approx(pot, rel=1e-9, abs=1e-9)
    if masked:
        assert np.all(t[1::2] == 0.0)
    assert np.all(t * np.sign(pot) >= 0)  # nobody pays into a rebate, nobody receives from a levy
    cents = round_to_cents(t, pot)
    assert cents.dtype == np.int64 and int(cents.sum()) == round(100 * pot)
    assert np.all(np.abs(cents - 100 * t) < 1.0)


def test_constructed_case_lowers_gini() -> None:
    """Households' surpluses, one poor and two losing money; a congestion rent of 300 $ to hand back."""
    s = np.array([-40.0, -10.0, 5.0, 60.0, 120.0, 400.0])
    low_income = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    level = redistribute(s, 300.0)
    np.testing.assert_allclose(level, [118.75, 88.75, 73.75, 18.75, 0.0, 0.0])  # floor at 78.75 $
    flagged = redistribute(s, 300.0, low_income, rule="proportional")
    np.testing.assert_allclose(flagged, [100.0, 100.0, 100.0, 0.0, 0.0, 0.0])
    for t in (level, flagged):
        assert t.sum() == pytest.approx(300.0)
        assert gini(s + t) < gini(s) - 0.1
        assert absolute_gini(s + t) < absolute_gini(s)
    assert gini(s + level) < gini(s + flagged)
    levy = redistribute(s, -100.0)  # collected from the top down to a ceiling of 300 $
    np.testing.assert_allclose(levy, [0, 0, 0, 0, 0, -100.0])


@settings(max_examples=200, deadline=None)
@given(values, non_negative)
def test_level_up_guarantees(s: np.ndarray, pot: float) -> None:
    """Equal weights, pot >= 0: no one loses, order kept, absolute Gini never rises, nor Gini of s >= 0."""
    t = redistribute(s, pot)
    after = s + t
    assert np.all(t >= 0)
    order = np.argsort(s, kind="stable")
    assert np.all(np.diff(after[order]) >= -1e-9 * (1 + np.abs(after).max()))
    assert absolute_gini(after) <= absolute_gini(s) + 1e-9 * (1 + np.abs(s).max())
    if np.all(s >= 0):
        assert gini(after) <= gini(s) + 1e-9


def test_level_up_can_raise_rsv_gini_of_negative_surplus() -> None:
    """The documented caveat: lifting negatives shrinks T+ + T-, so the relative RSV Gini may rise."""
    s = np.array([-2.0, 1.0, -2.0, -2.0])
    t = redistribute(s, 6.0)
    np.testing.assert_allclose(s + t, [0.0, 1.0, 0.0, 0.0])
    assert gini(s + t) > gini(s) and absolute_gini(s + t) < absolute_gini(s)


def test_redistribution_guards() -> None:
    s = np.array([1.0, 2.0])
    np.testing.assert_array_equal(redistribute(s, 0.0, np.zeros(2)), [0.0, 0.0])
    with pytest.raises(ValueError):
        redistribute(s, 10.0, np.zeros(2))
    with pytest.raises(ValueError):
        redistribute(s, 10.0, np.array([-1.0, 1.0]))
    with pytest.raises(ValueError):
        redistribute(s, 10.0, np.array([2.0, 1.0]))  # level_up weights are fractions
    with pytest.raises(ValueError):
        round_to_cents([1.0, 1.0], 5.0)
