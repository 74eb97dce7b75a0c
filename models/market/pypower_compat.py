"""Compatibility of pandapower's PYPOWER code with current SciPy, for the apparent-power (MVA) branch limit.

pandapower's OPF limits branch current by default (``OPF_FLOW_LIM=2``); MATPOWER's default limits
apparent power (``opf.flow_lim = 'S'``, PYPOWER's ``OPF_FLOW_LIM=0``). pandapower supports that option,
but the Hessian of the MVA constraints (``pandapower.pypower.d2Sbr_dV2``) takes the conjugate transpose
of the branch admittance matrix as ``Ybr.H``, an attribute SciPy removed from its sparse matrices in
1.14, so the OPF raises ``AttributeError``. :func:`enable_apparent_power_limits` makes the one module
that calls it (``d2ASbr_dV2``) pass ``Ybr`` as a CSR matrix that has ``.H`` again (``conj().T``); the
formulas are pandapower's own, nothing else changes. It is a no-op where SciPy still has ``.H``.
"""

from __future__ import annotations

from typing import Any

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
