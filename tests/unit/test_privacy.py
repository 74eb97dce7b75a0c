"""Private release of metered aggregates: OpenDP privacy maps against theory, noise distributions, budget.

With ``noise="secure"`` OpenDP draws its noise from a CSPRNG that cannot be seeded. The statistical tests
therefore use tolerances of 6 standard errors, or a Kolmogorov-Smirnov (or chi-square) p-value threshold
of 1e-4 that a correct mechanism misses once in 10,000 runs. They also check their power: a wrong
distribution must be rejected. The same tests run on ``noise="seeded"`` draws with a fixed seed.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import opendp.prelude as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cosim.models.privacy.release import (
    ErrorMetrics,
    PrivacyAccountant,
    PrivacyBudgetExceeded,
    PrivacyCost,
    PrivateRelease,
    ReleaseResult,
    discrete_gaussian,
    discrete_laplace,
    epsilon_of_rho,
    seeded_noise,
)

SIX_SIGMA = 6.0
KS_P_MIN = 1e-4
METHODS = ["per_group", "vector"]
NOISES = ["secure", "seeded"]


def _release(n_agent: int = 3, **kw: object) -> PrivateRelease:
    args: dict[str, object] = {"declared_max_mwh": 0.01, "epsilon": 1.0, "budget_epsilon": 1e9}
    args.update(kw)
    if args.get("noise") == "seeded" and "rng" not in args:
        args["rng"] = np.random.default_rng(2012)
    groups = args.pop("groups", np.zeros(n_agent, dtype=int))
    return PrivateRelease(groups, **args)  # type: ignore[arg-type]


# --- privacy maps against theory -------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    bound_mwh=st.floats(1e-4, 10.0),
    epsilon=st.floats(1e-3, 10.0),
    sum_share=st.floats(0.1, 0.9),
    sum_method=st.sampled_from(METHODS),
)
def test_laplace_map_matches_theory(
    bound_mwh: float, epsilon: float, sum_share: float, sum_method: str
) -> None:
    """Laplace: scale D/e gives epsilon e, within OpenDP's rounding up, and never more than e."""
    pr = _release(declared_max_mwh=bound_mwh, epsilon=epsilon, sum_share=sum_share, sum_method=sum_method)
    eps_sum = epsilon * sum_share
    eps_count = epsilon - eps_sum
    eps_map_sum = pr.sum_measurement(0).map(pr.sum_d_in)
    eps_map_count = pr.count_measurement.map(1)
    assert eps_sum * (1 - 1e-9) <= eps_map_sum <= eps_sum
    assert eps_count * (1 - 1e-9) <= eps_map_count <= eps_count
    # the scales are the textbook ones: D/e (up to OpenDP's float-sum rounding relaxation ~1e-8) and 1/e
    assert pr.sum_scales_mwh[0] == pytest.approx(bound_mwh / eps_sum, rel=1e-7)
    assert pr.count_scale == pytest.approx(1.0 / eps_count, rel=1e-9)
    assert pr.cost.delta == 0.0
    assert epsilon * (1 - 1e-9) <= pr.cost.epsilon <= epsilon
    # the bare Laplace mechanism at scale D/e is e-DP for sensitivity D (OpenDP rounds the map up)
    laplace = dp.m.make_laplace(
        dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), bound_mwh / epsilon
    )
    assert laplace.map(bound_mwh) == pytest.approx(epsilon, rel=1e-12)


def test_laplace_map_fails_for_wrong_scale() -> None:
    """Power check of the above: half the noise costs twice the epsilon, and OpenDP says so."""
    pr = _release(epsilon=1.0)
    chain = (
        (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance())
        >> dp.t.then_clamp((0.0, 0.01))
        >> dp.t.then_sum()
        >> dp.m.then_laplace(pr.sum_scales_mwh[0] / 2)
    )
    assert chain.map(1) > 0.99


@pytest.mark.parametrize("sum_method", METHODS)
@pytest.mark.parametrize("n_group", [1, 4])
def test_gaussian_reported_cost_is_opendp_map(n_group: int, sum_method: str) -> None:
    """Gaussian: the (epsilon, delta) charged are OpenDP's maps, composed (max over groups, sum of series)."""
    epsilon, delta = 0.8, 1e-6
    groups = np.arange(8) % n_group
    declared = np.linspace(0.005, 0.02, 8)  # groups get different bounds D_g
    pr = _release(
        groups=groups,
        declared_max_mwh=declared,
        epsilon=epsilon,
        mechanism="gaussian",
        delta=delta,
        budget_delta=0.5,
        sum_method=sum_method,
    )
    sums = [pr.sum_measurement(g).map(pr.sum_d_in) for g in range(n_group)]
    count = pr.count_measurement.map(1)
    eps_sum, delta_sum = max(e for e, _ in sums), max(d for _, d in sums)
    assert pr.cost.epsilon == pytest.approx(eps_sum + count[0], rel=1e-15)
    assert pr.cost.delta == pytest.approx(delta_sum + count[1], rel=1e-15)
    assert epsilon * (1 - 1e-6) <= pr.cost.epsilon <= epsilon
    assert delta * (1 - 1e-9) <= pr.cost.delta <= delta
    for g, (eps_g, delta_g) in enumerate(sums):  # every group is calibrated to the same share
        assert eps_g == pytest.approx(epsilon / 2, rel=1e-6)
        assert delta_g == pytest.approx(delta / 2, rel=1e-12)
        # zCDP of a Gaussian with sensitivity D: rho = D^2 / (2 sigma^2)
        rho_g = (pr.group_bound_mwh[g] / pr.sum_scales_mwh[g]) ** 2 / 2
        assert pr.sum_scales_mwh[g] / pr.group_bound_mwh[g] == pytest.approx(
            pr.sum_scales_mwh[0] / pr.group_bound_mwh[0]
        )
        assert rho_g <= pr.cost.rho  # type: ignore[operator]
    # the conversion agrees with (and is tighter than) the closed form rho + 2 sqrt(rho ln(1/delta))
    rho_sum = (pr.group_bound_mwh[0] / pr.sum_scales_mwh[0]) ** 2 / 2
    assert sums[0][0] <= rho_sum + 2 * math.sqrt(rho_sum * math.log(2 / delta))
    assert sums[0][0] == pytest.approx(epsilon_of_rho(rho_sum, delta / 2), rel=1e-6)


# --- noise distributions -----------------------------------------------------------------------------------


def _discrete_laplace_variance(scale: float) -> float:
    q = math.exp(-1.0 / scale)
    return 2 * q / (1 - q) ** 2


def _constant_releases(
    n_release: int, n_group: int, value_mwh: float, **kw: object
) -> tuple[PrivateRelease, np.ndarray, np.ndarray]:
    """Many releases of one constant input (one agent per group): i.i.d. noise samples."""
    pr = _release(groups=np.arange(n_group), **kw)
    x = np.full(n_group, value_mwh)
    results = [pr.release(x) for _ in range(n_release)]
    sums = np.concatenate([r.sums_mwh for r in results if r is not None])
    counts = np.concatenate([r.counts for r in results if r is not None])
    return pr, sums, counts


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("sum_method", METHODS)
def test_laplace_noise_distribution(sum_method: str, noise: str) -> None:
    """Sums: mean ~ truth, variance ~ 2 (D/e)^2, KS against the Laplace CDF. Counts: discrete Laplace."""
    bound, epsilon, value = 0.01, 0.5, 0.004
    pr, sums, counts = _constant_releases(
        150, 40, value, declared_max_mwh=bound, epsilon=epsilon, sum_method=sum_method, noise=noise
    )
    n = sums.size
    b = bound / (epsilon / 2)  # half of epsilon goes to the sums
    assert pr.sum_scales_mwh[0] == pytest.approx(b, rel=1e-7)
    assert abs(sums.mean() - value) < SIX_SIGMA * math.sqrt(2) * b / math.sqrt(n)
    # the sample variance of Laplace noise has relative standard error sqrt(5 / n)
    assert abs(sums.var() / (2 * b**2) - 1) < SIX_SIGMA * math.sqrt(5 / n)
    assert stats.kstest(sums, stats.laplace(loc=value, scale=b).cdf).pvalue > KS_P_MIN
    assert stats.kstest(sums, stats.laplace(loc=value, scale=1.5 * b).cdf).pvalue < KS_P_MIN  # power
    assert stats.kstest(sums, stats.norm(loc=value, scale=math.sqrt(2) * b).cdf).pvalue < KS_P_MIN
    # counts: one active agent per group, integer discrete-Laplace noise of scale 1/(e/2)
    t = pr.count_scale
    assert t == pytest.approx(2 / epsilon)
    var = _discrete_laplace_variance(t)
    assert counts.dtype == np.int64
    assert abs(counts.mean() - 1) < SIX_SIGMA * math.sqrt(var / n)
    assert abs(counts.var() / var - 1) < SIX_SIGMA * math.sqrt(5 / n)


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("sum_method", METHODS)
def test_gaussian_noise_distribution(sum_method: str, noise: str) -> None:
    """Gaussian sums: mean ~ truth, KS against N(truth, sigma^2) with OpenDP's calibrated sigma."""
    value = 0.004
    pr, sums, counts = _constant_releases(
        120,
        40,
        value,
        epsilon=1.0,
        mechanism="gaussian",
        delta=1e-6,
        budget_delta=0.5,
        sum_method=sum_method,
        noise=noise,
    )
    sigma = pr.sum_scales_mwh[0]
    n = sums.size
    assert abs(sums.mean() - value) < SIX_SIGMA * sigma / math.sqrt(n)
    assert stats.kstest(sums, stats.norm(loc=value, scale=sigma).cdf).pvalue > KS_P_MIN
    assert stats.kstest(sums, stats.norm(loc=value, scale=1.3 * sigma).cdf).pvalue < KS_P_MIN
    # counts: discrete Gaussian, variance ~ sigma^2 for sigma >> 1; variance relative s.e. sqrt(2 / n)
    assert abs(counts.mean() - 1) < SIX_SIGMA * pr.count_scale / math.sqrt(n)
    assert abs(counts.var() / pr.count_scale**2 - 1) < SIX_SIGMA * math.sqrt(2 / n)


def test_opendp_laplace_sample_matches_scipy() -> None:
    """OpenDP's own Laplace sampler at scale D/e: KS against scipy's Laplace with many draws."""
    bound, epsilon = 0.02, 0.7
    laplace = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float), bound / epsilon
    )
    draws = np.array(laplace([0.0] * 5000))
    assert stats.kstest(draws, stats.laplace(scale=bound / epsilon).cdf).pvalue > KS_P_MIN
    assert abs(draws.var() / (2 * (bound / epsilon) ** 2) - 1) < SIX_SIGMA * math.sqrt(5 / draws.size)


def _integer_pmf_pvalue(draws: np.ndarray, log_weight: object, half_width: int) -> float:
    """Chi-square p-value of integer draws against the exact pmf ``exp(log_weight(x))`` (normalised on
    ``|x| <= half_width``); cells with fewer than 5 expected draws are pooled into the two tails."""
    xs = np.arange(-half_width, half_width + 1)
    pmf = np.exp(log_weight(xs))  # type: ignore[operator]
    pmf /= pmf.sum()
    expected = pmf * draws.size
    observed = np.bincount(np.clip(draws, -half_width, half_width) + half_width, minlength=xs.size)
    cells = np.flatnonzero(expected >= 5.0)  # contiguous: the pmfs are symmetric and unimodal
    lo, hi = cells[0], cells[-1] + 1
    exp_cells = np.r_[expected[:lo].sum(), expected[lo:hi], expected[hi:].sum()]
    obs_cells = np.r_[observed[:lo].sum(), observed[lo:hi], observed[hi:].sum()]
    keep = exp_cells > 0
    return float(stats.chisquare(obs_cells[keep], exp_cells[keep]).pvalue)


def _discrete_laplace_log(scale: float) -> object:
    return lambda x: -np.abs(x) / scale


def _discrete_gaussian_log(scale: float) -> object:
    return lambda x: -(x.astype(float) ** 2) / (2 * scale**2)


@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
def test_seeded_integer_noise_is_opendps_discrete_distribution(mechanism: str) -> None:
    """Seeded count noise at the scale OpenDP's map gives: chi-square against the exact discrete Laplace
    or discrete Gaussian pmf, as OpenDP's own integer sampler at that scale; a 1.3x scale is rejected."""
    kw: dict[str, object] = {"mechanism": mechanism, "epsilon": 0.5}
    if mechanism == "gaussian":
        kw |= {"delta": 1e-6, "budget_delta": 0.5}
    scale = _release(**kw).count_scale
    log = _discrete_laplace_log if mechanism == "laplace" else _discrete_gaussian_log
    half_width = int(60 * scale)
    seeded = seeded_noise(np.random.default_rng(1), mechanism, scale, True, 40_000)  # type: ignore[arg-type]
    assert seeded.dtype == np.int64
    assert _integer_pmf_pvalue(seeded, log(scale), half_width) > KS_P_MIN
    assert _integer_pmf_pvalue(seeded, log(1.3 * scale), half_width) < KS_P_MIN  # power
    space = dp.vector_domain(dp.atom_domain(T="i64"))
    if mechanism == "laplace":
        opendp = dp.m.make_laplace(space, dp.l1_distance(T="i64"), scale)
    else:
        opendp = dp.m.make_gaussian(space, dp.l2_distance(T="i64"), scale)
    secure = np.asarray(opendp([0] * 20_000), dtype=np.int64)
    assert _integer_pmf_pvalue(secure, log(scale), half_width) > KS_P_MIN
    # the two samplers agree with each other too (chi-square test of homogeneity on the pooled cells)
    edges = np.r_[-np.inf, np.arange(-3 * scale, 3 * scale, max(1.0, scale / 4)), np.inf]
    table = np.array([np.histogram(d, edges)[0] for d in (seeded, secure)])
    assert stats.chi2_contingency(table[:, table.min(axis=0) > 0]).pvalue > KS_P_MIN


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.5, 2.0e6])
def test_discrete_samplers_moments(scale: float) -> None:
    """Discrete Laplace: variance 2q/(1-q)^2 with q = exp(-1/scale); discrete Gaussian: the variance of its
    pmf (summed exactly, ~scale^2 for scale >> 1); both centred on 0. Small and vector-sized scales."""
    rng = np.random.default_rng(11)
    n = 200_000
    lap = discrete_laplace(rng, scale, n)
    var = _discrete_laplace_variance(scale)
    assert abs(lap.mean()) < SIX_SIGMA * math.sqrt(var / n)
    assert abs(lap.var() / var - 1) < SIX_SIGMA * math.sqrt(5 / n)
    gauss = discrete_gaussian(rng, scale, n)
    if scale < 100:
        xs = np.arange(-int(40 * scale) - 40, int(40 * scale) + 41)
        w = np.exp(-(xs.astype(float) ** 2) / (2 * scale**2))
        var = float((w * xs**2).sum() / w.sum())
    else:
        var = scale**2  # the discrete Gaussian's variance is within 1e-300 of scale^2 here
    assert gauss.size == n and abs(gauss.mean()) < SIX_SIGMA * math.sqrt(var / n)
    assert abs(gauss.var() / var - 1) < SIX_SIGMA * math.sqrt(3 / n)


@pytest.mark.parametrize("sum_method", METHODS)
@pytest.mark.parametrize("mechanism", ["laplace", "gaussian"])
def test_seeded_same_seed_same_draws(mechanism: str, sum_method: str) -> None:
    """Two releases seeded alike give bit-identical sums and counts; another seed gives other values."""
    kw: dict[str, object] = {"groups": np.arange(6) % 3, "mechanism": mechanism, "sum_method": sum_method}
    if mechanism == "gaussian":
        kw |= {"delta": 1e-6, "budget_delta": 0.5}
    x = np.linspace(0.0, 0.012, 6)
    runs = []
    for seed in (5, 5, 6):
        pr = _release(noise="seeded", rng=np.random.default_rng(seed), **kw)
        results = [pr.release(x) for _ in range(4)]
        runs.append(np.concatenate([np.r_[r.sums_mwh, r.counts] for r in results if r is not None]))
    assert runs[0].size == 4 * 6
    assert runs[0].tobytes() == runs[1].tobytes()
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("sum_method", METHODS)
def test_seeded_and_secure_share_scales_and_accounting(sum_method: str) -> None:
    """Seeded and secure releases are calibrated by the same OpenDP maps: same scales, same cost, same
    spend, same refusals; only the sampler differs. A seeded release needs its generator."""
    kw: dict[str, object] = {"groups": np.arange(4) % 2, "sum_method": sum_method, "budget_epsilon": 2.5}
    secure, seeded = _release(**kw), _release(noise="seeded", **kw)
    np.testing.assert_array_equal(secure.sum_scales_mwh, seeded.sum_scales_mwh)
    assert secure.count_scale == seeded.count_scale and secure.cost == seeded.cost
    x = np.full(4, 0.005)
    for pr in (secure, seeded):
        results = [pr.release(x) for _ in range(3)]
        assert [r is None for r in results] == [False, False, True]
        assert pr.accountant.epsilon_spent == 2.0 and pr.n_refused == 1
    with pytest.raises(ValueError, match="rng"):
        _release(noise="seeded", rng=None)
    with pytest.raises(ValueError, match="rng"):
        _release(rng=np.random.default_rng(0))


# --- clamping and parallel composition -------------------------------------------------------------------


@pytest.mark.parametrize("noise", NOISES)
@pytest.mark.parametrize("sum_method", METHODS)
def test_clamping_to_declared_maximum(sum_method: str, noise: str) -> None:
    """An agent above its declared maximum contributes the maximum; a net producer contributes 0."""
    groups = np.array([0, 0, 1, 1])
    declared = np.array([1.0, 2.0, 1.0, 3.0])
    x = np.array([5.0, 0.5, -3.0, 2.5])  # over its max, within, exporting, within
    pr = _release(groups=groups, declared_max_mwh=declared, epsilon=1e4, sum_method=sum_method, noise=noise)
    sums, counts = pr.true_aggregates(x)
    np.testing.assert_allclose(sums, [1.0 + 0.5, 0.0 + 2.5])
    np.testing.assert_array_equal(counts, [2, 1])
    result = pr.release(x)
    assert result is not None
    tolerance = 40 * pr.sum_scales_mwh  # P(|Laplace| > 40 b) = e^-40
    assert np.all(np.abs(result.sums_mwh - [1.5, 2.5]) < tolerance)
    np.testing.assert_array_equal(result.counts, counts)  # count noise of scale 2e-4: 0 w.p. 1 - 2e-4342
    if sum_method == "per_group":  # the OpenDP clamp itself bounds each reading by D_g, whatever it is given
        raw = pr.sum_measurement(0)([5.0, 7.0, 0.5])
        assert abs(raw - (2.0 + 2.0 + 0.5)) < 40 * pr.sum_scales_mwh[0]
    # `active` overrides the threshold
    flagged = pr.release(x, active=np.array([False, False, True, True]))
    assert flagged is not None
    np.testing.assert_array_equal(flagged.counts, [0, 2])


@pytest.mark.parametrize("sum_method", METHODS)
def test_parallel_composition_group_structure_does_not_change_cost(sum_method: str) -> None:
    """One group, a few, or one per agent: the release of an interval is charged the same epsilon."""
    n_agent = 12
    declared = np.linspace(0.002, 0.02, n_agent)
    costs = []
    for groups in (np.zeros(n_agent, dtype=int), np.arange(n_agent) % 3, np.arange(n_agent)):
        pr = _release(groups=groups, declared_max_mwh=declared, epsilon=0.3, sum_method=sum_method)
        costs.append(pr.cost.epsilon)
        # each group's noise follows its own bound D_g, so each group costs the same sum share
        np.testing.assert_allclose(pr.sum_scales_mwh / pr.group_bound_mwh, 0.15**-1, rtol=1e-7)
        assert pr.count_measurement.map(1) <= 0.15
        result = pr.release(np.full(n_agent, 0.001))
        assert result is not None and result.epsilon_spent == pr.cost.epsilon
    assert costs[0] == costs[1] == costs[2] <= 0.3
    # OpenDP's own map of the counts does not depend on the number of groups either
    assert len({_release(groups=np.arange(k)).count_measurement.map(1) for k in (1, 5, 50)}) == 1


# --- the budget --------------------------------------------------------------------------------------------

costs = st.builds(
    PrivacyCost,
    epsilon=st.floats(0.0, 3.0),
    delta=st.one_of(st.just(0.0), st.floats(0.0, 1e-3)),
)


@settings(max_examples=300)
@given(budget=st.floats(0.0, 10.0), budget_delta=st.floats(0.0, 2e-3), sequence=st.lists(costs, max_size=30))
def test_basic_budget_never_exceeded(budget: float, budget_delta: float, sequence: list[PrivacyCost]) -> None:
    """Any sequence: spent <= budget always, and the refused releases are exactly those that would exceed."""
    acc = PrivacyAccountant(budget, budget_delta)
    eps, delta = Fraction(0), Fraction(0)  # exact reference
    for cost in sequence:
        exceeds = eps + Fraction(cost.epsilon) > Fraction(budget) or delta + Fraction(cost.delta) > Fraction(
            budget_delta
        )
        assert acc.would_exceed(cost) == exceeds
        if exceeds:
            with pytest.raises(PrivacyBudgetExceeded):
                acc.charge(cost)
        else:
            acc.charge(cost)
            eps, delta = eps + Fraction(cost.epsilon), delta + Fraction(cost.delta)
        assert Fraction(acc.epsilon_spent) >= eps and acc.epsilon_spent <= budget
        assert Fraction(acc.delta_spent) >= delta and acc.delta_spent <= budget_delta
        assert acc.remaining <= budget - acc.epsilon_spent + 1e-15
    assert len(acc.charged) + len(acc.refused) == len(sequence)


@settings(max_examples=40, deadline=None)
@given(
    budget=st.floats(0.1, 20.0),
    sequence=st.lists(st.tuples(st.sampled_from(["laplace", "gaussian"]), st.floats(1e-3, 2.0)), max_size=20),
)
def test_zcdp_budget_never_exceeded(budget: float, sequence: list[tuple[str, float]]) -> None:
    """zCDP composition: spent <= budget always; refused iff the total rho converts above the budget.

    OpenDP's epsilon(delta) is a numerical search, so "above" is decided up to a relative 1e-6.
    """
    acc = PrivacyAccountant(budget, 1e-6, composition="zcdp")
    rho = 0.0
    for kind, value in sequence:
        cost = PrivacyCost(value, 0.0, value**2 / 2) if kind == "laplace" else PrivacyCost(1.0, 1e-7, value)
        eps_after = epsilon_of_rho(rho + cost.rho, 1e-6)  # type: ignore[operator]
        try:
            acc.charge(cost)
            assert eps_after <= budget * (1 + 1e-6)
            rho += cost.rho  # type: ignore[operator]
        except PrivacyBudgetExceeded:
            assert eps_after > budget * (1 - 1e-6)
        assert acc.epsilon_spent <= budget
        assert acc.rho_spent == pytest.approx(rho, rel=1e-12)
        assert acc.delta_spent == (1e-6 if acc.charged else 0.0)


def test_zcdp_is_tighter_than_basic_over_a_year() -> None:
    """8,760 Gaussian releases: zCDP composition spends far less epsilon than adding up (epsilon, delta)."""
    pr = _release(epsilon=0.05, mechanism="gaussian", delta=1e-9, budget_delta=0.5)
    rho_year = 8760 * pr.cost.rho  # type: ignore[operator]
    assert epsilon_of_rho(rho_year, 1e-6) < 0.05 * 8760 / 10


def test_refused_release_is_not_charged_and_run_goes_on() -> None:
    """Budget for three and a half releases: the fourth is refused (None), recorded and not charged."""
    pr = _release(epsilon=1.0, budget_epsilon=3.5)
    x = np.array([0.001, 0.002, 0.003])
    results = [pr.release(x) for _ in range(5)]
    assert [r is None for r in results] == [False, False, False, True, True]
    assert [r.index for r in results if r is not None] == [0, 1, 2]
    assert [r.epsilon_spent for r in results if r is not None] == pytest.approx([1.0, 2.0, 3.0])
    assert pr.n_refused == 2 and len(pr.accountant.refused) == 2
    assert pr.accountant.epsilon_spent == pytest.approx(3.0) and pr.accountant.remaining == pytest.approx(0.5)
    # a cheaper release sharing the accountant still fits
    cheap = PrivateRelease(np.zeros(3, dtype=int), 0.01, 0.4, None, accountant=pr.accountant)
    assert cheap.release(x) is not None
    assert cheap.release(x) is None
    assert pr.accountant.epsilon_spent <= 3.5


@settings(max_examples=30, deadline=None)
@given(
    budget=st.floats(0.0, 4.0),
    choices=st.lists(st.sampled_from([0.1, 0.25, 0.7, 1.3]), max_size=15),
)
def test_releases_with_random_epsilons_respect_budget(budget: float, choices: list[float]) -> None:
    """Releases of random epsilons against one run budget: each is refused iff it would exceed."""
    acc = PrivacyAccountant(budget)
    releases = {e: PrivateRelease(np.array([0, 1, 1]), 0.01, e, None, accountant=acc) for e in set(choices)}
    x = np.array([0.004, -0.001, 0.02])
    spent = Fraction(0)
    for e in choices:
        pr = releases[e]
        exceeds = spent + Fraction(pr.cost.epsilon) > Fraction(budget)
        result = pr.release(x)
        assert (result is None) == exceeds
        if result is not None:
            spent += Fraction(pr.cost.epsilon)
            assert result.epsilon_spent == acc.epsilon_spent
        assert acc.epsilon_spent <= budget


# --- metrics and validation --------------------------------------------------------------------------------


def test_error_metrics() -> None:
    """MAE and aggregate relative error against given truth."""
    result = ReleaseResult(
        index=0,
        sums_mwh=np.array([1.0, 3.0]),
        counts=np.array([2, 5], dtype=np.int64),
        cost=PrivacyCost(1.0),
        epsilon_spent=1.0,
        delta_spent=0.0,
    )
    m = result.error_metrics([2.0, 2.0], [2, 3])
    assert m == ErrorMetrics(sum_mae_mwh=1.0, sum_relative_error=0.5, count_mae=1.0, count_relative_error=0.4)
    assert math.isnan(result.error_metrics([0.0, 0.0], [0, 0]).sum_relative_error)


def test_invalid_inputs_rejected() -> None:
    """Malformed readings or configuration raise before anything is charged."""
    pr = _release(budget_epsilon=10.0)
    with pytest.raises(ValueError):
        pr.release([0.001, math.nan, 0.0])
    with pytest.raises(ValueError):
        pr.release([0.001, 0.002])
    assert pr.accountant.epsilon_spent == 0.0 and not pr.accountant.charged
    with pytest.raises(ValueError, match="delta"):
        _release(mechanism="gaussian")
    with pytest.raises(ValueError, match="declared"):
        _release(declared_max_mwh=0.0)
    with pytest.raises(ValueError):
        _release(groups=np.array([0, 2]), n_group=2)
    with pytest.raises(ValueError, match="budget_delta"):
        PrivacyAccountant(1.0, 0.0, composition="zcdp")
