"""The component protocol: what each model of a study gives the world that wires them.

A component is one simulator of the study (``models/<name>/component.py``). It builds itself from the
scenario and the components built before it, lists every dataset it can write in one table (its module's
``DATASETS``, rows of :class:`Dataset`, rendered into ``docs/datasets.md``), declares its part of the HDF5
file from that table (its :class:`Contract`: series, tables, static datasets, routes from its outputs,
attributes), names the mosaik adapter that runs it and that adapter's parameters, the inputs it takes from
other components (:class:`Link`), the state a checkpoint keeps, and what it adds to the file and the
summary at the end of a run. ``cosim.world`` only
loops over :data:`REGISTRY`; it knows no model by name.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from cosim.recorder import Series, Table
    from cosim.scenario import Scenario


class Entry(NamedTuple):
    """A component of the registry: the module with its ``build``, and whether it can leave the process."""

    module: str
    leaves: bool = False  # its adapter takes plain parameters only: it can run in a process of its own


# the components in build order (a component may use those before it)
REGISTRY: dict[str, Entry] = {
    "agents": Entry("cosim.models.agents.component"),
    "grid": Entry("cosim.models.grid.component"),
    "market": Entry("cosim.models.market.component"),
    "accounting": Entry("cosim.models.accounting.component"),
    "privacy": Entry("cosim.models.privacy.component", leaves=True),
    "ledger": Entry("cosim.models.ledger.component", leaves=True),
}


def rng_for(seed: int, model: str) -> np.random.Generator:
    """The one random generator of a model, from the scenario seed and the model's name."""
    return np.random.default_rng([seed, zlib.crc32(model.encode())])


class Dataset(NamedTuple):
    """One dataset a component can write: a row of its ``DATASETS`` table (and of ``docs/datasets.md``).

    Attributes
    ----------
    path : HDF5 path without the leading ``/``
    unit : the unit as the code declares it (stored as UDUNITS-2, :mod:`cosim.units`; a note after the unit
        is stored as ``comment``)
    along : the dimension of a per-element series (``"bus"``, ``"agent"``, ...), of a static or end-of-run
        dataset (two axes: ``"lorenz_point x lorenz_axis"``), or the rows of a table; None: one value per
        step (series) or per run
    description : what it holds (stored as a series' ``description``, a table's group ``description``)
    dtype : element type (``str``: strings)
    when : what, besides its output group, it is written under ("": always with its group), e.g. ``"design
        reactive"``, ``"screens"``, ``"events"``, ``"record_tables"``
    kind : ``series`` (one row per step), ``static`` (written at the start), ``table`` (rows appended as they
        come; ``columns`` lists them) or ``final`` (written when the run completes)
    attr : the output attribute of the component's entity it is recorded from (series and tables)
    note : more for the reader, rendered in the docs only (not stored in the file)
    columns : a table's ``(name, dtype, unit)`` columns
    """

    path: str
    unit: str
    along: str | None
    description: str
    dtype: Any = np.float64
    when: str = ""
    kind: Literal["series", "static", "table", "final"] = "series"
    attr: str = ""
    note: str = ""
    columns: tuple[tuple[str, Any, str], ...] = ()


# the datasets that label each element dimension: a per-element series names its columns by them
LABELS = {
    "bus": "grid/bus/name",
    "line": "grid/line/name",
    "trafo": "grid/trafo/name",
    "agent": "agents/name",
    "battery": "agents/storage_name",
    "household": "agents/household_name",
    "supplier": "market/supplier_name",
    "series": "privacy/series_name",
    "unit": "equity/unit_name",
    "month": "equity/month_start",
}


def dataset(datasets: Iterable[Dataset], path: str) -> Dataset:
    """The row of ``path`` in a component's ``DATASETS``; KeyError when the table does not list it."""
    for row in datasets:
        if row.path == path:
            return row
    raise KeyError(f"{path} is not in the component's DATASETS table: add a row for it")


def series(datasets: Iterable[Dataset], path: str, width: int | None = None) -> Series:
    """The :class:`~cosim.recorder.Series` of a ``series`` row, ``width`` columns wide (None: one value)."""
    from cosim.recorder import Series

    row = dataset(datasets, path)
    assert row.kind == "series", f"{path} is a {row.kind}, not a series"
    return Series(path, row.unit, row.dtype, width, row.description, LABELS[row.along] if row.along else "")


def table(datasets: Iterable[Dataset], path: str, step_column: str = "") -> Table:
    """The :class:`~cosim.recorder.Table` of a ``table`` row (its rows along ``along``; ``step_column``:
    label the rows by the start time of the step in this column)."""
    from cosim.recorder import Table

    row = dataset(datasets, path)
    assert row.kind == "table", f"{path} is a {row.kind}, not a table"
    return Table(path, row.columns, row.description, dim=row.along or "", step_column=step_column)


@dataclass
class Contract:
    """A component's part of the HDF5 file.

    ``routes`` maps an output attribute of the component's entity to the dataset it is recorded in;
    ``labels`` names the dimension a static dataset labels (``{"grid/bus/name": "bus"}``); ``dims`` gives
    the dimension names of static and end-of-run datasets that no labels name by length.
    """

    series: list[Series] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    static: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __or__(self, other: Contract) -> Contract:
        """Both contracts in one (the other's routes are its own: merge per component only)."""
        return Contract(
            self.series + other.series,
            self.tables + other.tables,
            self.static | other.static,
            self.routes | other.routes,
            self.attrs | other.attrs,
            self.labels | other.labels,
            self.dims | other.dims,
        )

    def record(
        self, datasets: Iterable[Dataset], path: str, width: int | None = None, step_column: str = ""
    ) -> None:
        """Add the series or table ``path`` of ``datasets`` and route its output attribute to it."""
        row = dataset(datasets, path)
        if row.kind == "table":
            self.tables.append(table(datasets, path, step_column))
        else:
            self.series.append(series(datasets, path, width))
        self.routes[row.attr] = path

    def add_static(self, datasets: Iterable[Dataset], arrays: dict[str, Any]) -> None:
        """Add datasets written whole (at the start, or by ``finish`` at the end), with the units that
        ``datasets`` declares for them."""
        for path, data in arrays.items():
            row = dataset(datasets, path)
            assert row.kind in ("static", "final"), f"{path} is a {row.kind}, not written whole"
            self.static[path] = (data, row.unit)


@dataclass(frozen=True)
class Link:
    """Inputs of a component: ``attrs`` of the entity of component ``source``.

    An attribute is a name or a ``(source attribute, input attribute)`` pair; a ``time_shifted`` link
    delivers the value of the previous step, ``initial_data`` at the first step of a segment.
    """

    source: str
    attrs: tuple[str | tuple[str, str], ...]
    time_shifted: bool = False
    initial_data: dict[str, Any] | None = None


class Component:
    """Base of the components. Subclasses set the class attributes and override what they provide.

    Attributes
    ----------
    name : the registry name, also the scenario section and the HDF5 group it mostly writes
    sim : mosaik ``python`` starter of the adapter (``"module:Class"``)
    sim_name, entity : the simulator's name in the World and the model of its one entity
    state_attrs : attributes whose objects a checkpoint captures and a resume restores
    reports : the adapter has an output ``summary`` (plain data), read into ``summary`` when the run ends
    """

    name: ClassVar[str]
    sim: ClassVar[str]
    sim_name: ClassVar[str]
    entity: ClassVar[str]
    state_attrs: ClassVar[tuple[str, ...]] = ()
    reports: ClassVar[bool] = False
    summary: dict[str, Any]

    def ready(self) -> None:
        """Called once every component is built (for parts that need a component built after this one)."""

    def contract(self, groups: Iterable[str]) -> Contract:
        """The datasets of this component the run writes, given ``output.groups`` (rows of its ``DATASETS``,
        added with :meth:`Contract.record` and :meth:`Contract.add_static`)."""
        return Contract()

    def params(self, offset_s: int, carry: dict[str, Any]) -> dict[str, Any]:
        """Keyword parameters of the adapter's ``init`` for a segment starting at mosaik time ``offset_s``.

        ``carry`` is the run's dict of values carried across segments and checkpoints.
        """
        raise NotImplementedError

    def plain_params(self, offset_s: int) -> dict[str, Any]:
        """The adapter's parameters as plain data, for an adapter in another process (``REGISTRY`` says which
        components can leave); it builds its model from them as the world would."""
        raise NotImplementedError(f"{self.name} cannot leave the process")

    def links(self, k_from: int, carry: dict[str, Any]) -> list[Link]:
        """Inputs from other components, for a segment starting at step ``k_from``."""
        return []

    def finish(self, groups: Iterable[str]) -> Contract:
        """Datasets and attributes added when the run completes (``static`` and ``attrs`` only)."""
        return Contract()

    def close(self) -> None:
        """Release what the component holds outside the world's objects (a worker process); called when the
        run ends, however it ends."""

    def warnings(self) -> list[str]:
        """What a user must not miss about this component's run (a halted ledger, refused releases)."""
        return []

    def state(self) -> dict[str, Any]:
        """The objects a checkpoint captures."""
        return {a: getattr(self, a) for a in self.state_attrs}

    def restore(self, state: dict[str, Any]) -> None:
        """Take the objects of a checkpoint (as :func:`cosim.checkpoint.restore` returns them)."""
        for a, v in state.items():
            setattr(self, a, v)


def plain_scenario(scenario: Scenario) -> dict[str, Any]:
    """The validated scenario as JSON data for a component in another process (it runs in that process)."""
    return scenario.model_copy(update={"orchestration": type(scenario.orchestration)()}).model_dump(
        mode="json"
    )


def build_all(scenario: Scenario) -> dict[str, Component]:
    """Every component the scenario asks for, built in registry order, by name."""
    built: dict[str, Component] = {}
    for name, entry in REGISTRY.items():
        component = importlib.import_module(entry.module).build(scenario, built)
        if component is not None:
            built[name] = component
    for component in built.values():
        component.ready()
    return built
