"""Benchmark: the co-simulation's ledger alone, replayed on the inputs it received in a run of the study.

A run of the scenario (``--days``, default 60) records every step's ledger inputs (the market's trades and
the agents' power) into ``--inputs`` (a pickle, kept and reused when it exists). Each variant then replays
them on a fresh ledger built from the scenario, in a child process of its own, and prints the CPU time
(``time.process_time``, every thread of the process) and the wall time of the replay, the transactions
written and the hash of the chain's head (the same in every variant, or the code changed the ledger):

* ``this``, ``this-1``: this checkout with its default signature threads, and with
  ``COSIM_SIGNATURE_THREADS=1``;
* ``before`` (``--checkout DIR``): another checkout of this repository, e.g. ``git archive main`` unpacked.

``tx`` counts the ``/ledger/tx`` rows written (trades, readings, cancels, rejections), ``CPU us/tx`` the
median CPU time per row. ``--scenario scenarios/mvlv_rural.yaml --days 0.084`` (8 fifteen-minute steps)
measures the ledger at scale (~11,000 rows a step).

Variants alternate for ``--rounds`` rounds (machines shared with other jobs drift); medians are printed.
Run from the repository root::

    python benchmarks/ledger_replay.py --days 60 --checkout /tmp/before --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = REPO / "scenarios" / "default.yaml"
sys.path.insert(0, str(REPO / "benchmarks"))
from study_year import checkout_path  # noqa: E402  (a sibling script, not a package)

# argv = scenario YAML, days, HDF5 path, inputs pickle: a run recording the ledger's inputs
_RECORD = """
import copy, pickle, sys
import cosim.world
import cosim.models.ledger.sim as lsim
rec, step = [], lsim.ledger_step
def recording(model, k, trades, p_mw, tx_per_s, step_s, n_steps):
    rec.append((k, copy.deepcopy(trades), copy.deepcopy(p_mw), tx_per_s, step_s, n_steps, len(model.address)))
    return step(model, k, trades, p_mw, tx_per_s, step_s, n_steps)
lsim.ledger_step = recording
from cosim.scenario import load_scenario
scenario = load_scenario(sys.argv[1])  # the ledger in the world's process, where the recording is
scenario = scenario.model_copy(update={"orchestration": scenario.orchestration.model_copy(
    update={"ledger_worker": False})})
cosim.world.run(scenario, days=float(sys.argv[2]), out=sys.argv[3])
with open(sys.argv[4], "wb") as f:
    pickle.dump(rec, f)
"""
# argv = scenario YAML, inputs pickle: one replay, one JSON line
_REPLAY = """
import json, pickle, sys, time
from cosim.scenario import load_scenario
from cosim.models.ledger.component import build_ledger
from cosim.models.ledger.sim import ledger_step
with open(sys.argv[2], "rb") as f:
    rec = pickle.load(f)
model = build_ledger(load_scenario(sys.argv[1]), rec[0][6])[0]
wall, cpu, n_tx = time.perf_counter(), time.process_time(), 0
for k, trades, p_mw, tx_per_s, step_s, n_steps, _ in rec:
    n_tx += len(ledger_step(model, k, trades, p_mw, tx_per_s, step_s, n_steps).tx["tx_id"])
print(json.dumps({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall, "tx": n_tx,
                  "head": model.chain.blocks[-1].hash, "code": __import__("cosim").__file__}))
"""


def _child(code: str, args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=cwd, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def main(argv: list[str] | None = None) -> int:
    """Record (if needed) and replay; 0 when every variant ends on the same chain head, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO, help="scenario YAML")
    parser.add_argument("--days", type=float, default=60.0, help="simulated days to record (default 60)")
    parser.add_argument("--inputs", type=Path, help="the recorded inputs (default: in the temporary dir)")
    parser.add_argument("--checkout", type=Path, help="also replay on this checkout's code ('before')")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    args = parser.parse_args(argv)
    scenario = args.scenario.resolve()
    with tempfile.TemporaryDirectory(prefix="ledger_replay_") as tmp:
        work = Path(tmp)
        inputs = (args.inputs or work / "inputs.pkl").resolve()
        env = dict(os.environ)
        if not inputs.exists():
            print(f"recording {args.days:g} days of {scenario.name} into {inputs} ...", flush=True)
            _child(_RECORD, [str(scenario), str(args.days), str(work / "run.h5"), str(inputs)], work, env)
        variants: dict[str, dict[str, str]] = {}
        if args.checkout is not None:
            variants["before"] = env | {"PYTHONPATH": str(checkout_path(args.checkout.resolve(), work))}
        variants["this"] = env
        variants["this-1"] = env | {"COSIM_SIGNATURE_THREADS": "1"}
        got: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for r in range(args.rounds):
            for name, child_env in variants.items():
                got[name].append(json.loads(_child(_REPLAY, [str(scenario), str(inputs)], work, child_env)))
                run = got[name][-1]
                print(
                    f"round {r + 1} {name:7s} cpu {run['cpu_s']:7.2f} s  wall {run['wall_s']:7.2f} s",
                    flush=True,
                )
    print(f"\n{'':8s}{'CPU s':>10s}{'wall s':>10s}{'tx':>9s}{'CPU us/tx':>11s}  head")
    for name, runs in got.items():
        cpu, wall = (statistics.median(r[k] for r in runs) for k in ("cpu_s", "wall_s"))
        per_tx = 1e6 * cpu / max(runs[0]["tx"], 1)
        print(f"{name:8s}{cpu:10.2f}{wall:10.2f}{runs[0]['tx']:9d}{per_tx:11.0f}  {runs[0]['head'][:16]}")
    heads = {r["head"] for runs in got.values() for r in runs}
    if len(heads) != 1:
        print("the variants end on different chain heads: the ledger's results changed")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
