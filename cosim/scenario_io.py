"""Reading a scenario file safely: size limit, UTF-8, YAML without duplicated keys.

Every problem becomes a :class:`ScenarioError` naming the file and, where there is one, the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cosim.errors import ScenarioError

MAX_SCENARIO_BYTES = 4 * 2**20
"""Largest scenario file read (4 MiB): larger files are refused before parsing."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (YAML would keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key (a list as key): the base class says so
                break
            if first is not None:
                raise ScenarioError(
                    [(f"line {line}", f"duplicated key {key!r} (first given at line {first}); keep one")]
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping
)


def _decode(raw: bytes) -> str:
    """The file's text; UTF-8 (with or without a byte-order mark) only."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError("the file is UTF-16; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); save the file as UTF-8"
        ) from None


def read_yaml(path: Path) -> Any:
    """Parse a scenario file into Python objects; ScenarioError for every way the file can be wrong."""
    source = str(path)
    try:
        if not path.is_file():
            what = "it is a directory" if path.is_dir() else "no such file"
            raise ScenarioError([("(file)", f"cannot read {path}: {what}")], source)
        size = path.stat().st_size
        if size > MAX_SCENARIO_BYTES:
            limit = f"the limit of {MAX_SCENARIO_BYTES >> 20} MiB"
            raise ScenarioError([("(file)", f"{size / 2**20:.1f} MiB is larger than {limit}")], source)
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError([("(file)", f"cannot read {path}: {exc.strerror}")], source) from None
    try:
        text = _decode(raw)
    except ValueError as exc:
        raise ScenarioError([("(file)", str(exc))], source) from None
    if "\x00" in text:
        raise ScenarioError([("(file)", "a binary file (NUL bytes), not UTF-8 YAML text")], source)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except ScenarioError as exc:
        raise ScenarioError(exc.problems, source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ScenarioError([(where, f"not valid YAML: {exc}")], source) from None
    except RecursionError:
        raise ScenarioError([("(file)", "nested too deeply to parse")], source) from None
