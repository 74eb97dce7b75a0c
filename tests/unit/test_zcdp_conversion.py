"""The closed-form zCDP -> (epsilon, delta) conversion against OpenDP's numerical one; the accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosim.models.privacy.release import (
    PrivacyAccountant,
    PrivacyCost,
    _zcdp_profile,
    cks20_epsilon,
    epsilon_of_rho,
    opendp_epsilon_of_rho,
)

RHOS = [1e-8, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 20.0, 100.0]
DELTAS = [1e-15, 1e-12, 1e-9, 1e-6, 1e-5, 1e-3, 0.01, 0.1, 0.5]


def _opendp_holds(rho: float, epsilon: float, delta: float) -> bool:
    """OpenDP's own profile of rho-zCDP: does (epsilon, delta)-DP hold?"""
    return float(_zcdp_profile(rho).delta(epsilon)) <= delta


@pytest.mark.parametrize("delta", DELTAS)
def test_closed_form_equals_opendp_on_a_grid(delta: float) -> None:
    """On a grid of rho and delta the closed form equals OpenDP's epsilon(delta) to a relative 1e-9."""
    for rho in RHOS:
        ours, theirs = epsilon_of_rho(rho, delta), opendp_epsilon_of_rho(rho, delta)
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12), (rho, delta)


@settings(max_examples=200, deadline=None)
@given(
    log_rho=st.floats(math.log(1e-9), math.log(200.0)),
    log_delta=st.floats(math.log(1e-15), math.log(0.9)),
)
def test_closed_form_is_opendp_and_an_upper_bound(log_rho: float, log_delta: float) -> None:
    """Random (rho, delta): equal to OpenDP's to 1e-9, and OpenDP's own profile confirms the epsilon holds."""
    rho, delta = math.exp(log_rho), math.exp(log_delta)
    ours, theirs = epsilon_of_rho(rho, delta), opendp_epsilon_of_rho(rho, delta)
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    if ours > 0.0:  # never an under-statement: (ours, delta)-DP holds by OpenDP's delta(epsilon)
        assert _opendp_holds(rho, ours, delta)


def test_tighter_than_bun_steinke() -> None:
    """CKS20 is at least as tight as Bun and Steinke (2016, Prop. 1.3): rho + 2 sqrt(rho ln(1/delta))."""
    for rho in RHOS:
        for delta in DELTAS:
            bs16 = rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))
            assert epsilon_of_rho(rho, delta) <= bs16 * (1 + 1e-12)


def test_best_order_is_the_minimum() -> None:
    """The order the closed form picks gives an epsilon no larger than any other order on a fine grid."""
    rho, delta = 0.3, 1e-6
    epsilon, alpha = cks20_epsilon(rho, delta)
    orders = np.linspace(1.05, 200.0, 20_000)
    others = orders * rho + (math.log(1 / delta) + (orders - 1) * np.log1p(-1 / orders) - np.log(orders)) / (
        orders - 1
    )
    assert epsilon <= others.min() * (1 + 1e-12) and 1.05 < alpha < 200.0


def test_degenerate_inputs() -> None:
    """rho = 0 costs nothing; a large delta gives 0; delta 0 or 1 are OpenDP's answers (inf and 0)."""
    assert epsilon_of_rho(0.0, 1e-6) == 0.0
    assert epsilon_of_rho(1e-6, 0.5) == opendp_epsilon_of_rho(1e-6, 0.5) == 0.0
    assert epsilon_of_rho(0.1, 0.0) == opendp_epsilon_of_rho(0.1, 0.0) == math.inf
    assert epsilon_of_rho(0.1, 1.0) == opendp_epsilon_of_rho(0.1, 1.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(
    log_rho=st.floats(math.log(1e-6), math.log(50.0)),
    log_delta=st.floats(math.log(1e-12), math.log(1e-2)),
    factor=st.sampled_from([0.5, 1 - 1e-6, 1 - 1e-9, 1.0, 1 + 1e-9, 1 + 1e-6, 2.0]),
)
def test_accountant_decides_as_opendp(log_rho: float, log_delta: float, factor: float) -> None:
    """Budgets at and around the conversion of one rho: refused iff OpenDP's profile says it exceeds."""
    rho, delta = math.exp(log_rho), math.exp(log_delta)
    budget = opendp_epsilon_of_rho(rho, delta) * factor
    acc = PrivacyAccountant(budget, delta, composition="zcdp")
    cost = PrivacyCost(1.0, 0.0, rho)
    assert acc.would_exceed(cost) == (not _opendp_holds(rho, budget, delta))
    if not acc.would_exceed(cost):
        acc.charge(cost)
        assert acc.epsilon_spent <= budget
        assert _opendp_holds(rho, acc.epsilon_spent, delta)  # the spend reported is a true bound


@settings(max_examples=40, deadline=None)
@given(
    budget=st.floats(0.05, 20.0),
    rhos=st.lists(st.floats(1e-5, 0.5), min_size=1, max_size=40),
)
def test_budget_never_exceeded_by_opendp(budget: float, rhos: list[float]) -> None:
    """Any sequence of releases: the charged total rho is (budget, delta)-DP by OpenDP's own profile."""
    acc = PrivacyAccountant(budget, 1e-6, composition="zcdp")
    for rho in rhos:
        try:
            acc.charge(PrivacyCost(1.0, 0.0, rho))
        except Exception:
            pass
        assert acc.epsilon_spent <= budget
        if acc.charged:
            assert _opendp_holds(acc.rho_spent, budget, 1e-6)
            assert _opendp_holds(acc.rho_spent, acc.epsilon_spent, 1e-6)
