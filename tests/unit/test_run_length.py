"""--days and --steps: a longer run is allowed but said, events outside a shortened run are named."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from cosim.cli import main
from cosim.errors import ScenarioError
from cosim.overrides import effective, override_notes
from cosim.scenario import load_scenario
from tests.conftest import ROOT

ONE_HOUR = """
name: hour
time: {start: 2016-01-01T00:00:00, duration: 1h, step: 1h}
grid: {source: pandapower, case: case9}
"""


def test_longer_run_is_said(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A one-hour study run for three steps runs them, and says it goes beyond the study's period."""
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(ONE_HOUR))
    assert main(["run", str(path), "--steps", "3", "--out", str(tmp_path / "r.h5"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "3 steps" in out
    assert "note: the run is 3 steps long, beyond the scenario's period of 1 step(s)" in err


def test_events_outside_a_shortened_run_are_named() -> None:
    """The islanding study shortened to one day names both of its events, which fall later."""
    scenario = load_scenario(ROOT / "scenarios" / "islanding.yaml")
    notes = override_notes(scenario, effective(scenario, days=1))
    assert [n.split(" at ")[0] for n in notes] == ["events.0 (island)", "events.1 (line_outage)"]
    assert all("does not happen" in n for n in notes)
    assert override_notes(scenario, effective(scenario, days=10)) == []  # both events inside


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"days": math.nan}, "--days"),
        ({"days": math.inf}, "--days"),
        ({"days": 1e9}, "--steps/--days"),
        ({"steps": 10**15}, "--steps/--days"),
        ({"seed": -1}, "--seed"),
        ({"seed": 2**70}, "--seed"),
    ],
)
def test_bad_overrides_are_refused(kw: dict[str, float], key: str) -> None:
    """Non-finite or huge --days/--steps and out-of-range seeds are refused naming the option."""
    scenario = load_scenario(ROOT / "scenarios" / "default.yaml")
    with pytest.raises(ScenarioError) as info:
        effective(scenario, **kw)  # type: ignore[arg-type]
    assert info.value.problems[0][0] == key
