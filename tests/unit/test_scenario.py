"""Scenario schema: valid studies load, broken ones report every problem with its dotted path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from cosim.cli import main
from cosim.errors import ScenarioError
from cosim.scenario import Scenario, load_scenario, parse_duration_s
from tests.conftest import SCENARIOS

BROKEN = """
name: default
seed: -3
time: {start: 2016-01-01T00:00:00, duration: 2 fortnights, step: 1h}
grid: {source: simbench, code: 1-LV-nowhere--0-sw, colour: blue}
agents:
  battery: {share: 1.5, capacity_kwh: 0}
  pv: {kwp_min: 5, kwp_max: 2}
market: {design: tou}
ledger: {consensus: raft, faulty: -1}
privacy: {epsilon: 1.0}
events: [{kind: island}, {kind: flood}]
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_validates(path: Path) -> None:
    """Every study in scenarios/ passes the schema."""
    scenario = load_scenario(path)
    assert scenario.time.n_steps >= 1


def test_default_is_a_year_of_hours_on_simbench_lv() -> None:
    """The default study is one year, hourly, of a SimBench LV grid in a future outlook with PV, batteries,
    EVs and heat pumps: its own PV plants, EV chargers and heat pumps, and batteries added as agents."""
    import simbench

    s = load_scenario(Path(__file__).parents[2] / "scenarios" / "default.yaml")
    assert (s.time.n_steps, s.time.step_s) == (8760, 3600)
    assert s.grid.source == "simbench" and "-LV-" in s.grid.code and "--2-" in s.grid.code
    net = simbench.get_simbench_net(s.grid.code)
    profile = net.load.profile.astype(str)
    assert (net.sgen.type == "PV").sum() > 0 and s.agents.battery.share > 0
    assert profile.str.startswith("HLS").sum() > 0  # EV home chargers
    assert profile.str.startswith(("Air", "Soil")).sum() > 0  # heat pumps


def test_broken_yaml_reports_every_problem_at_once(tmp_path: Path) -> None:
    """Several mistakes give one error listing each with its dotted path."""
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, BROKEN))
    paths = [p for p, _ in info.value.problems]
    for expected in [
        "seed",
        "time.duration",
        "grid.code",
        "grid.colour",
        "agents.battery.share",
        "agents.battery.capacity_kwh",
        "agents.pv",
        "market",
        "ledger.consensus",
        "ledger.faulty",
        "privacy.budget",
        "privacy.declared_max_kw",
        "events.0.island.start",
        "events.1",
    ]:
        assert expected in paths, (expected, paths)
    messages = dict(info.value.problems)
    assert "'island', 'line_outage'" in messages["events.1"]
    assert "'pow', 'pos' or 'bft'" in messages["ledger.consensus"]
    assert "needs a tariff" in messages["market"]
    assert "unknown key" in messages["grid.colour"]
    assert "1-LV-semiurb4--0-sw" in messages["grid.code"]  # says what would be valid


def test_cli_validate_exit_code_2_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`cosim validate` on a broken file prints the problems and exits 2, no traceback."""
    assert main(["validate", str(write(tmp_path, BROKEN))]) == 2
    err = capsys.readouterr().err
    assert "agents.battery.share" in err and "Traceback" not in err


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """A YAML syntax error names the line."""
    with pytest.raises(ScenarioError, match="line 3"):
        load_scenario(write(tmp_path, "name: x\ntime:\n  start: [unclosed\n"))


def test_end_and_duration_are_exclusive(tmp_path: Path) -> None:
    """Giving both end and duration is refused; end alone works."""
    base = "name: x\ngrid: {source: pandapower, case: case9}\n"
    with pytest.raises(ScenarioError, match="exactly one of 'end' or 'duration'"):
        load_scenario(write(tmp_path, base + "time: {start: 2020-01-01, end: 2020-01-02, duration: 1d}\n"))
    s = load_scenario(write(tmp_path, base + "time: {start: 2020-01-01, end: 2020-01-02, step: 15min}\n"))
    assert s.time.n_steps == 96


def test_missing_grid_file_names_key(tmp_path: Path) -> None:
    """A file grid that does not exist is reported at grid.path."""
    text = "name: x\ntime: {start: 2020-01-01, duration: 1d}\ngrid: {source: file, path: nope.json}\n"
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    assert info.value.problems[0][0] == "grid.path"


def test_unknown_pandapower_case_lists_valid_ones(tmp_path: Path) -> None:
    """An unknown pandapower case is refused with the valid names."""
    text = "name: x\ntime: {start: 2020-01-01, duration: 1d}\ngrid: {source: pandapower, case: case7}\n"
    with pytest.raises(ScenarioError, match="case118"):
        load_scenario(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "seconds"), [("15min", 900), ("1h", 3600), ("365d", 31536000), ("2w", 1209600), (60, 60)]
)
def test_durations(text: str | int, seconds: int) -> None:
    """Durations parse to whole seconds."""
    assert parse_duration_s(text) == seconds


def test_json_schema_has_units_and_descriptions() -> None:
    """The JSON Schema carries a description on every field and units where they apply."""
    schema = Scenario.model_json_schema()
    battery = schema["$defs"]["BatteryConfig"]["properties"]
    assert battery["capacity_kwh"]["unit"] == "kWh"
    for definition in schema["$defs"].values():
        for name, prop in definition.get("properties", {}).items():
            assert prop.get("description"), name
    json.dumps(schema)


LEDGER = """
name: l
time: {start: 2016-06-01T00:00:00, duration: 1d, step: 1h}
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("grid: {source: pandapower, case: case5}\nledger: {consensus: bft}", "add a market section"),
        ("ledger: {consensus: bft}", "grid: required key is missing"),
        (
            "grid: {source: pandapower, case: case5}\nmarket: {design: uniform}\n"
            "ledger: {consensus: pos, workload: {tx_per_s: 5}}",
            "standalone mode",
        ),
        ("ledger: {consensus: pow, permissioned: true, workload: {tx_per_s: 1}}", "open by construction"),
        ("ledger: {consensus: pos, behaviour: equivocating, workload: {tx_per_s: 1}}", "bft only"),
        ("ledger: {consensus: bft, validators: 4, faulty: 5, workload: {tx_per_s: 1}}", "cannot exceed"),
        (
            "ledger: {consensus: bft, workload: {tx_per_s: 1}, network: {regions: [a, b], "
            "one_way_delay_ms: [[0, 1]]}}",
            "2 x 2",
        ),
    ],
)
def test_ledger_section_refuses_inconsistent_studies(tmp_path: Path, extra: str, message: str) -> None:
    """A ledger needs trades (a market) or a workload, never both; options must fit the consensus."""
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, LEDGER + extra))
    assert message in str(info.value), str(info.value)


def test_branch_limit_is_an_acopf_key(tmp_path: Path) -> None:
    """market.branch_limit defaults to mva; current is accepted for acopf and refused for a DC design."""
    grid = "name: b\ntime: {start: 2024-01-01, duration: 1h}\ngrid: {source: pandapower, case: case5}\n"
    default = load_scenario(write(tmp_path, grid + "market: {design: acopf}"))
    assert default.market is not None and default.market.branch_limit == "mva"
    ok = load_scenario(write(tmp_path, grid + "market: {design: acopf, branch_limit: current}"))
    assert ok.market is not None and ok.market.branch_limit == "current"
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, grid + "market: {design: dcopf, branch_limit: current}"))
    assert "branch_limit is only used by design acopf" in str(info.value)


def test_consensus_energy_is_that_of_the_simulated_network() -> None:
    """ledger_pow: 50 miners of one Antminer S19 Pro each (110 TH/s x 29.5 J/TH = 3,245 W) draw 162.25 kW,
    not Bitcoin's ~3 GW; hash_rate_hps still sets a what-if network; BFT and PoS: 100 W per validator."""
    from cosim.models.ledger.component import build_ledger

    root = Path(__file__).parents[2] / "scenarios"
    pow_ = load_scenario(root / "ledger_pow.yaml")
    built = build_ledger(pow_, 4)
    assert built is not None and built[1]["power_w"] == pytest.approx(50 * 110e12 * 29.5e-12)
    what_if = pow_.model_copy(update={"ledger": pow_.ledger.model_copy(update={"hash_rate_hps": 1e20})})
    built = build_ledger(what_if, 4)
    assert built is not None and built[1]["power_w"] == pytest.approx(1e20 * 29.5e-12)
    for name, validators in (("default", 16), ("ledger_pos", 64)):
        built = build_ledger(load_scenario(root / f"{name}.yaml"), 4)
        assert built is not None and built[1]["power_w"] == pytest.approx(validators * 100.0)


def test_emissions_with_every_design_but_no_carbon_price_for_stochastic(tmp_path: Path) -> None:
    """Emissions are accepted with a copper-plate design; a carbon price is refused for stochastic, whose
    days are cleared ahead on their own offers, with the key that says so."""
    base = (
        "name: s\ntime: {start: 2016-06-01, duration: 1d}\n"
        "grid: {source: simbench, code: 1-LV-rural1--0-sw}\nmarket: {design: %s}\nemissions: %s\n"
    )
    assert load_scenario(write(tmp_path, base % ("uniform", "{carbon_price_per_t: 50}"))).emissions
    assert load_scenario(write(tmp_path, base % ("stochastic", "{}"))).emissions
    with pytest.raises(ScenarioError, match="carbon_price_per_t is not built for design stochastic"):
        load_scenario(write(tmp_path, base % ("stochastic", "{carbon_price_per_t: 50}")))
