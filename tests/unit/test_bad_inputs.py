"""A generator of bad scenarios: every one is refused with a ScenarioError naming its key, never a traceback.

A fixed corpus of the mutations that once gave tracebacks or were silently accepted, plus a hypothesis
strategy that replaces leaves of ``scenarios/default.yaml`` with hostile values.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosim.cli import main
from cosim.errors import ScenarioError
from cosim.scenario import load_scenario, validate_scenario
from cosim.scenario_io import MAX_SCENARIO_BYTES
from tests.conftest import ROOT

DEFAULT_TEXT = (ROOT / "scenarios" / "default.yaml").read_text()
DEFAULT: dict[str, Any] = yaml.safe_load(DEFAULT_TEXT)
# a ledger-alone study: the ledger's keys without a grid
LEDGER_ALONE = {
    "name": "alone",
    "time": {"start": "2016-01-01T00:00:00", "duration": "1h", "step": "1h"},
    "ledger": {"consensus": "bft", "validators": 4, "workload": {"tx_per_s": 1.0}},
}


def mutate(base: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with the key at ``dotted`` (``a.b.0.c``) set to ``value``."""
    data = copy.deepcopy(base)
    *head, last = dotted.split(".")
    node: Any = data
    for part in head:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def refused(data: Any, tmp_path: Path) -> str:
    """The message of the ScenarioError that loading ``data`` (written as YAML) raises."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return str(info.value)


NON_FINITE_KEYS = [
    "ledger.initial_balance",
    "privacy.declared_max_kw",
    "privacy.epsilon",
    "privacy.budget",
    "market.upstream.import_price_per_mwh",
    "market.upstream.export_price_per_mwh",
    "market.voll_per_mwh",
    "market.sgen_price_per_mwh",
    "market.battery_charge_price_per_mwh",
    "market.utility_per_mwh.0",
    "grid.power_flow.tolerance_mva",
    "agents.pv.latitude_deg",
    "agents.pv.kwp_max",
    "agents.battery.capacity_kwh",
    "agents.battery.power_kw",
    "agents.ev.charger_kw",
    "emissions.pv_kg_per_mwh",
    "emissions.upstream.kg_per_mwh",
    "emissions.carbon_price_per_t",
    "equity.low_income_share",
    "ledger.node_power_w",
    "ledger.gate_closure_s",
    "ledger.network.jitter_sd_s",
]


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "-inf", "nan"])
@pytest.mark.parametrize("key", NON_FINITE_KEYS)
def test_non_finite_numbers_are_refused_naming_the_key(key: str, value: float, tmp_path: Path) -> None:
    """.inf, -.inf and .nan in a numeric key are refused, and the message names the key."""
    message = refused(mutate(DEFAULT, key, value), tmp_path)
    assert key in message
    assert "finite" in message


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("seed", 2**70, "seed"),
        ("seed", True, "true/false"),
        ("ledger.validators", True, "true/false"),
        ("ledger.validators", 100_000, "GiB"),
        ("ledger.validators", 10**400, "ledger.validators"),
        ("market.voll_per_mwh", True, "true/false"),
        ("market.utility_per_mwh", [250.0, True], "true/false"),
        ("name", "n" * 10_000, "name"),
        ("agents.pv.latitude_deg", 1000, "agents.pv.latitude_deg"),
        ("time.start", "9999-12-31T23:00:00", "time"),
        ("time.start", "1600-01-01T00:00:00", "time.start"),
        ("time.duration", "10000000000w", "time"),
        ("ledger.network", {"regions": [], "one_way_delay_ms": []}, "ledger.network.regions"),
        ("ledger.network", {"regions": ["a"], "one_way_delay_ms": [[math.nan]]}, "finite"),
        ("output.groups", [], "output.groups"),
        ("ledger.faulty", 16, "ledger"),
        ("privacy.epsilon", 1e-300, "raise epsilon"),
        ("grid.source", "nonsense", "grid.source: 'nonsense' is not one of simbench, pandapower, file"),
        ("agents.battery", {"capacity_kw": 10.0}, "did you mean `capacity_kwh`?"),
        ("output.path", "", "output.path"),
        ("output.path", "x" * 5000 + ".h5", "output.path"),
    ],
)
def test_corpus_of_bad_values_is_refused(key: str, value: Any, words: str, tmp_path: Path) -> None:
    """Each mutation of the default study that once gave a traceback or was accepted is refused by name."""
    assert words in refused(mutate(DEFAULT, key, value), tmp_path)


def test_ledger_alone_sizes_are_estimated(tmp_path: Path) -> None:
    """A ledger of 100,000 validators says how much memory it would need instead of allocating it."""
    message = refused(mutate(LEDGER_ALONE, "ledger.validators", 100_000), tmp_path)
    assert "ledger.validators" in message and "GiB" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("name: caf\xe9\n".encode("latin-1"), "UTF-8"),
        (DEFAULT_TEXT.encode("utf-16"), "UTF-8"),
        (bytes(range(256)) * 4, "UTF-8"),
        (b"\x00\x01\x02binary", "UTF-8"),
        (b"", "mapping"),
        (b"- a\n- b\n", "mapping"),
        (b"name: a\nname: b\n", "duplicated key 'name'"),
        (DEFAULT_TEXT.replace("seed: 42", "seed: 42\nseed: 7").encode(), "line 9"),
        (b"time: {start: 2016-01-01T00:00:00, step: 1h, step: 2h}\n", "'step'"),
    ],
    ids=["latin-1", "utf-16", "binary", "nul", "empty", "list", "dup", "dup-line", "dup-flow"],
)
def test_bad_files_are_refused(content: bytes, words: str, tmp_path: Path) -> None:
    """Files in another encoding, binary, empty, not a mapping or with a duplicated key: one message."""
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert words in str(info.value)


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    """A 50 MB scenario is refused by its size (the documented limit), without reading it."""
    path = tmp_path / "big.yaml"
    with path.open("wb") as f:
        f.truncate(50 * 2**20)
    assert MAX_SCENARIO_BYTES < 50 * 2**20
    with pytest.raises(ScenarioError, match="larger than"):
        load_scenario(path)


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """YAML aliases nesting a billion numbers under a number key are refused in well under a second."""
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines += ["name: bomb", "seed: *a8", "events: *a8", "market: {design: uniform, utility_per_mwh: *a8}"]
    lines += ["time: {start: 2016-01-01T00:00:00, duration: 1h}"]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    t0 = time.perf_counter()
    with pytest.raises(ScenarioError, match="seed"):
        load_scenario(path)
    assert time.perf_counter() - t0 < 2


def test_missing_file_and_directory(tmp_path: Path) -> None:
    """A missing path and a directory give one message each."""
    for path in (tmp_path / "nope.yaml", tmp_path):
        with pytest.raises(ScenarioError, match="cannot read"):
            load_scenario(path)


def test_one_year_is_a_calendar_year(tmp_path: Path) -> None:
    """`1y` from 2016-01-01 is 366 days (leap year), from 2017-01-01 365 days."""
    for start, days in (("2016-01-01T00:00:00", 366), ("2017-01-01T00:00:00", 365)):
        data = mutate(mutate(DEFAULT, "time.duration", "1y"), "time.start", start)
        assert validate_scenario(data).time.n_steps == 24 * days


def test_default_study_still_validates() -> None:
    """The mutations start from a valid study (the corpus tests prove the refusals, not a broken base)."""
    assert validate_scenario(copy.deepcopy(DEFAULT)).name == "default"


# --- hypothesis: hostile leaves anywhere in the default study ----------------------------------------

HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([math.nan, math.inf, -math.inf, -1, -1e300, 1e300, 0, 2**64, 10**30, 1e-300]),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["", "x" * 300, "1y", "0s", "-1h", "nonsense", "2016-13-45"]),
    st.just([]),
    st.just({}),
    st.lists(st.one_of(st.none(), st.floats(), st.text(max_size=5)), max_size=3),
)


def _leaves(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, f"{prefix}{k}.")] or [prefix.rstrip(".")]
    if isinstance(node, list) and node:
        return [p for i, v in enumerate(node) for p in _leaves(v, f"{prefix}{i}.")]
    return [prefix.rstrip(".")]


LEAVES = _leaves(DEFAULT)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(LEAVES), HOSTILE), min_size=1, max_size=3))
def test_hostile_leaves_accepted_or_scenario_error(changes: list[tuple[str, Any]]) -> None:
    """Any leaf of the default study replaced by a hostile value is accepted or refused, never crashes."""
    data = DEFAULT
    for key, value in changes:
        data = mutate(data, key, value)
    try:
        scenario = validate_scenario(data)
    except ScenarioError as exc:
        assert exc.problems and all(path and message for path, message in exc.problems)
        return
    scenario.to_yaml()  # an accepted study is also one the recorder can store


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(LEAVES), HOSTILE), min_size=1, max_size=2))
def test_hostile_leaves_through_the_cli(
    changes: list[tuple[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """`cosim validate` on a study with hostile leaves exits 0 or 2 (with a message), never a traceback."""
    data = DEFAULT
    for key, value in changes:
        data = mutate(data, key, value)
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code = main(["validate", str(path)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert (code, bool(err)) in ((0, False), (2, True))


@pytest.mark.parametrize("key", ["seed", "ledger.validators", "time.duration", "market.voll_per_mwh"])
def test_cli_validate_exits_2_with_a_message(key: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`cosim validate` on a hostile study exits 2 with the key in its message and no traceback."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(mutate(DEFAULT, key, math.nan if "mwh" in key else 10**400)))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
