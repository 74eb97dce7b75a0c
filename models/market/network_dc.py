"""The DC (linear, lossless) network model of a pandapower net, as pandapower's own DC-OPF sees it.

`dc_network` converts the net with pandapower's converter in OPF mode (the one ``pandapower.rundcopp``
uses), so series susceptances include transformer ratios and taps, phase shifts are pandapower's,
buses joined by closed bus-bus switches are merged, and flow limits are pandapower's ``RATE_A``:
lines ``max_loading_percent / 100 * max_i_ka * df * parallel * vn_kv * sqrt(3)`` MW, transformers
``max_loading_percent / 100 * sn_mva * df * parallel`` MW; no ``max_loading_percent`` (column
missing, NaN or 0) means no limit (inf). Flows are positive from ``branch_from`` to ``branch_to``.
Buses that are in service but connected to nothing (pandapower drops them) are kept here: each is
an island of its own, with no branch.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph

# Column positions of PYPOWER's branch and bus matrices (pandapower.pypower.idx_brch / idx_bus).
_F_BUS, _T_BUS, _BR_X, _RATE_A, _TAP, _SHIFT, _BR_STATUS = 0, 1, 3, 5, 8, 9, 10
_BUS_TYPE, _REF = 1, 3
_NO_LIMIT_MW = 1e10  # PYPOWER's OPF treats RATE_A of 0 or >= 1e10 as no limit
_ROWS_PER_SOLVE = 32  # PTDF rows solved together (`DCNetwork.ptdf_rows`); SuperLU slows with many more
_ROWS_KEPT_VALUES = 2**23  # `DCNetwork.ptdf_rows` keeps at most this many values (64 MB) of solved rows


@dataclass(frozen=True)
class DCNetwork:
    """Buses and branches of a DC power-flow model (flow = base_mva * b_pu * (theta_f - theta_t - shift))."""

    bus: np.ndarray  # (n_bus,) one representative pandapower bus per electrical node, net.bus row order
    branch_from: np.ndarray  # (n_br,) positions into `bus`
    branch_to: np.ndarray  # (n_br,) positions into `bus`
    b_pu: np.ndarray  # (n_br,) series susceptance 1/(x * tap) in per unit of base_mva
    shift_rad: np.ndarray  # (n_br,) phase shift
    rate_mw: np.ndarray  # (n_br,) flow limit, inf where none
    slack: int  # position of the reference bus
    base_mva: float
    branch_name: list[str]  # "line 3", "trafo 0", "trafo3w 1 hv", ...
    bus_lookup: dict[int, int] = field(repr=False)  # any in-service pandapower bus -> position
    island_ref: np.ndarray = field(repr=False)  # positions of one reference bus per island (slack first)
    island: np.ndarray = field(repr=False)  # (n_bus,) island number of each bus (0 = slack's island)
    # PTDF rows solved so far (`ptdf_rows`): not an init field, so `dataclasses.replace` starts afresh
    _rows: dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    @property
    def n_bus(self) -> int:
        """Number of electrical nodes."""
        return len(self.bus)

    @property
    def n_branch(self) -> int:
        """Number of in-service branches."""
        return len(self.b_pu)

    def position_of(self, pp_bus: Any) -> np.ndarray:
        """Positions in `bus` of pandapower bus indices (merged buses share a position).

        Raises
        ------
        ValueError
            for a bus that is out of service or not in the net.
        """
        idx = np.atleast_1d(np.asarray(pp_bus, dtype=np.int64))
        missing = [int(b) for b in idx if int(b) not in self.bus_lookup]
        if missing:
            raise ValueError(f"buses {missing} are not in-service buses of this network")
        return np.array([self.bus_lookup[int(b)] for b in idx], dtype=np.int64)

    def ptdf(self) -> np.ndarray:
        """(n_br, n_bus) MW of branch flow per MW injected at a bus and withdrawn at the slack.

        Columns of buses outside the slack's island are zero (no path to the slack); within another
        island the withdrawal is at that island's reference bus.
        """
        n_bus, n_br = self.n_bus, self.n_branch
        out = np.zeros((n_br, n_bus))
        if n_br == 0:
            return out
        rows = np.arange(n_br)
        cft = sp.csr_matrix(
            (
                np.r_[np.ones(n_br), -np.ones(n_br)],
                (np.r_[rows, rows], np.r_[self.branch_from, self.branch_to]),
            ),
            shape=(n_br, n_bus),
        )
        bf = sp.diags(self.b_pu) @ cft
        bbus = (cft.T @ bf).toarray()
        free = np.setdiff1d(np.arange(n_bus), self.island_ref)
        theta = np.zeros((n_bus, n_bus))
        if len(free):
            theta[np.ix_(free, free)] = np.linalg.inv(bbus[np.ix_(free, free)])
        out = bf @ theta
        other = self.island != 0
        out[:, other] = 0.0
        return np.asarray(out)

    def ptdf_rows(self, branches: Any) -> np.ndarray:
        """(len(branches), n_bus) the rows of :meth:`ptdf` of the given branch positions, without the matrix.

        Same conventions as :meth:`ptdf` (injection at a bus, withdrawal at the slack; columns outside the
        slack's island zero; phase shifts ignored). Row ``l`` is ``b_l (theta_f - theta_t)`` with
        ``B_r theta = e_f - e_t`` on the slack island's buses other than the slack (``B_r`` symmetric): one
        sparse LU of ``B_r`` (built at the first call) and one solve per branch, each row kept once solved
        (the most recently used ones, up to ``_ROWS_KEPT_VALUES`` values: 1,531 rows of a 5,479-bus grid).
        A branch outside the slack's island has a zero row.
        """
        idx = np.atleast_1d(np.asarray(branches, dtype=np.int64))
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_branch):
            raise IndexError(f"branch positions must be in [0, {self.n_branch})")
        cache: dict[int, np.ndarray] = self._rows.setdefault("row", {})
        wanted = [int(k) for k in dict.fromkeys(idx.tolist())]
        todo = [k for k in wanted if k not in cache]
        if todo:
            self._solve_rows(np.array(todo, dtype=np.int64), cache)
        out = np.zeros((len(idx), self.n_bus))
        for i, k in enumerate(idx.tolist()):
            out[i] = cache[k]
        for k in wanted:  # most recently used last
            cache[k] = cache.pop(k)
        keep = max(1, _ROWS_KEPT_VALUES // max(1, self.n_bus))
        for k in list(cache)[: max(0, len(cache) - keep)]:
            del cache[k]
        return out

    def _solve_rows(self, todo: np.ndarray, cache: dict[int, np.ndarray]) -> None:
        """Solve the PTDF rows of branches `todo` into `cache` (see :meth:`ptdf_rows`)."""
        import scipy.sparse.linalg as spla

        if "lu" not in self._rows:
            free = np.flatnonzero(self.island == 0)
            free = free[free != self.slack]
            pos = np.full(self.n_bus, -1, dtype=np.int64)  # bus -> row of B_r (-1: not in it)
            pos[free] = np.arange(len(free))
            f, t, b = self.branch_from, self.branch_to, self.b_pu
            inside = (pos[f] >= 0) & (pos[t] >= 0)  # both ends in B_r: the off-diagonal terms
            pf, pt = pos[f], pos[t]
            rows = np.r_[pf[pf >= 0], pt[pt >= 0], pf[inside], pt[inside]]
            cols = np.r_[pf[pf >= 0], pt[pt >= 0], pt[inside], pf[inside]]
            vals = np.r_[b[pf >= 0], b[pt >= 0], -b[inside], -b[inside]]
            n = len(free)
            bred = sp.csc_matrix((vals, (rows, cols)), shape=(n, n))
            self._rows["lu"] = spla.splu(bred) if n else None
            self._rows["free"], self._rows["pos"] = free, pos
        lu, free, pos = self._rows["lu"], self._rows["free"], self._rows["pos"]
        for start in range(0, len(todo), _ROWS_PER_SOLVE):  # bounded memory for the right-hand sides
            part = todo[start : start + _ROWS_PER_SOLVE]
            rhs = np.zeros((len(free), len(part)))
            cols = np.arange(len(part))
            pf, pt = pos[self.branch_from[part]], pos[self.branch_to[part]]
            rhs[pf[pf >= 0], cols[pf >= 0]] = 1.0
            rhs[pt[pt >= 0], cols[pt >= 0]] -= 1.0
            theta = lu.solve(rhs) if lu is not None and rhs.any() else rhs
            for j, k in enumerate(part.tolist()):
                row = np.zeros(self.n_bus)
                row[free] = self.b_pu[k] * theta[:, j]
                cache[k] = row

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and copied without the rows solved so far and their factorisation (not picklable)."""
        return {**self.__dict__, "_rows": {}}


def _branch_names(net: Any, lookup: dict[str, tuple[int, int]], n_branch: int) -> list[str]:
    names = [f"branch {k}" for k in range(n_branch)]
    for table, (start, stop) in lookup.items():
        n = stop - start
        if table in net and hasattr(net[table], "index"):
            index = list(net[table].index)
            if len(index) == n:
                names[start:stop] = [f"{table} {i}" for i in index]
                continue
            if table == "trafo3w" and 3 * len(index) == n:
                names[start:stop] = [f"trafo3w {i} {side}" for side in ("hv", "mv", "lv") for i in index]
                continue
        names[start:stop] = [f"{table} {k}" for k in range(n)]
    return names


def dc_network(net: Any) -> DCNetwork:
    """Build the DC network model of a pandapower net (the net itself is not modified).

    Parameters
    ----------
    net : pandapowerNet

    Returns
    -------
    DCNetwork
        the slack is the bus of the first in-service ext_grid (pandapower's reference bus).
    """
    from cosim.models.grid import pp_internals

    net = copy.deepcopy(net)
    # The converter in OPF mode needs boolean `controllable` flags (SimBench leaves NaN); they only
    # affect generator data, not the branches and buses taken here.
    for table in ("ext_grid", "gen", "sgen", "load", "storage"):
        if table in net and "controllable" in net[table]:
            net[table]["controllable"] = net[table]["controllable"].eq(True)  # NaN -> False
    # The options pandapower.rundcopp sets (its defaults), but no connectivity check: islands are kept.
    pp_internals.init_dc_opf_options(
        net, check_connectivity=False, switch_rx_ratio=0.5, delta=1e-10, trafo3w_losses="hv"
    )
    with warnings.catch_warnings():  # pandapower's own FutureWarnings on SimBench's NaN q limits
        warnings.simplefilter("ignore", FutureWarning)
        ppc, _ = pp_internals.to_ppc(net)
    lookup = pp_internals.bus_lookup(net)
    base_mva = float(ppc["baseMVA"])

    # One node per ppc bus that holds an in-service pandapower bus; its representative is the first
    # such pandapower bus in net.bus row order.
    in_service = net.bus.index[net.bus.in_service.to_numpy(dtype=bool)].to_numpy(dtype=np.int64)
    node_of_ppc: dict[int, int] = {}
    rep: list[int] = []
    bus_lookup: dict[int, int] = {}
    for b in in_service:
        p = int(lookup[b])
        if p not in node_of_ppc:
            node_of_ppc[p] = len(rep)
            rep.append(int(b))
        bus_lookup[int(b)] = node_of_ppc[p]
    n_bus = len(rep)

    branch = np.real(ppc["branch"])
    names_all = _branch_names(net, pp_internals.branch_lookups(net), len(branch))
    f_ppc = branch[:, _F_BUS].astype(np.int64)
    t_ppc = branch[:, _T_BUS].astype(np.int64)
    keep = (branch[:, _BR_STATUS] > 0) & np.array(
        [int(f) in node_of_ppc and int(t) in node_of_ppc for f, t in zip(f_ppc, t_ppc, strict=True)],
        dtype=bool,
    )
    keep &= f_ppc != t_ppc
    br = branch[keep]
    tap = br[:, _TAP].copy()
    tap[tap == 0] = 1.0
    b_pu = 1.0 / (br[:, _BR_X] * tap)
    rate = br[:, _RATE_A].copy()
    rate[~np.isfinite(rate) | (rate <= 0) | (rate >= _NO_LIMIT_MW)] = np.inf
    branch_from = np.array([node_of_ppc[int(f)] for f in br[:, _F_BUS]], dtype=np.int64)
    branch_to = np.array([node_of_ppc[int(t)] for t in br[:, _T_BUS]], dtype=np.int64)

    # Reference: the ppc REF bus of the first in-service ext_grid; then one reference per other island.
    ref_ppc = [int(p) for p in lookup[net.ext_grid.bus[net.ext_grid.in_service].to_numpy(dtype=np.int64)]]
    ref_ppc += [i for i in range(len(ppc["bus"])) if ppc["bus"][i, _BUS_TYPE] == _REF]
    refs = [node_of_ppc[p] for p in ref_ppc if p in node_of_ppc]
    slack = refs[0] if refs else 0
    adj = sp.csr_matrix((np.ones(len(br)), (branch_from, branch_to)), shape=(n_bus, n_bus))
    _, labels = csgraph.connected_components(adj, directed=False)
    island = np.full(n_bus, -1, dtype=np.int64)
    island_ref: list[int] = []
    for start in [slack, *range(n_bus)]:
        if n_bus and island[start] < 0:
            island[labels == labels[start]] = len(island_ref)
            island_ref.append(start)
    return DCNetwork(
        bus=np.array(rep, dtype=np.int64),
        branch_from=branch_from,
        branch_to=branch_to,
        b_pu=b_pu,
        shift_rad=np.deg2rad(br[:, _SHIFT]),
        rate_mw=rate,
        slack=int(slack),
        base_mva=base_mva,
        branch_name=[n for n, k in zip(names_all, keep, strict=True) if k],
        bus_lookup=bus_lookup,
        island_ref=np.array(island_ref, dtype=np.int64),
        island=island,
    )


def copper_plate(net: Any) -> DCNetwork:
    """The copper plate of a net: one node (at the slack's bus) that every in-service bus maps to, no branch.

    The network a copper-plate design (uniform, admm, tou, dr, stochastic) clears on, so that network
    tools (e.g. the marginal emission factors) give the system's value at every bus.
    """
    buses = net.bus.index[net.bus.in_service.to_numpy(dtype=bool)].to_numpy(dtype=np.int64)
    slack_bus = int(net.ext_grid.bus.iloc[0]) if len(net.ext_grid) else int(buses[0])
    empty_f, empty_i = np.zeros(0), np.zeros(0, dtype=np.int64)
    return DCNetwork(
        bus=np.array([slack_bus], dtype=np.int64),
        branch_from=empty_i,
        branch_to=empty_i,
        b_pu=empty_f,
        shift_rad=empty_f,
        rate_mw=empty_f,
        slack=0,
        base_mva=float(getattr(net, "sn_mva", 1.0) or 1.0),
        branch_name=[],
        bus_lookup={int(b): 0 for b in buses},
        island_ref=np.array([0], dtype=np.int64),
        island=np.zeros(1, dtype=np.int64),
    )
