"""Build the components a scenario asks for, wire them in a mosaik World, run it and write the HDF5 file.

The world knows no model: every component (`cosim.component.REGISTRY`) builds itself, declares its datasets
and names its inputs; the world starts one simulator per component, connects what the components ask for,
routes every declared output to the recorder, and runs the steps in segments between checkpoints.
"""

from __future__ import annotations

import contextlib
import gc
import shlex
import sys
import time as wallclock
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mosaik
import numpy as np
from mosaik.async_scenario import MosaikConfig

from cosim.checkpoint import capture as capture_state
from cosim.checkpoint import checkpoint_every, checkpoint_path, segments
from cosim.checkpoint import load as load_checkpoint
from cosim.checkpoint import remove as remove_checkpoint
from cosim.checkpoint import restore as restore_state
from cosim.checkpoint import save as save_checkpoint
from cosim.component import Component, Contract, build_all
from cosim.errors import CosimError
from cosim.overrides import effective
from cosim.provenance import code_version, versions
from cosim.recorder import H5Recorder, Series, write_failure
from cosim.recorder_sim import HeldRows
from cosim.runguard import claim_output, raise_if_stopped, sigterm_as_interrupt
from cosim.scenario import Scenario, load_scenario
from cosim.wire import decode

TIME = Series("time", "Unix s", np.int64, None, "start of each step (UTC)")
# seconds a simulator in a process of its own may take to start and to stop (on a busy machine)
MOSAIK: MosaikConfig = {"start_timeout": 120, "stop_timeout": 30}
RECORDER: dict[str, Any] = {"Recorder": {"python": "cosim.recorder_sim:RecorderSim"}}


@dataclass(frozen=True)
class RunSummary:
    """What a finished run reports."""

    path: Path
    n_steps: int
    wall_s: float
    power_flow_s: float
    n_not_converged: int
    market_s: float = 0.0
    n_market_failed: int = 0
    ledger_s: float = 0.0
    warnings: tuple[str, ...] = ()  # what a user must not miss: a halted ledger, refused private releases
    ledger_wait_s: float | None = None  # with the ledger in a worker process: what the run waited for it


def run(
    scenario: Scenario | str | Path,
    *,
    steps: int | None = None,
    days: float | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    resume: bool = False,
) -> RunSummary:
    """Run a scenario to its end and write its HDF5 file.

    Parameters
    ----------
    scenario : a validated Scenario or the path of a YAML file
    steps, days : shorten (or lengthen) the run to this many steps or days
    seed : override the scenario seed
    out : override ``output.path``
    progress : show a progress bar (simulated time, steps/s, ETA) on stderr
    resume : continue from the checkpoint ``<output>.ckpt`` of an interrupted run of the same scenario

    Returns
    -------
    RunSummary
        the file written, wall time, time inside the power-flow solver, failed power flows.

    Raises
    ------
    ScenarioError
        when the scenario is invalid; CosimError when the run stops (the partial file is kept).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    scenario = effective(scenario, steps=steps, days=days, seed=seed, out=out)
    with claim_output(scenario.output_path, "--out" if out is not None else "output.path"):
        return _run(scenario, progress, resume)


def _open_recorder(scenario: Scenario, whole: Contract, saved: dict[str, Any] | None) -> H5Recorder:
    """The run's HDF5 recorder: a new ``.partial`` file, or the one a checkpoint left, reopened."""
    chunk = min(scenario.output.chunk_steps, scenario.time.n_steps)
    try:
        if saved is not None:
            rec = saved["recorder"]
            return H5Recorder.reopen(
                scenario.output_path, whole.series, chunk, whole.tables, rec["n_steps"], rec["table_rows"],
                whole.labels, whole.dims, rec["buffered"], rec["rows"],
            )  # fmt: skip
        return H5Recorder(
            scenario.output_path, whole.series, whole.static, whole.attrs, chunk, scenario.output.compression,
            whole.tables, labels=whole.labels, dims=whole.dims,
        )  # fmt: skip
    except (OSError, RuntimeError) as exc:  # the disk full or gone before the first step
        raise write_failure(
            scenario.output_path.with_name(scenario.output_path.name + ".partial"), exc
        ) from None


def _run(scenario: Scenario, progress: bool, resume: bool = False) -> RunSummary:
    """Build and run an effective scenario whose output path this process holds."""
    t0 = wallclock.perf_counter()
    components = build_all(scenario)
    try:
        return _run_built(scenario, components, progress, resume, t0)
    finally:
        gc.unfreeze()
        for c in components.values():
            c.close()


def _run_built(
    scenario: Scenario,
    components: dict[str, Component],
    progress: bool,
    resume: bool,
    t0: float,
) -> RunSummary:
    """Run the built components (see :func:`_run`)."""
    step_s, n_steps, groups = scenario.time.step_s, scenario.time.n_steps, scenario.output.groups
    times_s = int(scenario.time.start.timestamp()) + step_s * np.arange(n_steps, dtype=np.int64)
    contracts = {name: c.contract(groups) for name, c in components.items()}
    whole = Contract(series=[TIME])
    for contract in contracts.values():
        whole = whole | contract
    whole.attrs |= {
        "scenario_yaml": scenario.to_yaml(), "seed": scenario.seed, "versions": versions(),
        "code_version": code_version(), "name": scenario.name, "step_s": step_s,
    }  # fmt: skip
    ckpt_path, every = checkpoint_path(scenario.output_path), checkpoint_every(scenario)
    identity = {
        "scenario": whole.attrs["scenario_yaml"],
        "seed": scenario.seed,
        "code version": whole.attrs["code_version"],
    }
    saved = load_checkpoint(ckpt_path, identity) if resume else None
    k0, carry = 0, {}
    if saved is not None:
        k0, carry = saved["step"], saved["carry"]
        for name, trees in saved["components"].items():
            fresh = components[name].state()
            components[name].restore({k: restore_state(fresh[k], tree) for k, tree in trees.items()})
    recorder = _open_recorder(scenario, whole, saved)
    held = saved["held"] if saved is not None else HeldRows()  # rows waiting for a worker's late values
    bar = None
    if progress:
        from cosim.progress import progress_bar

        bar = progress_bar(n_steps, times_s, step_s, k0)
    sim_config, wire = _placement(scenario, components)
    remote = scenario.orchestration.remote
    world: Any = None
    checkpoint_s = 0.0  # wall-clock seconds spent writing checkpoints

    def segment(k_from: int, k_to: int) -> None:
        """Run steps ``k_from`` .. ``k_to - 1`` in a new mosaik World whose time 0 is step ``k_from``."""
        nonlocal world
        offset = k_from * step_s
        world = mosaik.World(sim_config, MOSAIK, skip_greetings=True, configure_logging=False)
        entities = {
            name: getattr(world.start(c.sim_name, **_params(c, remote, offset, carry, wire)), c.entity)()
            for name, c in components.items()
        }
        for name, c in components.items():
            for link in c.links(k_from, carry):
                world.connect(
                    entities[link.source], entities[name], *link.attrs,
                    time_shifted=link.time_shifted, initial_data=link.initial_data or {},
                )  # fmt: skip
        routes: dict[tuple[str, str], str] = {}
        rec_e = world.start(
            "Recorder", recorder=recorder, routes=routes, start_unix_s=int(times_s[0]), step_s=step_s,
            held=held, on_step=bar, time_offset_s=offset, wire_inputs=bool(remote),
        ).Recorder()  # fmt: skip
        for name, contract in contracts.items():
            for attr, path in contract.routes.items():
                routes[(entities[name].full_id, attr)] = path
                world.connect(entities[name], rec_e, attr)
        world.run(until=(k_to - k_from) * step_s, print_progress=False, shutdown=False)
        raise_if_stopped()  # a stop signal mosaik caught ends the run, not just the segment
        reporting = {entities[name].full_id: c for name, c in components.items() if c.reports}
        got = world.get_data([entities[c.name] for c in reporting.values()], "summary")
        for entity, data in got.items():
            reporting[entity.full_id].summary = decode(data["summary"])
        done, world = world, None
        done.shutdown()

    gc.freeze()  # the models, solvers and tables built: the collector no longer walks them at every pass
    try:
        with sigterm_as_interrupt():
            for k_from, k_to in segments(k0, n_steps, every):
                segment(k_from, k_to)
                if k_to < n_steps:
                    t_ckpt = wallclock.perf_counter()
                    save_checkpoint(ckpt_path, {
                        "identity": identity, "step": k_to, "carry": carry,
                        "components": {name: {k: capture_state(v) for k, v in c.state().items()}
                                       for name, c in components.items()},
                        "recorder": recorder.checkpoint_state(), "held": held,
                    })  # fmt: skip
                    checkpoint_s += wallclock.perf_counter() - t_ckpt
    except BaseException as exc:
        if world is not None:
            with contextlib.suppress(BaseException):  # a second signal while stopping: stop all the same
                world.shutdown()
        raise _stopped(exc, recorder, bar, n_steps, ckpt_path) from exc
    if bar is not None:
        bar.close()
    final = Contract(attrs={"checkpoint_s": checkpoint_s})
    for c in components.values():
        final = final | c.finish(groups)
    recorder.labels |= final.labels
    recorder.dims |= final.dims
    path = recorder.close(complete=True, datasets=final.static, attrs=final.attrs)
    remove_checkpoint(ckpt_path)  # the run is whole: nothing to resume (and the ledger's input log)
    return _summary(path, n_steps, wallclock.perf_counter() - t0, final.attrs, components)


def _placement(
    scenario: Scenario, components: dict[str, Component]
) -> tuple[dict[str, Any], dict[str, set[str]]]:
    """mosaik's sim config (in the process, started as a process, or connected to) and, per component, the
    outputs it must send as plain data (those a component in another process takes)."""
    orchestration = scenario.orchestration
    config: dict[str, Any] = dict(RECORDER)
    wire: dict[str, set[str]] = {name: set() for name in components}
    for name, c in components.items():
        if name in orchestration.connect:
            config[c.sim_name] = {"connect": orchestration.connect[name]}
        elif name in orchestration.out_of_process:
            config[c.sim_name] = {"cmd": f"{shlex.quote(sys.executable)} -m cosim.remote {name} %(addr)s"}
        else:
            config[c.sim_name] = {"python": c.sim}
        if name in orchestration.remote:
            for link in c.links(0, {}):
                wire[link.source] |= {a if isinstance(a, str) else a[0] for a in link.attrs}
    return config, wire


def _params(
    c: Component, remote: set[str], offset_s: int, carry: dict[str, Any], wire: dict[str, set[str]]
) -> dict[str, Any]:
    """The adapter's parameters: plain data for one in another process, else the live objects (which decode
    their inputs only if some simulator runs in another process)."""
    if c.name in remote:
        return c.plain_params(offset_s)
    return c.params(offset_s, carry) | {"wire_outputs": sorted(wire[c.name]), "wire_inputs": bool(remote)}


def _stopped(exc: BaseException, recorder: H5Recorder, bar: Any, n_steps: int, ckpt_path: Path) -> CosimError:
    """Close the partial file of a run that stopped; the error saying where its steps are."""
    partial = recorder.close(complete=False)
    if bar is not None:
        bar.close()
    if recorder.failed is not None:
        reason = str(recorder.failed)
    elif isinstance(exc, CosimError):
        reason = str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        reason = f"interrupted by {exc.args[0]}" if exc.args else "interrupted"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    stopped = CosimError(
        f"run stopped after {recorder.n_steps} of {n_steps} steps ({reason}); "
        f"the steps recorded so far are in {partial}"
        + (f"; `cosim run ... --resume` continues from {ckpt_path}" if ckpt_path.exists() else "")
    )
    stopped.exit_now = recorder.failed is not None and recorder.failed.exit_now  # type: ignore[attr-defined]
    return stopped


def _summary(
    path: Path, n_steps: int, wall_s: float, attrs: dict[str, Any], components: dict[str, Component]
) -> RunSummary:
    """The run summary from the attributes the components wrote at the end and their warnings."""
    return RunSummary(
        path, n_steps, wall_s, attrs.get("power_flow_s", 0.0), attrs.get("n_not_converged", 0),
        attrs.get("market_s", 0.0), attrs.get("n_market_failed", 0), attrs.get("ledger_s", 0.0),
        tuple(w for c in components.values() for w in c.warnings()), attrs.get("ledger_wait_s"),
    )  # fmt: skip
