"""The reference pages in ``docs/`` that are generated from the code, so that they cannot drift from it.

``python -m cosim.docs`` rewrites them; ``tests/unit/test_docs.py`` fails when a page and the code disagree.
``docs/scenario-keys.md``: every YAML key of a scenario with its unit, default, allowed values and meaning,
read from the pydantic schema (:class:`cosim.scenario.Scenario`); ``docs/datasets.md``: every HDF5 dataset a
run can write, with its shape, type, unit, condition and meaning, read from the ``DATASETS`` table of each
component (:data:`cosim.component.REGISTRY`).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"

_HEADER = """# Scenario keys

Generated from the scenario schema by `python -m cosim.docs`; do not edit by hand (a test compares this
page with the code). Unknown keys are refused. Durations are written as a number and a unit: `900s`,
`15min`, `1h`, `365d`, `2w`. `cosim schema` prints the same schema as JSON Schema for editors.

A key marked *(with `source: X`)* exists only in that variant of its section.

| key | unit | default | allowed | meaning |
|---|---|---|---|---|
"""

_BOUNDS = {annotated_types.Gt: ("gt", ">"), annotated_types.Ge: ("ge", ">="), annotated_types.Lt: ("lt", "<"),
           annotated_types.Le: ("le", "<=")}  # fmt: skip


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, dicts, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        for model in _models_in(arg):
            if model not in found:
                found.append(model)
    return found


def _literals(annotation: Any) -> list[Any]:
    """The values of the Literal types inside an annotation."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    values: list[Any] = []
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            values += _literals(arg)
    return values


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`" if value not in ([], {}) else f"`{value!r}` (none)"
    if info.default is None:
        return "—"
    return f"`{info.default!r}`"


def _allowed(info: FieldInfo) -> str:
    parts = [
        f"{sign} {getattr(m, attr)}"
        for m in info.metadata
        for kind, (attr, sign) in _BOUNDS.items()
        if isinstance(m, kind)
    ]
    literals = [v for v in _literals(info.annotation) if v is not None]
    if literals:
        parts.append("one of " + ", ".join(f"`{v}`" for v in literals))
    return "; ".join(parts)


def _variant(model: type[BaseModel]) -> str:
    """`` (with `source: simbench`)`` for a member of a union told apart by a Literal field."""
    for name, info in model.model_fields.items():
        values = _literals(info.annotation)
        if name in ("source", "kind") and len(values) == 1:
            return f" *(with `{name}: {values[0]}`)*"
    return ""


def _rows(model: type[BaseModel], prefix: str, qualifier: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        unit = extra.get("unit", "")
        text = (info.description or "").replace("|", "\\|")
        models = _models_in(info.annotation)
        key_shown = f"{key}[]" if models and "list[" in str(info.annotation) else key
        yield f"| `{key_shown}`{qualifier} | {unit} | {_default(info)} | {_allowed(info)} | {text} |"
        sub_prefix = f"{key_shown}."
        for sub in models:
            yield from _rows(sub, sub_prefix, _variant(sub) if len(models) > 1 else "")


def scenario_keys_markdown() -> str:
    """The ``docs/scenario-keys.md`` page: one table row per scenario key."""
    from cosim.scenario import Scenario

    rows = dict.fromkeys(_rows(Scenario, ""))  # a key shared by variants with the same text: once
    return _HEADER + "\n".join(rows) + "\n"


_DATASETS_HEADER = """# HDF5 datasets

Generated from the `DATASETS` table of each component (`models/<name>/component.py`) by
`python -m cosim.docs`; do not edit by hand (a test compares this page with the code, and a component
cannot write a dataset its table does not list). Conventions (chunking, CF times, UDUNITS-2 units, money,
dimension scales) are in the README, "Output: the HDF5 contract".

- **shape**: `time` is the step axis (`/time`); a series is `time` (one value per step) or `time x <dim>`
  (one column per element, named by the dataset in the `columns` attribute); a static or end-of-run
  dataset runs along its dimension(s); a table's columns run along its row dimension.
- **kind**: `series` one row per step; `static` written at the start; `table` rows appended as they come
  (a group of 1-D column datasets); `final` written when the run completes.
- **unit**: as the code declares it; the file stores its UDUNITS-2 form in `units` (a note after the unit
  is stored as `comment`); an empty unit: a string dataset.
- **written when**: every dataset is written only when its output group is in `output.groups` (the first
  part of its path, unless said otherwise) and its component runs; *written when* names any further
  condition: `design <capability>` (the market design has it: `reactive` acopf, `security` scopf,
  `day_ahead` stochastic, `distributed` admm), `screens` (dcopf, scopf), `strategic` (`market.strategic`),
  `events`, `emissions`, `equity` (the scenario has that section), `household profiles`
  (`agents.household_profiles` gives agents a household), `evaluate` (`privacy.evaluate`), `record_tables`
  (`ledger.record_tables`).
"""


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _type(dtype: Any) -> str:
    """A dataset's element type as the page shows it."""
    import numpy as np

    if dtype in (str, object):
        return "string"
    kind = np.dtype(dtype)
    return f"bytes[{kind.itemsize}]" if kind.kind == "S" else kind.name


def _shape(row: Any) -> str:
    along = row.along or ""
    if row.kind == "series":
        return f"`time x {along}`" if along else "`time`"
    return f"`{along}`" if along else "`1`"


def _text(row: Any) -> str:
    return _md(f"{row.description}; {row.note}" if row.note else row.description)


def component_datasets() -> dict[str, tuple[Any, ...]]:
    """Each component's ``DATASETS`` table, in registry order."""
    import importlib

    from cosim.component import REGISTRY

    return {name: importlib.import_module(e.module).DATASETS for name, e in REGISTRY.items()}


def datasets_markdown() -> str:
    """The ``docs/datasets.md`` page: the recorder's coordinates, then one section per component."""
    from cosim.component import LABELS
    from cosim.world import TIME

    tables = component_datasets()
    dims = {"time": "`/time`"} | {dim: f"`/{path}`" for dim, path in LABELS.items()}
    for rows in tables.values():
        for row in rows:
            for dim in (row.along or "").split(" x "):
                if dim and dim not in dims:
                    dims[dim] = "row numbers 0..N-1" if row.kind == "table" else "positions 0..n-1"
    dims["day"] = "the start time of each day (Unix s, like `/time`)"
    lines = [_DATASETS_HEADER, "## Coordinates (the recorder)", ""]
    lines += [
        f"`/{TIME.path}` ({_type(TIME.dtype)}, {TIME.units}): {TIME.description}. Every axis of every "
        "dataset has an HDF5 dimension scale named after its dimension, in the dataset's own group: "
        "`<group>/time` copies `/time` (and grows with it), `<group>/<dim>` copies the labels of an element "
        "dimension, `<table>/<row dim>` numbers a table's rows, and an axis without labels is numbered by "
        "`<group>/<name>_dim<axis>`; where a dimension's name is taken in the group by another dataset, its "
        "scale is named by the path of its labels joined by `_` (`/agents/agents_household_name`). The "
        "dimensions:",
        "",
        "| dimension | labelled by |",
        "|---|---|",
        *(f"| `{dim}` | {label} |" for dim, label in dims.items()),
        "",
    ]
    for name, rows in tables.items():
        lines += [f"## {name}", "", "| dataset | kind | shape | type | unit | written when | description |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for row in rows:
            kind_type = "group" if row.kind == "table" else _type(row.dtype)
            lines.append(
                f"| `/{row.path}` | {row.kind} | {_shape(row)} | {kind_type} | {_md(row.unit)} | "
                f"{row.when or 'always'} | {_text(row)} |"
            )
        for row in rows:
            if row.kind != "table":
                continue
            lines += ["", f"`/{row.path}` columns (each a 1-D dataset along `{row.along}`):", "",
                      "| column | type | unit |", "|---|---|---|"]  # fmt: skip
            lines += [f"| `{c}` | {_type(dtype)} | {_md(unit)} |" for c, dtype, unit in row.columns]
        lines.append("")
    return "\n".join(lines)


PAGES = {"scenario-keys.md": scenario_keys_markdown, "datasets.md": datasets_markdown}


def write_docs(directory: Path = DOCS_DIR) -> list[Path]:
    """Write every generated page into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, render in PAGES.items():
        path = directory / name
        path.write_text(render(), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_docs():
        print(f"wrote {path}")
