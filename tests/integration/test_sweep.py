"""Sweeps on Dask: a LocalCluster end to end, an external `dask scheduler` with two `dask worker`s,
a failing run recorded while the others finish, and a re-run that skips finished runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import cosim
from cosim.analysis.metrics import METRICS
from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def _expected(path: Path) -> dict[str, float]:
    """The headline numbers computed independently through open_results' pandas API and stored attributes."""
    with cosim.open_results(path) as res:
        f, h = res.file, res.attrs["step_s"] / 3600
        tx = f["ledger/tx"]
        fin = tx["final_s"][:] - tx["submit_s"][:]
        eps = res["privacy/epsilon_spent"].dropna()
        return {
            "n_steps": len(res.index),
            "total_cost": res["market/cost"].sum(),
            "welfare": res["market/welfare"].sum(),
            "mean_price_per_mwh": res["market/price_per_mwh"].mean(axis=1).mean(),
            "unserved_mwh": res["market/unserved_mwh"].sum(),
            "traded_mwh": float(np.nansum(f["market/trades/mwh"][:])),
            "losses_mwh": res["grid/losses_mw"].sum() * h,
            "emissions_t": res["emissions/total_kg"].sum() / 1000,
            "gini_surplus": float(f["equity"].attrs["gini_surplus"]),
            "finality_p50_s": float(np.median(fin[np.isfinite(fin)])),
            "late_trades": res["ledger/n_late"].sum(),
            "late_cost": res["ledger/late_cost"].sum(),
            "ledger_energy_kwh": res["ledger/energy_kwh"].sum(),
            "dp_epsilon_spent": float(eps.iloc[-1]),
            "dp_relative_error": float(f["privacy"].attrs["relative_error_consumption"]),
        }


def test_local_cluster_end_to_end(tmp_path):
    """Default study, 2 steps, consensus x 2 seeds on a 2-process LocalCluster: every run ok, the summary has
    every column and equals what open_results reads from each file, CSV = parquet; the report is written."""
    study = {
        "name": "e2e",
        "base": str(ROOT / "scenarios" / "default.yaml"),
        "steps": 2,
        "factors": {"ledger.consensus": ["bft", "pos"]},
        "seeds": [1, 2],
    }
    df = cosim.sweep(study, out=tmp_path / "e2e", workers=2)
    assert list(df.columns) == ["run_id", "ledger.consensus", "seed", "status", "error", "wall_s", *METRICS]
    assert df["status"].tolist() == ["ok"] * 4, df["error"].tolist()
    assert df["run_id"].tolist()[0] == "ledger.consensus=bft__seed=1"
    for row in df.itertuples(index=False):
        path = tmp_path / "e2e" / "runs" / f"{row.run_id}.h5"
        with cosim.open_results(path) as res:
            assert res.attrs["seed"] == row.seed and f"consensus: {row[1]}" in res.attrs["scenario_yaml"]
        got = df.set_index("run_id").loc[row.run_id]
        for metric, value in _expected(path).items():
            assert got[metric] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), metric
    loaded = cosim.load_study(tmp_path / "e2e")
    pd.testing.assert_frame_equal(loaded, df, check_dtype=False)
    csv = pd.read_csv(tmp_path / "e2e" / "summary.csv", keep_default_na=False, na_values=[""])
    np.testing.assert_allclose(csv[list(METRICS)].to_numpy(float), df[list(METRICS)].to_numpy(float))
    assert df["late_trades"].notna().all() and df["finality_p50_s"].gt(0).all()
    from cosim.analysis.study_report import write_study_report

    page = write_study_report(tmp_path / "e2e")
    text = page.read_text()
    assert "Key findings" in text and "ledger.consensus" in text
    for fig in ("effects_0_ledger_consensus.png", "consensus_design.png"):
        assert (page.parent / fig).stat().st_size > 1000 and f'src="{fig}"' in text


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A `dask scheduler` and two `dask worker` processes on 127.0.0.1; torn down after the tests."""
    tmp = tmp_path_factory.mktemp("dask")
    info = tmp / "scheduler.json"
    common = {
        "cwd": tmp,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "start_new_session": True,
    }
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(info),
            ],
            **common,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not info.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(info.read_text())["address"]
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "dask"),
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                    ],
                    **common,
                )
            )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for p in reversed(procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """A pandapower case5 network file and a corrupted one (fails when a run loads it, not at validation)."""
    import pandapower as pp
    import pandapower.networks as pn

    tmp = tmp_path_factory.mktemp("nets")
    pp.to_json(pn.case5(), str(tmp / "case5.json"))
    (tmp / "broken.json").write_text("{not json")
    return tmp


def _study(nets: Path, path: Path, extra: str = "") -> Path:
    path.write_text(
        f"name: nets\nbase: {ROOT / 'scenarios' / 'pjm5.yaml'}\n{extra}"
        f"factors:\n  grid: [{{source: file, path: {nets / 'case5.json'}}}, "
        f"{{source: file, path: {nets / 'broken.json'}}}]\n"
        "  market.design: [dcopf, uniform]\nseeds: [3]\n"
    )
    return path


def test_external_scheduler_records_failures_and_resumes(dask_cluster, nets, tmp_path, capsys):
    """Against the external cluster: the broken network's runs are recorded failed while the others finish
    (exit 1); a re-run skips the finished runs, says so, and leaves their files untouched; a changed scenario
    re-runs everything (here with the files sent back by the workers)."""
    from cosim.cli import main

    study, out = _study(nets, tmp_path / "study.yaml"), tmp_path / "out"
    args = ["sweep", str(study), "--out", str(out), "--scheduler", dask_cluster, "--quiet"]
    assert main(args) == 1
    text = capsys.readouterr().out
    assert "4 runs; 0 skipped" in text and "2 of 4 runs ok" in text and "failed grid=" in text
    df = cosim.load_study(out)
    bad = df["grid"].str.contains("broken")
    assert (df.loc[bad, "status"] == "failed").all() and (df.loc[~bad, "status"] == "ok").all()
    assert df.loc[bad, "error"].str.contains("cannot load the network").all()
    assert df.loc[bad, "total_cost"].isna().all() and df.loc[~bad, "total_cost"].gt(0).all()
    for rid in df.loc[~bad, "run_id"]:
        with cosim.open_results(out / "runs" / f"{rid}.h5") as res:
            assert df.set_index("run_id").loc[rid, "total_cost"] == pytest.approx(res["market/cost"].sum())
    done = {rid: (out / "runs" / f"{rid}.h5").stat().st_mtime_ns for rid in df.loc[~bad, "run_id"]}

    assert main(args) == 1
    text = capsys.readouterr().out
    assert "4 runs; 2 skipped (complete, same scenario), 2 to run" in text
    assert {rid: (out / "runs" / f"{rid}.h5").stat().st_mtime_ns for rid in done} == done
    again = cosim.load_study(out)
    pd.testing.assert_frame_equal(again.drop(columns="wall_s"), df.drop(columns="wall_s"))

    changed = _study(nets, tmp_path / "study.yaml", "set: {market.voll_per_mwh: 2500}\n")
    assert (
        main(["sweep", str(changed), "--out", str(out), "--scheduler", dask_cluster, "--quiet", "--transfer"])
        == 1
    )
    text = capsys.readouterr().out
    assert "0 skipped (complete, same scenario), 2 re-run (scenario changed), 4 to run" in text
    for rid in done:
        with cosim.open_results(out / "runs" / f"{rid}.h5") as res:
            assert "voll_per_mwh: 2500" in res.attrs["scenario_yaml"]


def _ctrl_c_default() -> None:
    """SIGINT's default action in the sweep, as in a terminal's foreground: a shell starting the suite in
    the background (``cmd &``, nohup) makes its children ignore SIGINT, and then the sweep never stops."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_keeps_finished_runs(tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C) once a run is done: exit 130, no worker
    traceback, every finished file whole and listed ok in the summary, the rest 'not run'."""
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: stop\nbase: {ROOT / 'scenarios' / 'pjm5.yaml'}\n"
        "factors:\n  market.design: [dcopf, uniform]\nseeds: [1, 2, 3, 4, 5, 6]\n"
    )
    out = tmp_path / "out"
    with open(tmp_path / "err", "w") as err:
        cmd = [str(BIN / "cosim"), "sweep", str(study), "--out", str(out), "--workers", "1", "--quiet"]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True, preexec_fn=_ctrl_c_default
        )
        deadline = time.monotonic() + 240
        while not list((out / "runs").glob("*.h5")) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    text = (tmp_path / "err").read_text()
    assert "interrupted: finished runs are intact" in text and "Traceback" not in text
    df = cosim.load_study(out)
    done = sorted(p.stem for p in (out / "runs").glob("*.h5"))
    assert done and sorted(df.loc[df["status"] == "ok", "run_id"]) == done
    assert (df.loc[df["status"] != "ok", "status"] == "not run").all() and len(done) < len(df)
    for rid in done:
        with cosim.open_results(out / "runs" / f"{rid}.h5") as res:
            assert res.attrs["complete"] and len(res.index) == 1
