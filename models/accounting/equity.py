"""Equity accounting of a study: what every agent paid and earned, its surplus against a tariff, inequality.

Money is $ per interval (``MarketResult.payment``: positive = the agent pays), energy MWh per interval in the
load convention (positive = consumption, so ``award_mw * dt_h``). Nothing here loops over agents in Python.

Accounts (:class:`EquityAccumulator`), per agent, per month and over the study:

- ``bill_usd`` = sum of the positive interval payments, ``revenue_usd`` = sum of the negative ones (as a
  positive number), ``net_cost_usd`` = sum of the payments = bill - revenue. The split is by the sign of
  each interval's net payment of the agent.
- ``energy_bought_mwh`` = sum of the positive interval energies, ``energy_sold_mwh`` = sum of the negative
  ones (as a positive number).
- ``baseline_cost_usd``: what the agent would have paid under the posted time-of-use tariff for the SAME
  energy profile, ``sum_t (max(e_t, 0) * p_t - max(-e_t, 0) * x_t)`` with ``p_t`` the posted price and
  ``x_t`` the export price, by default ``x_t = p_t`` (net metering: injections credited at the posted price,
  as the ``tou`` design does).
- ``surplus_usd`` = baseline_cost - net_cost: positive when the study's design is cheaper for the agent.

Gini coefficient (:func:`gini`), mean-difference form with the population (``n**2``) normalisation::

    G = sum_i sum_j |x_i - x_j| / (2 n**2 mu)

(not the ``n (n - 1)`` "sample" form): ``G([1, 2, 3, 4, 5]) = 4/15 = 0.2667``, ``G([0, 0, 0, 1]) = 0.75``,
and the largest value for ``n`` values is ``(n - 1) / n``. It is computed in ``O(n log n)`` by sorting:
``sum_{i<j} |x_i - x_j| = sum_k (x_(k+1) - x_(k)) k (n - k)`` over the gaps of the sorted values (a sum of
non-negative terms, so no cancellation).

Negative values (a surplus can be negative). ``method="rsv"`` (default) uses the normalisation of Raffinetti,
Siletti and Vernizzi (2015, *Stat. Methods Appl.* 24:507-521, doi:10.1007/s10260-014-0293-4): the mean
``mu`` is replaced by ``mu* = (T+ + T-) / n`` with ``T+`` the sum of the positive values and ``T-`` the
absolute sum of the negative ones, i.e. ``G_RSV = sum_i sum_j |x_i - x_j| / (2 n (T+ + T-))``. This is the
formula of the authors' own implementation (R package GiniWegNeg, ``Gini_RSV``, unit weights); checked
against its source as copied in the R package Rtapas (``gini_RSV``): it equals the ordinary Gini when no
value is negative, is scale invariant (``c > 0``) and symmetric (``G(-x) = G(x)``), and reaches its maximum
``(n - 1) / n`` in the paper's "polarised" case (all the negative total on one agent, all the positive on
another, zero elsewhere). The paper's worked example (0.555, 1 and 0.8346, as quoted by a third-party
implementation; the paper's text was not consulted) is the same quantity times ``n / (n - 1)`` (maximum
exactly 1): we keep the ``n**2`` form throughout, so multiply by ``n / (n - 1)`` to compare.
``method="shift"`` is the explicitly named alternative: the ordinary Gini of ``x - min(x)`` (always in
[0, 1), translation invariant, but it depends on who is worst off).
Degenerate cases: an empty set of values gives NaN; all values zero (``T+ + T- = 0``), or all equal with
``shift``, gives 0 (no dispersion). Any relative Gini of a surplus jumps when ``T+ + T-`` is small (surpluses
scattered around zero), so report :func:`absolute_gini` (``sum |x_i - x_j| / (2 n**2)``, in $) beside it.

Fairness rule (:func:`redistribute`): a pot of money (congestion rent, a share of welfare) is handed back
either by levelling up the lowest surpluses to a common floor (``rule="level_up"``, a progressive rebate)
or in proportion to welfare weights (``rule="proportional"``). The transfers sum to the pot up to floating
rounding; :func:`round_to_cents` turns them into whole cents that sum to the pot exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
GiniMethod = Literal["rsv", "shift"]
RedistributionRule = Literal["level_up", "proportional"]

# quantities accumulated per month and agent, in this order along axis 1 of the accumulator's array
_BILL, _REVENUE, _NET, _BOUGHT, _SOLD, _BASELINE = range(6)
_N_QUANTITY = 6
_DENSE_MEMBER_MAX = 2**21  # agent-unit pairs up to which `by_unit` uses the dense membership matrix (16 MB)


def _finite(name: str, values: np.ndarray) -> None:
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{name} has NaN or infinite values")


# --------------------------------------------------------------------------------------------- Gini, Lorenz


def _half_abs_diff(sorted_rows: FloatArray) -> FloatArray:
    """``sum_{i<j} |x_i - x_j|`` of every row of an array sorted along axis 1, from the gaps (all >= 0)."""
    n = sorted_rows.shape[1]
    k = np.arange(1, n, dtype=np.float64)
    result: FloatArray = np.diff(sorted_rows, axis=1) @ (k * (n - k))
    return result


def gini_rows(values: ArrayLike, method: GiniMethod = "rsv") -> FloatArray:
    """Gini coefficient of every row of a 2-D array (e.g. one row per month, one column per agent).

    Parameters
    ----------
    values : (m, n) finite values, the Gini is taken over each row's ``n`` values
    method : ``rsv`` (Raffinetti-Siletti-Vernizzi normalisation, equal to the ordinary Gini for
        non-negative rows) or ``shift`` (ordinary Gini of the row minus its minimum); see the module doc

    Returns
    -------
    (m,) Gini coefficients in ``[0, (n - 1) / n]``; NaN for rows of zero length, 0 for rows of zeros
    (``rsv``) or of equal values (``shift``).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"values must be 2-D, got shape {x.shape}")
    if method not in ("rsv", "shift"):
        raise ValueError(f"unknown Gini method {method!r} (rsv or shift)")
    _finite("values", x)
    m, n = x.shape
    if n == 0:
        return np.full(m, np.nan)
    xs = np.sort(x, axis=1)
    half_abs_diff = _half_abs_diff(xs)
    if method == "shift":
        scale = np.sum(xs - xs[:, :1], axis=1)
    else:
        scale = np.sum(np.abs(xs), axis=1)  # T+ + T-
    out = np.zeros(m)
    spread = scale > 0
    out[spread] = half_abs_diff[spread] / (n * scale[spread])
    return out


def gini(values: ArrayLike, method: GiniMethod = "rsv") -> float:
    """Gini coefficient of a 1-D set of values, ``sum_i sum_j |x_i - x_j| / (2 n**2 mu)`` (``n**2`` form).

    Parameters
    ----------
    values : (n,) finite values, e.g. surplus [$] or bills [$] of the agents
    method : ``rsv`` (default): ``mu`` is ``(T+ + T-) / n`` (Raffinetti, Siletti and Vernizzi 2015), which is
        the ordinary mean for non-negative values; ``shift``: ordinary Gini of ``values - min(values)``

    Returns
    -------
    Gini in ``[0, (n - 1) / n]``: 0 when all values are zero (or equal, for ``shift``), NaN when empty.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    return float(gini_rows(x[None, :], method)[0])


def absolute_gini(values: ArrayLike) -> float:
    """Absolute Gini ``sum_i sum_j |x_i - x_j| / (2 n**2)``, in the units of the values (e.g. $).

    Half the mean absolute difference: the Gini times the mean for non-negative values. Unlike the relative
    Gini it is translation invariant and needs no normalisation when values are negative or sum to about
    zero, so it complements :func:`gini` for surpluses. NaN when empty.

    Parameters
    ----------
    values : (n,) finite values
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {x.shape}")
    _finite("values", x)
    n = len(x)
    if n == 0:
        return float("nan")
    return float(_half_abs_diff(np.sort(x)[None, :])[0]) / n**2


def lorenz_curve(values: ArrayLike, shift: bool = False) -> tuple[FloatArray, FloatArray]:
    """Lorenz curve: cumulative population share against cumulative share of the total, poorest first.

    Parameters
    ----------
    values : (n,) finite values, n >= 1
    shift : take ``values - min(values)`` (the curve of the ``shift`` Gini)

    Returns
    -------
    population_share : (n + 1,) ``0, 1/n, ..., 1``
    total_share : (n + 1,) cumulative sum of the sorted values over their total, from 0 to exactly 1.
        For non-negative values it is non-decreasing and convex and ``1 - 2 * area`` under it (trapezoids) is
        the Gini. Negative values make it dip below 0 (still convex, still ending at 1). All values zero (or
        equal, with ``shift``) give the line of equality; a total of zero or less otherwise gives NaN.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"values must be 1-D and non-empty, got shape {x.shape}")
    _finite("values", x)
    if shift:
        x = x - x[0]
    n = len(x)
    population = np.arange(n + 1, dtype=np.float64) / n
    cumulative = np.concatenate([[0.0], np.cumsum(x)])
    total = cumulative[-1]
    if total > 0:
        share = cumulative / total
        share[-1] = 1.0
    elif not np.any(x):
        share = population.copy()
    else:
        share = np.full(n + 1, np.nan)
    return population, share


# --------------------------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class AgentAccounts:
    """Money and energy of every agent: arrays (n_agent,) over the study or (n_month, n_agent) per month."""

    bill_usd: FloatArray  # paid, sum of positive interval payments
    revenue_usd: FloatArray  # received, sum of negative interval payments (positive number)
    net_cost_usd: FloatArray  # bill - revenue (sum of the payments)
    energy_bought_mwh: FloatArray  # sum of positive interval energies
    energy_sold_mwh: FloatArray  # sum of negative interval energies (positive number)
    baseline_cost_usd: FloatArray  # what the same energy profile costs under the posted tariff
    surplus_usd: FloatArray  # baseline_cost - net_cost, positive = better off than under the tariff


QUANTITIES: tuple[str, ...] = tuple(f.name for f in fields(AgentAccounts))


def study_month_of_step(times_s: ArrayLike) -> IntArray:
    """Month index of every step: 0 for the calendar month (UTC) of the first step, then 1, 2, ...

    Parameters
    ----------
    times_s : (T,) Unix seconds of each step start, in order
    """
    month = np.asarray(times_s, dtype=np.int64).astype("datetime64[s]").astype("datetime64[M]")
    index = month.astype(np.int64)
    return index - index[0] if len(index) else index


class EquityAccumulator:
    """Per-agent accounts of a study, fed one step at a time (:meth:`add`) or by blocks (:meth:`add_many`).

    Each step may be added once; steps may come in any order. Totals are sums of the monthly arrays.

    Parameters
    ----------
    n_agent : number of agents (columns of payments and energies)
    month_of_step : (T,) month index (>= 0) of every step of the study, e.g. :func:`study_month_of_step`
    n_month : number of months (default ``max(month_of_step) + 1``)
    """

    def __init__(self, n_agent: int, month_of_step: ArrayLike, n_month: int | None = None) -> None:
        self.month_of_step = np.asarray(month_of_step, dtype=np.int64)
        if self.month_of_step.ndim != 1 or np.any(self.month_of_step < 0):
            raise ValueError("month_of_step must be a 1-D array of month indices >= 0")
        top = int(self.month_of_step.max()) + 1 if len(self.month_of_step) else 0
        self.n_month = top if n_month is None else int(n_month)
        if self.n_month < top:
            raise ValueError(f"n_month={self.n_month} but month_of_step reaches month {top - 1}")
        self.n_agent, self.n_step = int(n_agent), len(self.month_of_step)
        self._acc = np.zeros((self.n_month, _N_QUANTITY, self.n_agent))
        self._seen = np.zeros(self.n_step, dtype=bool)

    @classmethod
    def from_arrays(
        cls,
        payment_usd: ArrayLike,
        energy_mwh: ArrayLike,
        baseline_price_per_mwh: ArrayLike,
        month_of_step: ArrayLike | None = None,
        export_price_per_mwh: ArrayLike | None = None,
    ) -> EquityAccumulator:
        """Accounts of a whole study: (T, n_agent) payments [$] and energies [MWh], (T,) prices [$/MWh].

        ``month_of_step`` defaults to one month for the whole study.
        """
        payment = np.asarray(payment_usd, dtype=np.float64)
        if payment.ndim != 2:
            raise ValueError(f"payment_usd must be (T, n_agent), got shape {payment.shape}")
        n_step, n_agent = payment.shape
        months = np.zeros(n_step, np.int64) if month_of_step is None else month_of_step
        acc = cls(n_agent, months)
        acc.add_many(np.arange(n_step), payment, energy_mwh, baseline_price_per_mwh, export_price_per_mwh)
        return acc

    def add(
        self,
        step: int,
        payment_usd: ArrayLike,
        energy_mwh: ArrayLike,
        baseline_price_per_mwh: float,
        export_price_per_mwh: float | None = None,
    ) -> None:
        """Add one step.

        Parameters
        ----------
        step : step index in ``[0, T)``
        payment_usd : (n_agent,) $ paid in the interval, positive = pays (``MarketResult.payment``)
        energy_mwh : (n_agent,) net energy of the interval, positive = consumption (``award_mw * dt_h``)
        baseline_price_per_mwh : posted tariff price of the step
        export_price_per_mwh : price credited for injections under the baseline (default: the posted price,
            net metering)
        """
        step = int(step)
        if not 0 <= step < self.n_step:
            raise IndexError(f"step {step} outside the study's {self.n_step} steps")
        if self._seen[step]:
            raise ValueError(f"step {step} was already added")
        payment = np.asarray(payment_usd, dtype=np.float64)
        energy = np.asarray(energy_mwh, dtype=np.float64)
        price = float(baseline_price_per_mwh)
        export = price if export_price_per_mwh is None else float(export_price_per_mwh)
        if payment.shape != (self.n_agent,) or energy.shape != (self.n_agent,):
            raise ValueError(f"payment and energy must be ({self.n_agent},)")
        _finite("payment_usd", payment)
        _finite("energy_mwh", energy)
        _finite("prices", np.array([price, export]))
        self._acc[self.month_of_step[step]] += _quantities(payment, energy, price, export)
        self._seen[step] = True

    def add_many(
        self,
        steps: ArrayLike,
        payment_usd: ArrayLike,
        energy_mwh: ArrayLike,
        baseline_price_per_mwh: ArrayLike,
        export_price_per_mwh: ArrayLike | None = None,
    ) -> None:
        """Add a block of steps: (k,) distinct step indices, (k, n_agent) payments and energies, (k,) prices.

        Same conventions as :meth:`add`; the result equals adding the steps one by one (up to the order of
        floating-point sums, which is the same within a month when steps are given in increasing order).
        """
        step = np.asarray(steps, dtype=np.int64)
        payment = np.asarray(payment_usd, dtype=np.float64)
        energy = np.asarray(energy_mwh, dtype=np.float64)
        price = np.asarray(baseline_price_per_mwh, dtype=np.float64)
        export = price if export_price_per_mwh is None else np.asarray(export_price_per_mwh, np.float64)
        k = len(step)
        if step.ndim != 1 or np.any(step < 0) or np.any(step >= self.n_step):
            raise IndexError(f"steps must be 1-D indices in [0, {self.n_step})")
        if len(np.unique(step)) != k or np.any(self._seen[step]):
            raise ValueError("steps must be distinct and not added before")
        if payment.shape != (k, self.n_agent) or energy.shape != (k, self.n_agent):
            raise ValueError(f"payment and energy must be ({k}, {self.n_agent})")
        if price.shape != (k,) or export.shape != (k,):
            raise ValueError(f"prices must be ({k},)")
        _finite("payment_usd", payment)
        _finite("energy_mwh", energy)
        _finite("prices", np.concatenate([price, export]))
        q = _quantities(payment, energy, price[:, None], export[:, None])  # (6, k, n_agent)
        np.add.at(self._acc, self.month_of_step[step], np.moveaxis(q, 0, 1))
        self._seen[step] = True

    @property
    def steps_per_month(self) -> IntArray:
        """(n_month,) number of steps added in each month."""
        return np.bincount(self.month_of_step[self._seen], minlength=self.n_month).astype(np.int64)

    @property
    def complete(self) -> bool:
        """Every step of the study was added."""
        return bool(self._seen.all())

    def monthly(self) -> AgentAccounts:
        """Accounts per month, every array (n_month, n_agent)."""
        return _accounts(self._acc.copy())

    def total(self) -> AgentAccounts:
        """Accounts over the study (sum of the months), every array (n_agent,)."""
        return _accounts(self._acc.sum(axis=0))

    def gini_by_month(
        self,
        quantity: str = "surplus_usd",
        method: GiniMethod = "rsv",
        agents: ArrayLike | None = None,
    ) -> FloatArray:
        """(n_month,) Gini of one quantity across agents in each month; NaN for months without any step.

        Parameters
        ----------
        quantity : a field of :class:`AgentAccounts`, e.g. ``surplus_usd`` or ``bill_usd``
        method : see :func:`gini`
        agents : index or boolean mask of the agents to compare (default all), e.g. the households only
        """
        if quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {quantity!r}: one of {QUANTITIES}")
        values: FloatArray = getattr(self.monthly(), quantity)
        if agents is not None:
            values = values[:, np.asarray(agents)]
        out = gini_rows(values, method)
        out[self.steps_per_month == 0] = np.nan
        return out


def _quantities(
    payment: FloatArray, energy: FloatArray, price: float | FloatArray, export: float | FloatArray
) -> FloatArray:
    """The accumulated quantities of one or many steps, stacked on a new axis 0 in ``_BILL..`` order.

    The differences ``max(v, 0) - v`` are exact, so with ``export == price`` the baseline cost of an
    interval is exactly ``energy * price``.
    """
    bill = np.maximum(payment, 0.0)
    bought = np.maximum(energy, 0.0)
    sold = bought - energy
    baseline = bought * price - sold * export
    return np.stack([bill, bill - payment, payment, bought, sold, baseline])


def _accounts(acc: FloatArray) -> AgentAccounts:
    """:class:`AgentAccounts` from an array with the quantities on axis -2."""
    net, baseline = acc[..., _NET, :], acc[..., _BASELINE, :]
    return AgentAccounts(
        bill_usd=acc[..., _BILL, :],
        revenue_usd=acc[..., _REVENUE, :],
        net_cost_usd=net,
        energy_bought_mwh=acc[..., _BOUGHT, :],
        energy_sold_mwh=acc[..., _SOLD, :],
        baseline_cost_usd=baseline,
        surplus_usd=baseline - net,
    )


# --------------------------------------------------------------------------------------------- fairness rule


def redistribute(
    surplus_usd: ArrayLike,
    pot_usd: float,
    weights: ArrayLike | None = None,
    rule: RedistributionRule = "level_up",
) -> FloatArray:
    """Share a pot of money among agents; the transfers sum to the pot (up to floating rounding).

    Parameters
    ----------
    surplus_usd : (n,) surplus of each agent before the transfer [$]
    pot_usd : money to hand out [$] (e.g. the congestion rent); negative = money to collect
    weights : (n,) welfare weights, default all 1.
        ``level_up``: the fraction in [0, 1] of its gap to the floor that each agent receives; 1 for the
        eligible agents and 0 for the others turns a low-income flag into an eligibility mask.
        ``proportional``: any non-negative weights; the pot is split in their proportion.
    rule : ``level_up`` (default, progressive): a floor ``L`` is found such that
        ``t_i = w_i * max(L - s_i, 0)`` sums to the pot, so the money goes to the lowest surpluses first
        (a negative pot is collected symmetrically from the highest surpluses, down to a ceiling).
        ``proportional``: ``t_i = pot * w_i / sum(w)`` whatever the surplus (a lump-sum rebate).

    Returns
    -------
    (n,) transfers [$], positive = the agent receives; their sum equals ``pot_usd`` up to rounding (use
    :func:`round_to_cents` for an exactly balanced settlement).

    Notes
    -----
    With all weights equal to 1 and a pot >= 0, ``level_up`` never lowers anyone's surplus, keeps the
    order of the surpluses and never increases any ``|s_i - s_j|``: the :func:`absolute_gini` never
    increases, whatever the signs, and neither does the Gini of non-negative surpluses (the sum of absolute
    differences falls and the total rises). With negative surpluses the relative (RSV) Gini can still rise:
    lifting a negative surplus towards zero also shrinks its normaliser ``T+ + T-`` (e.g. surpluses
    ``[-2, 1, -2, -2]`` and a pot of 6 give ``[0, 1, 0, 0]``: RSV Gini 0.32 -> 0.75 while the absolute Gini
    falls from 0.56 to 0.19 $). With unequal weights an eligible agent may overtake an ineligible one, and
    ``proportional`` ignores the surplus, so no decrease is guaranteed for them.
    """
    s = np.asarray(surplus_usd, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"surplus_usd must be 1-D, got shape {s.shape}")
    w = np.ones_like(s) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != s.shape:
        raise ValueError(f"weights must have the shape of surplus_usd {s.shape}")
    _finite("surplus_usd", s)
    _finite("weights", w)
    pot = float(pot_usd)
    if not np.isfinite(pot):
        raise ValueError("pot_usd must be finite")
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    if pot == 0.0:
        return np.zeros_like(s)
    if not np.any(w > 0):
        raise ValueError("no agent has a positive weight to receive the pot")
    if rule == "proportional":
        transfers = pot * (w / w.sum())
    elif rule == "level_up":
        if np.any(w > 1):
            raise ValueError("level_up weights must be in [0, 1]")
        transfers = _level_up(s, pot, w) if pot > 0 else -_level_up(-s, -pot, w)
    else:
        raise ValueError(f"unknown redistribution rule {rule!r} (level_up or proportional)")
    return transfers


def _level_up(s: FloatArray, pot: float, w: FloatArray) -> FloatArray:
    """Transfers ``w_i * max(L - s_i, 0)`` summing to ``pot > 0``, floor ``L`` solved exactly by sorting."""
    eligible = np.flatnonzero(w > 0)
    order = eligible[np.argsort(s[eligible], kind="stable")]
    s_sorted, w_sorted = s[order], w[order]
    w_cum, ws_cum = np.cumsum(w_sorted), np.cumsum(w_sorted * s_sorted)
    # cost of lifting everyone below s_sorted[k] up to it: piecewise linear and non-decreasing in k
    cost_at = s_sorted * np.r_[0.0, w_cum[:-1]] - np.r_[0.0, ws_cum[:-1]]
    k = int(np.searchsorted(np.maximum.accumulate(cost_at), pot, side="right")) - 1
    floor = (pot + ws_cum[k]) / w_cum[k]
    transfers = np.zeros_like(s)
    transfers[order] = w_sorted * np.maximum(floor - s_sorted, 0.0)
    return transfers


def round_to_cents(amounts_usd: ArrayLike, total_usd: float) -> IntArray:
    """Whole cents that sum exactly to ``round(100 * total_usd)``, by the largest-remainder method.

    Parameters
    ----------
    amounts_usd : (n,) amounts [$] summing to ``total_usd`` up to rounding (e.g. :func:`redistribute`)
    total_usd : the total [$] to preserve

    Returns
    -------
    (n,) int64 cents: each amount rounded down or up to a whole cent, the ones with the largest fractions of
    a cent rounded up, so that the sum is exact.
    """
    cents = 100.0 * np.asarray(amounts_usd, dtype=np.float64)
    _finite("amounts_usd", cents)
    total = round(100.0 * float(total_usd))
    base = np.floor(cents).astype(np.int64)
    missing = total - int(base.sum())
    if not 0 <= missing <= len(cents):
        raise ValueError(f"amounts sum to {cents.sum() / 100:.2f} $, not to the total {total / 100:.2f} $")
    up = np.argsort(-(cents - base), kind="stable")[:missing]
    base[up] += 1
    return base


def by_unit(values: ArrayLike, unit_of: ArrayLike, n_unit: int) -> FloatArray:
    """Sum agent values over units (e.g. households): (..., n_agent) -> (..., n_unit).

    ``unit_of`` (n_agent,) gives each agent's unit in ``[0, n_unit)``, or -1 for an agent in none (left out).
    Up to ``_DENSE_MEMBER_MAX`` agent-unit pairs the sum is a product with the dense 0/1 membership matrix;
    beyond (8,265 agents in 4,623 households would take 306 MB) it is summed in agent order without it:
    the same sums, which may differ in the last bit (another order of addition).
    """
    v = np.asarray(values, dtype=np.float64)
    unit = np.asarray(unit_of, dtype=np.int64)
    if unit.shape != v.shape[-1:]:
        raise ValueError(f"unit_of must have one entry per agent ({v.shape[-1]}), got shape {unit.shape}")
    if np.any(unit >= n_unit) or np.any(unit < -1):
        raise ValueError(f"unit_of must be in [-1, {n_unit})")
    inside = unit >= 0
    if len(unit) * n_unit > _DENSE_MEMBER_MAX:
        rows = v.reshape(-1, len(unit))[:, inside]
        flat = (np.arange(len(rows))[:, None] * n_unit + unit[inside]).ravel()
        sums = np.bincount(flat, rows.ravel(), minlength=len(rows) * n_unit)  # float64 with weights
        return np.asarray(sums, dtype=np.float64).reshape(v.shape[:-1] + (n_unit,))
    member = np.zeros((len(unit), n_unit))
    member[np.flatnonzero(inside), unit[inside]] = 1.0
    return np.asarray(v @ member)


def study_outputs(
    acc: EquityAccumulator,
    beneficiary: ArrayLike,
    rule: Literal["none", "level_up", "proportional"] = "none",
    levy_per_mwh: float = 0.0,
    unit_of: ArrayLike | None = None,
    n_unit: int | None = None,
) -> dict[str, FloatArray | float]:
    """What a study reports on equity, after the fairness rule, month by month.

    With ``unit_of`` (n_agent,) and ``n_unit`` the accounts are first summed over units (households: a
    household's load and the PV, battery and EV behind its meter; agents with -1 are left out), a unit
    is a beneficiary when any of its agents is, and everything below is per unit instead of per agent.

    The rule charges ``levy_per_mwh`` on every MWh an agent consumes in a month and hands that month's
    pot back to the ``beneficiary`` agents (``redistribute`` with their flags as weights), so money is
    conserved; ``transfer`` is each agent's net result of the rule (received minus levy).

    Returns
    -------
    per agent (n_agent,): ``surplus``, ``bill``, ``revenue``, ``net_cost``, ``baseline_cost``, ``transfer``,
    ``energy_bought_mwh``, ``energy_sold_mwh``; per month (n_month,): ``gini``, ``gini_bill``; ``lorenz``
    (n_agent + 1, 2) of surplus, or of ``surplus - min`` when the total surplus is not positive
    (``lorenz_shifted`` 1); scalars ``gini_surplus``, ``gini_bill_study``, ``absolute_gini_surplus``.
    """
    m = acc.monthly()
    if unit_of is not None:
        if n_unit is None:
            raise ValueError("n_unit is needed with unit_of")
        m = AgentAccounts(*(by_unit(getattr(m, f.name), unit_of, n_unit) for f in fields(m)))
        beneficiary = by_unit(np.asarray(beneficiary, dtype=float), unit_of, n_unit) > 0
    levy = levy_per_mwh * m.energy_bought_mwh
    transfer = -levy
    if rule != "none":
        weights = np.asarray(beneficiary, dtype=float)
        for k in range(acc.n_month):  # a dozen months
            transfer[k] += redistribute(m.surplus_usd[k] - levy[k], float(levy[k].sum()), weights, rule)
    surplus_month = m.surplus_usd + transfer
    surplus = surplus_month.sum(axis=0)
    bill = m.bill_usd.sum(axis=0)
    shifted = bool(surplus.sum() <= 0)  # no positive total to share: the curve of surplus - min
    population, share = lorenz_curve(surplus, shift=shifted)
    return {
        "surplus": surplus,
        "bill": bill,
        "revenue": m.revenue_usd.sum(axis=0),
        "net_cost": m.net_cost_usd.sum(axis=0) - transfer.sum(axis=0),
        "baseline_cost": m.baseline_cost_usd.sum(axis=0),
        "transfer": transfer.sum(axis=0),
        "energy_bought_mwh": m.energy_bought_mwh.sum(axis=0),
        "energy_sold_mwh": m.energy_sold_mwh.sum(axis=0),
        "gini": gini_rows(surplus_month),
        "gini_bill": gini_rows(m.bill_usd),
        "lorenz": np.column_stack([population, share]),
        "lorenz_shifted": float(shifted),
        "gini_surplus": gini(surplus),
        "gini_bill_study": gini(bill),
        "absolute_gini_surplus": absolute_gini(surplus),
    }
