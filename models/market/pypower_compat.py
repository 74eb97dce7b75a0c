"""Compatibility of pandapower's PYPOWER code with current SciPy, for the apparent-power (MVA) branch limit.

pandapower's OPF limits branch current by default (``OPF_FLOW_LIM=2``); MATPOWER's default limits
apparent power (``opf.flow_lim = 'S'``, PYPOWER's ``OPF_FLOW_LIM=0``). pandapower supports that option,
but the Hessian of the MVA constraints (``pandapower.pypower.d2Sbr_dV2``) takes the conjugate transpose
of the branch admittance matrix as ``Ybr.H``, an attribute SciPy removed from its sparse matrices in
1.14, so the OPF raises ``AttributeError``. :func:`enable_apparent_power_limits` makes the one module
that calls it (``d2ASbr_dV2``) pass ``Ybr`` as a CSR matrix that has ``.H`` again (``conj().T``); the
formulas are pandapower's own, nothing else changes. It is a no-op where SciPy still has ``.H``.

pandapower's OPF has no wall-clock limit: PIPS (``pandapower.pypower.pips.pips``) stops only at
``PDIPM_MAX_IT`` iterations, and its options (``opt``) hold no time. :class:`PipsTimeLimit` gives every
PIPS run inside its ``with`` block a deadline: :func:`enable_pips_time_limit` makes the one caller of
PIPS in the AC-OPF (``pipsopf_solver``) call it through a wrapper that checks the clock each Newton
iteration (when PIPS asks for the Hessian, once per iteration) and, past the deadline, ends the run as a
PIPS run that did not converge (``eflag`` 0, the last iterate, zero multipliers of PIPS's sizes), so
pandapower takes its own failure path (cleans up the net, raises ``OPFNotConverged``) and the caller
reads ``reached``. Outside such a block PIPS runs untouched.
"""

from __future__ import annotations

import time
from contextvars import ContextVar, Token
from typing import Any

import numpy as np
import scipy.sparse as sp


class _WithConjugateTranspose(sp.csr_matrix):
    """A CSR matrix with the ``.H`` (conjugate transpose) attribute SciPy >= 1.14 no longer has."""

    @property
    def H(self) -> Any:  # noqa: N802 - the name pandapower's PYPOWER code uses
        return self.conj().T


def enable_apparent_power_limits() -> None:
    """Let pandapower's OPF run with ``OPF_FLOW_LIM=0`` (MVA limits) on SciPy without sparse ``.H``."""
    import pandapower.pypower.d2ASbr_dV2 as caller

    if hasattr(sp.csr_matrix((1, 1)), "H") or getattr(caller.d2Sbr_dV2, "_cosim_compat", False):
        return
    original = caller.d2Sbr_dV2

    def d2Sbr_dV2(Cbr: Any, Ybr: Any, V: Any, lam: Any) -> Any:  # noqa: N802, N803 - PYPOWER's names
        return original(Cbr, _WithConjugateTranspose(Ybr), V, lam)

    d2Sbr_dV2._cosim_compat = True  # type: ignore[attr-defined]
    caller.d2Sbr_dV2 = d2Sbr_dV2


class _TimeUp(Exception):
    """Raised inside PIPS (from its Hessian callback) when the deadline has passed."""


class PipsTimeLimit:
    """A wall-clock deadline for the PIPS runs inside a ``with`` block (see the module docstring).

    Parameters
    ----------
    time_limit_s : seconds from construction; ``reached`` is True once a PIPS run was stopped by it
    """

    def __init__(self, time_limit_s: float) -> None:
        if not time_limit_s > 0:
            raise ValueError(f"time_limit_s must be positive, got {time_limit_s}")
        self.deadline = time.perf_counter() + float(time_limit_s)
        self.reached = False
        self._token: Token[PipsTimeLimit | None] | None = None

    def expired(self) -> bool:
        """The deadline has passed."""
        return time.perf_counter() > self.deadline

    def __enter__(self) -> PipsTimeLimit:
        enable_pips_time_limit()
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._token is not None
        _ACTIVE.reset(self._token)
        self._token = None


_ACTIVE: ContextVar[PipsTimeLimit | None] = ContextVar("cosim_pips_time_limit", default=None)


def enable_pips_time_limit() -> None:
    """Route pandapower's AC-OPF calls of PIPS through `_pips_with_deadline` (once per process)."""
    import pandapower.pypower.pipsopf_solver as caller

    if getattr(caller.pips, "_cosim_deadline", False):
        return
    original = caller.pips

    def pips(  # PIPS's own signature (pandapower.pypower.pips.pips)
        f_fcn: Any, x0: Any = None, A: Any = None, l: Any = None, u: Any = None,  # noqa: E741, N803
        xmin: Any = None, xmax: Any = None, gh_fcn: Any = None, hess_fcn: Any = None, opt: Any = None,
    ) -> Any:  # fmt: skip
        limit = _ACTIVE.get()
        if limit is None or gh_fcn is None or hess_fcn is None:
            return original(f_fcn, x0, A, l, u, xmin, xmax, gh_fcn, hess_fcn, opt)
        seen: dict[str, Any] = {"x": np.asarray(x0, dtype=float), "n_h": 0, "n_g": 0, "iterations": 0}

        def constraints(x: Any) -> Any:
            hn, gn, dhn, dgn = gh_fcn(x)
            seen["n_h"], seen["n_g"] = len(hn), len(gn)
            return hn, gn, dhn, dgn

        def hessian(x: Any, lmbda: Any, cost_mult: float = 1.0) -> Any:
            if limit.expired():
                raise _TimeUp
            seen["x"] = x
            seen["iterations"] += 1
            return hess_fcn(x, lmbda, cost_mult)

        try:
            return original(f_fcn, x0, A, l, u, xmin, xmax, constraints, hessian, opt)
        except _TimeUp:
            limit.reached = True
            return _not_converged(seen, 0 if A is None else A.shape[0])

    pips._cosim_deadline = True  # type: ignore[attr-defined]
    caller.pips = pips


def _not_converged(seen: dict[str, Any], n_linear: int) -> dict[str, Any]:
    """A PIPS solution dict of a run stopped early: its last iterate, ``eflag`` 0, zero multipliers."""
    x = seen["x"]
    lmbda = {
        "mu_l": np.zeros(n_linear),
        "mu_u": np.zeros(n_linear),
        "lower": np.zeros(len(x)),
        "upper": np.zeros(len(x)),
    }
    if seen["n_h"]:
        lmbda["ineqnonlin"] = np.zeros(seen["n_h"])
    if seen["n_g"]:
        lmbda["eqnonlin"] = np.zeros(seen["n_g"])
    output = {"iterations": seen["iterations"], "hist": [], "message": "Time limit reached"}
    return {"x": x, "f": float("nan"), "eflag": 0, "output": output, "lmbda": lmbda}
