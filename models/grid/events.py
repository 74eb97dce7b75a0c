"""Outages that happen during a study: when each is on, and the topology state of every step.

A step runs in the state of every event that overlaps it (conservative: an outage from 18:30 takes
the whole 18:00 hour). The state says which branches are out, whether the microgrid is islanded
around a grid-forming unit, and which agents are still connected to a source (the upstream grid or
the grid-forming unit): the others can neither trade nor be served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandapower.topology as top

from cosim.models.grid.switching import Branch, state_net


@dataclass(frozen=True)
class Event:
    """One outage: ``kind`` ``island`` (``grid_forming`` agent column) or ``line_outage`` (``branch``)."""

    kind: str
    start_s: int  # Unix s
    end_s: int  # Unix s, exclusive
    branch: Branch | None = None
    grid_forming: int | None = None
    reserve_share: float = 0.0

    @property
    def element(self) -> str:
        """The branch as ``'line N'`` (empty for an island)."""
        return "" if self.branch is None else f"{self.branch[0]} {self.branch[1]}"


@dataclass(frozen=True)
class State:
    """The topology of one step."""

    out_branches: frozenset[Branch]
    grid_forming: int | None  # agent column of the slack while islanded, else None
    reserve_share: float  # of the grid-forming battery, held back from the market
    connected: np.ndarray  # (n_agent,) bool: the agent's bus reaches a source

    @property
    def islanded(self) -> bool:
        """The upstream grid is lost."""
        return self.grid_forming is not None


def parse_branch(net: Any, name: str) -> Branch:
    """``'line 3'`` or ``'trafo 0'`` as a (table, index) of an in-service branch of ``net``.

    Raises
    ------
    ValueError
        naming what would be valid.
    """
    table, _, index = name.strip().partition(" ")
    if table not in ("line", "trafo") or not index.strip().isdigit():
        raise ValueError(f"{name!r} is not a branch name: write 'line N' or 'trafo N' (pandapower index)")
    i = int(index)
    if i not in net[table].index or not bool(net[table].at[i, "in_service"]):
        raise ValueError(f"{name!r} is not an in-service {table} of this grid (it has {len(net[table])})")
    return table, i


class EventSchedule:
    """The events of a run and the state of every step (states built once and cached).

    Parameters
    ----------
    net : the intact pandapower net
    elements, bus : (table, index) element and pandapower bus of every agent
    events : the outages
    times_s : (T,) Unix start of every step; step_s : step length [s]
    """

    checkpoint_drop = ("net",)  # the network, built from the scenario: a checkpoint leaves it out

    def __init__(
        self,
        net: Any,
        elements: list[tuple[str, int]],
        bus: np.ndarray,
        events: list[Event],
        times_s: np.ndarray,
        step_s: int,
    ) -> None:
        self.net, self.elements, self.bus, self.events = net, elements, np.asarray(bus), list(events)
        t = np.asarray(times_s, dtype=np.int64)
        start = np.array([e.start_s for e in events], dtype=np.int64)
        end = np.array([e.end_s for e in events], dtype=np.int64)
        self.active = (t[:, None] < end[None, :]) & (t[:, None] + step_s > start[None, :])  # (T, n_event)
        self._states: dict[tuple[frozenset[Branch], int | None], State] = {}
        self.reserve_share: dict[int, float] = {}  # grid-forming agent column -> share held back, always
        for e in self.events:
            if e.grid_forming is not None:
                self.reserve_share[e.grid_forming] = max(
                    e.reserve_share, self.reserve_share.get(e.grid_forming, 0)
                )

    def islanded(self, k: int) -> bool:
        """Step ``k`` runs islanded."""
        return any(self.events[i].kind == "island" for i in np.flatnonzero(self.active[k]))

    def state(self, k: int) -> State:
        """The topology state of step ``k``."""
        on = [self.events[i] for i in np.flatnonzero(self.active[min(k, len(self.active) - 1)])]
        out = frozenset(e.branch for e in on if e.branch is not None)
        islands = [e for e in on if e.kind == "island"]
        unit = islands[0].grid_forming if islands else None
        key = (out, unit)
        if key not in self._states:
            self._states[key] = State(out, unit, max((e.reserve_share for e in islands), default=0.0),
                                      self._connected(out, unit))  # fmt: skip
        return self._states[key]

    def _connected(self, out: frozenset[Branch], unit: int | None) -> np.ndarray:
        """(n_agent,) True where the agent's bus reaches an in-service ext_grid (or the grid-forming unit)."""
        if not out and unit is None:
            return np.ones(len(self.bus), dtype=bool)
        net = state_net(self.net, out, None if unit is None else self.elements[unit])
        graph = top.create_nxgraph(net, respect_switches=True)
        sources = net.ext_grid.bus[net.ext_grid.in_service].to_numpy()
        reached: set[int] = set()
        for b in sources:
            reached |= set(top.connected_component(graph, int(b)))
        return np.isin(self.bus, list(reached))
