"""The market-design registry: names, capabilities, the validation that reads them, and no name switches."""

from __future__ import annotations

import ast
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest

from cosim.errors import ScenarioError
from cosim.models.market.clearers import Clearer
from cosim.models.market.designs import DESIGN_KEYS, DESIGNS, DesignName, design, designs_with
from cosim.scenario import MarketConfig, load_scenario

REPO = Path(__file__).resolve().parents[2]
REGISTRY = "models/market/designs.py"


def _is_name(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value in DESIGNS


def _names_design(node: ast.AST) -> bool:
    """A design name, or a tuple, list or set holding one."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_is_name(e) for e in node.elts)
    return _is_name(node)


def _is_design_value(node: ast.AST) -> bool:
    """``design``, ``x.design`` or ``x["design"]``."""
    if isinstance(node, ast.Name):
        return node.id == "design"
    if isinstance(node, ast.Attribute):
        return node.attr == "design"
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.slice, ast.Constant)
        and node.slice.value == "design"
    )


def name_switches(source: str) -> list[str]:
    """Comparisons with a design name or the design value, dicts keyed by design names, match cases."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            ops = [node.left, *node.comparators]
            if any(_names_design(o) or _is_design_value(o) for o in ops):
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Dict) and sum(_is_name(k) for k in node.keys if k is not None) >= 2:
            found.append(f"{node.lineno}: a dict keyed by design names")
        elif isinstance(node, ast.MatchValue) and _is_name(node.value):
            found.append(f"{node.lineno}: case {ast.unparse(node.value)}")
    return found


def test_the_scan_finds_every_kind_of_name_switch() -> None:
    """The scanner flags ==, !=, in and not in against names or the design value, name-keyed dicts and
    match cases, and leaves alone other strings and other attributes."""
    flagged = """
        a = m.design == "central"
        b = market.design in ("tou", "dr")
        c = "acopf" != kind
        d = m["design"] == x
        e = {"uniform": 1, "dcopf": 2}
        match kind:
            case "scopf":
                pass
        f = design not in allowed
    """
    clean = """
        a = kind == "load"
        b = DESIGN in ok.columns
        c = m.designs == 3
        d = {"uniform": 1, "other": 2}
        e = name in DESIGNS
    """
    assert len(name_switches(textwrap.dedent(flagged))) == 7
    assert name_switches(textwrap.dedent(clean)) == []


def test_no_design_name_switch_outside_the_registry() -> None:
    """No source file but the registry decides anything by a design's name."""
    hits: dict[str, list[str]] = {}
    for root in ("cosim", "models", "analysis"):
        for path in sorted((REPO / root).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            if rel != REGISTRY:
                found = name_switches(path.read_text(encoding="utf-8"))
                if found:
                    hits[rel] = found
    assert hits == {}, f"design names compared outside {REGISTRY}: read its capabilities instead"


def test_registry_is_the_schema_of_market_design() -> None:
    """market.design accepts exactly the registered names, in registry order; each builds a `Clearer`."""
    assert typing.get_args(DesignName) == tuple(DESIGNS)
    schema = MarketConfig.model_json_schema()["properties"]["design"]
    assert schema["enum"] == list(DESIGNS)
    for name, d in DESIGNS.items():
        assert d.name == name and design(name) is d and issubclass(d.clearer, Clearer)
    with pytest.raises(ValueError, match="market design 'lmp' is not built: one of uniform, dcopf"):
        design("lmp")


@pytest.mark.parametrize("name", list(DESIGNS))
def test_capabilities_are_consistent(name: str) -> None:
    """What a design claims hangs together: a DC network is a network, nodal emissions need one, a
    network design without its own DC model takes a DC reference, keys it needs are keys it uses."""
    c = design(name).capabilities
    assert not c.dc_network or c.network
    assert (c.emissions == "nodal") == c.dc_network
    assert (c.emissions == "dc_reference") == (c.network and not c.dc_network)
    assert not (c.reactive or c.losses) or (c.network and not c.dc_network)
    assert not (c.security or c.screens or c.strategic) or c.dc_network
    assert not c.islanding or c.outages
    assert not (c.day_ahead or c.fixed_demand) or not c.batteries_bid
    assert c.requires <= c.accepts <= set(DESIGN_KEYS) | {"tariff"}
    assert not (c.posted_price and c.network)


VALUES: dict[str, Any] = {
    "dr_events": [{"start": "2016-06-01T17:00", "end": "2016-06-01T19:00", "price_adder_per_mwh": 200}],
    "branch_limit": "current",
    "contingencies": ["line 0"],
    "contingency_limit_factor": 1.2,
    "stochastic": {},
    "strategic": {"player": "gen 0", "offer_price_max_per_mwh": 100.0},
}
TARIFF = [{"from_hour": 0, "price_per_mwh": 60.0}]


def _market(name: str, **keys: Any) -> MarketConfig:
    needs = {"tariff": TARIFF} | ({"dr_events": VALUES["dr_events"]} if name == "dr" else {})
    return MarketConfig.model_validate({"design": name, **needs, **keys})


@pytest.mark.parametrize("name", list(DESIGNS))
def test_design_keys_are_taken_or_refused_by_capability(name: str) -> None:
    """Each design-specific market key validates under the designs that accept it and is refused under the
    others, with a message naming the key and the designs that use it."""
    assert set(VALUES) == set(DESIGN_KEYS)
    accepts = design(name).capabilities.accepts
    for key, value in VALUES.items():
        if key in accepts:
            assert getattr(_market(name, **{key: value}), key) is not None
            continue
        with pytest.raises(ValueError) as info:
            _market(name, **{key: value})
        users = " or ".join(designs_with(key))
        assert f"{key} is only used by design {users}, not {name}" in str(info.value)


@pytest.mark.parametrize("name", [n for n, d in DESIGNS.items() if d.capabilities.requires])
def test_required_keys_are_required(name: str) -> None:
    """A design that needs a tariff (and dr_events) refuses to validate without it."""
    for key in design(name).capabilities.requires:
        data = {"design": name, "tariff": TARIFF, "dr_events": VALUES["dr_events"]} | {key: []}
        with pytest.raises(ValueError, match=f"design {name} needs"):
            MarketConfig.model_validate(data)


def test_island_and_outage_events_follow_capabilities(tmp_path: Path) -> None:
    """An island event loads with the designs that can clear an island and is refused with the others; a
    line outage is refused only by designs that cannot clear outages; the messages list who can."""
    base = (
        "name: e\ntime: {start: 2016-06-01, duration: 1d}\n"
        "grid: {source: simbench, code: 1-LV-rural1--0-sw}\n"
        "market: {design: %s, tariff: [{from_hour: 0, price_per_mwh: 60}], dr_events: %s}\nevents: [%s]\n"
    )
    island = "{kind: island, start: 2016-06-01T12:00:00, duration: 2h}"
    outage = "{kind: line_outage, element: line 3, start: 2016-06-01T05:00:00, duration: 3h}"
    path = tmp_path / "e.yaml"
    for name, d in DESIGNS.items():
        events = VALUES["dr_events"] if name == "dr" else []
        dr = ", ".join(f"{{start: {e['start']}, end: {e['end']}, price_adder_per_mwh: 200}}" for e in events)
        for event, can in ((island, d.capabilities.islanding), (outage, d.capabilities.outages)):
            path.write_text(base % (name, f"[{dr}]", event))
            if can:
                assert load_scenario(path).events
                continue
            with pytest.raises(ScenarioError) as info:
                load_scenario(path)
            outages_first = event is outage or not d.capabilities.outages  # checked before islands
            who = designs_with("outages" if outages_first else "islanding")
            assert ", ".join(who) in str(info.value)
