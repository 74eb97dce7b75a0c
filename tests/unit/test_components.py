"""The spine: a registry of components, a world that names none of them, orchestration checked early."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

from cosim.component import REGISTRY, Component
from cosim.errors import ScenarioError
from cosim.scenario import validate_scenario
from tests.conftest import ROOT

WORLD = (ROOT / "cosim" / "world.py").read_text()


def test_world_is_a_short_loop_that_names_no_model() -> None:
    """world.py is under 300 lines and holds no component's name, dataset group or design (as a string)."""
    assert WORLD.count("\n") < 300
    literals = set(re.findall(r"[\"']([A-Za-z_/]+)[\"']", WORLD))
    names = set(REGISTRY) | {"emissions", "equity", "events", "Grid", "Agents", "Market", "Ledger", "Privacy"}
    designs = {"uniform", "dcopf", "acopf", "central", "scopf", "stochastic", "admm", "tou", "dr"}
    assert not literals & (names | designs), literals & (names | designs)
    assert not any(literal.split("/")[0] in names for literal in literals)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_component_builds_and_names_its_adapter(name: str) -> None:
    """Each registry entry has a `build` and one Component class whose adapter class exists."""
    module = importlib.import_module(REGISTRY[name].module)
    assert callable(module.build)
    (cls,) = (
        c for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, Component) and c is not Component and c.__module__ == module.__name__
    )  # fmt: skip
    assert cls.name == name
    path, _, attr = cls.sim.partition(":")
    assert hasattr(importlib.import_module(path), attr)
    assert REGISTRY[name].leaves == (cls.plain_params is not Component.plain_params)


def _with(orchestration: dict, **more: object) -> dict:
    from cosim.scenario_io import read_yaml

    data = read_yaml(ROOT / "scenarios" / "default.yaml")
    return data | {"orchestration": orchestration} | more


@pytest.mark.parametrize(
    ("orchestration", "more", "says"),
    [
        ({"out_of_process": ["ledgr"]}, {}, "'ledgr' is no component"),
        ({"out_of_process": ["grid"]}, {}, "cannot leave the process yet; those that can: privacy, ledger"),
        ({"connect": {"ledger": "nohost"}}, {}, "is not host:port"),
        ({"connect": {"ledger": "h:70000"}}, {}, "is not host:port"),
        ({"out_of_process": ["ledger"], "connect": {"ledger": "h:1"}}, {}, "both started here and connected"),
        (
            {"out_of_process": ["ledger"]},
            {"output": {"checkpoint_steps": 24}},
            "set output.checkpoint_steps: 0",
        ),
        ({"out_of_process": ["ledger"], "ledger_worker": True}, {}, "ledger_worker: true runs the ledger in"),
        ({"ledger_worker": "sometimes"}, {}, "ledger_worker"),
    ],
)
def test_orchestration_refused_with_a_message(orchestration: dict, more: dict, says: str) -> None:
    """An unknown name, a component that cannot leave, a bad address or checkpoints asked for: one message."""
    with pytest.raises(ScenarioError, match=re.escape(says)):
        validate_scenario(_with(orchestration, **more), "t.yaml", ROOT / "scenarios")


def test_orchestration_turns_checkpoints_off_by_default() -> None:
    """With a simulator outside the process the default 'week' takes no checkpoints (their state is there)."""
    from cosim.checkpoint import checkpoint_every

    s = validate_scenario(_with({"out_of_process": ["privacy"]}), "t.yaml", ROOT / "scenarios")
    assert checkpoint_every(s) == 0
    assert checkpoint_every(validate_scenario(_with({}), "t.yaml", ROOT / "scenarios")) == 7 * 24
