"""Decentralised copper-plate clearing by ADMM (market design ``admm``): the pure core, no mosaik.

Formulation: the exchange problem of Boyd, Parikh, Chu, Peleato and Eckstein (2011), "Distributed
optimization and statistical learning via the alternating direction method of multipliers", Found.
Trends Mach. Learn. 3(1), section 7.3. Agent ``i`` (the owner of some demand and supply steps,
`Bidder.demand_owner` / `supply_owner`, the upstream grid included) picks its net exchange ``x_i`` [MW].
Sign: Boyd's exchange convention, which is also the load convention of the rest of the market code,
``x_i > 0`` when the agent *receives* energy (net withdrawal = demand - supply = minus net injection);
that is what makes the balance dual a price with the usual sign. The agent's cost is

    f_i(x_i) = min { sum_j c_j(q_j) : sum over its steps of a_j q_j = x_i, lo_j <= q_j <= hi_j },

``c_j(q) = -demand_price*q`` (a = +1) for a demand step, ``supply_price*q + supply_c2*q**2`` (a = -1)
for a supply step. The market minimises ``sum_i f_i(x_i)`` (minus welfare) subject to ``sum_i x_i = 0``,
written as the consensus ``x_i = z_i``, ``sum_i z_i = 0``. With a per-agent penalty ``rho_i = rho w_i``
(Boyd section 3.4.2, a diagonal scaling of the constraint ``x - z = 0``) and ``u_i = price / rho_i``
(the scaled dual; all agents share one price), an iteration is::

    agent i:      x_i = argmin f_i(x_i) + rho_i/2 (x_i - z_i + u_i)^2           (in parallel)
    coordinator:  z = argmin over sum z = 0 of sum_i rho_i/2 (x_i + u_i - z_i)^2
                    => price += sum_i x_i / sum_i (1/rho_i),  z_i = x_i - (change of price) / rho_i
                  u_i = price / rho_i  (the scaled-dual update u_i += x_i - z_i)

so ``price = rho_i u_i`` is the (unscaled) dual of the balance, the energy price [$/MWh]. With all
``w_i = 1`` this is exactly section 7.3.2's exchange ADMM (``u += mean(x)``, ``z = x - mean(x)``).
The weights ``w_i = (median agent range) / (agent i's range)`` (range: ``sum(hi - lo)`` of its steps)
matter with agents of very different sizes (a 100 MW upstream grid among 10 kW households: unweighted,
~1,700 iterations on the realistic case below; weighted, ~10): each agent takes a share of the imbalance
proportional to its size. ``weighted=False`` gives the plain scheme. One iteration is two messages per
agent: ``(price, z_i, rho_i)`` out, ``x_i`` back. Optional over-relaxation (Boyd section 3.4.3,
``relaxation`` = alpha, 1 = none) replaces ``x`` by ``alpha x + (1 - alpha) z`` in the coordinator step.

Local problems: ``f_i`` is convex and piecewise linear-quadratic; its proximal step is solved exactly
(no inner iteration) through the agent's internal price ``lam_i = rho_i (x_i - v_i)``, ``v_i = z_i - u_i``:
every step answers ``lam_i`` as a price taker (all, nothing, or ``clip((lam - c1) / (2 c2))``), so the
agent's withdrawal ``X_i(lam)`` is non-increasing, piecewise linear, with jumps at its flat steps'
prices, and ``X_i(lam) = v_i + lam / rho_i`` has exactly one root. The breakpoints of all agents are
sorted once per interval (bids do not change during the iterations); each iteration then finds every
agent's root with a few numpy operations over all breakpoints (no Python loop over agents).

Stopping rule (Boyd section 3.3.1, for the scaled constraint ``D x - D z = 0``, ``D = diag(sqrt(w))``):
primal residual ``||r|| = ||D (x - z)||`` [MW], dual residual ``||s|| = rho ||W (z - z_prev)||``
[$/MWh]; stop when ``||r|| <= sqrt(N) eps_abs_mw + eps_rel max(||D x||, ||D z||)`` and
``||s|| <= sqrt(N) eps_abs_price + eps_rel sqrt(N) |price|`` (``||A^T y|| = sqrt(N) |price|``).
Boyd's single ``eps_abs`` is taken in the units of each residual: ``eps_abs_mw`` defaults to 1e-4 of the
median agent's range, ``eps_abs_price`` to 1e-4 $/MWh.

Adaptive penalty (residual balancing, section 3.4.1): after an iteration, ``rho *= tau`` if
``||r|| > mu ||s||`` and ``rho /= tau`` if ``||s|| > mu ||r||`` (``mu = 10``, ``tau = 2``); the scaled duals
``u_i = price / rho_i`` are rescaled with it (divided, resp. multiplied, by tau), i.e. the price is kept.
Step bids make the rule oscillate (rho doubled, halved, doubled ... for hundreds of iterations), so each
reversal of direction takes the square root of the factor (2, 1.41, 1.19, ...): on the LV study's cold
first intervals 72-146 iterations instead of ~1,050. Adaptation stops after ``adapt_max_iter``
iterations, after which rho is fixed and ADMM's convergence guarantee holds.

Ties and kinks (polishing): with step bids the optimal price is often an interval and ADMM on these
piecewise-linear costs settles the dispatch of steps priced near the price slowly; it stops, by the rule
above, at *some* dual near that interval and a dispatch within the tolerances, not at the central
auction's price. The coordinator then polishes in one extra round (counted as 2 N messages): with the
ADMM price ``p`` and a window ``w`` (first the spread of the agents' internal prices in the last
iteration), every flat step priced outside ``[p - w, p + w]`` and every quadratic step whose marginal
cost range misses that window is rounded to the bound ``p`` dictates; the remaining (marginal) steps are
re-balanced exactly as one price taker (a common price at which they absorb the imbalance). The result
is accepted only if it balances and some price supports it (the interval of `clearing_price_interval`
is not empty), which for this convex problem certifies it optimal; otherwise the window grows tenfold
and the round is repeated, in the worst case until the window covers every step and the polish *is* a
central clearing. The result reports the window and the number of steps it freed, so this is visible
(typically 1 step on flat bids; on quadratic costs every step at an interior marginal cost, which only
answers the polished price as a price taker). The price is then `UniformAuction`'s tie rule: the midpoint
of the interval of clearing prices, a point when a step is partly cleared; if one end is unbounded, the
ADMM price clipped into the interval (the central auction clips HiGHS's dual instead, so the two can
differ there - both are clearing prices). A quadratic coefficient too small to matter
(``2 c2 (hi - lo) < 1e-9`` $/MWh) is handled as a flat step at its mean marginal cost; cost and welfare
are always computed with the true coefficients.

Infeasible bids (must-run ``supply_min_mw`` above all demand) give NaN numbers and status
``infeasible``, as the central auction gives NaN and the solver's status; nothing is raised (nor when
the polish fails even with every step free, status ``polish failed``: not seen in testing). Reaching
``max_iter``, or the wall-clock ``time_limit_s`` of a clearing (checked before every iteration, so it
covers the set-up too), gives ``converged = False`` and status ``max_iter`` resp. ``time limit`` (a NaN
clearing; the last iterate is kept in `ADMMResult`), or raises `ModelNotConverged` with
``raise_on_max_iter``.

Measured (``ADMMClearing`` defaults, one core): ~200 steps of 71 agents laid out as `Bidder` does (40
households of 4 steps, 25 PV, 5 batteries, the upstream grid), 10 iterations (median; up to ~60 when the
export bid sets the price), about 2 ms per interval; 200 random steps, one agent each, 45 iterations
(median, ~120-270 at most), about 5 ms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cosim.errors import ModelNotConverged
from cosim.models.market.clearing import TOL_MW, Bids, Clearing, clearing_price_interval

FloatArray = np.ndarray
IntArray = np.ndarray

_MIN_RANGE_MW = 1e-9  # smallest agent range the penalty scaling uses
_FLAT_C2 = 1e-9  # $/MWh: a quadratic step whose marginal cost moves less than this is handled as flat


class _Steps:
    """Price-taking steps grouped into agents; exact proximal steps of the agents' costs, vectorised.

    Step ``j``: ``a`` +1 demand / -1 supply, bounds ``[lo, hi]`` MW, flat price ``p`` (bid, or offer of a
    flat supply step) or quadratic cost ``c1 q + c2 q**2`` (``quad``), owned by group ``g`` in [0, n_g).
    The agent's withdrawal at price ``lam``: ``X(lam) = x0 + sum over breakpoints b <= lam of
    (jump + slope * (lam - b))``, stored per sorted breakpoint as ``X = alpha + beta * lam`` to its right.
    """

    def __init__(
        self,
        a: FloatArray,
        lo: FloatArray,
        hi: FloatArray,
        p: FloatArray,
        c1: FloatArray,
        c2: FloatArray,
        quad: np.ndarray,
        g: IntArray,
        n_g: int,
    ) -> None:
        self.a, self.lo, self.hi, self.p, self.c1, self.c2, self.quad, self.g = a, lo, hi, p, c1, c2, quad, g
        self.n_g = n_g
        self.demand = a > 0
        self.x0 = np.bincount(g, np.where(self.demand, hi, -lo), minlength=n_g)
        flat = ~quad
        with np.errstate(divide="ignore"):
            inv = np.where(quad, 1.0 / (2.0 * np.where(quad, c2, 1.0)), 0.0)
        k1, k2 = c1 + 2.0 * c2 * lo, c1 + 2.0 * c2 * hi
        # breakpoints: a flat step jumps (withdrawal falls by hi - lo) at its price; a quadratic step's
        # withdrawal falls with slope 1/(2 c2) between the marginal costs at its bounds
        b = np.r_[p[flat], k1[quad], k2[quad]]
        jump = np.r_[-(hi - lo)[flat], np.zeros(2 * int(quad.sum()))]
        slope = np.r_[np.zeros(int(flat.sum())), -inv[quad], inv[quad]]
        owner = np.r_[g[flat], g[quad], g[quad]]
        order = np.lexsort((b, owner))
        b, jump, slope, owner = b[order], jump[order], slope[order], owner[order]
        self.count = np.bincount(owner, minlength=n_g)
        self.start = np.r_[0, np.cumsum(self.count)[:-1]].astype(np.int64)

        def seg_cumsum(w: FloatArray) -> FloatArray:
            c = np.cumsum(w)
            before = np.r_[0.0, c][self.start]
            return c - before[owner]

        self.b, self.jump, self.owner = b, jump, owner
        beta = seg_cumsum(slope)
        # where every quadratic step begun has ended, the slope is 0: remove the rounding of the +- sums
        self.beta = np.where(np.abs(beta) <= 1e-12 * seg_cumsum(np.abs(slope)), 0.0, beta)
        self.alpha = self.x0[owner] + seg_cumsum(jump) - seg_cumsum(slope * b)
        self.right = self.alpha + self.beta * b  # X(b+)
        self.left = self.right - jump  # X(b-)

    def prox(self, v: FloatArray, inv_rho: FloatArray) -> tuple[FloatArray, np.ndarray]:
        """Root ``lam`` of ``X_g(lam) = v_g + lam * inv_rho_g`` for every group; ``inv_rho = 0`` allowed.

        Returns the internal prices and a mask of groups with a root (always all when ``inv_rho > 0``;
        with ``inv_rho = 0`` a target outside the range of ``X_g`` has none). Every group has a step.
        """
        n_g, cnt, st = self.n_g, self.count, self.start
        phi_right = self.right - v[self.owner] - self.b * inv_rho[self.owner]
        m = np.bincount(self.owner, phi_right > 0.0, minlength=n_g).astype(np.int64)
        # X jumps over the target at breakpoint m (or touches it there)
        has_k = m < cnt
        kk = st + np.minimum(m, cnt - 1)
        b_k = self.b[kk]
        phi_left = self.left[kk] - v - b_k * inv_rho
        at_jump = has_k & (phi_left >= 0.0)
        # otherwise the root lies between breakpoints m-1 and m, where X = alpha + beta * lam
        j = np.maximum(st + m - 1, 0)
        alpha = np.where(m > 0, self.alpha[j], self.x0)
        beta = np.where(m > 0, self.beta[j], 0.0)
        den = inv_rho - beta
        ok = at_jump | (den > 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lam = np.where(at_jump, b_k, (alpha - v) / np.where(den > 0.0, den, 1.0))
        return lam, ok

    def dispatch(self, lam: FloatArray, x: FloatArray) -> FloatArray:
        """Quantities at each group's price ``lam`` (flat steps priced at ``lam`` split to make ``x``)."""
        lam_s = lam[self.g]
        quad_q = np.clip((lam_s - self.c1) / (2.0 * np.where(self.quad, self.c2, 1.0)), self.lo, self.hi)
        in_left = np.where(self.demand, self.p >= lam_s, self.p < lam_s)  # price just below lam
        in_right = np.where(self.demand, self.p > lam_s, self.p <= lam_s)  # just above
        q_left = np.where(self.quad, quad_q, np.where(in_left, self.hi, self.lo))
        q_right = np.where(self.quad, quad_q, np.where(in_right, self.hi, self.lo))
        x_left = np.bincount(self.g, self.a * q_left, minlength=self.n_g)
        x_right = np.bincount(self.g, self.a * q_right, minlength=self.n_g)
        gap = x_left - x_right
        theta = np.clip(np.where(gap > 0.0, (x_left - x) / np.where(gap > 0.0, gap, 1.0), 0.0), 0.0, 1.0)
        q = q_left + theta[self.g] * (q_right - q_left)
        # steep quadratic steps (tiny c2) amplify the rounding of lam: give what is left of x to the
        # interior ones, in proportion to their slopes (as a tiny change of lam would)
        inner = self.quad & (quad_q > self.lo) & (quad_q < self.hi)
        if inner.any():
            rest = x - np.bincount(self.g, self.a * q, minlength=self.n_g)
            inv = np.where(inner, 1.0 / (2.0 * np.where(inner, self.c2, 1.0)), 0.0)
            total = np.bincount(self.g, inv, minlength=self.n_g)
            share = np.where(total > 0.0, rest / np.where(total > 0.0, total, 1.0), 0.0)
            q = np.where(inner, np.clip(q + self.a * share[self.g] * inv, self.lo, self.hi), q)
        return q


def _step_arrays(bids: Bids) -> tuple[FloatArray, ...]:
    """(a, lo, hi, p, c1, c2, quad) of demand steps then supply steps."""
    n_d, n_s = len(bids.demand_mw), len(bids.supply_max_mw)
    d_mw = np.asarray(bids.demand_mw, dtype=float)
    s_lo = np.asarray(bids.supply_min_mw, dtype=float)
    s_hi = np.asarray(bids.supply_max_mw, dtype=float)
    s_c1 = np.asarray(bids.supply_price, dtype=float)
    s_c2 = np.asarray(bids.supply_c2, dtype=float)
    quad_s = 2.0 * s_c2 * (s_hi - s_lo) >= _FLAT_C2
    a = np.r_[np.ones(n_d), -np.ones(n_s)]
    lo = np.r_[np.zeros(n_d), s_lo]
    hi = np.r_[d_mw, s_hi]
    c1 = np.r_[np.zeros(n_d), s_c1]
    c2 = np.r_[np.zeros(n_d), np.where(quad_s, s_c2, 0.0)]
    p = np.r_[np.asarray(bids.demand_price, dtype=float), s_c1 + s_c2 * (s_lo + s_hi)]
    quad = np.r_[np.zeros(n_d, dtype=bool), quad_s]
    return a, lo, hi, p, c1, c2, quad


@dataclass(frozen=True)
class ADMMResult:
    """One interval's ADMM clearing with its iteration history (traces have one entry per iteration)."""

    clearing: Clearing  # polished (status "optimal"), or NaN: "max_iter", "time limit", "infeasible"
    converged: bool  # the stopping rule was met within max_iter
    iterations: int
    primal_residual: FloatArray  # (iterations,) ||r^k|| [MW]
    dual_residual: FloatArray  # (iterations,) ||s^k|| [$/MWh]
    eps_primal: FloatArray  # (iterations,) primal tolerance of the stopping rule [MW]
    eps_dual: FloatArray  # (iterations,) dual tolerance [$/MWh]
    rho: FloatArray  # (iterations,) penalty of the median-sized agent used in iteration k [$/MWh per MW]
    price: FloatArray  # (iterations,) coordinator's price rho_i*u_i after iteration k [$/MWh]
    n_agents: int  # agents taking part (owners with at least one step)
    messages: int  # 2 * n_agents per iteration, plus 2 * n_agents per polishing round
    admm_price: float  # the coordinator's price at exit, before polishing [$/MWh]
    admm_demand_mw: FloatArray  # (n_d,) the agents' last iterate (unpolished)
    admm_supply_mw: FloatArray  # (n_s,)
    polish_rounds: int  # 0 if not polished
    polish_window: float  # $/MWh half-width that gave the accepted polish (NaN if none)
    polish_free_steps: int  # steps re-balanced by the polish (the rest were rounded to a bound)
    price_interval: tuple[float, float]  # clearing-price interval of the polished dispatch


class ADMMClearing:
    """Copper-plate clearing by ADMM between agents and a coordinator (see the module docstring).

    Parameters
    ----------
    demand_owner, supply_owner : (n_d,), (n_s,) agent of every step (`Bidder`'s; any integers, e.g.
        ``UPSTREAM = -1``); None: every step is its own agent
    eps_abs_mw : absolute primal tolerance [MW]; None: 1e-4 * the median agent's range (at least 1e-10 *
        the largest)
    eps_abs_price : absolute dual tolerance [$/MWh]; eps_rel : relative tolerance (both residuals)
    max_iter : iterations before giving up
    rho0 : initial penalty of the median-sized agent [$/MWh per MW]; None: spread of the step prices
        divided by the median agent's range
    adaptive : residual balancing on (``mu``, ``tau``) during the first ``adapt_max_iter`` iterations
    relaxation : over-relaxation alpha in (0, 2), 1 = plain ADMM
    weighted : per-agent penalties ``rho * median range / agent range`` (else one rho for all)
    warm_start : start each interval from the last converged price, rho and exchanges ``z`` (the step
        layout is fixed for a run; ``price0`` still overrides the price); else from ``price0`` or the median
        step price, ``rho0`` and no exchange
    raise_on_max_iter : raise `ModelNotConverged` instead of returning a NaN clearing with status ``max_iter``
        (or ``time limit``)
    time_limit_s : wall-clock limit of one clearing [s], > 0; None: `solver.DEFAULT_TIME_LIMIT_S`

    ``clear(bids)`` has `UniformAuction.clear`'s contract (one price element); ``last_result`` keeps the
    full `ADMMResult` of the last call.
    """

    def __init__(
        self,
        demand_owner: IntArray | None = None,
        supply_owner: IntArray | None = None,
        *,
        eps_abs_mw: float | None = None,
        eps_abs_price: float = 1e-4,
        eps_rel: float = 1e-3,
        max_iter: int = 20000,
        rho0: float | None = None,
        adaptive: bool = True,
        mu: float = 10.0,
        tau: float = 2.0,
        adapt_max_iter: int = 1000,
        adapt_every: int = 1,
        relaxation: float = 1.0,
        weighted: bool = True,
        warm_start: bool = False,
        raise_on_max_iter: bool = False,
        time_limit_s: float | None = None,
    ) -> None:
        if time_limit_s is None:
            from cosim.models.market.solver import DEFAULT_TIME_LIMIT_S

            time_limit_s = DEFAULT_TIME_LIMIT_S  # read at construction, as `solver.PersistentModel` does
        if not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
        self.time_limit_s = float(time_limit_s)
        self.relaxation, self.weighted = float(relaxation), weighted
        self.demand_owner = None if demand_owner is None else np.asarray(demand_owner, dtype=np.int64)
        self.supply_owner = None if supply_owner is None else np.asarray(supply_owner, dtype=np.int64)
        self.eps_abs_mw, self.eps_abs_price = eps_abs_mw, float(eps_abs_price)
        self.eps_rel, self.max_iter = float(eps_rel), int(max_iter)
        self.rho0, self.adaptive, self.mu, self.tau = rho0, adaptive, float(mu), float(tau)
        self.adapt_max_iter, self.adapt_every, self.warm_start = (
            int(adapt_max_iter),
            int(adapt_every),
            warm_start,
        )
        self.raise_on_max_iter = raise_on_max_iter
        self._warm: tuple[float, float, FloatArray] | None = None
        self.last_result: ADMMResult | None = None

    def _groups(self, n_d: int, n_s: int) -> tuple[IntArray, int]:
        if self.demand_owner is None or self.supply_owner is None:
            return np.arange(n_d + n_s, dtype=np.int64), n_d + n_s
        if len(self.demand_owner) != n_d or len(self.supply_owner) != n_s:
            raise ValueError("bids have a different number of steps than the owners given")
        _, g = np.unique(np.r_[self.demand_owner, self.supply_owner], return_inverse=True)
        return g.astype(np.int64), int(g.max()) + 1 if len(g) else 0

    def clear(self, bids: Bids, price0: float | None = None) -> Clearing:
        """Clear one interval; ``price_per_mwh`` has one element (the caller repeats it per bus)."""
        return self.solve(bids, price0).clearing

    def solve(self, bids: Bids, price0: float | None = None) -> ADMMResult:
        """Run ADMM to the stopping rule, polish, and return the clearing with its history."""
        deadline = time.perf_counter() + self.time_limit_s
        n_d, n_s = len(bids.demand_mw), len(bids.supply_max_mw)
        a, lo, hi, p, c1, c2, quad = _step_arrays(bids)
        g, n_g = self._groups(n_d, n_s)
        if n_g == 0:
            return self._finish(_empty_result(_nan_clearing(0, 0, "no steps"), 0, 0, 0))
        if float(np.sum(lo[a < 0])) > float(np.sum(hi[a > 0])) + TOL_MW:  # must-run above all demand
            return self._finish(_empty_result(_nan_clearing(n_d, n_s, "infeasible"), n_d, n_s, n_g))
        steps = _Steps(a, lo, hi, p, c1, c2, quad, g, n_g)

        # start: price, penalty and the agents' penalty weights
        marg = np.r_[p[~quad], c1[quad], (c1 + 2.0 * c2 * hi)[quad]]
        spread = float(np.ptp(marg))
        scale = max(spread, 1e-3 * max(1.0, float(np.max(np.abs(marg)))))
        size = np.bincount(g, hi - lo, minlength=n_g)  # each agent's range of exchange [MW]
        # (ranges below a milliwatt are floored: a denormal range would make rho infinite)
        size_ref = max(float(np.median(size[size > 0])) if np.any(size > 0) else 1.0, _MIN_RANGE_MW)
        size = np.maximum(size, max(1e-6 * float(size.max()), _MIN_RANGE_MW))
        weight = size_ref / size if self.weighted else np.ones(n_g)
        rho = float(self.rho0) if self.rho0 is not None else scale / size_ref
        price = float(np.median(marg)) if price0 is None else float(price0)
        z = np.zeros(n_g)  # the coordinator's balanced copy of the exchanges (sum z = 0)
        if self.warm_start and self._warm is not None and len(self._warm[2]) == n_g:
            price = price if price0 is not None else self._warm[0]
            rho, z = self._warm[1], self._warm[2].copy()
        sq_n, sw = float(np.sqrt(n_g)), np.sqrt(weight)
        eps_mw = max(1e-4 * size_ref, 1e-10 * float(size.max()))  # (not below rounding of the largest)
        eps_mw = eps_mw if self.eps_abs_mw is None else float(self.eps_abs_mw)
        x, lam = z, np.full(n_g, price)  # (for max_iter = 0)
        alpha = self.relaxation
        hist = np.full((6, self.max_iter), np.nan)
        converged, timed_out, k = False, False, 0
        tau, last_move = self.tau, 0
        for k in range(self.max_iter):  # noqa: B007 (k is the iteration count after the loop)
            if time.perf_counter() > deadline:
                timed_out = True
                break
            inv_rho = 1.0 / (rho * weight)
            v = z - price * inv_rho
            lam, _ = steps.prox(v, inv_rho)
            x = v + lam * inv_rho
            x_hat = alpha * x + (1.0 - alpha) * z
            step = float(np.sum(x_hat)) / float(np.sum(inv_rho))  # price change that balances
            z_new = x_hat - step * inv_rho
            price += step
            r_norm = float(np.linalg.norm(sw * (x - z_new)))
            s_norm = rho * float(np.linalg.norm(weight * (z_new - z)))
            z = z_new
            eps_pri = sq_n * eps_mw + self.eps_rel * max(
                float(np.linalg.norm(sw * x)), float(np.linalg.norm(sw * z))
            )
            eps_dual = sq_n * (self.eps_abs_price + self.eps_rel * abs(price))
            hist[:, k] = r_norm, s_norm, eps_pri, eps_dual, rho, price
            if r_norm <= eps_pri and s_norm <= eps_dual:
                converged = True
                break
            if self.adaptive and k < self.adapt_max_iter and (k + 1) % self.adapt_every == 0:
                move = 1 if r_norm > self.mu * s_norm else -1 if s_norm > self.mu * r_norm else 0
                if move and move == -last_move:
                    tau = np.sqrt(tau)  # a reversal: the penalty oscillates, take smaller steps
                if move:
                    rho = rho * tau if move > 0 else rho / tau  # the price is kept (scaled dual / rho)
                    last_move = move
        n_it = k if timed_out else k + 1  # (timed out: iteration k was not done)
        admm_price = price
        q_admm = steps.dispatch(lam, x)
        common = dict(
            converged=converged,
            iterations=n_it,
            primal_residual=hist[0, :n_it].copy(),
            dual_residual=hist[1, :n_it].copy(),
            eps_primal=hist[2, :n_it].copy(),
            eps_dual=hist[3, :n_it].copy(),
            rho=hist[4, :n_it].copy(),
            price=hist[5, :n_it].copy(),
            n_agents=n_g,
            admm_price=admm_price,
            admm_demand_mw=q_admm[:n_d],
            admm_supply_mw=q_admm[n_d:],
        )
        if not converged:
            res = ADMMResult(
                clearing=_nan_clearing(n_d, n_s, "time limit" if timed_out else "max_iter"),
                messages=2 * n_g * n_it,
                polish_rounds=0,
                polish_window=np.nan,
                polish_free_steps=0,
                price_interval=(np.nan, np.nan),
                **common,  # type: ignore[arg-type]
            )
            if self.raise_on_max_iter:
                self.last_result = res
                within = (
                    f"its time limit of {self.time_limit_s:g} s ({n_it} iterations)"
                    if timed_out
                    else f"{self.max_iter} iterations"
                )
                last = (
                    f" (primal residual {hist[0, n_it - 1]:.3g} MW, dual {hist[1, n_it - 1]:.3g} $/MWh)"
                    if n_it
                    else ""
                )
                raise ModelNotConverged(f"ADMM clearing did not converge in {within}{last}")
            return self._finish(res)
        self._warm = (admm_price, rho, z)

        # polish: round the clearly in- or out-of-the-money steps, re-balance the marginal ones
        window = max(float(np.ptp(lam)), 1e-9 * (1.0 + abs(admm_price)))
        rounds, n_free = 0, 0
        while n_free < len(a):
            rounds += 1
            q, n_free, ok = _polish(a, lo, hi, p, c1, c2, quad, admm_price, window)
            d, s = q[:n_d], q[n_d:]
            lo_p, hi_p = clearing_price_interval(bids, d, s)
            if ok and lo_p <= hi_p + 1e-9 * (1.0 + abs(lo_p)):
                break
            window = 10.0 * window if window < 1e9 * scale else np.inf
        else:  # numerically hopeless bids (feasibility was checked): a failed clearing, not an exception
            res = ADMMResult(
                clearing=_nan_clearing(n_d, n_s, "polish failed"),
                messages=2 * n_g * (n_it + rounds),
                polish_rounds=rounds,
                polish_window=window,
                polish_free_steps=n_free,
                price_interval=(lo_p, hi_p),
                **common,  # type: ignore[arg-type]
            )
            return self._finish(res)
        if np.isfinite(lo_p) and np.isfinite(hi_p):
            final_price = 0.5 * (lo_p + hi_p)
        else:
            final_price = float(np.clip(admm_price, min(lo_p, hi_p), max(lo_p, hi_p)))
        s_c2 = np.asarray(bids.supply_c2, dtype=float)
        cost = float(np.dot(bids.supply_price, s) + np.dot(s_c2, s * s))
        clearing = Clearing(
            price_per_mwh=np.array([final_price]),
            demand_mw=d,
            supply_mw=s,
            welfare=float(np.dot(bids.demand_price, d)) - cost,
            cost=cost,
            congestion_rent=0.0,
            line_flow_mw=np.zeros(0),
            status="optimal",
        )
        return self._finish(
            ADMMResult(
                clearing=clearing,
                messages=2 * n_g * (n_it + rounds),
                polish_rounds=rounds,
                polish_window=window,
                polish_free_steps=n_free,
                price_interval=(lo_p, hi_p),
                **common,  # type: ignore[arg-type]
            )
        )

    def _finish(self, res: ADMMResult) -> ADMMResult:
        self.last_result = res
        return res


def _polish(
    a: FloatArray,
    lo: FloatArray,
    hi: FloatArray,
    p: FloatArray,
    c1: FloatArray,
    c2: FloatArray,
    quad: np.ndarray,
    price: float,
    window: float,
) -> tuple[FloatArray, int, bool]:
    """Dispatch with steps outside ``price +- window`` at their bounds and the rest balanced exactly.

    Returns the step quantities, the number of free steps and whether the free steps could balance.
    """
    demand = a > 0
    k1, k2 = c1 + 2.0 * c2 * lo, c1 + 2.0 * c2 * hi
    free = np.where(quad, (k1 - window <= price) & (price <= k2 + window), np.abs(p - price) <= window)
    in_money = np.where(demand, p > price, p < price)
    quad_q = np.clip((price - c1) / (2.0 * np.where(quad, c2, 1.0)), lo, hi)
    q = np.where(quad, quad_q, np.where(in_money, hi, lo))
    n_free = int(free.sum())
    if n_free == 0:
        return q, 0, abs(float(np.dot(a, q))) <= 1e-9 * (1.0 + float(np.sum(hi)))
    target = -float(np.dot(a[~free], q[~free]))  # the free steps' net withdrawal that balances
    f = free
    x_min = float(np.dot(a[f], np.where(a[f] > 0, lo[f], hi[f])))
    x_max = float(np.dot(a[f], np.where(a[f] > 0, hi[f], lo[f])))
    tol = 1e-9 * (1.0 + float(np.sum(hi)))
    if not x_min - tol <= target <= x_max + tol:
        return q, n_free, False
    target = min(max(target, x_min), x_max)  # rounding only
    sub = _Steps(a[f], lo[f], hi[f], p[f], c1[f], c2[f], quad[f], np.zeros(n_free, dtype=np.int64), 1)
    lam, ok = sub.prox(np.array([target]), np.zeros(1))
    if ok[0]:
        q[f] = sub.dispatch(lam, np.array([target]))
    elif target <= x_min + tol:  # an end of the range missed by rounding: every free step at that end
        q[f] = np.where(a[f] > 0, lo[f], hi[f])
    elif target >= x_max - tol:
        q[f] = np.where(a[f] > 0, hi[f], lo[f])
    else:
        return q, n_free, False
    return q, n_free, abs(float(np.dot(a, q))) <= tol


def _nan_clearing(n_d: int, n_s: int, status: str) -> Clearing:
    return Clearing(
        price_per_mwh=np.full(1, np.nan),
        demand_mw=np.full(n_d, np.nan),
        supply_mw=np.full(n_s, np.nan),
        welfare=float("nan"),
        cost=float("nan"),
        congestion_rent=float("nan"),
        line_flow_mw=np.zeros(0),
        status=status,
    )


def _empty_result(clearing: Clearing, n_d: int, n_s: int, n_g: int) -> ADMMResult:
    e = np.zeros(0)
    return ADMMResult(
        clearing=clearing,
        converged=False,
        iterations=0,
        primal_residual=e,
        dual_residual=e,
        eps_primal=e,
        eps_dual=e,
        rho=e,
        price=e,
        n_agents=n_g,
        messages=0,
        admm_price=np.nan,
        admm_demand_mw=np.full(n_d, np.nan),
        admm_supply_mw=np.full(n_s, np.nan),
        polish_rounds=0,
        polish_window=np.nan,
        polish_free_steps=0,
        price_interval=(np.nan, np.nan),
    )
