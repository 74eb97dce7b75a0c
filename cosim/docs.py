"""The reference pages in ``docs/`` that are generated from the code, so that they cannot drift from it.

``python -m cosim.docs`` rewrites them; ``tests/unit/test_docs.py`` fails when a page and the code disagree.
Today: ``docs/scenario-keys.md``, every YAML key of a scenario with its unit, default, allowed values and
meaning, read from the pydantic schema (:class:`cosim.scenario.Scenario`).
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


PAGES = {"scenario-keys.md": scenario_keys_markdown}


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
