"""Checkpoints of a running study, for ``cosim run FILE --resume`` after a crash or a ``kill -9``.

Every ``output.checkpoint_steps`` steps the run flushes the recorder and writes ``<output>.ckpt`` (a
temporary file, then ``os.replace``): the step reached, what identifies the run (scenario, seed, code
version), the recorder's offsets, the data the time-shifted connections carry into the next step, the
ledger's input log, and the state of every model core.

A core's state is taken by :func:`capture`: an object that pickles is stored whole; otherwise its
attributes are captured one by one, so what cannot be pickled (HiGHS and Pyomo instances, SuperLU factors,
OpenDP's measurements) is left out and kept as the freshly built run has it. A class lists in
``checkpoint_drop`` the attributes that describe such a left-out object (e.g. which parameters a HiGHS
instance already holds) and must stay fresh too; a class holding such objects, or parts with hooks, declares
it (even empty) so that it is never stored whole. Hooks: ``before_capture()`` puts a left-out object's
state into plain data, or resets it to what a resumed run will have (a solver reloaded cold, without
HiGHS's basis); ``before_restore(fields)`` builds lazily built parts the checkpoint holds state of (a
power flow per topology); ``after_restore()`` rebuilds what is derived (a Jacobian's factors; a solver
reloaded cold, as the checkpointed run did). The ledger's consensus runs as SimPy processes (generators),
which cannot be stored: it is rebuilt by replaying its logged inputs (`cosim.models.ledger.sim.replay`).

The file is a pickle: load only checkpoints your own runs wrote.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosim.errors import CosimError

if TYPE_CHECKING:
    from cosim.scenario import Scenario

FORMAT = 1
_MAX_DEPTH = 8


def checkpoint_path(output: Path) -> Path:
    """The checkpoint file beside a run's output: ``<output>.ckpt``."""
    return output.with_name(output.name + ".ckpt")


_FOREIGN = ("pyomo", "highspy", "simpy", "opendp", "ctypes")  # handles into solvers and engines: never stored


def _pickles(obj: Any) -> bool:
    if type(obj).__module__.split(".")[0] in _FOREIGN:
        return False
    try:
        pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - anything that does not pickle is left out
        return False
    return True


def capture(obj: Any, depth: int = 0) -> tuple[str, Any]:
    """The state of ``obj`` as a tree of ``("value", obj)``, ``("fields", {...})``, ``("items", ...)``
    or ``("skip", None)`` nodes (see the module docstring)."""
    drop = getattr(type(obj), "checkpoint_drop", None)  # declared (even empty): never stored whole
    ours = type(obj).__module__.startswith("cosim.") or drop is not None
    hook = getattr(obj, "before_capture", None)
    if ours and callable(hook):
        hook()
    if drop is None and _pickles(obj):
        return "value", obj
    if depth >= _MAX_DEPTH:
        return "skip", None
    if isinstance(obj, dict):
        return "items", {k: capture(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return "items", {i: capture(v, depth + 1) for i, v in enumerate(obj)}
    if isinstance(obj, tuple):
        return "tuple", [capture(v, depth + 1) for v in obj]
    if hasattr(obj, "__dict__") and ours:  # never into a library's insides
        return "fields", {k: capture(v, depth + 1) for k, v in vars(obj).items() if k not in (drop or ())}
    return "skip", None


def restore(fresh: Any, tree: tuple[str, Any]) -> Any:
    """``fresh`` (the freshly built object) with the captured state put back; returns the object to use."""
    kind, data = tree
    if kind == "value":
        return data
    if kind == "tuple":
        if isinstance(fresh, tuple) and len(fresh) == len(data):
            return tuple(restore(f, sub) for f, sub in zip(fresh, data, strict=True))
        return fresh
    if kind == "items":
        if isinstance(fresh, dict):
            for k, sub in data.items():
                if k in fresh or sub[0] == "value":
                    fresh[k] = restore(fresh.get(k), sub)
        elif isinstance(fresh, list) and len(fresh) == len(data):
            for i, sub in data.items():
                fresh[i] = restore(fresh[i], sub)
        return fresh
    if kind == "fields" and fresh is not None:
        prepare = getattr(fresh, "before_restore", None)
        if callable(prepare):
            prepare(data)  # e.g. build the lazily built parts the checkpoint holds state of
        for k, sub in data.items():
            object.__setattr__(fresh, k, restore(getattr(fresh, k, None), sub))  # frozen dataclasses too
        hook = getattr(fresh, "after_restore", None)
        if callable(hook):
            hook()
    return fresh


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a temporary file beside it, synced, then renamed over it."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump({"format": FORMAT, **state}, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint whose ``identity`` (scenario, seed, code version) matches this run's; else CosimError."""
    if not path.is_file():
        raise CosimError(
            f"--resume: no checkpoint {path} (the run finished, never reached its first checkpoint, or "
            "output.checkpoint_steps is 0); run without --resume to start again"
        )
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file
        raise CosimError(f"--resume: cannot read the checkpoint {path} ({type(exc).__name__}); "
                         "delete it and run without --resume") from None  # fmt: skip
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CosimError(f"--resume: {path} is not a checkpoint of this version; run without --resume")
    differ = [key for key, value in identity.items() if state["identity"].get(key) != value]
    if differ:
        raise CosimError(
            f"--resume: the checkpoint {path} was written by a run with a different {' and '.join(differ)}; "
            "resume with the scenario, seed and code that started it, or run without --resume"
        )
    return state


def checkpoint_every(scenario: Scenario) -> int:
    """Steps between checkpoints (``output.checkpoint_steps``; ``week``: a week of steps); 0 for none.

    A run with simulators outside the process takes none (their state stays in their processes).
    """
    every = scenario.output.checkpoint_steps
    if scenario.orchestration.remote:
        return 0
    if every == "week":
        return max(1, 7 * 86400 // scenario.time.step_s)
    return int(every or 0)


def segments(k0: int, n_steps: int, every: int) -> list[tuple[int, int]]:
    """Runs of steps from ``k0`` to ``n_steps``, each ending at a multiple of ``every`` (a checkpoint)."""
    if not every:
        return [(k0, n_steps)] if k0 < n_steps else []
    ends = [*range((k0 // every + 1) * every, n_steps, every), n_steps]
    return list(zip([k0, *ends[:-1]], ends, strict=True))
