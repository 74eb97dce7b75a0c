"""Benchmark: a year of hourly AC power flow on a SimBench grid, co-simulation vs pandapower's own loop.

What it measures, for one scenario (default ``scenarios/mv_rural.yaml``: ``1-MV-rural--0-sw``, hourly,
365 days = 8,760 steps, one AC power flow per step):

1. The whole co-simulation (``cosim.run``: network and profiles, agents, mosaik world, power flow,
   HDF5 recorder) in a child process of its own, so that its peak memory (``ru_maxrss``) is its alone:
   wall time as the run reports it (``RunSummary.wall_s``, from building the models to the closed
   file) and as seen from this process (including interpreter start and imports), time inside the
   power-flow solver, steps/s, non-converged steps and peak memory.
2. The alternative a pandapower user would write, in this process: the same network, driven by
   ``pandapower.timeseries.run_timeseries`` with ``ConstControl`` + ``DFData`` controllers for load
   p/q and sgen p/q fed with the hourly set-points the co-simulation recorded, and an
   ``OutputWriter`` logging what the co-simulation records (bus voltage, line and transformer
   loading, external-grid power). Timed from controller creation to the end of the loop.
3. The agreement of the two: max |vm_pu(co-sim) - vm_pu(pandapower)| over all steps and buses (target
   < 1e-6 pu), and the same for line/transformer loading and import (reported only).

Targets: co-simulation at least 5x faster than ``run_timeseries``; peak memory under 1,500 MB
(1 MB = 2**20 bytes); max |dV| < 1e-6 pu. Everything is always printed; the exit code is 0 when all
targets hold, 1 otherwise. With ``--skip-pandapower`` the loop is not run: the speed-up is not
measured and the voltages are checked with ``pandapower.runpp`` on a sample of steps instead.

Run from the repository root::

    python benchmarks/grid_year.py                 # the whole year (several minutes)
    python benchmarks/grid_year.py --steps 200     # a quick check
    python benchmarks/grid_year.py --skip-pandapower
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO / "scenarios" / "mv_rural.yaml"
SPEEDUP_TARGET = 5.0
MEMORY_TARGET_MB = 1500.0
DV_TARGET_PU = 1e-6
N_SPOT_STEPS = 24  # steps checked with runpp under --skip-pandapower

# Runs in a fresh interpreter: argv = scenario, steps ("" = the scenario's own), HDF5 path, report path.
_CHILD_CODE = """
import json, resource, sys, time
t0 = time.perf_counter()
import cosim
import_s = time.perf_counter() - t0
scenario, steps, out, report = sys.argv[1:5]
s = cosim.run(scenario, steps=int(steps) if steps else None, out=out, progress=False)
with open(report, "w") as f:
    json.dump({
        "path": str(s.path), "n_steps": s.n_steps, "wall_s": s.wall_s, "power_flow_s": s.power_flow_s,
        "n_not_converged": s.n_not_converged, "import_s": import_s,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }, f)
"""


@dataclass(frozen=True)
class CosimRun:
    """What the co-simulation child reported, plus what the parent measured around it."""

    path: Path
    n_steps: int
    wall_s: float
    power_flow_s: float
    n_not_converged: int
    import_s: float
    process_s: float  # parent-measured: interpreter start, imports, run, exit
    peak_mb: float


@dataclass(frozen=True)
class Recorded:
    """The co-simulation's agent set-points and grid results, as arrays (steps x elements)."""

    load_p: np.ndarray
    load_q: np.ndarray
    sgen_p: np.ndarray
    sgen_q: np.ndarray  # all load convention (+ = consumption)
    vm_pu: np.ndarray  # columns in net.bus row order
    line_loading: np.ndarray  # columns in net.line row order
    trafo_loading: np.ndarray
    import_mw: np.ndarray


@dataclass(frozen=True)
class Comparison:
    """Largest differences co-simulation vs pandapower over the compared steps."""

    how: str
    n_steps: int
    max_dv_pu: float
    max_d_line: float
    max_d_trafo: float
    max_d_import: float
    n_nan_mismatch: int  # (step, bus) values finite in one result and not in the other


def run_cosim(scenario: Path, steps: int | None, workdir: Path) -> CosimRun:
    """Run the co-simulation in a child interpreter and collect its summary and peak memory.

    Parameters
    ----------
    scenario : scenario YAML file
    steps : number of steps, or None for the scenario's duration
    workdir : where the HDF5 file and the child's report are written

    Returns
    -------
    CosimRun
    """
    out, report = workdir / "cosim.h5", workdir / "report.json"
    argv = [sys.executable, "-c", _CHILD_CODE, str(scenario), "" if steps is None else str(steps)]
    t0 = time.perf_counter()
    proc = subprocess.run([*argv, str(out), str(report)], check=False)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0 or not report.is_file():
        raise SystemExit(f"error: the co-simulation child failed (exit code {proc.returncode})")
    info = json.loads(report.read_text())
    # ru_maxrss is in kB on Linux; RUSAGE_CHILDREN is the largest waited-for descendant (the child).
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak_kb = max(int(info["maxrss_kb"]), children_kb)
    return CosimRun(
        path=Path(info["path"]),
        n_steps=int(info["n_steps"]),
        wall_s=float(info["wall_s"]),
        power_flow_s=float(info["power_flow_s"]),
        n_not_converged=int(info["n_not_converged"]),
        import_s=float(info["import_s"]),
        process_s=process_s,
        peak_mb=peak_kb / 1024.0,
    )


def load_baseline_net(scenario: Path) -> Any:
    """A fresh pandapower net of the scenario's grid, loads and sgens at ``scaling = 1``.

    The recorded set-points already carry the element scaling (as the co-simulation's agents do).
    """
    import cosim
    from cosim.models.grid.network import load_network

    grid = cosim.load_scenario(scenario).grid
    net = load_network(
        grid.source,
        code=getattr(grid, "code", ""),
        case=getattr(grid, "case", ""),
        path=getattr(grid, "path", None),
    )
    net.load["scaling"] = 1.0
    net.sgen["scaling"] = 1.0
    return net


def read_recorded(path: Path, net: Any) -> Recorded:
    """Read the co-simulation's set-points and results; check the agents are the net's loads and sgens.

    Raises
    ------
    SystemExit
        when the agents are not exactly ``net.load`` then ``net.sgen`` in row order.
    """
    import cosim

    res = cosim.open_results(path)
    try:
        kind = res["agents/kind"].to_numpy().astype(str)
        bus = res["agents/bus"].to_numpy()
        expected = np.r_[np.full(len(net.load), "load"), np.full(len(net.sgen), "sgen")]
        expected_bus = np.r_[net.load.bus.to_numpy(), net.sgen.bus.to_numpy()]
        if kind.shape != expected.shape or (kind != expected).any() or (bus != expected_bus).any():
            raise SystemExit(
                "error: the baseline needs a scenario whose agents are exactly the net's loads and sgens "
                "(no added PV, batteries or EVs)"
            )
        if (res["grid/bus/index"].to_numpy() != net.bus.index.to_numpy()).any():
            raise SystemExit("error: recorded bus order differs from net.bus")
        n_load = len(net.load)
        p = res["agents/p_mw"].to_numpy()
        q = res["agents/q_mvar"].to_numpy()
        return Recorded(
            load_p=p[:, :n_load],
            load_q=q[:, :n_load],
            sgen_p=p[:, n_load:],
            sgen_q=q[:, n_load:],
            vm_pu=res["grid/bus/vm_pu"].to_numpy(),
            line_loading=res["grid/line/loading_percent"].to_numpy(),
            trafo_loading=res["grid/trafo/loading_percent"].to_numpy(),
            import_mw=res["grid/import_mw"].to_numpy(),
        )
    finally:
        res.close()


def run_pandapower(net: Any, rec: Recorded) -> tuple[float, dict[str, np.ndarray], int]:
    """Drive ``run_timeseries`` with the recorded set-points; time it from controller creation.

    Returns
    -------
    wall_s : controller and output-writer creation plus the loop
    outputs : ``res_bus.vm_pu``, ``res_line.loading_percent``, ``res_trafo.loading_percent``,
        ``res_ext_grid.p_mw`` as arrays (steps x elements, net row order)
    n_not_converged : steps whose power flow failed (NaN results)
    """
    from pandapower.control import ConstControl
    from pandapower.timeseries import DFData, OutputWriter, run_timeseries

    n_steps = rec.vm_pu.shape[0]
    steps = pd.RangeIndex(n_steps)
    # pandapower element values: load p = +p, q = +q; sgen (generator convention) p = -p, q = -q
    frames = {
        ("load", "p_mw"): pd.DataFrame(rec.load_p, index=steps, columns=net.load.index),
        ("load", "q_mvar"): pd.DataFrame(rec.load_q, index=steps, columns=net.load.index),
        ("sgen", "p_mw"): pd.DataFrame(-rec.sgen_p, index=steps, columns=net.sgen.index),
        ("sgen", "q_mvar"): pd.DataFrame(-rec.sgen_q, index=steps, columns=net.sgen.index),
    }
    logged = ["res_bus.vm_pu", "res_line.loading_percent", "res_trafo.loading_percent", "res_ext_grid.p_mw"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for (element, variable), frame in frames.items():
            ConstControl(
                net,
                element=element,
                variable=variable,
                element_index=frame.columns.to_numpy(),
                data_source=DFData(frame),
                profile_name=frame.columns.to_numpy(),
            )
        writer = OutputWriter(net, time_steps=steps, output_path=None)
        for name in logged:
            table, column = name.split(".")
            writer.log_variable(table, column)
        run_timeseries(net, time_steps=steps, continue_on_divergence=True, verbose=False)
        wall_s = time.perf_counter() - t0
    outputs = {name: writer.output[name].to_numpy(dtype=float) for name in logged}
    n_failed = int(np.isnan(outputs["res_bus.vm_pu"]).all(axis=1).sum())
    return wall_s, outputs, n_failed


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Max |a - b| where both are finite, and the count of entries finite in only one of them."""
    if a.shape != b.shape:
        raise SystemExit(f"error: result shapes differ: co-simulation {a.shape}, pandapower {b.shape}")
    fa, fb = np.isfinite(a), np.isfinite(b)
    both = fa & fb
    diff = float(np.max(np.abs(a[both] - b[both]), initial=0.0)) if both.any() else float("nan")
    return diff, int((fa != fb).sum())


def compare_timeseries(rec: Recorded, outputs: dict[str, np.ndarray]) -> Comparison:
    """Differences co-simulation vs ``run_timeseries`` over every step and element."""
    dv, nan_mismatch = _max_abs_diff(rec.vm_pu, outputs["res_bus.vm_pu"])
    d_line, _ = _max_abs_diff(rec.line_loading, outputs["res_line.loading_percent"])
    d_trafo, _ = _max_abs_diff(rec.trafo_loading, outputs["res_trafo.loading_percent"])
    d_import, _ = _max_abs_diff(rec.import_mw, outputs["res_ext_grid.p_mw"].sum(axis=1))
    return Comparison("run_timeseries", rec.vm_pu.shape[0], dv, d_line, d_trafo, d_import, nan_mismatch)


def compare_runpp(net: Any, rec: Recorded) -> Comparison:
    """Differences co-simulation vs ``pandapower.runpp`` on a sample of steps (``--skip-pandapower``).

    The sample: evenly spaced steps plus those of the largest net load and the largest net injection.
    """
    import pandapower as pp

    from cosim.models.grid.powerflow import set_injections

    n_steps = rec.vm_pu.shape[0]
    total = rec.load_p.sum(axis=1) + rec.sgen_p.sum(axis=1)
    sample = np.unique(
        np.r_[
            np.linspace(0, n_steps - 1, min(n_steps, N_SPOT_STEPS)).astype(int),
            np.argmax(total),
            np.argmin(total),
        ]
    )
    elements = [("load", int(i)) for i in net.load.index] + [("sgen", int(i)) for i in net.sgen.index]
    ours: dict[str, list[np.ndarray]] = {"vm": [], "line": [], "trafo": [], "imp": []}
    theirs: dict[str, list[np.ndarray]] = {"vm": [], "line": [], "trafo": [], "imp": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in sample:
            set_injections(
                net, elements, np.r_[rec.load_p[k], rec.sgen_p[k]], np.r_[rec.load_q[k], rec.sgen_q[k]]
            )
            try:
                pp.runpp(net)
                got = [
                    net.res_bus.vm_pu.to_numpy(),
                    net.res_line.loading_percent.to_numpy(),
                    net.res_trafo.loading_percent.to_numpy(),
                    np.array([net.res_ext_grid.p_mw.sum()]),
                ]
            except pp.LoadflowNotConverged:
                got = [
                    np.full(len(net.bus), np.nan),
                    np.full(len(net.line), np.nan),
                    np.full(len(net.trafo), np.nan),
                    np.array([np.nan]),
                ]
            for key, value, mine in zip(
                ("vm", "line", "trafo", "imp"),
                got,
                (rec.vm_pu[k], rec.line_loading[k], rec.trafo_loading[k], rec.import_mw[k : k + 1]),
                strict=True,
            ):
                theirs[key].append(value)
                ours[key].append(mine)
    dv, nan_mismatch = _max_abs_diff(np.array(ours["vm"]), np.array(theirs["vm"]))
    d_line, _ = _max_abs_diff(np.array(ours["line"]), np.array(theirs["line"]))
    d_trafo, _ = _max_abs_diff(np.array(ours["trafo"]), np.array(theirs["trafo"]))
    d_import, _ = _max_abs_diff(np.array(ours["imp"]), np.array(theirs["imp"]))
    return Comparison("runpp, sampled steps", len(sample), dv, d_line, d_trafo, d_import, nan_mismatch)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> str:
    """One line: CPUs, platform, Python and the versions that matter."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = ", ".join(f"{n} {_version(n)}" for n in ("pandapower", "numpy", "scipy", "numba", "mosaik"))
    return (
        f"machine: {os.cpu_count()} CPUs ({usable} usable), {platform.machine()} {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; {versions}"
    )


def _ms(seconds: float, n_steps: int) -> str:
    return f"{1000.0 * seconds / n_steps:9.3f}" if n_steps else "      n/a"


def report(
    scenario: Path,
    code: str,
    cosim_run: CosimRun,
    pp_wall_s: float | None,
    pp_failed: int | None,
    cmp: Comparison | None,
) -> list[str]:
    """Print the results table and target lines; return the failed targets (empty: all hold)."""
    n = cosim_run.n_steps
    print(f"grid_year benchmark: {code} ({scenario.name}), {n} steps, AC power flow every step")
    print(machine_info())
    print()
    label_w = 44
    rows = [
        ("co-simulation (grid + agents + recorder)", cosim_run.wall_s),
        ("  of which power-flow solver", cosim_run.power_flow_s),
        ("  + process start and imports (parent clock)", cosim_run.process_s),
    ]
    print(f"{'':{label_w}}{'wall s':>10}{'ms/step':>10}")
    for label, seconds in rows:
        print(f"{label:{label_w}}{seconds:10.2f}{_ms(seconds, n)}")
    if pp_wall_s is not None:
        print(f"{'pandapower run_timeseries':{label_w}}{pp_wall_s:10.2f}{_ms(pp_wall_s, n)}")
    else:
        print(f"{'pandapower run_timeseries':{label_w}}{'skipped':>10}")
    print()
    steps_s = n / cosim_run.wall_s if cosim_run.wall_s > 0 else float("inf")
    print(
        f"co-simulation: {steps_s:.1f} steps/s, {cosim_run.n_not_converged} non-converged steps "
        f"(imports in the child: {cosim_run.import_s:.2f} s)"
    )
    if pp_failed is not None:
        print(f"pandapower run_timeseries: {pp_failed} non-converged steps")
    if cmp is not None:
        print(
            f"compared with {cmp.how} over {cmp.n_steps} steps: max |d line loading| {cmp.max_d_line:.2e} %, "
            f"max |d trafo loading| {cmp.max_d_trafo:.2e} %, max |d import| {cmp.max_d_import:.2e} MW, "
            f"{cmp.n_nan_mismatch} bus values finite in only one result"
        )

    failed: list[str] = []
    if pp_wall_s is not None:
        speedup = pp_wall_s / cosim_run.wall_s
        with_start = pp_wall_s / cosim_run.process_s
        print(
            f"speed-up vs run_timeseries: {speedup:.1f}x (target >= {SPEEDUP_TARGET:g}x); "
            f"{with_start:.1f}x counting process start and imports"
        )
        if not speedup >= SPEEDUP_TARGET:
            failed.append(f"speed-up {speedup:.1f}x < {SPEEDUP_TARGET:g}x")
    else:
        print(f"speed-up vs run_timeseries: not measured (--skip-pandapower) (target >= {SPEEDUP_TARGET:g}x)")
    print(f"peak memory: {cosim_run.peak_mb:.0f} MB (target < {MEMORY_TARGET_MB:.0f} MB)")
    if not cosim_run.peak_mb < MEMORY_TARGET_MB:
        failed.append(f"peak memory {cosim_run.peak_mb:.0f} MB >= {MEMORY_TARGET_MB:.0f} MB")
    if cmp is not None:
        print(f"max |dV| vs pandapower: {cmp.max_dv_pu:.2e} pu (target < {DV_TARGET_PU:g}; {cmp.how})")
        if not cmp.max_dv_pu < DV_TARGET_PU:
            failed.append(f"max |dV| {cmp.max_dv_pu:.2e} pu >= {DV_TARGET_PU:g} pu")
        if cmp.n_nan_mismatch:
            failed.append(f"{cmp.n_nan_mismatch} bus voltages solved by only one of the two")
    print()
    print("all targets met" if not failed else "FAILED: " + "; ".join(failed))
    return failed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=None, help="steps to run (default: the scenario's year)")
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario YAML file")
    parser.add_argument(
        "--skip-pandapower",
        action="store_true",
        help="do not run pandapower's run_timeseries; check voltages with runpp on sampled steps",
    )
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be at least 1")
    if not args.scenario.is_file():
        parser.error(f"no scenario file {args.scenario}")
    args.scenario = args.scenario.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code (0: all targets hold)."""
    args = parse_args(argv)
    logging.getLogger("pandapower").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="grid_year_") as tmp:
        # the child runs first and alone: nothing else competes for the 2 cores or its memory
        print(f"running the co-simulation of {args.scenario} in a child process ...", flush=True)
        cosim_run = run_cosim(args.scenario, args.steps, Path(tmp))
        net = load_baseline_net(args.scenario)
        rec = read_recorded(cosim_run.path, net)
    pp_wall_s: float | None = None
    pp_failed: int | None = None
    if args.skip_pandapower:
        cmp = compare_runpp(net, rec)
    else:
        print(f"running pandapower run_timeseries over {cosim_run.n_steps} steps ...", flush=True)
        pp_wall_s, outputs, pp_failed = run_pandapower(net, rec)
        cmp = compare_timeseries(rec, outputs)
    print()
    failed = report(args.scenario, grid_name(args.scenario), cosim_run, pp_wall_s, pp_failed, cmp)
    return 1 if failed else 0


def grid_name(scenario: Path) -> str:
    """A short name of the scenario's grid: SimBench code, pandapower case or file name."""
    import cosim

    grid = cosim.load_scenario(scenario).grid
    return str(getattr(grid, "code", "") or getattr(grid, "case", "") or getattr(grid, "path", ""))


if __name__ == "__main__":
    sys.exit(main())
