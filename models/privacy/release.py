"""Differentially private release of per-group aggregates of metered consumption, and its accountant.

Each interval, :class:`PrivateRelease` publishes two series per group (bus or feeder): the total metered
consumption in MWh and the number of active prosumers. The noise is added by OpenDP measurements built once
at construction and invoked every interval; :class:`PrivacyAccountant` composes the cost of the releases
over a run and refuses any release that would exceed the budget.

Privacy unit
    One agent's metered consumption in one interval. Neighbouring datasets differ by adding or removing one
    agent (OpenDP ``SymmetricDistance``, ``d_in = 1``). Every cost below is an OpenDP privacy map evaluated
    at the input distance of one agent. The released values are clamped to ``[0, D_g]`` and an agent's
    group is fixed. Changing one agent's reading therefore moves each series by no more than adding or
    removing that agent does.

Sensitivity
    ``D_g`` is the largest declared maximum consumption per interval of the agents in group ``g``. Declared
    maxima come from configuration and never from the data. Each reading is first clipped to its own
    agent's declared maximum, which is public, so the clip acts on one record at a time. Negative readings
    of net producers are clipped to 0: the series is gross consumption, and exports are not released. The
    sums are built one of two ways (``sum_method``):

    ``"per_group"`` (default)
        One OpenDP chain per group, ``clamp(0, D_g) >> sum >> noise``, with sensitivity ``D_g``. OpenDP
        checks the clamp, the float sum (its map adds a ~1e-8 relative allowance for rounding) and the noise.
        Each interval makes ``n_group`` invocations.
    ``"vector"``
        Each reading becomes an integer number of units ``D_g / 2**20``, clamped to ``[0, 2**20]``, and the
        units are summed exactly per group in numpy (int64). One OpenDP measurement then adds integer noise
        to the whole vector, with L1 (Laplace) or L2 (Gaussian) sensitivity ``2**20``, because one agent
        moves one group's sum. Each interval makes a single invocation: much faster with many groups.
        OpenDP checks only the noise; the clamp and the exact integer sum are ours. The quantisation error
        is at most ``D_g / 2**21`` per agent.

    The count is OpenDP's ``count_by_categories`` over each agent's label (its group if active, else none),
    with sensitivity 1.

Accounting per interval
    One call to :meth:`PrivateRelease.release` costs at most ``epsilon`` (and ``delta``) for the whole
    release vector: both series in all groups. ``epsilon`` is split between the sums (``sum_share``) and the
    counts (the rest). The two series read the same data, so they compose sequentially. The groups are
    disjoint, so the per-group sums compose in parallel. With ``"per_group"`` the sums vector costs the
    largest per-group cost; each group's noise is calibrated to its own ``D_g``, so every group costs
    ``epsilon * sum_share``. With ``"vector"``, and for the counts, OpenDP's own map of the single
    measurement already covers the group structure. The charge therefore does not depend on the number of
    groups.

Composition over a run
    ``"basic"`` sequential composition adds up epsilons and deltas. ``"zcdp"`` adds up zero-concentrated DP
    parameters ``rho``: the Gaussian's own rho, or ``epsilon**2 / 2`` for pure DP. It then converts the total
    to ``(epsilon, budget_delta)`` with OpenDP's zCDP-to-approximate-DP conversion (Canonne, Kamath and
    Steinke 2020), evaluated in closed form (`cks20_epsilon`, equal to OpenDP's to 1e-9); OpenDP's own
    ``delta(epsilon)`` decides every release near or over the budget. Over thousands of
    Gaussian releases this is far tighter than the basic sum. Sums are kept as exact rationals and rounded up
    when reported, so a run never over-spends through floating-point rounding.

Randomness (``noise``)
    The noise scales always come from OpenDP's privacy maps and the accountant is the same; only the
    sampler differs.

    ``"secure"`` (the default here)
        OpenDP samples the noise from a cryptographically secure generator inside its Rust core, with exact
        samplers (no floating-point attacks). It cannot be seeded, so releases are not reproducible. Use it
        to release real data.
    ``"seeded"`` (the default of a scenario)
        The study's seeded ``numpy.random.Generator`` draws from the distribution of OpenDP's mechanism at
        the calibrated scale: continuous Laplace or Gaussian on the float sums (``"per_group"``), discrete
        Laplace (the difference of two geometric variables) or discrete Gaussian (Canonne, Kamath and
        Steinke 2020, Algorithm 3) on the integer sums (``"vector"``) and the counts. The same seed gives
        bit-identical releases. numpy's generator is not cryptographically secure and its float samplers
        are open to floating-point attacks (Mironov 2012): fine for studying a mechanism on simulated data,
        not for releasing real data.

Cost
    OpenDP's samplers are exact (no floating-point attacks), at about 15-30 us per noise draw, and each
    invocation from Python costs about 0.15-0.3 ms. Median per interval, 74 agents, on a busy 2-core
    machine: ``"per_group"`` takes 0.5 ms with 1 group, 1.5 ms with 5 and 8 ms with 44 (Laplace; up to
    16 ms for the Gaussian). ``"vector"`` takes 0.5 ms with 1 or 5 groups and 1.2-2.5 ms with 44.
    ``noise="seeded"`` makes no OpenDP invocation per interval: 0.04-0.05 ms with 44 groups, either method.
    ``"zcdp"`` composition adds about 0.1 ms per release (the closed-form conversion takes ~0.04 ms where
    OpenDP's numerical ``epsilon(delta)`` takes 3-6 ms), and ~0.4 ms more for a release near the budget.
    Building the measurements takes 20-60 ms (Laplace) or 100-500 ms (Gaussian), cached per bound and
    budget.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import opendp.prelude as dp
from numpy.typing import ArrayLike, NDArray

dp.enable_features("contrib")  # clamp, sum, count_by_categories, noise and the combinators are "contrib"

Mechanism = Literal["laplace", "gaussian"]
Noise = Literal["seeded", "secure"]
Composition = Literal["basic", "zcdp"]
SumMethod = Literal["per_group", "vector"]
UNITS_PER_BOUND = 2**20  # "vector" sums: integer units per group bound D_g (the L1/L2 sensitivity)
_CLEARLY = 1e-9  # zCDP: a spend this far (relative) below the budget is accepted without asking OpenDP
_BRACKET = 1e-6  # relative half-width of the search bracket around the theoretical noise scale

log = logging.getLogger(__name__)


class PrivacyBudgetExceeded(Exception):
    """A release would take the run over its privacy budget; it was refused and not charged."""

    def __init__(self, cost: PrivacyCost, accountant: PrivacyAccountant) -> None:
        self.cost = cost
        self.epsilon_spent = accountant.epsilon_spent
        self.delta_spent = accountant.delta_spent
        super().__init__(
            f"release of (epsilon={cost.epsilon:.6g}, delta={cost.delta:.3g}) refused: spent "
            f"(epsilon={self.epsilon_spent:.6g}, delta={self.delta_spent:.3g}) of budget "
            f"(epsilon={accountant.budget_epsilon:.6g}, delta={accountant.budget_delta:.3g})"
        )


@dataclass(frozen=True)
class PrivacyCost:
    """The privacy loss of one release, from OpenDP's privacy maps at ``d_in = 1``.

    Attributes
    ----------
    epsilon, delta : float
        The release is ``(epsilon, delta)``-DP (``delta = 0``: pure DP).
    rho : float or None
        The release is ``rho``-zCDP (needed for ``"zcdp"`` composition); pure ``epsilon``-DP implies
        ``epsilon**2 / 2``-zCDP.
    """

    epsilon: float
    delta: float = 0.0
    rho: float | None = None


def _ceil_float(x: Fraction) -> float:
    """The smallest float not below ``x``: accounting rounds up, never down."""
    f = float(x)
    return f if Fraction(f) >= x else math.nextafter(f, math.inf)


def _floor_float(x: Fraction) -> float:
    """The largest float not above ``x``."""
    f = float(x)
    return f if Fraction(f) <= x else math.nextafter(f, -math.inf)


@functools.cache
def _zcdp_reference() -> Any:
    """A unit-scale Gaussian cast to approximate DP: at ``d_in = sqrt(2 rho)`` it is exactly ``rho``-zCDP."""
    gaussian = dp.m.make_gaussian(dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float), 1.0)
    return dp.c.make_zCDP_to_approxDP(gaussian)


def _zcdp_profile(rho: float) -> Any:
    """OpenDP's privacy profile (``epsilon(delta)``, ``delta(epsilon)``) of ``rho``-zCDP, rounded up."""
    d_in = math.nextafter(math.sqrt(2.0 * rho), math.inf)  # the reference's rho is d_in**2 / 2 >= rho
    return _zcdp_reference().map(d_in)


def opendp_epsilon_of_rho(rho: float, delta: float) -> float:
    """The epsilon of ``rho``-zCDP at ``delta`` by OpenDP's own numerical inversion (about 5 ms a call)."""
    return 0.0 if rho == 0.0 else float(_zcdp_profile(rho).epsilon(delta))


_ALPHA_MIN = 1.02  # below, OpenDP's search (alpha >= 1.01) may not reach the optimum: ask OpenDP
_ROUNDING = 1e-12  # relative allowance for the float error of the few operations of the closed form


def cks20_epsilon(rho: float, delta: float) -> tuple[float, float]:
    """The conversion of ``rho``-zCDP to ``(epsilon, delta)``-DP that OpenDP applies, in closed form.

    Canonne, Kamath and Steinke (2020), Proposition 12 and Corollary 13: for every Renyi order ``alpha > 1``,
    ``rho``-zCDP implies ``(epsilon(alpha), delta)``-DP with

        epsilon(alpha) = alpha rho + (ln(1/delta) + (alpha - 1) ln(1 - 1/alpha) - ln(alpha)) / (alpha - 1).

    Its derivative is ``rho - ln(1/(alpha delta)) / (alpha - 1)**2``, whose sign is that of the increasing
    ``rho (alpha - 1)**2 - ln(1/(alpha delta))``: the best order is its root, found here by bisection to
    adjacent floats (about 60 evaluations, ~20 us). Any order gives a valid bound, so an inexact root only
    loosens epsilon; the value is then raised by a relative `_ROUNDING` of its terms, so that it stays an
    upper bound despite float rounding. OpenDP 0.16 inverts the same bound numerically (its
    ``zCDP_to_approxDP`` profile's ``delta(epsilon)`` minimises over the same orders).

    Returns
    -------
    (epsilon, alpha)
        ``epsilon`` may be negative when ``delta`` is large (then 0 holds); ``alpha`` is the order used.
    """
    log_inv_delta = -math.log(delta)
    lo, hi = 1.0, 2.0
    while rho * (hi - 1.0) ** 2 < log_inv_delta - math.log(hi):
        hi *= 2.0
    while True:
        mid = lo + (hi - lo) / 2.0
        if mid in (lo, hi):
            break
        if rho * (mid - 1.0) ** 2 < log_inv_delta - math.log(mid):
            lo = mid
        else:
            hi = mid
    a = hi
    terms = (a * rho, log_inv_delta / (a - 1.0), math.log((a - 1.0) / a), -math.log(a) / (a - 1.0))
    epsilon = math.fsum(terms)
    return epsilon + _ROUNDING * math.fsum(abs(t) for t in terms), a


def epsilon_of_rho(rho: float, delta: float) -> float:
    """The epsilon of ``rho``-zCDP at ``delta``, OpenDP's conversion in closed form (`cks20_epsilon`).

    Equal to OpenDP's numerical ``epsilon(delta)`` to a relative 1e-9 (never below it by more), about 250
    times faster. Falls back to OpenDP when the best Renyi order is too close to 1 for OpenDP's search.

    Parameters
    ----------
    rho : float
        zCDP parameter, ``>= 0``.
    delta : float
        Target delta in ``(0, 1)``.

    Returns
    -------
    float
        ``epsilon`` such that ``rho``-zCDP implies ``(epsilon, delta)``-DP.
    """
    if rho == 0.0:
        return 0.0
    if not (math.isfinite(rho) and rho > 0.0 and 0.0 < delta < 1.0):
        return opendp_epsilon_of_rho(rho, delta)  # OpenDP says what is wrong
    epsilon, alpha = cks20_epsilon(rho, delta)
    if alpha < _ALPHA_MIN or alpha > (max(epsilon, 0.0) + 1.0) / (2.0 * rho) + 2.0:
        return opendp_epsilon_of_rho(rho, delta)  # outside the orders OpenDP searches
    return max(epsilon, 0.0)


class PrivacyAccountant:
    """The privacy budget of a run: composes the costs of the releases and refuses over-spending ones.

    Parameters
    ----------
    budget_epsilon : float
        Total epsilon of the run.
    budget_delta : float
        Total delta of the run (0 for pure DP; must be > 0 with ``composition="zcdp"``).
    composition : {"basic", "zcdp"}
        ``"basic"``: epsilons add up and deltas add up. ``"zcdp"``: rhos add up, and a release is refused
        when the total rho would no longer be ``(budget_epsilon, budget_delta)``-DP by OpenDP's conversion.
        The spend is then reported as ``(epsilon_of_rho(rho, budget_delta), budget_delta)``. The deltas of
        single releases are irrelevant, but every cost must carry a ``rho``.

    Attributes
    ----------
    charged, refused : list of PrivacyCost
        The releases charged and the releases refused, in order.
    """

    def __init__(self, budget_epsilon: float, budget_delta: float = 0.0, composition: Composition = "basic"):
        if not (math.isfinite(budget_epsilon) and budget_epsilon >= 0.0):
            raise ValueError(f"budget_epsilon must be finite and >= 0, got {budget_epsilon}")
        if not 0.0 <= budget_delta < 1.0:
            raise ValueError(f"budget_delta must be in [0, 1), got {budget_delta}")
        if composition not in ("basic", "zcdp"):
            raise ValueError(f"composition must be 'basic' or 'zcdp', got {composition!r}")
        if composition == "zcdp" and budget_delta <= 0.0:
            raise ValueError("zCDP composition converts to (epsilon, delta): budget_delta must be > 0")
        self.budget_epsilon = float(budget_epsilon)
        self.budget_delta = float(budget_delta)
        self.composition: Composition = composition
        self.charged: list[PrivacyCost] = []
        self.refused: list[PrivacyCost] = []
        self._epsilon = Fraction(0)  # exact running sums
        self._delta = Fraction(0)
        self._rho = Fraction(0)
        self._zcdp_epsilon = (Fraction(0), 0.0)  # (rho, its epsilon): the last conversion

    @property
    def epsilon_spent(self) -> float:
        """Epsilon spent so far by the charged releases (rounded up)."""
        if self.composition == "basic":
            return _ceil_float(self._epsilon)
        if self._zcdp_epsilon[0] != self._rho:
            # the charged rho passed the check, so budget_epsilon is valid too if the search lands above it
            eps = min(epsilon_of_rho(_ceil_float(self._rho), self.budget_delta), self.budget_epsilon)
            self._zcdp_epsilon = (self._rho, eps)
        return self._zcdp_epsilon[1]

    @property
    def delta_spent(self) -> float:
        """Delta spent so far by the charged releases (rounded up)."""
        if self.composition == "basic":
            return _ceil_float(self._delta)
        return self.budget_delta if self._rho > 0 else 0.0

    @property
    def rho_spent(self) -> float:
        """Sum of the zCDP rhos of the charged releases that carry one (rounded up)."""
        return _ceil_float(self._rho)

    @property
    def remaining(self) -> float:
        """Epsilon left, rounded down (under zCDP epsilons do not add up: see `would_exceed`)."""
        return max(0.0, _floor_float(Fraction(self.budget_epsilon) - Fraction(self.epsilon_spent)))

    @property
    def remaining_delta(self) -> float:
        """Delta left in the budget (rounded down)."""
        return max(0.0, _floor_float(Fraction(self.budget_delta) - Fraction(self.delta_spent)))

    def would_exceed(self, cost: PrivacyCost) -> bool:
        """Whether charging ``cost`` would take the spend above the budget."""
        if self.composition == "basic":
            eps = self._epsilon + Fraction(cost.epsilon)
            delta = self._delta + Fraction(cost.delta)
            return eps > Fraction(self.budget_epsilon) or delta > Fraction(self.budget_delta)
        if cost.rho is None:
            raise ValueError("zCDP composition needs the rho of every release")
        rho = _ceil_float(self._rho + Fraction(cost.rho))
        if rho == 0.0:
            return False
        # clearly inside: the closed form is an upper bound on epsilon (no OpenDP call, ~20 us)
        if epsilon_of_rho(rho, self.budget_delta) <= self.budget_epsilon * (1.0 - _CLEARLY):
            return False
        # near or over the budget, OpenDP decides: (budget_epsilon, budget_delta)-DP holds iff
        # delta(budget_epsilon) <= budget_delta on its profile
        return float(_zcdp_profile(rho).delta(self.budget_epsilon)) > self.budget_delta

    def charge(self, cost: PrivacyCost) -> None:
        """Charge a release, or refuse it.

        Raises
        ------
        PrivacyBudgetExceeded
            If the release would exceed the budget. It is then recorded in `refused` and not charged,
            so the caller can go on without it.
        """
        if self.would_exceed(cost):
            self.refused.append(cost)
            raise PrivacyBudgetExceeded(cost, self)
        self._epsilon += Fraction(cost.epsilon)
        self._delta += Fraction(cost.delta)
        if cost.rho is not None:
            self._rho += Fraction(cost.rho)
        self.charged.append(cost)


@dataclass(frozen=True)
class _Series:
    """A calibrated OpenDP measurement and its costs at the input distance of one agent."""

    measurement: Any  # dp.Measurement: pure DP (Laplace) or fixed-delta approximate DP (Gaussian)
    scale: float
    epsilon: float
    delta: float
    rho: float


def discrete_laplace(rng: np.random.Generator, scale: float, size: int) -> NDArray[np.int64]:
    """Seeded draws of OpenDP's integer Laplace: ``P(x) ~ exp(-|x| / scale)`` on the integers.

    The difference of two i.i.d. geometric variables of success probability ``1 - exp(-1 / scale)``
    (Inusah and Kozubowski 2006); numpy's geometric counts trials, not failures, and the shifts cancel.
    """
    p = -math.expm1(-1.0 / scale)
    return (rng.geometric(p, size) - rng.geometric(p, size)).astype(np.int64)


def discrete_gaussian(rng: np.random.Generator, scale: float, size: int) -> NDArray[np.int64]:
    """Seeded draws of OpenDP's integer Gaussian: ``P(x) ~ exp(-x**2 / (2 scale**2))`` on the integers.

    Rejection from the discrete Laplace of scale ``t = floor(scale) + 1``, accepting ``y`` with probability
    ``exp(-(|y| - scale**2 / t)**2 / (2 scale**2))`` (Canonne, Kamath and Steinke 2020, Algorithm 3),
    in batches; the draws depend on the generator's state only, so they are reproducible.
    """
    t = math.floor(scale) + 1.0
    out: list[NDArray[np.int64]] = []
    missing = size
    while missing > 0:
        n = 2 * missing + 8  # acceptance is 0.44-0.76 (higher for larger scales); redraw what is missing
        y = discrete_laplace(rng, t, n)
        keep = y[rng.random(n) < np.exp(-((np.abs(y) - scale**2 / t) ** 2) / (2.0 * scale**2))][:missing]
        out.append(keep)
        missing -= keep.size
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def seeded_noise(
    rng: np.random.Generator,
    mechanism: Mechanism,
    scale: float | NDArray[np.float64],
    integer: bool,
    size: int,
) -> NDArray[Any]:
    """Seeded draws from the distribution of OpenDP's ``then_laplace``/``then_gaussian`` at ``scale``.

    Float inputs get continuous Laplace or Gaussian noise (``scale`` may be one per draw); integer inputs
    get the discrete Laplace or discrete Gaussian OpenDP uses on integers (one ``scale``).
    """
    if integer:
        draw = discrete_laplace if mechanism == "laplace" else discrete_gaussian
        return draw(rng, float(scale), size)
    if mechanism == "laplace":
        return rng.laplace(0.0, scale, size)
    return rng.normal(0.0, scale, size)


def _noise(mechanism: Mechanism, scale: float) -> Any:
    return dp.m.then_laplace(scale) if mechanism == "laplace" else dp.m.then_gaussian(scale)


def _sum_chain(bound_mwh: float, mechanism: Mechanism, scale: float) -> Any:
    """``clamp(0, bound) >> sum >> noise`` over the readings (MWh) of one group's agents."""
    space = (dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance())
    return space >> dp.t.then_clamp((0.0, bound_mwh)) >> dp.t.then_sum() >> _noise(mechanism, scale)


def _vector_chain(mechanism: Mechanism, scale: float) -> Any:
    """Integer noise on the vector of per-group sums in units (sensitivity ``UNITS_PER_BOUND``)."""
    metric = dp.l1_distance(T="i64") if mechanism == "laplace" else dp.l2_distance(T="i64")
    return (dp.vector_domain(dp.atom_domain(T="i64")), metric) >> _noise(mechanism, scale)


def _count_chain(n_group: int, mechanism: Mechanism, scale: float) -> Any:
    """``count_by_categories(0..n_group-1) >> noise`` over one label per agent (-1: not active)."""
    space = (dp.vector_domain(dp.atom_domain(T=int)), dp.symmetric_distance())
    metric = dp.L1Distance[int] if mechanism == "laplace" else dp.L2Distance[int]
    counts = dp.t.then_count_by_categories(categories=list(range(n_group)), null_category=False, MO=metric)
    return space >> counts >> _noise(mechanism, scale)


def _calibrate(
    make_chain: Callable[[float], Any],
    mechanism: Mechanism,
    epsilon: float,
    delta: float,
    guess: float,
    d_in: int = 1,
) -> _Series:
    """The smallest noise scale whose OpenDP map at ``d_in`` is within ``(epsilon, delta)``.

    The search starts in a narrow bracket around the theoretical scale ``guess`` and widens to OpenDP's
    full search if the boundary lies outside it.
    """

    def make(scale: float) -> Any:
        if mechanism == "laplace":
            return make_chain(scale)
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(make_chain(scale)), delta)

    d_out: Any = epsilon if mechanism == "laplace" else (epsilon, delta)
    try:
        bracket = (guess * (1.0 - _BRACKET), guess * (1.0 + _BRACKET))
        scale = dp.binary_search_param(make, d_in=d_in, d_out=d_out, bounds=bracket, T=float)
    except ValueError:
        scale = dp.binary_search_param(make, d_in=d_in, d_out=d_out, T=float)
    measurement, inner = make(scale), make_chain(scale)
    if mechanism == "laplace":
        eps, dlt = float(measurement.map(d_in)), 0.0
        rho = float(dp.c.make_pureDP_to_zCDP(inner).map(d_in))
    else:
        eps, dlt = (float(v) for v in measurement.map(d_in))
        rho = float(inner.map(d_in))
    return _Series(measurement, scale, eps, dlt, rho)


@functools.cache
def _unit_gaussian_scale(epsilon: float, delta: float) -> float:
    """The Gaussian scale giving ``(epsilon, delta)`` at sensitivity 1 (a guess for the brackets)."""

    def make(scale: float) -> Any:
        space = (dp.atom_domain(T=float, nan=False), dp.absolute_distance(T=float))
        gaussian = dp.m.make_gaussian(*space, scale)
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(gaussian), delta)

    return float(dp.binary_search_param(make, d_in=1.0, d_out=(epsilon, delta), T=float))


def _guess(mechanism: Mechanism, sensitivity: float, epsilon: float, delta: float) -> float:
    if mechanism == "laplace":
        return sensitivity / epsilon  # the textbook Laplace scale D / epsilon
    return sensitivity * _unit_gaussian_scale(epsilon, delta)


@functools.cache
def _sum_series(bound_mwh: float, mechanism: Mechanism, epsilon: float, delta: float) -> _Series:
    """Calibrated noisy sum of one group (cached: built once per bound and budget)."""
    guess = _guess(mechanism, bound_mwh, epsilon, delta)
    return _calibrate(functools.partial(_sum_chain, bound_mwh, mechanism), mechanism, epsilon, delta, guess)


@functools.cache
def _vector_series(mechanism: Mechanism, epsilon: float, delta: float) -> _Series:
    """Calibrated noisy sums of all groups in integer units (cached)."""
    guess = _guess(mechanism, UNITS_PER_BOUND, epsilon, delta)
    chain = functools.partial(_vector_chain, mechanism)
    return _calibrate(chain, mechanism, epsilon, delta, guess, d_in=UNITS_PER_BOUND)


@functools.cache
def _count_series(n_group: int, mechanism: Mechanism, epsilon: float, delta: float) -> _Series:
    """Calibrated noisy counts of all groups (cached)."""
    guess = _guess(mechanism, 1.0, epsilon, delta)
    return _calibrate(functools.partial(_count_chain, n_group, mechanism), mechanism, epsilon, delta, guess)


def _split(total: float, share: float) -> tuple[float, float]:
    """Split ``total`` into two floats in proportion ``share`` whose exact sum does not exceed it."""
    first = total * share
    second = total - first
    while Fraction(first) + Fraction(second) > Fraction(total):
        second = math.nextafter(second, 0.0)
    return first, second


@dataclass(frozen=True)
class ErrorMetrics:
    """Errors of one release against the true (clamped) aggregates.

    The relative errors are ``sum |noisy - true| / sum |true|`` over the groups (NaN if the truth is zero).
    """

    sum_mae_mwh: float
    sum_relative_error: float
    count_mae: float
    count_relative_error: float


def _relative(abs_err: NDArray[np.float64], truth: NDArray[np.float64]) -> float:
    denominator = float(np.abs(truth).sum())
    return float(abs_err.sum()) / denominator if denominator > 0.0 else math.nan


@dataclass(frozen=True)
class ReleaseResult:
    """One interval's private release.

    Attributes
    ----------
    index : int
        Number of the call to `PrivateRelease.release` (0-based; refused calls leave gaps).
    sums_mwh : ndarray of float, shape (n_group,)
        Noisy total consumption per group, MWh.
    counts : ndarray of int, shape (n_group,)
        Noisy number of active prosumers per group (unbiased: may be negative or above the group size).
    cost : PrivacyCost
        The privacy cost of this release.
    epsilon_spent, delta_spent : float
        Cumulative spend of the run's accountant after this release.
    """

    index: int
    sums_mwh: NDArray[np.float64]
    counts: NDArray[np.int64]
    cost: PrivacyCost
    epsilon_spent: float
    delta_spent: float

    def error_metrics(self, true_sums_mwh: ArrayLike, true_counts: ArrayLike) -> ErrorMetrics:
        """Mean absolute and relative errors versus the true aggregates (`PrivateRelease.true_aggregates`)."""
        sums = np.asarray(true_sums_mwh, dtype=float)
        counts = np.asarray(true_counts, dtype=float)
        sum_err = np.abs(self.sums_mwh - sums)
        count_err = np.abs(self.counts - counts)
        return ErrorMetrics(
            sum_mae_mwh=float(sum_err.mean()),
            sum_relative_error=_relative(sum_err, sums),
            count_mae=float(count_err.mean()),
            count_relative_error=_relative(count_err, counts),
        )


class PrivateRelease:
    """Per-interval private release of total consumption and active-prosumer counts per group.

    Parameters
    ----------
    groups : array_like of int, shape (n_agent,)
        Group (bus or feeder) of each agent, in ``0 .. n_group-1``. Public configuration.
    declared_max_mwh : float or array_like of float, shape (n_agent,)
        Declared maximum consumption of each agent per interval, MWh (> 0). Readings are clipped to it.
        It comes from configuration, never from the data.
    epsilon : float
        Epsilon of one interval's whole release (sums and counts, all groups).
    budget_epsilon : float or None
        Epsilon budget of the run. Pass None when you pass a shared ``accountant`` instead.
    mechanism : {"laplace", "gaussian"}
        Laplace: pure ``epsilon``-DP. Gaussian: zCDP, reported as ``(epsilon, delta)``-DP.
    delta : float
        Delta of one interval's release (Gaussian only, in (0, 1); 0 for Laplace).
    budget_delta : float
        Delta budget of the run.
    sum_share : float
        Fraction of ``epsilon`` (and ``delta``) given to the sums; the counts get the rest.
    active_threshold_mwh : float
        An agent is active when its reading is above this (unless ``active`` is given to `release`).
    n_group : int or None
        Number of groups (default ``max(groups) + 1``). An empty group is released with the largest
        declared maximum as its bound.
    composition : {"basic", "zcdp"}
        Composition over the run, for the accountant created here.
    sum_method : {"per_group", "vector"}
        OpenDP clamp and sum per group (``n_group`` invocations per interval), or exact integer sums with
        one vector noise measurement (one invocation); see the module docstring.
    accountant : PrivacyAccountant or None
        A run accountant shared with other releases (then ``budget_*`` and ``composition`` are unused).
    noise : {"secure", "seeded"}
        Who draws the noise at OpenDP's calibrated scales: OpenDP's secure sampler, or ``rng`` with the
        same distributions (reproducible, not for real data; see the module docstring).
    rng : numpy.random.Generator or None
        The seeded generator of ``noise="seeded"``.
    """

    def __init__(
        self,
        groups: ArrayLike,
        declared_max_mwh: float | ArrayLike,
        epsilon: float,
        budget_epsilon: float | None,
        mechanism: Mechanism = "laplace",
        delta: float = 0.0,
        *,
        budget_delta: float = 0.0,
        sum_share: float = 0.5,
        active_threshold_mwh: float = 0.0,
        n_group: int | None = None,
        composition: Composition = "basic",
        sum_method: SumMethod = "per_group",
        accountant: PrivacyAccountant | None = None,
        noise: Noise = "secure",
        rng: np.random.Generator | None = None,
    ) -> None:
        self.groups = np.asarray(groups)
        if self.groups.ndim != 1 or self.groups.size == 0 or not np.issubdtype(self.groups.dtype, np.integer):
            raise ValueError("groups must be a non-empty 1-D integer array")
        self.n_agent = self.groups.size
        self.n_group = int(self.groups.max()) + 1 if n_group is None else int(n_group)
        if self.groups.min() < 0 or self.groups.max() >= self.n_group:
            raise ValueError(f"group indices must be in 0..{self.n_group - 1}")
        declared = np.broadcast_to(np.asarray(declared_max_mwh, dtype=float), self.groups.shape)
        if not (np.all(np.isfinite(declared)) and np.all(declared > 0.0)):
            raise ValueError("declared_max_mwh must be finite and > 0")
        self.declared_max_mwh: NDArray[np.float64] = declared.copy()
        if mechanism not in ("laplace", "gaussian"):
            raise ValueError(f"mechanism must be 'laplace' or 'gaussian', got {mechanism!r}")
        if not (math.isfinite(epsilon) and epsilon > 0.0):
            raise ValueError(f"epsilon must be finite and > 0, got {epsilon}")
        if mechanism == "gaussian" and not 0.0 < delta < 1.0:
            raise ValueError(f"the Gaussian mechanism needs delta in (0, 1), got {delta}")
        if mechanism == "laplace" and delta != 0.0:
            raise ValueError("the Laplace mechanism is pure DP: delta must be 0")
        if not 0.0 < sum_share < 1.0:
            raise ValueError(f"sum_share must be in (0, 1), got {sum_share}")
        if sum_method not in ("per_group", "vector"):
            raise ValueError(f"sum_method must be 'per_group' or 'vector', got {sum_method!r}")
        if noise not in ("seeded", "secure"):
            raise ValueError(f"noise must be 'seeded' or 'secure', got {noise!r}")
        if (noise == "seeded") != (rng is not None):
            raise ValueError("noise='seeded' needs an rng, and only it takes one")
        self.noise: Noise = noise
        self.rng = rng
        if accountant is None:
            if budget_epsilon is None:
                raise ValueError("give budget_epsilon or a shared accountant")
            accountant = PrivacyAccountant(budget_epsilon, budget_delta, composition)
        elif budget_epsilon is not None:
            raise ValueError("give budget_epsilon or a shared accountant, not both")
        self.accountant = accountant
        self.mechanism: Mechanism = mechanism
        self.sum_method: SumMethod = sum_method
        self.active_threshold_mwh = float(active_threshold_mwh)
        self.members = [np.flatnonzero(self.groups == g) for g in range(self.n_group)]
        self.group_bound_mwh = np.array(
            [self.declared_max_mwh[m].max() if m.size else self.declared_max_mwh.max() for m in self.members]
        )
        eps_sum, eps_count = _split(float(epsilon), sum_share)
        delta_sum, delta_count = _split(float(delta), sum_share)
        if sum_method == "per_group":
            self._sums = [_sum_series(float(b), mechanism, eps_sum, delta_sum) for b in self.group_bound_mwh]
        else:
            self._sums = [_vector_series(mechanism, eps_sum, delta_sum)]
        self._unit_mwh = self.group_bound_mwh / UNITS_PER_BOUND  # "vector": MWh per integer unit
        self._counts = _count_series(self.n_group, mechanism, eps_count, delta_count)
        # parallel composition over the disjoint groups (max), sequential over the two series (sum)
        worst = (max(s.epsilon for s in self._sums), max(s.delta for s in self._sums))
        self.cost = PrivacyCost(
            epsilon=_ceil_float(Fraction(worst[0]) + Fraction(self._counts.epsilon)),
            delta=_ceil_float(Fraction(worst[1]) + Fraction(self._counts.delta)),
            rho=_ceil_float(Fraction(max(s.rho for s in self._sums)) + Fraction(self._counts.rho)),
        )
        self.n_calls = 0
        self.n_refused = 0

    @property
    def sum_scales_mwh(self) -> NDArray[np.float64]:
        """Noise scale of each group's sum, MWh (Laplace ``b``, or Gaussian standard deviation)."""
        if self.sum_method == "vector":
            return self._sums[0].scale * self._unit_mwh
        return np.array([s.scale for s in self._sums])

    @property
    def count_scale(self) -> float:
        """Noise scale of the counts (of the discrete Laplace or discrete Gaussian)."""
        return self._counts.scale

    def sum_measurement(self, group: int) -> Any:
        """The OpenDP measurement releasing the sum of ``group``, private at ``d_in = sum_d_in``.

        ``"per_group"``: input is the group's readings, MWh. ``"vector"``: the one measurement of all groups,
        whose input is the vector of per-group sums in units of ``D_g / UNITS_PER_BOUND``.
        """
        return self._sums[0 if self.sum_method == "vector" else group].measurement

    @property
    def sum_d_in(self) -> int:
        """Input distance of `sum_measurement` for one agent added or removed."""
        return UNITS_PER_BOUND if self.sum_method == "vector" else 1

    @property
    def count_measurement(self) -> Any:
        """The OpenDP measurement releasing the counts (input: one label per agent, -1 if not active)."""
        return self._counts.measurement

    def _inputs(
        self, consumption_mwh: ArrayLike, active: ArrayLike | None
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Clipped readings and count labels (group if active, else -1); raise on malformed input."""
        x = np.asarray(consumption_mwh, dtype=float)
        if x.shape != (self.n_agent,) or not np.all(np.isfinite(x)):
            raise ValueError(f"consumption_mwh must be {self.n_agent} finite readings")
        is_active = x > self.active_threshold_mwh if active is None else np.asarray(active, dtype=bool)
        if is_active.shape != (self.n_agent,):
            raise ValueError(f"active must have shape ({self.n_agent},)")
        clipped = np.clip(x, 0.0, self.declared_max_mwh)
        return clipped, np.where(is_active, self.groups, -1).astype(np.int64)

    def true_aggregates(
        self, consumption_mwh: ArrayLike, active: ArrayLike | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """The exact (non-private) clamped sums (MWh) and counts the noise is added to, for evaluation."""
        clipped, labels = self._inputs(consumption_mwh, active)
        sums = np.bincount(self.groups, weights=clipped, minlength=self.n_group).astype(np.float64)
        counts = np.bincount(labels[labels >= 0], minlength=self.n_group).astype(np.int64)
        return sums, counts

    def release(self, consumption_mwh: ArrayLike, active: ArrayLike | None = None) -> ReleaseResult | None:
        """Release one interval, or refuse it if the budget would be exceeded.

        Parameters
        ----------
        consumption_mwh : array_like of float, shape (n_agent,)
            Each agent's metered consumption in the interval, MWh (negative: net export, released as 0).
        active : array_like of bool, shape (n_agent,), optional
            Which agents are active; default ``consumption_mwh > active_threshold_mwh``.

        Returns
        -------
        ReleaseResult or None
            None if the release was refused because of the budget. The refusal is recorded in
            ``accountant.refused`` and `n_refused`, nothing is charged and no noise is drawn.
        """
        clipped, labels = self._inputs(consumption_mwh, active)
        index = self.n_calls
        self.n_calls += 1
        try:
            self.accountant.charge(self.cost)  # charged before the data is touched
        except PrivacyBudgetExceeded as refusal:
            if self.n_refused == 0:
                log.warning("private release refused from interval %d on: %s", index, refusal)
            self.n_refused += 1
            return None
        if self.noise == "seeded":
            sums, counts = self._seeded(clipped, labels)
        else:
            sums, counts = self._secure(clipped, labels)
        return ReleaseResult(
            index=index,
            sums_mwh=sums,
            counts=counts,
            cost=self.cost,
            epsilon_spent=self.accountant.epsilon_spent,
            delta_spent=self.accountant.delta_spent,
        )

    def _unit_totals(self, clipped: NDArray[np.float64]) -> NDArray[np.int64]:
        """``"vector"``: each group's exact sum of readings in integer units of ``D_g / UNITS_PER_BOUND``."""
        units = np.rint(clipped / self._unit_mwh[self.groups])
        units = np.clip(units, 0, UNITS_PER_BOUND).astype(np.int64)  # the clamp the sensitivity rests on
        totals = np.zeros(self.n_group, dtype=np.int64)
        np.add.at(totals, self.groups, units)  # exact integer sums
        return totals

    def _secure(
        self, clipped: NDArray[np.float64], labels: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Noisy sums and counts from OpenDP's measurements (its secure sampler)."""
        if self.sum_method == "per_group":
            groups = zip(self._sums, self.members, strict=True)
            sums = np.array([float(s.measurement(clipped[m].tolist())) for s, m in groups])
        else:
            totals = self._unit_totals(clipped)
            sums = np.asarray(self._sums[0].measurement(totals.tolist()), dtype=np.int64) * self._unit_mwh
        counts = np.asarray(self._counts.measurement(labels.tolist()), dtype=np.int64)
        return sums, counts

    def _seeded(
        self, clipped: NDArray[np.float64], labels: NDArray[np.int64]
    ) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
        """Noisy sums and counts with the seeded generator, at OpenDP's calibrated scales.

        The aggregates are the ones OpenDP's chains compute: the clamped float sums per group
        (``"per_group"``) or the exact integer sums in units (``"vector"``), and the counts of active labels.
        """
        assert self.rng is not None
        n, mech = self.n_group, self.mechanism
        if self.sum_method == "per_group":
            clamped = np.clip(clipped, 0.0, self.group_bound_mwh[self.groups])
            true = np.bincount(self.groups, weights=clamped, minlength=n)
            sums = true + seeded_noise(self.rng, mech, np.array([s.scale for s in self._sums]), False, n)
        else:
            totals = self._unit_totals(clipped) + seeded_noise(self.rng, mech, self._sums[0].scale, True, n)
            sums = totals * self._unit_mwh
        true_counts = np.bincount(labels[labels >= 0], minlength=n).astype(np.int64)
        counts = true_counts + seeded_noise(self.rng, mech, self._counts.scale, True, n)
        return sums, counts
