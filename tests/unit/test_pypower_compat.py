"""The SciPy compatibility shim of pandapower's MVA-limit Hessian against finite differences."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import scipy.sparse as sp
from pandapower.pypower.dSbr_dV import dSbr_dV
from pandapower.pypower.idx_brch import F_BUS
from pandapower.pypower.makeYbus import makeYbus

from cosim.models.market.pypower_compat import enable_apparent_power_limits


def test_second_derivatives_of_branch_power_equal_finite_differences() -> None:
    """With the shim, pandapower's d2Sbr_dV2 runs on SciPy without sparse ``.H`` and its Haa, Hav, Hvv are
    the central differences of the first derivatives (pandapower's dSbr_dV) contracted with multipliers."""
    enable_apparent_power_limits()
    import pandapower.pypower.d2ASbr_dV2 as caller

    net = pn.case9()
    pp.runpp(net)
    ppc = net._ppc
    _, yf, _ = makeYbus(ppc["baseMVA"], ppc["bus"], ppc["branch"])
    yf = sp.csr_matrix(yf)
    branch, nb = ppc["branch"], ppc["bus"].shape[0]
    f = branch[:, F_BUS].real.astype(np.int64)
    cf = sp.csr_matrix((np.ones(len(f)), (np.arange(len(f)), f)), (len(f), nb))
    rng = np.random.default_rng(0)
    va, vm = rng.uniform(-0.3, 0.3, nb), rng.uniform(0.9, 1.1, nb)
    lam = rng.normal(size=len(f)) + 1j * rng.normal(size=len(f))

    def grad(va: np.ndarray, vm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d_va, d_vm = dSbr_dV(branch, yf, yf, vm * np.exp(1j * va))[:2]
        return d_va.T @ lam, d_vm.T @ lam

    haa, hav, _, hvv = caller.d2Sbr_dV2(cf, yf, vm * np.exp(1j * va), lam)
    h, eye = 1e-6, np.eye(nb)
    fd_aa = np.column_stack([(grad(va + h * e, vm)[0] - grad(va - h * e, vm)[0]) / (2 * h) for e in eye])
    fd_av = np.column_stack([(grad(va, vm + h * e)[0] - grad(va, vm - h * e)[0]) / (2 * h) for e in eye])
    fd_vv = np.column_stack([(grad(va, vm + h * e)[1] - grad(va, vm - h * e)[1]) / (2 * h) for e in eye])
    for exact, numeric in ((haa, fd_aa), (hav, fd_av), (hvv, fd_vv)):
        np.testing.assert_allclose(sp.csr_matrix(exact).toarray(), numeric, atol=1e-5)
