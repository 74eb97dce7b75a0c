"""The on-disk cache of parsed SimBench nets: same net and profiles, damage rebuilt, concurrent writers."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandapower.networks as pn
import pandas as pd
import pytest

from cosim.cli import main
from cosim.models.agents import profiles
from cosim.models.grid import netcache, network

CODE = "1-LV-rural1--0-sw"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own empty cache directory and an empty in-process cache."""
    monkeypatch.setenv(netcache.ENV_DIR, str(tmp_path / "cache"))
    monkeypatch.delenv(netcache.ENV_OFF, raising=False)
    network._simbench_net.cache_clear()
    yield tmp_path / "cache"
    network._simbench_net.cache_clear()


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make parsing SimBench CSVs fail: a net must then come from the cache."""
    import simbench

    def fail(code: str) -> Any:
        raise AssertionError(f"parsed {code} instead of reading the cache")

    monkeypatch.setattr(simbench, "get_simbench_net", fail)


def _fake_parser(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace SimBench's parser by a small pandapower case; return the list of codes it was asked for."""
    import simbench

    calls: list[str] = []

    def parse(code: str) -> Any:
        calls.append(code)
        return pn.example_simple()

    monkeypatch.setattr(simbench, "get_simbench_net", parse)
    return calls


def _assert_same_net(a: Any, b: Any) -> None:
    """Every table of two pandapower nets, and their SimBench profiles, are identical."""
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        if isinstance(a[key], pd.DataFrame):
            pd.testing.assert_frame_equal(a[key], b[key], check_exact=True)
    assert sorted(a.profiles) == sorted(b.profiles)
    for key in a.profiles:
        pd.testing.assert_frame_equal(a.profiles[key], b.profiles[key], check_exact=True)


def test_second_load_equals_first(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A net read from the cache equals the parsed one: every table, the profiles and the agents' tables."""
    first = network.load_network("simbench", code=CODE)
    assert netcache.entry_path(CODE).is_file() and netcache.entry_path(CODE).parent == cache_dir
    network._simbench_net.cache_clear()
    _no_parsing(monkeypatch)
    second = network.load_network("simbench", code=CODE)
    _assert_same_net(first, second)
    t1, t2 = profiles.simbench_tables(first), profiles.simbench_tables(second)
    assert t1.keys() == t2.keys()
    for key in t1:
        assert np.array_equal(t1[key].values, t2[key].values) and t1[key].row_s == t2[key].row_s
    pv1, pv2 = profiles.simbench_pv_pu(first, None), profiles.simbench_pv_pu(second, None)
    assert pv1 is not None and pv2 is not None and np.array_equal(pv1.values, pv2.values)


def test_key_holds_code_versions_and_format() -> None:
    """The entry's file name changes with the code, the simbench and pandapower versions and the format."""
    from importlib import metadata

    name = netcache.entry_path(CODE).name
    assert CODE in name and f"v{netcache.FORMAT}" in name
    assert metadata.version("simbench") in name and metadata.version("pandapower") in name
    assert netcache.entry_path("1-MV-rural--0-sw") != netcache.entry_path(CODE)


def test_a_code_longer_than_a_file_name_is_refused_as_unknown(cache_dir: Path) -> None:
    """A grid code no file name can hold (hypothesis found one) gets the unknown-code message, no OSError."""
    from cosim.errors import ScenarioError
    from cosim.scenario import validate_scenario

    code = "x" * 300
    cache_dir.mkdir(parents=True)
    assert not netcache.has(code) and netcache.load(code) is None
    with pytest.raises(ScenarioError, match="unknown SimBench code"):
        validate_scenario({"grid": {"source": "simbench", "code": code}})


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "other format", "other code"])
def test_damaged_entry_is_rebuilt(
    damage: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreadable or foreign entry is ignored with a debug line; the net is parsed again and rewritten."""
    calls = _fake_parser(monkeypatch)
    network.load_network("simbench", code=CODE)
    path = netcache.entry_path(CODE)
    good = path.read_bytes()
    entry = pickle.loads(good)
    path.write_bytes(
        {
            "garbage": b"\x80\x05not a pickle at all",
            "truncated": good[: len(good) // 2],
            "empty": b"",
            "other format": pickle.dumps(entry | {"format": netcache.FORMAT + 1}),
            "other code": pickle.dumps(entry | {"code": "1-HV-mixed--0-sw"}),
        }[damage]
    )
    network._simbench_net.cache_clear()
    with caplog.at_level(logging.DEBUG, logger="cosim.models.grid.netcache"):
        net = network.load_network("simbench", code=CODE)
    assert len(net.bus) == len(pn.example_simple().bus)
    assert calls == [CODE, CODE]  # parsed again
    assert any("ignoring" in r.getMessage() for r in caplog.records)
    assert netcache.load(CODE) is not None  # rewritten whole


def test_validation_of_a_cached_code_does_not_import_simbench(cache_dir: Path) -> None:
    """A scenario whose SimBench code has a cache entry validates in a fresh interpreter without importing
    SimBench (importing it costs a run ~0.3 s, on top of pandapower); an unknown code is still refused."""
    netcache.store(CODE, pn.example_simple())
    code = textwrap.dedent(f"""
        import sys
        from cosim.scenario import SimbenchGrid
        SimbenchGrid(source="simbench", code={CODE!r})
        assert "simbench" not in sys.modules, "validation imported simbench"
        try:
            SimbenchGrid(source="simbench", code="1-LV-nowhere--0-sw")
        except ValueError as err:
            assert "unknown SimBench code" in str(err), err
        else:
            raise AssertionError("an unknown code was accepted")
        print("ok")
    """)
    env = dict(os.environ) | {netcache.ENV_DIR: str(cache_dir)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_no_cache_neither_reads_nor_writes(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    """COSIM_NO_CACHE=1: the net is parsed and nothing is written."""
    calls = _fake_parser(monkeypatch)
    monkeypatch.setenv(netcache.ENV_OFF, "1")
    network.load_network("simbench", code=CODE)
    assert calls == [CODE] and not cache_dir.exists()


def test_unwritable_cache_does_not_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache directory that cannot be created (a file is in the way): the net loads, nothing is cached."""
    calls = _fake_parser(monkeypatch)
    blocker = tmp_path / "not a directory"
    blocker.write_text("x")
    monkeypatch.setenv(netcache.ENV_DIR, str(blocker / "cache"))
    net = network.load_network("simbench", code=CODE)
    assert len(net.bus) > 0 and calls == [CODE] and netcache.load(CODE) is None


_WRITER = textwrap.dedent(
    """
    import sys
    from cosim.models.grid import netcache
    net = {"bus": list(range(200_000)), "writer": sys.argv[3]}  # a few MB of pickle, no pandapower import
    for _ in range(int(sys.argv[1])):
        assert netcache.store(sys.argv[2], net) is not None
    """
)


def test_concurrent_writers_leave_a_readable_entry(cache_dir: Path) -> None:
    """Two processes rewrite one entry as this one reads it: each read is whole or absent, never partial."""
    env = dict(os.environ)
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, "40", CODE, name], env=env, stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    reads, path = 0, netcache.entry_path(CODE)
    while any(w.poll() is None for w in writers):
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        entry = pickle.loads(data)  # load() would hide a partial file: read it raw
        assert entry["net"]["bus"] == list(range(200_000)) and entry["net"]["writer"] in ("a", "b")
        reads += 1
        time.sleep(0.002)
    for w in writers:
        assert w.wait() == 0, w.stderr.read().decode() if w.stderr else ""
    net = netcache.load(CODE)
    assert net is not None and net["bus"] == list(range(200_000)) and reads > 0  # read while rewritten
    assert [p.name for p in cache_dir.iterdir()] == [netcache.entry_path(CODE).name]  # no temporary left


def test_cli_cache_dir_and_clear(cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """`cosim cache dir` prints the directory; `cosim cache clear` deletes the entries."""
    _fake_parser(monkeypatch)
    network.load_network("simbench", code=CODE)
    assert main(["cache", "dir"]) == 0
    assert capsys.readouterr().out.strip() == str(cache_dir)
    assert main(["cache", "clear"]) == 0
    assert "removed 1 file(s)" in capsys.readouterr().out
    assert list(cache_dir.iterdir()) == []


def test_default_directory_is_the_users_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without COSIM_CACHE_DIR the cache lives in platformdirs' user cache directory for cosim-te."""
    import platformdirs

    monkeypatch.delenv(netcache.ENV_DIR)
    assert netcache.cache_dir() == Path(platformdirs.user_cache_dir("cosim-te", appauthor=False))


def test_tables_are_simbench_absolute_values_exactly() -> None:
    """The agents' tables, built without importing simbench, equal simbench's absolute profiles exactly."""
    import simbench

    net = network.load_network("simbench", code=CODE)
    net.load.loc[net.load.index[:3], "scaling"] = 0.7  # scaling applied on top
    tables = profiles.simbench_tables(net)
    absolute = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    for (table, col), key in {
        ("load", "p_mw"): "load_p_mw",
        ("load", "q_mvar"): "load_q_mvar",
        ("sgen", "p_mw"): "sgen_p_mw",
    }.items():
        expected = absolute[(table, col)].reindex(columns=net[table].index).to_numpy(dtype=float)
        expected = expected * net[table].scaling.to_numpy(dtype=float)
        assert np.array_equal(tables[key].values, expected), key
