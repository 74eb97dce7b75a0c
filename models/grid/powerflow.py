"""AC power flow core: a lean polar Newton-Raphson on pandapower's own network model.

The network model (admittance matrices, bus types, set-points of non-agent elements) is built once
by pandapower (its PYPOWER case through `cosim.models.grid.pp_internals`, then ``makeYbus``); each step
only the bus demand of the agents changes.
The Jacobian has a fixed sparsity pattern, so the index maps from Ybus entries into Jacobian
entries are computed once and each Newton iteration only fills data arrays.

Sign convention: agent ``p_mw``/``q_mvar`` are in load convention, positive = consumption, as
pandapower ``load`` (and ``storage``) elements. A generating agent has negative ``p_mw`` (its
pandapower ``sgen`` then carries ``+p`` generation, see :func:`set_injections`).

This module is a pure core; it has no mosaik dependency.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from pandapower.pypower.idx_brch import F_BUS, T_BUS
from pandapower.pypower.idx_bus import BASE_KV, GS
from pandapower.pypower.idx_gen import GEN_BUS, GEN_STATUS, PG
from pandapower.pypower.makeBdc import makeBdc
from pandapower.pypower.makeSbus import makeSbus
from pandapower.pypower.makeYbus import makeYbus
from scipy.sparse.linalg import splu

from cosim.models.grid import pp_internals

__all__ = ["AGENT_TABLES", "ACPowerFlow", "LossSensitivities", "PowerFlowResult", "set_injections"]

AGENT_TABLES = ("load", "sgen", "storage", "gen")  # pandapower tables an agent element may live in
_NO_Q_TABLES = ("gen",)  # voltage-controlled: q is a result of the power flow, not a set-point

# sign applied when writing load-convention agent power into a pandapower table
_TABLE_SIGN = {"load": 1.0, "sgen": -1.0, "storage": 1.0, "gen": -1.0}

FloatArray = NDArray[np.float64]
ComplexArray = NDArray[np.complex128]
IntArray = NDArray[np.int64]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PowerFlowResult:
    """Result of one AC power flow step (all arrays in pandapower table row order)."""

    converged: bool
    iterations: int
    vm_pu: np.ndarray  # (n_bus,) in net.bus row order; NaN where the bus is out of service/isolated
    va_degree: np.ndarray  # (n_bus,)
    line_loading_percent: np.ndarray  # (n_line,) current-based, max_i_ka * df * parallel
    trafo_loading_percent: np.ndarray  # (n_trafo,) pandapower trafo_loading="current"
    losses_mw: float  # sum of line + trafo active losses
    import_mw: float  # sum of res_ext_grid.p_mw (positive = import from the upstream grid)
    # islanded only (switching.SwitchingPowerFlow): P of the grid-forming unit, positive = it delivers
    grid_forming_mw: float = float("nan")


@dataclass(frozen=True)
class LossSensitivities:
    """How the active losses of an AC operating point change with each bus's injection (net.bus row order).

    Injection is generator convention (a load's consumption is ``-P``): one more MW of demand at bus ``b``
    changes the losses by ``-dloss_dp[b]`` MW. The reference (slack) buses balance every change, so both
    are 0 there; NaN where the bus is out of service, isolated or without a state.
    """

    dloss_dp: np.ndarray  # (n_bus,) MW of losses per MW injected, reactive injections held [MW/MW]
    dloss_dq: np.ndarray  # (n_bus,) MW of losses per Mvar injected at load (PQ) buses, 0 where the
    # voltage is controlled (slack and gen buses: their reactive power is a result) [MW/Mvar]


def _split_elements(net: Any, elements: Sequence[tuple[str, int]]) -> dict[str, tuple[IntArray, IntArray]]:
    """Group agent elements per table as (agent column positions, element indices)."""
    tables = np.array([t for t, _ in elements], dtype=object)
    indices = np.array([int(i) for _, i in elements], dtype=np.int64)
    groups: dict[str, tuple[IntArray, IntArray]] = {}
    for table in np.unique(tables) if len(tables) else []:
        if table not in AGENT_TABLES:
            raise ValueError(f"agent element table {table!r} is not one of {AGENT_TABLES}")
        cols = np.flatnonzero(tables == table).astype(np.int64)
        idx = indices[cols]
        missing = ~np.isin(idx, net[table].index.to_numpy())
        if missing.any():
            raise ValueError(f"agent element ({table!r}, {int(idx[missing][0])}) does not exist")
        groups[str(table)] = (cols, idx)
    return groups


def set_injections(
    net: Any, elements: Sequence[tuple[str, int]], p_mw: np.ndarray, q_mvar: np.ndarray
) -> None:
    """Write agent set-points (load convention) into the pandapower element tables.

    ``load`` and ``storage`` get ``p = +p``, ``sgen`` and ``gen`` (generator convention) get ``p = -p``;
    the same for ``q`` except at ``gen`` (voltage-controlled: its q is solved). Vectorised per table.

    Parameters
    ----------
    net : pandapowerNet
        Network to modify in place.
    elements : sequence of (table, index)
        Agent elements, one per column of ``p_mw``/``q_mvar``.
    p_mw, q_mvar : np.ndarray
        Agent active/reactive power, positive = consumption.
    """
    p = np.asarray(p_mw, dtype=np.float64)
    q = np.asarray(q_mvar, dtype=np.float64)
    for table, (cols, idx) in _split_elements(net, elements).items():
        sign = _TABLE_SIGN[table]
        net[table].loc[idx, "p_mw"] = sign * p[cols]
        if table not in _NO_Q_TABLES:
            net[table].loc[idx, "q_mvar"] = sign * q[cols]


class ACPowerFlow:
    """Fast repeated AC power flow on a fixed pandapower network.

    Parameters
    ----------
    net : pandapowerNet
        The network. Its topology and all non-agent elements are frozen at construction.
    elements : sequence of (table, index)
        For each agent (column of the ``solve`` arrays) its pandapower element.
    tolerance_mva : float
        Newton-Raphson convergence tolerance on the per-unit power mismatch (as pandapower).
    max_iteration : int
        Maximum Newton iterations from the warm start.
    """

    checkpoint_drop = ("_net",)  # the network, built from the scenario: a checkpoint leaves them out

    def __init__(
        self,
        net: Any,
        elements: Sequence[tuple[str, int]],
        *,
        tolerance_mva: float = 1e-8,
        max_iteration: int = 10,
    ) -> None:
        self._net = net
        self._elements = list(elements)
        self._tol = float(tolerance_mva)
        self._max_it = int(max_iteration)
        self._n_agent = len(self._elements)
        groups = _split_elements(net, self._elements)

        base = copy.copy(net)  # the net's tables, not its year-long profiles (a SimBench net's), deep-copied
        base.pop("profiles", None)
        base = copy.deepcopy(base)
        for table, (_, idx) in groups.items():
            base[table].loc[idx, ["p_mw"] if table in _NO_Q_TABLES else ["p_mw", "q_mvar"]] = 0.0
            base[table].loc[idx, "scaling"] = 1.0
        pp_internals.init_pf_options(base)  # runpp's options, without its power flow (set-up time)
        ppc, ppci = pp_internals.to_ppc(base)
        self._init_model(base, ppc, ppci, groups)
        # initial warm start: the zero-agent base case solved from flat start
        self._v_warm: ComplexArray | None = None
        self._lu: Any = None  # SuperLU factors of the last Jacobian, reused across iterations and steps
        self._lu_at: tuple[ComplexArray, ComplexArray] | None = None  # (V, Ibus) it was factorised at
        self._v_solved: ComplexArray | None = None  # the last converged state (for loss_sensitivities)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok, _, v = self._newton(self._flat_start(self._sbus_base), self._sbus_base, 30)
        if ok:
            self._v_warm = self._v_solved = v

    # ------------------------------------------------------------------ set-up
    def _init_model(
        self, base: Any, ppc: dict, ppci: dict, groups: dict[str, tuple[IntArray, IntArray]]
    ) -> None:
        """Precompute admittances, bus types, index maps and result gathers."""
        pf_vars = pp_internals.pf_variables(ppci)
        base_mva, bus, gen, branch = pf_vars[:4]
        ref, pv, pq, on, gbus, v0 = pf_vars[8:14]
        self._base_mva = float(base_mva)
        n = bus.shape[0]
        self._n = n
        ybus, yf, yt = makeYbus(base_mva, bus, branch)
        self._yf = sp.csr_matrix(yf)
        self._yt = sp.csr_matrix(yt)
        self._ref = np.asarray(ref, dtype=np.int64)
        self._pv = np.asarray(pv, dtype=np.int64)
        self._pq = np.asarray(pq, dtype=np.int64)
        self._pvpq = np.r_[self._pv, self._pq].astype(np.int64)
        self._voltage_controlled = np.zeros(n, dtype=bool)
        self._voltage_controlled[np.r_[self._ref, self._pv]] = True
        self._sbus_base = makeSbus(base_mva, bus, gen).astype(np.complex128)

        # Ybus on a pattern that surely contains the diagonal
        ycoo = sp.coo_matrix(ybus)
        rows = np.r_[ycoo.row, np.arange(n)]
        cols = np.r_[ycoo.col, np.arange(n)]
        vals = np.r_[ycoo.data, np.zeros(n, dtype=np.complex128)]
        yp = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        yp.sum_duplicates()
        yp.sort_indices()
        self._ybus = yp
        self._ybus_ref = yp[self._ref].tocsr()
        self._y_rows = np.repeat(np.arange(n), np.diff(yp.indptr)).astype(np.int64)
        self._y_cols = yp.indices.astype(np.int64)
        self._y_data = yp.data.astype(np.complex128)
        diag = np.flatnonzero(self._y_rows == self._y_cols)
        self._y_diag = diag[np.argsort(self._y_rows[diag])]

        self._init_jacobian()

        # flat start: |V| = 1 (gen set-points on PV/ref), angles from a DC power flow
        vm_flat = np.ones(n)
        vm_flat[gbus] = np.abs(v0[gbus])
        self._vm_flat = vm_flat
        self._va_ref_rad = np.angle(v0[self._ref])
        bbus, _, pbusinj, _, _ = makeBdc(bus, branch)
        bbus = sp.csr_matrix(bbus)
        self._pbus_dc_offset = -np.asarray(pbusinj).ravel() - bus[:, GS] / base_mva
        bpp = bbus[self._pvpq][:, self._pvpq].tocsc()
        self._bpr = bbus[self._pvpq][:, self._ref].toarray()
        self._bpp_lu = splu(bpp) if len(self._pvpq) else None

        # agents -> ppci buses
        bus_lookup = pp_internals.bus_lookup(base)
        a_rows: list[IntArray] = []
        a_cols: list[IntArray] = []
        for table, (acols, idx) in groups.items():
            df = base[table]
            el_bus = bus_lookup[df.loc[idx, "bus"].to_numpy(dtype=np.int64)]
            ok = df.loc[idx, "in_service"].to_numpy(dtype=bool) & (el_bus < n)
            a_rows.append(el_bus[ok])
            a_cols.append(acols[ok])
        r = np.concatenate(a_rows) if a_rows else np.zeros(0, np.int64)
        c = np.concatenate(a_cols) if a_cols else np.zeros(0, np.int64)
        self._incidence = sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(n, self._n_agent), dtype=np.float64)

        # results: buses
        pp_bus = bus_lookup[base.bus.index.to_numpy(dtype=np.int64)]
        self._bus_ok = pp_bus < n
        self._bus_idx = np.where(self._bus_ok, pp_bus, 0)

        # results: branches (ppc branch row -> ppci branch row)
        branch_is = np.asarray(ppci["internal"]["branch_is"], dtype=bool)
        ppc2ppci = np.where(branch_is, np.cumsum(branch_is) - 1, -1).astype(np.int64)
        self._f_bus = np.real(branch[:, F_BUS]).astype(np.int64)
        self._t_bus = np.real(branch[:, T_BUS]).astype(np.int64)
        self._base_kv_f = bus[self._f_bus, BASE_KV]
        self._base_kv_t = bus[self._t_bus, BASE_KV]
        lookups = pp_internals.branch_lookups(base)

        def _gather(table: str) -> IntArray:
            if table not in lookups or len(base[table]) == 0:
                return np.full(len(base[table]), -1, dtype=np.int64)
            f, t = lookups[table]
            return ppc2ppci[int(f) : int(t)]

        self._line_br = _gather("line")
        line = base.line
        self._line_imax_ka = (
            line["max_i_ka"].to_numpy(float) * line["df"].to_numpy(float) * line["parallel"].to_numpy(float)
        )
        self._trafo_br = _gather("trafo")
        trafo = base.trafo
        self._trafo_vn_kv = np.c_[trafo["vn_hv_kv"].to_numpy(float), trafo["vn_lv_kv"].to_numpy(float)]
        self._trafo_scale = (
            np.sqrt(3.0)
            * 100.0
            / trafo["sn_mva"].to_numpy(float)
            / trafo["parallel"].to_numpy(float)
            / trafo["df"].to_numpy(float)
        )
        loss_br = np.r_[self._line_br, self._trafo_br]
        self._loss_br = loss_br[loss_br >= 0]

        # slack: the first in-service gen at each ref bus takes the balance (as pfsoln)
        gen_on = gen[on]
        gen_bus = np.real(gen_on[:, GEN_BUS]).astype(np.int64)
        pg0 = np.zeros(len(self._ref))
        for k, rb in enumerate(self._ref):
            at = np.flatnonzero((gen_bus == rb) & (gen_on[:, GEN_STATUS] > 0))
            pg0[k] = np.real(gen_on[at[0], PG]) if len(at) else 0.0
        self._ref_gen_pg0_mw = pg0

    def _init_jacobian(self) -> None:
        """Build the fixed Jacobian sparsity pattern and the Ybus-entry -> J-entry maps."""
        n = self._n
        npvpq = len(self._pvpq)
        npq = len(self._pq)
        m = npvpq + npq
        self._m = m
        pos_pvpq = np.full(n, -1, dtype=np.int64)
        pos_pvpq[self._pvpq] = np.arange(npvpq)
        pos_pq = np.full(n, -1, dtype=np.int64)
        pos_pq[self._pq] = np.arange(npq) + npvpq
        r, c = self._y_rows, self._y_cols
        # blocks: (row map, col map) for Re dS/dVa, Re dS/dVm, Im dS/dVa, Im dS/dVm
        blocks = [(pos_pvpq, pos_pvpq), (pos_pvpq, pos_pq), (pos_pq, pos_pvpq), (pos_pq, pos_pq)]
        sel: list[IntArray] = []
        jr: list[IntArray] = []
        jc: list[IntArray] = []
        for rmap, cmap in blocks:
            k = np.flatnonzero((rmap[r] >= 0) & (cmap[c] >= 0))
            sel.append(k)
            jr.append(rmap[r[k]])
            jc.append(cmap[c[k]])
        self._j_sel = sel
        rows = np.concatenate(jr)
        cols = np.concatenate(jc)
        # SuperLU on a CSC matrix of fixed pattern (j_src[k] = source entry of CSC slot k)
        src = sp.csc_matrix((np.arange(len(rows), dtype=np.float64), (rows, cols)), (m, m))
        src.sort_indices()
        self._j_src = src.data.astype(np.int64)
        self._j_indices = src.indices
        self._j_indptr = src.indptr

    # ------------------------------------------------------------------ solver
    def _mismatch(self, v: ComplexArray, sbus: ComplexArray) -> tuple[ComplexArray, FloatArray]:
        """Return (Ybus @ V, mismatch vector F)."""
        ibus = self._ybus @ v
        mis = v * np.conj(ibus) - sbus
        f = np.concatenate((mis[self._pvpq].real, mis[self._pq].imag))
        return ibus, f

    def _ds_dv(self, v: ComplexArray, ibus: ComplexArray) -> tuple[ComplexArray, ComplexArray]:
        """``dS/dVa`` and ``dS/dVm`` of the bus injections on the Ybus pattern (``_y_rows``, ``_y_cols``)."""
        vm = np.abs(v)
        e = v[self._y_rows] * np.conj(self._y_data * v[self._y_cols])
        ds_dva = -1j * e
        ds_dvm = e / vm[self._y_cols]
        d = self._y_diag
        ds_dva[d] += 1j * v * np.conj(ibus)
        ds_dvm[d] += np.conj(ibus) * v / vm
        return ds_dva, ds_dvm

    def _jacobian(self, ds_dva: ComplexArray, ds_dvm: ComplexArray) -> Any:
        """The Newton Jacobian (CSC, fixed pattern) from the entries of :meth:`_ds_dv`."""
        s0, s1, s2, s3 = self._j_sel
        jvals = np.concatenate((ds_dva[s0].real, ds_dvm[s1].real, ds_dva[s2].imag, ds_dvm[s3].imag))
        m = self._m
        return sp.csc_matrix((jvals[self._j_src], self._j_indices, self._j_indptr), shape=(m, m))

    def after_restore(self) -> None:
        """Refactorise the reused Jacobian where it was built (SuperLU factors are not in a checkpoint)."""
        self._lu = None
        if self._lu_at is not None:
            try:
                self._lu = self._factorize(*self._lu_at)
            except (np.linalg.LinAlgError, RuntimeError):
                self._lu = self._lu_at = None

    def _factorize(self, v: ComplexArray, ibus: ComplexArray) -> Any:
        """SuperLU factors of the Jacobian at ``v``."""
        return splu(self._jacobian(*self._ds_dv(v, ibus)))

    def _newton(
        self, v_init: ComplexArray, sbus: ComplexArray, max_it: int
    ) -> tuple[bool, int, ComplexArray]:
        """Polar Newton-Raphson with Jacobian reuse; returns (converged, iterations, V).

        The last factorised Jacobian (possibly from the previous step) is kept while each iteration
        cuts the mismatch at least 30-fold; otherwise it is refactorised at the current point. The
        convergence test is the exact mismatch, so reuse changes the path, not the solution.
        """
        v = v_init.copy()
        va = np.angle(v)
        vm = np.abs(v)
        npvpq = len(self._pvpq)
        ibus, f = self._mismatch(v, sbus)
        err = np.max(np.abs(f), initial=0.0)
        if err < self._tol:
            return True, 0, v
        fresh = False
        for it in range(1, max_it + 1):
            try:
                if self._lu is None:
                    self._lu, fresh = self._factorize(v, ibus), True
                    self._lu_at = (v.copy(), ibus.copy())
                dx = np.asarray(self._lu.solve(f), dtype=np.float64)
            except (np.linalg.LinAlgError, RuntimeError):
                self._lu = self._lu_at = None
                return False, it, v
            va[self._pvpq] -= dx[:npvpq]
            vm[self._pq] -= dx[npvpq:]
            v_new = vm * np.exp(1j * va)
            ibus_new, f_new = self._mismatch(v_new, sbus)
            err_new = np.max(np.abs(f_new), initial=0.0)
            finite = bool(np.isfinite(err_new))
            if fresh and not finite:
                self._lu = self._lu_at = None
                return False, it, v
            if not fresh and (not finite or err_new > 0.03 * err):
                self._lu = self._lu_at = None  # a stale Jacobian that does not contract: refactorise
                if not finite or err_new >= err:  # and reject the step
                    va, vm = np.angle(v), np.abs(v)
                    continue
            v, ibus, f, err = v_new, ibus_new, f_new, err_new
            fresh = False
            if err < self._tol:
                return True, it, v
        return False, max_it, v

    def _flat_start(self, sbus: ComplexArray) -> ComplexArray:
        """|V| = 1 pu (gen set-points on PV/ref buses), angles from a DC power flow."""
        va = np.zeros(self._n)
        va[self._ref] = self._va_ref_rad
        if self._bpp_lu is not None:
            pbus = sbus.real + self._pbus_dc_offset
            rhs = pbus[self._pvpq] - self._bpr @ self._va_ref_rad
            va[self._pvpq] = self._bpp_lu.solve(rhs)
        return self._vm_flat * np.exp(1j * va)

    def solve(
        self,
        p_mw: np.ndarray,
        q_mvar: np.ndarray,
        vm_set_pu: np.ndarray | None = None,
        q_set_mvar: np.ndarray | None = None,
    ) -> PowerFlowResult:
        """Solve the AC power flow for agent set-points (load convention, MW / Mvar).

        Parameters
        ----------
        p_mw, q_mvar : np.ndarray
            ``(n_agent,)`` agent active/reactive power, positive = consumption.
        vm_set_pu : np.ndarray, optional
            ``(n_bus,)`` per bus of the net (net.bus row order), e.g. an OPF's voltages: the voltage
            set-point of every voltage-controlled bus (slack and gen buses) where finite; elsewhere, and
            at load (PQ) buses, the net's own set-points and the power flow's solution stand.
        q_set_mvar : np.ndarray, optional
            ``(n_bus,)`` reactive power injected at each bus besides the agents' (generator convention),
            e.g. an OPF's reactive dispatch; it acts at load (PQ) buses, while at voltage-controlled buses
            the power flow solves the reactive power. NaN counts as 0.

        Returns
        -------
        PowerFlowResult
            Converged results, or ``converged=False`` with NaN outputs (never raises for
            non-convergence).
        """
        s_agent = np.asarray(p_mw, dtype=np.float64) + 1j * np.asarray(q_mvar, dtype=np.float64)
        if s_agent.shape != (self._n_agent,):
            raise ValueError(f"expected {self._n_agent} agent set-points, got {s_agent.shape}")
        sbus = self._sbus_base - (self._incidence @ s_agent) / self._base_mva
        if q_set_mvar is not None:
            sbus = sbus + 1j * self._on_buses(q_set_mvar, sum_up=True) / self._base_mva
        vm_set = None if vm_set_pu is None else self._on_buses(vm_set_pu, sum_up=False)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            converged, iters, v = False, 0, self._sbus_base
            if self._v_warm is not None:
                converged, iters, v = self._newton(self._set_vm(self._v_warm, vm_set), sbus, self._max_it)
            if not converged:
                flat = self._set_vm(self._flat_start(sbus), vm_set)
                ok, it2, v = self._newton(flat, sbus, 3 * self._max_it)
                converged, iters = ok, iters + it2
            if not converged:
                _log.debug("AC power flow did not converge after %d iterations", iters)
                self._v_solved = None
                return self._nan_result(iters)
            self._v_warm = self._v_solved = v
            return self._results(v, sbus, iters)

    def _on_buses(self, values: np.ndarray, *, sum_up: bool) -> FloatArray:
        """Per-bus values of the net (net.bus row order) on the power flow's buses: summed where buses
        merge (``sum_up``, NaN as 0), else the last finite value; NaN where a bus gets none."""
        values = np.asarray(values, dtype=np.float64)
        if values.shape != self._bus_ok.shape:
            raise ValueError(f"expected {len(self._bus_ok)} bus values, got {values.shape}")
        ok = self._bus_ok & np.isfinite(values)
        out = np.zeros(self._n) if sum_up else np.full(self._n, np.nan)
        if sum_up:
            np.add.at(out, self._bus_idx[ok], values[ok])
        else:
            out[self._bus_idx[ok]] = values[ok]
        return out

    def _set_vm(self, v: ComplexArray, vm_set: FloatArray | None) -> ComplexArray:
        """``v`` with the magnitudes of the voltage-controlled buses at ``vm_set`` where it is finite, else
        at the net's own set-points (a warm start may hold the last step's)."""
        at = self._voltage_controlled
        vm = (
            self._vm_flat[at]
            if vm_set is None
            else np.where(np.isfinite(vm_set[at]), vm_set[at], self._vm_flat[at])
        )
        out = v.copy()
        out[at] = vm * np.exp(1j * np.angle(v[at]))
        return out

    # ------------------------------------------------------------------ loss sensitivities
    def loss_sensitivities(
        self, vm_pu: np.ndarray | None = None, va_degree: np.ndarray | None = None
    ) -> LossSensitivities:
        """Sensitivities of the active losses to each bus's injection, at the last solved state.

        The losses are ``P_loss(x) = sum_i P_i(x)``, the calculated active injections of all buses (branch
        and shunt losses) at the Newton state ``x = (Va at PV and PQ buses, Vm at PQ buses)``; the
        power-flow equations ``F(x) = S_calc(x) - S_spec = 0`` tie ``x`` to the specified injections, so
        ``dx/dS_spec = J^-1`` and ``dP_loss/dS_spec = lambda`` with the adjoint system::

            J^T lambda = dP_loss/dx        (rows: P at PV and PQ buses, then Q at PQ buses)

        one factorisation of this object's own Newton Jacobian (same pattern and entries, at the state)
        and one transposed solve. The slack buses' injections are free, so the change of losses is
        balanced there. This is the Jacobian-transpose computation of the incremental transmission
        losses (reference-bus penalty factors ``1 / (1 - dloss_dp)``): Wood, Wollenberg and Sheble,
        *Power Generation, Operation, and Control*, 3rd ed., Wiley 2014; as used for the marginal loss
        factors of locational prices by Litvinov, Zheng, Rosenwald and Shamsollahi, "Marginal loss
        modeling in LMP calculation", IEEE Trans. Power Systems 19(2), 880-888, 2004.

        Parameters
        ----------
        vm_pu, va_degree : np.ndarray, optional
            ``(n_bus,)`` an operating point to take instead, in net.bus row order (as
            :class:`PowerFlowResult`, e.g. a power flow of the same net elsewhere); NaN rows are left
            out. Internal buses without a net.bus row (three-winding transformer star points) keep the
            last solved state's voltage.

        Returns
        -------
        LossSensitivities
            All NaN when there is no state (the last solve did not converge) or the Jacobian is singular.
        """
        nb = len(self._bus_ok)
        nan = LossSensitivities(np.full(nb, np.nan), np.full(nb, np.nan))
        if (vm_pu is None) != (va_degree is None):
            raise ValueError("give both vm_pu and va_degree, or neither (the last solved state)")
        v, rows = self._v_solved, self._bus_ok
        if vm_pu is not None and va_degree is not None:
            vm, va = np.asarray(vm_pu, dtype=np.float64), np.asarray(va_degree, dtype=np.float64)
            if vm.shape != (nb,) or va.shape != (nb,):
                raise ValueError(f"expected {nb} bus voltages, got {vm.shape} and {va.shape}")
            rows = self._bus_ok & np.isfinite(vm) & np.isfinite(va)
            v = (self._v_solved if self._v_solved is not None else self._flat_start(self._sbus_base)).copy()
            v[self._bus_idx[rows]] = vm[rows] * np.exp(1j * np.deg2rad(va[rows]))
        if v is None:
            return nan
        n, npvpq = self._n, len(self._pvpq)
        lam = np.zeros(self._m)
        with np.errstate(all="ignore"):
            ds_dva, ds_dvm = self._ds_dv(v, self._ybus @ v)
            if self._m:
                grad = np.r_[
                    np.bincount(self._y_cols, ds_dva.real, n)[self._pvpq],
                    np.bincount(self._y_cols, ds_dvm.real, n)[self._pq],
                ]
                try:
                    lam = splu(self._jacobian(ds_dva, ds_dvm)).solve(grad, trans="T")
                except RuntimeError:  # singular Jacobian
                    return nan
        dp, dq = np.zeros(n), np.zeros(n)
        dp[self._pvpq], dq[self._pq] = lam[:npvpq], lam[npvpq:]
        out_p, out_q = nan.dloss_dp.copy(), nan.dloss_dq.copy()
        out_p[rows], out_q[rows] = dp[self._bus_idx[rows]], dq[self._bus_idx[rows]]
        return LossSensitivities(out_p, out_q)

    # ------------------------------------------------------------------ results
    def _nan_result(self, iterations: int) -> PowerFlowResult:
        """All-NaN result for a non-converged step."""
        nb = len(self._bus_ok)
        return PowerFlowResult(
            converged=False,
            iterations=iterations,
            vm_pu=np.full(nb, np.nan),
            va_degree=np.full(nb, np.nan),
            line_loading_percent=np.full(len(self._line_br), np.nan),
            trafo_loading_percent=np.full(len(self._trafo_br), np.nan),
            losses_mw=float("nan"),
            import_mw=float("nan"),
        )

    def _results(self, v: ComplexArray, sbus: ComplexArray, iterations: int) -> PowerFlowResult:
        """Map the ppci solution to pandapower-ordered results."""
        vm = np.abs(v)
        vm_pu = np.where(self._bus_ok, vm[self._bus_idx], np.nan)
        va_degree = np.where(self._bus_ok, np.angle(v[self._bus_idx], deg=True), np.nan)

        sf = v[self._f_bus] * np.conj(self._yf @ v) * self._base_mva
        st = v[self._t_bus] * np.conj(self._yt @ v) * self._base_mva
        sq3 = np.sqrt(3.0)
        i_f_ka = np.abs(sf) / (vm[self._f_bus] * self._base_kv_f) / sq3
        i_t_ka = np.abs(st) / (vm[self._t_bus] * self._base_kv_t) / sq3

        lb = self._line_br
        line_i_ka = np.where(lb >= 0, np.maximum(i_f_ka[lb], i_t_ka[lb]), 0.0)
        line_loading = np.full(len(lb), np.inf)
        np.divide(line_i_ka, self._line_imax_ka, out=line_loading, where=self._line_imax_ka != 0)
        tb = self._trafo_br
        trafo_loading = np.where(
            tb >= 0,
            np.maximum(i_f_ka[tb] * self._trafo_vn_kv[:, 0], i_t_ka[tb] * self._trafo_vn_kv[:, 1])
            * self._trafo_scale,
            0.0,
        )
        losses_mw = float(np.sum(sf[self._loss_br].real + st[self._loss_br].real))

        # slack gen output = calculated injection - scheduled injection + its own set-point
        s_inj = v[self._ref] * np.conj(self._ybus_ref @ v)
        import_mw = float(np.sum((s_inj.real - sbus[self._ref].real) * self._base_mva + self._ref_gen_pg0_mw))
        return PowerFlowResult(
            converged=True,
            iterations=iterations,
            vm_pu=vm_pu,
            va_degree=va_degree,
            line_loading_percent=line_loading * 100.0,
            trafo_loading_percent=trafo_loading,
            losses_mw=losses_mw,
            import_mw=import_mw,
        )

    @property
    def net(self) -> Any:
        """The pandapower net given at construction (for reference checks)."""
        return self._net


@dataclass(frozen=True)
class Limits:
    """Operating limits of a net: bus voltage band and branch loading limits (net row order)."""

    vm_min_pu: np.ndarray
    vm_max_pu: np.ndarray
    line_max_percent: np.ndarray
    trafo_max_percent: np.ndarray

    @classmethod
    def of(cls, net: Any) -> Limits:
        """Limits from the net: voltage band (default 0.95-1.05 pu), max_loading_percent (default 100)."""

        def col(table: Any, name: str, default: float) -> np.ndarray:
            values = table[name].to_numpy(dtype=float) if name in table else np.full(len(table), default)
            return np.where(np.isnan(values), default, values)

        return cls(
            col(net.bus, "min_vm_pu", 0.95),
            col(net.bus, "max_vm_pu", 1.05),
            col(net.line, "max_loading_percent", 100.0),
            col(net.trafo, "max_loading_percent", 100.0),
        )

    def violations(self, result: PowerFlowResult) -> tuple[int, int]:
        """(buses outside their voltage band, lines and trafos above their loading limit) of one step."""
        vm = result.vm_pu
        n_voltage = int(np.sum((vm < self.vm_min_pu - 1e-9) | (vm > self.vm_max_pu + 1e-9)))
        n_overload = int(np.sum(result.line_loading_percent > self.line_max_percent + 1e-9)) + int(
            np.sum(result.trafo_loading_percent > self.trafo_max_percent + 1e-9)
        )
        return n_voltage, n_overload
