"""Benchmark: the default study's wall time by simulator, against the same study with only grid and market.

Runs, each in a child process of its own (so its peak memory is its alone):

1. ``study``: the scenario as written (default ``scenarios/default.yaml``: grid, agents, DC-OPF market,
   BFT ledger, privacy, emissions, equity), for ``--days`` days;
2. ``core``: the same scenario with ``ledger``, ``privacy``, ``emissions`` and ``equity`` removed (grid,
   agents and market only), same days.

For each it prints the wall time as the run reports it (``RunSummary.wall_s``: from building the models to
the closed file), its split by the run's HDF5 attributes ``power_flow_s``, ``market_s``, ``ledger_s`` and
``checkpoint_s`` (the rest, "other", is set-up, agents, privacy, accounting, recorder and mosaik; with the
ledger in its worker process, ``orchestration.ledger_worker``, "other" counts the time the run waited for it,
``ledger_wait_s``, instead of ``ledger_s``, and the worker's peak memory is printed too), the CPU time of the
run's process and of its children (the ledger's worker), the
set-up time (from the call of ``cosim.world.run`` to the first power flow), the imports (every component,
its adapter and the libraries the models import while they are built: ``SETUP_IMPORTS``), and the child's peak
resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at its end; 1 MB = 2**20 bytes). Then the
ratio of the two wall times (issue #17's target: at most 2).

``--setup`` measures the SimBench net cache instead: two 1-day runs of the scenario in a fresh, empty
cache directory (``COSIM_CACHE_DIR``): the first parses the SimBench CSVs and fills the cache, the second
reads it. Target: the second starts its first step within 1 s of the imports.

``--cpu`` adds the main thread's CPU time (``time.thread_time``, which a loaded machine blurs less than the
wall time) inside each simulator's adapter (``step`` and ``get_data``: agents, grid, market, accounting,
privacy, ledger, recorder) and mosaik's own (``World.run`` less the adapters). The ledger's signature
threads are not the main thread: their CPU is not counted.

``--checkout DIR`` runs the code of another checkout of this repository (e.g. ``git archive main``
unpacked) with the installed dependencies: before/after comparisons in one session.

Run from the repository root (a year takes minutes; ``--days 14`` is a quick check)::

    python benchmarks/study_year.py --days 14
    python benchmarks/study_year.py --days 30 --cpu
    python benchmarks/study_year.py --setup
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO / "scenarios" / "default.yaml"
STUDY_ONLY = ("ledger", "privacy", "emissions", "equity")  # removed for the grid-and-market run
RATIO_TARGET = 2.0
SETUP_TARGET_S = 1.0

# Modules a run imports on its way to the first step besides the components' and adapters' own, with the
# scenario section that needs them (None: every run): the recorder's adapter, the LP solver's library that
# Pyomo imports when the market model is built, OpenDP's release module, the cache directory's, mosaik's
# debug module. Imported with the imports, so that "set-up" is the run's own work.
SETUP_IMPORTS = (
    ("cosim.recorder_sim", None),
    ("highspy", "market"),
    ("cosim.models.privacy.release", "privacy"),
    ("platformdirs", None),
    ("mosaik._debug", None),
)
# The start of a child's code (also benchmarks/scale.py's; argv[1] the scenario YAML): imports timed (every
# component of the registry, its adapter, and SETUP_IMPORTS), the first step's time kept in ``first`` by a
# wrapper of the grid's step, ``t_run`` just before the run.
FIRST_STEP_CLOCK = f"""
import importlib, json, resource, sys, time
t0 = time.perf_counter()
import h5py, yaml
import cosim.world
from cosim.component import REGISTRY
for entry in REGISTRY.values():
    importlib.import_module(entry.module)
    importlib.import_module(entry.module.rpartition(".")[0] + ".sim")
with open(sys.argv[1], encoding="utf-8") as fh:
    sections = yaml.safe_load(fh)
for name, section in {SETUP_IMPORTS!r}:
    if section is None or sections.get(section) is not None:
        importlib.import_module(name)
from cosim.models.grid.sim import GridSim
t_imports = time.perf_counter()
first = []
step = GridSim.step
def timed_step(self, *args, **kwargs):
    if not first:
        first.append(time.perf_counter())
    return step(self, *args, **kwargs)
GridSim.step = timed_step
t_run = time.perf_counter()
"""
# Parts of ``--cpu``'s split, in the order printed: the components' adapters, the recorder, mosaik.
CPU_PARTS = ("agents", "grid", "market", "accounting", "privacy", "ledger", "recorder", "mosaik")
# ``--cpu`` (argv[4] == "cpu"): the main thread's CPU time (``time.thread_time``) inside every adapter's
# ``step`` and ``get_data``, by component, and inside mosaik's ``World.run`` around them (its rest: "mosaik").
_CPU_CLOCK = """
cpu = {}
if sys.argv[4:] == ["cpu"]:
    import mosaik
    from cosim.models.adapter import ShiftedSim

    def thread_timed(cls, name, label):
        inner = getattr(cls, name)
        def timed(*args, **kwargs):
            c0 = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                cpu[label] = cpu.get(label, 0.0) + time.thread_time() - c0
        setattr(cls, name, timed)

    sims = {key: entry.module.rpartition(".")[0] + ".sim" for key, entry in REGISTRY.items()}
    for label, module in (sims | {"recorder": "cosim.recorder_sim"}).items():
        mod = importlib.import_module(module)
        for cls in vars(mod).values():
            if isinstance(cls, type) and issubclass(cls, ShiftedSim) and cls.__module__ == module:
                thread_timed(cls, "step", label)
                thread_timed(cls, "get_data", label)
    thread_timed(mosaik.World, "run", "world")
"""
# Runs in a fresh interpreter: argv = scenario YAML, days, HDF5 path[, "cpu"]. Prints one JSON line.
_CHILD_CODE = (
    FIRST_STEP_CLOCK
    + _CPU_CLOCK
    + """
summary = cosim.world.run(sys.argv[1], days=float(sys.argv[2]), out=sys.argv[3])
if cpu:
    cpu["mosaik"] = cpu.pop("world") - sum(cpu.values())
with h5py.File(summary.path, "r") as f:
    attrs = {k: float(f.attrs[k]) for k in ("power_flow_s", "market_s", "ledger_s", "checkpoint_s",
             "ledger_wait_s", "ledger_worker_peak_mb") if k in f.attrs}
usage = resource.getrusage(resource.RUSAGE_SELF)
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps(attrs | {
    "process_cpu_s": usage.ru_utime + usage.ru_stime, "children_cpu_s": children.ru_utime + children.ru_stime,
    "wall_s": summary.wall_s, "n_steps": summary.n_steps, "imports_s": t_imports - t0,
    "code": cosim.world.__file__,
    "setup_s": (first[0] - t_run) if first else float("nan"),
    "peak_mb": usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024),  # bytes on macOS, else KiB
} | {f"cpu_{k}_s": v for k, v in cpu.items()}))
"""
)


def checkout_path(checkout: Path, work: Path) -> Path:
    """A directory importable as ``cosim`` from a checkout (its ``models/`` and ``analysis/`` inside)."""
    root = work / "src"
    shutil.copytree(checkout / "cosim", root / "cosim")
    shutil.copytree(checkout / "models", root / "cosim" / "models")
    shutil.copytree(checkout / "analysis", root / "cosim" / "analysis")
    return root


def child(scenario: Path, days: float, out: Path, env: dict[str, str], cpu: bool = False) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter, in the directory of ``out`` (no ``cosim`` there to shadow);
    ``cpu``: with the CPU split of ``--cpu``."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_CODE, str(scenario), str(days), str(out), *(["cpu"] if cpu else [])],
        capture_output=True, text=True, env=env, cwd=out.parent, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"run of {scenario} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def core_scenario(scenario: Path, work: Path) -> Path:
    """The scenario without ledger, privacy, emissions and equity, written in ``work``."""
    data = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    for key in STUDY_ONLY:
        data.pop(key, None)
    groups = data.get("output", {}).get("groups")
    if groups:
        data["output"]["groups"] = [g for g in groups if g not in STUDY_ONLY]
    data["name"] = f"{data['name']}_core"
    path = work / f"{scenario.stem}_core.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def table(rows: dict[str, dict[str, Any]]) -> str:
    """The measurements as a fixed-width table, one column per run."""
    keys = [
        ("wall_s", "wall (s)"), ("power_flow_s", "power flow (s)"), ("market_s", "market (s)"),
        ("ledger_s", "ledger (s)"), ("ledger_wait_s", "  waited for (s)"),
        ("checkpoint_s", "checkpoints (s)"),
        ("other_s", "other (s)"), ("setup_s", "set-up to 1st step (s)"), ("imports_s", "imports (s)"),
        ("peak_mb", "peak RSS (MB)"), ("ledger_worker_peak_mb", "  ledger worker's (MB)"),
        ("process_cpu_s", "CPU of the process (s)"), ("children_cpu_s", "  of its children (s)"),
        ("n_steps", "steps"),
    ]  # fmt: skip
    if any("cpu_mosaik_s" in r for r in rows.values()):
        keys += [(f"cpu_{part}_s", f"CPU {part} (s)") for part in CPU_PARTS]
    names = list(rows)
    lines = [f"{'':24}" + "".join(f"{n:>14}" for n in names)]
    for key, label in keys:
        cells = []
        for n in names:
            v = rows[n].get(key, float("nan"))
            cells.append(f"{v:>14d}" if isinstance(v, int) else f"{v:>14.2f}")
        lines.append(f"{label:24}" + "".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when the target of the mode holds, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario YAML")
    parser.add_argument("--days", type=float, default=365.0, help="simulated days of each run (default 365)")
    parser.add_argument("--setup", action="store_true", help="SimBench cache: cold vs warm set-up")
    parser.add_argument("--checkout", type=Path, help="run the code of this checkout of the repository")
    parser.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    parser.add_argument(
        "--cpu", action="store_true", help="split the main thread's CPU time by simulator and mosaik"
    )
    args = parser.parse_args(argv)
    scenario = args.scenario.resolve()
    with tempfile.TemporaryDirectory(prefix="study_year_") as tmp:
        work = Path(tmp)
        env = dict(os.environ)
        if args.checkout is not None:
            env["PYTHONPATH"] = str(checkout_path(args.checkout.resolve(), work))
        rows: dict[str, dict[str, Any]] = {}
        if args.setup:
            env["COSIM_CACHE_DIR"] = str(work / "cache")
            env.pop("COSIM_NO_CACHE", None)
            for name in ("cold cache", "warm cache"):
                rows[name] = child(scenario, 1.0, work / f"{name[:4]}.h5", env)
        else:
            core = core_scenario(scenario, work)
            rows["study"] = child(scenario, args.days, work / "study.h5", env, args.cpu)
            rows["grid+market"] = child(core, args.days, work / "core.h5", env, args.cpu)
        for r in rows.values():  # a ledger in a worker costs the run only the time waited for it
            ledger = r.get("ledger_wait_s", r.get("ledger_s", 0.0))
            r["other_s"] = (
                r["wall_s"]
                - ledger
                - sum(r.get(k, 0.0) for k in ("power_flow_s", "market_s", "checkpoint_s"))
            )
    print(f"{scenario.name}, {args.days if not args.setup else 1:g} day(s)" + (f", code of {args.checkout}"
          if args.checkout else ""))  # fmt: skip
    print(table(rows))
    print("code: " + ", ".join(sorted({str(r["code"]) for r in rows.values()})))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    if args.setup:
        warm = rows["warm cache"]["setup_s"]
        print(f"warm set-up {warm:.2f} s (target <= {SETUP_TARGET_S:g} s)")
        return 0 if warm <= SETUP_TARGET_S else 1
    ratio = rows["study"]["wall_s"] / rows["grid+market"]["wall_s"]
    print(f"study / grid+market wall time: {ratio:.2f} (target <= {RATIO_TARGET:g})")
    return 0 if ratio <= RATIO_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
