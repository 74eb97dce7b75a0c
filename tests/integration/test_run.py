"""The co-simulation end to end: HDF5 contract, physics against pandapower, determinism, failures."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandapower as pp
import pytest

import cosim
from cosim.errors import CosimError
from tests.conftest import ROOT

GRID_SERIES = {  # UDUNITS-2 (cosim.units): per unit "1", Mvar as its dimension "MV.A"
    "grid/bus/vm_pu": "1",
    "grid/bus/va_degree": "degree",
    "grid/line/loading_percent": "percent",
    "grid/trafo/loading_percent": "percent",
    "grid/losses_mw": "MW",
    "grid/import_mw": "MW",
    "grid/converged": "1",
    "agents/p_mw": "MW",
    "agents/q_mvar": "MV.A",
    "agents/soc_mwh": "MW h",
}


def dataset_hashes(path: Path) -> dict[str, str]:
    out = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            data = obj.asstr()[()] if h5py.check_string_dtype(obj.dtype) else obj[()]
            out[name] = hashlib.sha256(
                np.asarray(data).astype(str if data.dtype == object else data.dtype).tobytes()
            ).hexdigest()

    with h5py.File(path) as f:
        f.visititems(visit)
    return out


def test_hdf5_contract(default_run: cosim.RunSummary) -> None:
    """Two days of the default study give every contracted dataset with its shape, dtype and units."""
    with h5py.File(default_run.path) as f:
        assert f["time"].dtype == np.int64 and f["time"].shape == (48,)
        assert np.all(np.diff(f["time"][:]) == 3600) and f["time"][0] == 1451606400  # 2016-01-01
        for key in ("scenario_yaml", "seed", "versions", "code_version"):
            assert key in f.attrs
        assert f.attrs["complete"]
        n_bus, n_agent = len(f["grid/bus/name"]), len(f["agents/name"])
        for name, units in GRID_SERIES.items():
            assert f[name].attrs["units"] == units, name
            assert f[name].shape[0] == 48, name
            assert f[name].chunks is not None and f[name].compression == "gzip", name
        assert f["grid/bus/vm_pu"].shape == (48, n_bus)
        assert f["grid/line/loading_percent"].shape == (48, len(f["grid/line/name"]))
        assert f["agents/p_mw"].shape == (48, n_agent)
        kinds = f["agents/kind"].asstr()[:]
        assert {"load", "sgen", "battery"} <= set(kinds)  # the outlook's own PV and EV chargers: sgen, load
        # households: every battery and every SimBench PV plant is behind some household's meter
        household = f["agents/household"][:]
        assert household.shape == (n_agent,) and household.max() == len(f["agents/household_name"]) - 1
        assert (household[(kinds == "battery") | (kinds == "sgen")] >= 0).all()
        assert f["agents/soc_mwh"].shape == (48, list(f["agents/kind"].asstr()[:]).count("battery"))
        np.testing.assert_array_equal(f["grid/bus/index"][:], np.sort(f["grid/bus/index"][:]))
        assert f["grid/converged"][:].all()


def test_power_balance(default_run: cosim.RunSummary) -> None:
    """Import equals the agents' net consumption plus losses at every step (LV grid, no shunts)."""
    with cosim.open_results(default_run.path) as res:
        balance = res["agents/p_mw"].sum(axis=1) + res["grid/losses_mw"]
        np.testing.assert_allclose(res["grid/import_mw"], balance, atol=1e-6)
        assert (res["grid/losses_mw"] > 0).all()


def test_voltages_equal_pandapower_runpp(default_run: cosim.RunSummary) -> None:
    """At sampled steps, recorded voltages and loadings equal pandapower's runpp on the same set-points."""
    from cosim.cores import build_models
    from cosim.models.grid.powerflow import set_injections
    from cosim.scenario import load_scenario

    scenario = load_scenario(ROOT / "scenarios" / "default.yaml")
    net, fleet, _, _, _ = build_models(scenario)
    with cosim.open_results(default_run.path) as res:
        p, q = res["agents/p_mw"].to_numpy(), res["agents/q_mvar"].to_numpy()
        vm, va = res["grid/bus/vm_pu"].to_numpy(), res["grid/bus/va_degree"].to_numpy()
        loading = res["grid/line/loading_percent"].to_numpy()
        assert list(res["agents/name"]) == list(fleet.table.name)
    for k in (0, 13, 47):
        set_injections(net, fleet.table.elements, p[k], q[k])
        pp.runpp(net)
        assert np.max(np.abs(vm[k] - net.res_bus.vm_pu.to_numpy())) < 1e-6
        assert np.max(np.abs(va[k] - net.res_bus.va_degree.to_numpy())) < 1e-4
        assert np.max(np.abs(loading[k] - net.res_line.loading_percent.to_numpy())) < 1e-4


def test_open_results_gives_named_frames(default_run: cosim.RunSummary) -> None:
    """open_results gives DataFrames indexed by UTC time with element names as columns."""
    with cosim.open_results(default_run.path) as res:
        vm = res["grid/bus/vm_pu"]
        assert str(vm.index.tz) == "UTC" and len(vm) == 48
        assert list(vm.columns) == list(res["grid/bus/name"])
        assert "grid/losses_mw" in res.keys()
        soc = res["agents/soc_mwh"]
        assert all(name.endswith("battery") for name in soc.columns)
        with pytest.raises(KeyError, match="grid/bus/vm_pu"):
            res["grid/nope"]


def test_same_seed_same_datasets(default_run: cosim.RunSummary, tmp_path: Path) -> None:
    """Same scenario and seed give bit-identical datasets, the private release included (``privacy.noise``
    defaults to ``seeded``); another seed places devices elsewhere."""
    again = cosim.run(ROOT / "scenarios" / "default.yaml", days=2, out=tmp_path / "again.h5")
    first, second = dataset_hashes(default_run.path), dataset_hashes(again.path)
    assert first.keys() == second.keys()
    assert {"privacy/released", "privacy/epsilon_spent", "privacy/refused"} <= first.keys()
    assert {k for k in first if first[k] != second[k]} == set()
    with h5py.File(default_run.path) as f:
        assert f["privacy"].attrs["noise"] == "seeded"
        assert not f["privacy/refused"][:].all()  # noise was drawn, not only NaN rows compared
    other = cosim.run(ROOT / "scenarios" / "default.yaml", steps=2, seed=7, out=tmp_path / "other.h5")
    with h5py.File(other.path) as f, h5py.File(default_run.path) as g:
        assert list(f["agents/name"].asstr()[:]) != list(g["agents/name"].asstr()[:])
        assert f.attrs["seed"] == 7


def test_secure_noise_differs_between_runs_and_nothing_else(tmp_path: Path) -> None:
    """``privacy.noise: secure`` keeps OpenDP's unseedable sampler: only ``/privacy/released`` differs
    between two runs of the same seed, and it is a valid release (finite, integer counts)."""
    text = (ROOT / "scenarios" / "default.yaml").read_text()
    path = tmp_path / "secure.yaml"
    text = text.replace("release_every: day", "release_every: step", 1)  # a release every step
    path.write_text(text.replace("privacy:", "privacy:\n  noise: secure", 1))
    runs = [cosim.run(path, steps=3, out=tmp_path / f"secure{i}.h5") for i in range(2)]
    first, second = (dataset_hashes(r.path) for r in runs)
    assert {k for k in first if first[k] != second[k]} == {"privacy/released"}
    with h5py.File(runs[0].path) as f:
        assert f["privacy"].attrs["noise"] == "secure"
        released = f["privacy/released"][:]
        n = released.shape[1] // 2
        assert np.isfinite(released).all() and (released[:, n:] == np.round(released[:, n:])).all()


def test_non_converging_steps_are_flagged_and_the_run_goes_on(tmp_path: Path) -> None:
    """A grid loaded far beyond collapse: every step flagged, NaN results, counted, the run completes."""
    import pandapower.networks as pn

    net = pn.case9()
    net.load["p_mw"] *= 40
    pp.to_json(net, str(tmp_path / "heavy.json"))
    (tmp_path / "s.yaml").write_text(
        "name: heavy\ntime: {start: 2020-01-01, duration: 3h}\ngrid: {source: file, path: heavy.json}\n"
    )
    summary = cosim.run(tmp_path / "s.yaml", out=tmp_path / "heavy.h5")
    assert summary.n_not_converged == 3
    with cosim.open_results(summary.path) as res:
        assert not res["grid/converged"].any()
        assert res["grid/bus/vm_pu"].isna().all().all()
        assert res.attrs["complete"] and res.attrs["n_not_converged"] == 3


def test_failure_mid_run_keeps_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model error at step 5 stops the run with a message; the five recorded steps stay in .partial."""
    from cosim.models.agents.fleet import Fleet

    original = Fleet.step

    def failing(self: Fleet, k: int):  # noqa: ANN202
        if k == 5:
            raise RuntimeError("meter exploded")
        return original(self, k)

    monkeypatch.setattr(Fleet, "step", failing)
    out = tmp_path / "case14.h5"
    with pytest.raises(CosimError, match="after 5 of 24 steps.*meter exploded"):
        cosim.run(ROOT / "scenarios" / "case14.yaml", out=out)
    assert not out.exists()
    with h5py.File(tmp_path / "case14.h5.partial") as f:
        assert f["time"].shape == (5,) and not f.attrs["complete"]


def test_cli_run_and_report(tmp_path: Path) -> None:
    """`cosim run --steps` then `cosim report` work from the command line."""
    out = tmp_path / "c.h5"
    cmd = [sys.executable, "-m", "cosim.cli", "run", str(ROOT / "scenarios" / "case14.yaml")]
    done = subprocess.run(
        [*cmd, "--steps", "3", "--out", str(out), "--quiet"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "3 steps" in done.stdout
    rep = subprocess.run(
        [sys.executable, "-m", "cosim.cli", "report", str(out)], capture_output=True, text=True
    )
    assert rep.returncode == 0, rep.stderr
    assert (tmp_path / "c_report" / "index.html").is_file()
    bad = subprocess.run(
        [sys.executable, "-m", "cosim.cli", "report", str(tmp_path / "nope.h5")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def test_output_groups_limit_what_is_recorded(tmp_path: Path) -> None:
    """`output.groups: [agents]` records the agents and no grid datasets."""
    (tmp_path / "s.yaml").write_text(
        "name: g\ntime: {start: 2020-01-01, duration: 2h}\ngrid: {source: pandapower, case: case9}\n"
        "output: {groups: [agents]}\n"
    )
    summary = cosim.run(tmp_path / "s.yaml", out=tmp_path / "g.h5")
    with h5py.File(summary.path) as f:
        assert "grid" not in f and f["agents/p_mw"].shape == (2, 5)  # 3 loads, 2 gens
