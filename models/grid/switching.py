"""AC power flow that follows topology events: branch outages and islanding with a grid-forming slack.

:class:`~cosim.models.grid.powerflow.ACPowerFlow` freezes the topology of its net at construction, so
each topology state (set of branches out of service, grid-forming unit or none) gets its own instance,
built lazily on a modified copy of the net and cached: events are few, and returning to a state reuses
its instance and its warm start.

Per state:

- Branches out of service give ``0.0`` loading, and so do in-service branches touching a bus an outage
  cut off (pandapower's runpp gives NaN for any branch touching an isolated bus). Isolated buses give
  NaN ``vm_pu``/``va_degree`` and agents there are dropped from the power flow: their power is not
  served (nor counted in losses or import).
- Islanded (``grid_forming`` set): every ext_grid is out of service and a slack ext_grid
  (``vm_pu=1.0``, ``va_degree=0``) sits at the bus of the grid-forming unit, whose own element is out
  of service: the slack delivers its power, so the agent's set-point for that column is ignored.
  ``import_mw`` is ``0.0`` and ``grid_forming_mw`` is the slack's P (generator convention, positive =
  the unit delivers; NaN if the step did not converge). Buses not connected to the grid-forming unit
  are isolated as above.

All result arrays stay in the row order (and length) of the intact net.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandapower as pp

from cosim.models.grid.powerflow import ACPowerFlow, LossSensitivities, PowerFlowResult

__all__ = ["BRANCH_TABLES", "GRID_FORMING_TABLES", "SwitchingPowerFlow", "state_net"]

BRANCH_TABLES = ("line", "trafo")  # tables an outage may name
GRID_FORMING_TABLES = ("storage", "sgen", "gen")  # tables a grid-forming unit may live in

Branch = tuple[str, int]
_State = tuple[frozenset[Branch], int | None]


def state_net(net: Any, out_branches: Iterable[Branch], grid_forming: tuple[str, int] | None) -> Any:
    """A copy of ``net`` with ``out_branches`` out of service and, islanded, the slack at ``grid_forming``.

    Islanded (``grid_forming`` a (table, index) element): the point of common coupling opens (every
    ext_grid and every transformer at an ext_grid's bus are out of service, so the substation's no-load
    losses do not drain the island), a slack ext_grid (1.0 pu, 0 degrees) sits at the unit's bus and
    the unit's own element is out of service.
    """
    net = copy.deepcopy(net)
    for table, index in out_branches:
        net[table].at[index, "in_service"] = False
    if grid_forming is not None:
        table, index = grid_forming
        pcc = net.ext_grid.bus.to_numpy()
        net.trafo.loc[net.trafo.hv_bus.isin(pcc) | net.trafo.lv_bus.isin(pcc), "in_service"] = False
        net.ext_grid["in_service"] = False
        pp.create_ext_grid(net, int(net[table].at[index, "bus"]), vm_pu=1.0, va_degree=0.0)
        net[table].at[index, "in_service"] = False
    return net


class SwitchingPowerFlow:
    """One :class:`ACPowerFlow` per topology state, built lazily on a copy of the net and kept.

    Parameters
    ----------
    net : pandapowerNet
        The intact network (all events are applied to copies; it is not modified).
    elements : sequence of (table, index)
        For each agent (column of the ``solve`` arrays) its pandapower element.
    tolerance_mva, max_iteration
        Passed to every :class:`ACPowerFlow`.
    """

    def __init__(
        self,
        net: Any,
        elements: Sequence[tuple[str, int]],
        *,
        tolerance_mva: float = 1e-8,
        max_iteration: int = 10,
    ) -> None:
        self._elements = [(str(t), int(i)) for t, i in elements]
        self._kwargs: dict[str, Any] = {"tolerance_mva": tolerance_mva, "max_iteration": max_iteration}
        intact = ACPowerFlow(net, self._elements, **self._kwargs)  # validates the elements
        self._intact_key: _State = (frozenset(), None)
        self._flows: dict[_State, ACPowerFlow] = {self._intact_key: intact}
        self._last_key: _State = self._intact_key  # topology of the last solve

    @property
    def net(self) -> Any:
        """The intact pandapower net given at construction."""
        return self._flows[self._intact_key].net

    @property
    def n_topologies(self) -> int:
        """How many :class:`ACPowerFlow` instances were built (the intact one included)."""
        return len(self._flows)

    def solve(
        self,
        p_mw: np.ndarray,
        q_mvar: np.ndarray,
        *,
        out_branches: Iterable[Branch] = frozenset(),
        grid_forming: int | None = None,
        vm_set_pu: np.ndarray | None = None,
        q_set_mvar: np.ndarray | None = None,
    ) -> PowerFlowResult:
        """Solve the AC power flow of one step in the given topology state.

        Parameters
        ----------
        p_mw, q_mvar : np.ndarray
            ``(n_agent,)`` agent active/reactive power, load convention (positive = consumption).
        out_branches : iterable of (``"line"`` | ``"trafo"``, index)
            Branches out of service this step (those already out in the intact net are ignored).
        grid_forming : int or None
            None: connected to the upstream grid. Otherwise islanded, with the agent of this column
            (a storage, sgen or gen element) as the slack.
        vm_set_pu, q_set_mvar : np.ndarray, optional
            Voltage set-points and reactive injections per bus, as :meth:`ACPowerFlow.solve`.

        Returns
        -------
        PowerFlowResult
            As :meth:`ACPowerFlow.solve`; islanded, ``import_mw = 0.0`` and ``grid_forming_mw`` set.

        Raises
        ------
        ValueError
            For a branch that does not exist or an invalid grid-forming column.
        """
        key = (self._normalise_branches(out_branches), self._check_grid_forming(grid_forming))
        result = self._flow(key).solve(p_mw, q_mvar, vm_set_pu, q_set_mvar)
        self._last_key = key
        if grid_forming is None:
            return result
        return dataclasses.replace(result, import_mw=0.0, grid_forming_mw=result.import_mw)

    def loss_sensitivities(
        self, vm_pu: np.ndarray | None = None, va_degree: np.ndarray | None = None
    ) -> LossSensitivities:
        """:meth:`ACPowerFlow.loss_sensitivities` in the topology of the last :meth:`solve`.

        Islanded, the grid-forming unit's bus is the slack that balances the losses; buses cut off by
        an outage give NaN.
        """
        return self._flows[self._last_key].loss_sensitivities(vm_pu, va_degree)

    def _flow(self, key: _State) -> ACPowerFlow:
        """The power flow of a topology, built the first time it is needed."""
        flow = self._flows.get(key)
        if flow is None:
            unit = None if key[1] is None else self._elements[key[1]]
            flow = self._flows[key] = ACPowerFlow(
                state_net(self.net, key[0], unit), self._elements, **self._kwargs
            )
        return flow

    def before_restore(self, fields: dict[str, Any]) -> None:
        """Build the topologies a checkpoint holds state of, so that their warm starts are restored."""
        kind, flows = fields.get("_flows", ("skip", None))
        if kind == "items":
            for key in flows:
                self._flow(key)

    # ------------------------------------------------------------------ states
    def _normalise_branches(self, out_branches: Iterable[Branch]) -> frozenset[Branch]:
        """Validated branch set without the branches already out of service in the intact net."""
        net, out = self.net, set[Branch]()
        for table, index in out_branches:
            if table not in BRANCH_TABLES or index not in net[table].index:
                raise ValueError(f"out-of-service branch ({table!r}, {index!r}) does not exist")
            if bool(net[table].at[index, "in_service"]):
                out.add((str(table), int(index)))
        return frozenset(out)

    def _check_grid_forming(self, column: int | None) -> int | None:
        """Validate the grid-forming agent column."""
        if column is None:
            return None
        n_agent = len(self._elements)
        if not 0 <= int(column) < n_agent:
            raise ValueError(f"grid-forming column {column} is not an agent column 0..{n_agent - 1}")
        table, index = self._elements[int(column)]
        if table not in GRID_FORMING_TABLES:
            raise ValueError(f"grid-forming agent ({table!r}, {index}) is not in {GRID_FORMING_TABLES}")
        if not bool(self.net[table].at[index, "in_service"]):
            raise ValueError(f"grid-forming agent ({table!r}, {index}) is out of service")
        return int(column)
