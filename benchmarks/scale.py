"""Benchmark: how set-up, time per step and memory grow with the number of agents (issue #17, "Scale").

Runs one scenario (default ``scenarios/mvlv_rural.yaml``: 15-minute steps, 30 % rooftop PV, 10 % home
batteries and EVs, DC-OPF market, BFT ledger) on several SimBench grids, each in a child process of its
own (so its peak memory is its alone), for ``--steps`` steps, and prints one row per grid: buses, agents,
steps, set-up (from the call of ``cosim.world.run`` to the first power flow, s), time per step after it
(s: to the closed file, divided by the steps), the per-step split into power flow, market and ledger (the
run's HDF5 attributes), and peak resident memory (``getrusage`` ``ru_maxrss`` at the child's end,
1 MB = 2**20 bytes). Then the ratios of each row to the first: agents, time per step, peak memory.
Linear growth: the time ratio near the agent ratio.

SimBench has no grids of exactly 4x and 16x the agents of another; the default rows are an LV grid
(1-LV-rural3, 191 agents), the rural MV grid with all its LV grids (8,265 agents, 43x) and the
semi-urban one (13,477 agents, 71x); ``--grids`` takes any SimBench codes. ``--no-ledger`` leaves the
ledger out (grid, agents and market only).

Run from the repository root (a few minutes; the first run of a grid parses its CSVs, later runs read the
cache of parsed nets)::

    python benchmarks/scale.py
    python benchmarks/scale.py --steps 96 --grids 1-MVLV-rural-all-0-sw   # one day of the MVLV grid
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO / "scenarios" / "mvlv_rural.yaml"
sys.path.insert(0, str(REPO / "benchmarks"))
from study_year import FIRST_STEP_CLOCK  # noqa: E402  (a sibling script, not a package)

DEFAULT_GRIDS = ("1-LV-rural3--0-sw", "1-MVLV-rural-all-0-sw", "1-MVLV-semiurb-all-0-sw")

# Runs in a fresh interpreter: argv = scenario YAML, steps, HDF5 path. Prints one JSON line.
_CHILD_CODE = (
    FIRST_STEP_CLOCK
    + """
summary = cosim.world.run(sys.argv[1], steps=int(sys.argv[2]), out=sys.argv[3])
t_end = time.perf_counter()
with h5py.File(summary.path, "r") as f:
    attrs = {k: float(f.attrs.get(k, 0.0)) for k in ("power_flow_s", "market_s", "ledger_s")}
    n_bus = len(f["grid/bus/name"]) if "grid/bus/name" in f else -1
    n_agent = len(f["agents/name"]) if "agents/name" in f else -1
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(attrs | {
    "n_steps": summary.n_steps, "n_bus": n_bus, "n_agent": n_agent,
    "setup_s": first[0] - t_run, "run_s": t_end - first[0],
    "peak_mb": usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024),  # bytes on macOS, else KiB
}))
"""
)


def variant(scenario: Path, code: str, ledger: bool, work: Path) -> Path:
    """The scenario on SimBench grid ``code`` (without its ledger unless ``ledger``), written in ``work``."""
    data = yaml.safe_load(scenario.read_text(encoding="utf-8"))
    data["grid"] = {"source": "simbench", "code": code}
    if not ledger:
        data.pop("ledger", None)
    data["name"] = f"{data['name']}_{code}"
    path = work / f"{code}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def child(scenario: Path, steps: int, out: Path) -> dict[str, Any]:
    """Run one scenario in a fresh interpreter, in the directory of ``out`` (no ``cosim`` there to shadow)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_CODE, str(scenario), str(steps), str(out)],
        capture_output=True, text=True, env=dict(os.environ), cwd=out.parent, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"run of {scenario} failed:\n{proc.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    n = max(1, row["n_steps"])
    row |= {"s_per_step": row["run_s"] / n, "pf_per_step": row["power_flow_s"] / n,
            "market_per_step": row["market_s"] / n, "ledger_per_step": row["ledger_s"] / n}  # fmt: skip
    return row


def table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per grid, with the ratios of time per step and memory to the first grid."""
    head = (
        f"{'grid':26}{'buses':>7}{'agents':>8}{'steps':>7}{'set-up s':>10}{'s/step':>9}{'pf':>8}"
        f"{'market':>8}{'ledger':>8}{'peak MB':>9}{'agents x':>10}{'s/step x':>10}{'MB x':>7}"
    )
    lines = [head]
    base = next(iter(rows.values()))
    for name, r in rows.items():
        lines.append(
            f"{name:26}{r['n_bus']:>7d}{r['n_agent']:>8d}{r['n_steps']:>7d}{r['setup_s']:>10.1f}"
            f"{r['s_per_step']:>9.3f}{r['pf_per_step']:>8.3f}{r['market_per_step']:>8.3f}"
            f"{r['ledger_per_step']:>8.3f}{r['peak_mb']:>9.0f}{r['n_agent'] / base['n_agent']:>10.1f}"
            f"{r['s_per_step'] / base['s_per_step']:>10.1f}{r['peak_mb'] / base['peak_mb']:>7.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario YAML")
    parser.add_argument("--grids", nargs="+", default=list(DEFAULT_GRIDS), help="SimBench codes, 1x first")
    parser.add_argument("--steps", type=int, default=8, help="steps of each run (default 8)")
    parser.add_argument("--no-ledger", action="store_true", help="leave the scenario's ledger out")
    parser.add_argument("--json", type=Path, help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="scale_") as tmp:
        work = Path(tmp)
        for code in args.grids:
            path = variant(args.scenario.resolve(), code, not args.no_ledger, work)
            rows[code] = child(path, args.steps, work / f"{code}.h5")
            print(f"{code}: {json.dumps(rows[code])}", file=sys.stderr, flush=True)
    ledger = "without its ledger" if args.no_ledger else "with its ledger"
    print(f"{args.scenario.name} {ledger}, {args.steps} steps per grid")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
