"""Checkpoints of a running study, for ``cosim run FILE --resume`` after a crash or a ``kill -9``.

Every ``output.checkpoint_steps`` steps the run writes ``<output>.ckpt`` (a temporary file, then
``os.replace``): the step reached, what identifies the run (scenario, seed, code version), the recorder's
offsets and the steps it holds in memory (not yet written: the checkpoint never forces a partial HDF5
chunk), the data the time-shifted connections carry into the next step, the extent of the ledger's input
log, and the state of every model core. The ledger's inputs go to an append-only side file,
``<output>.ckpt.log`` (:class:`InputLog`): each checkpoint appends only the entries of its interval.

A core's state is taken by :func:`capture`: an object that pickles and holds nothing of a solver or engine
(Pyomo, HiGHS, SimPy, OpenDP, ctypes: never stored, even where they would pickle) is stored whole; otherwise
its attributes are captured one by one, so what cannot be pickled (HiGHS and Pyomo instances, SuperLU
factors, OpenDP's measurements) is left out and kept as the freshly built run has it. A class lists in
``checkpoint_drop`` the attributes that describe such a left-out object (e.g. which parameters a HiGHS
instance already holds) and must stay fresh too; a class holding such objects, or parts with hooks, declares
it (even empty) so that it is never stored whole. Hooks: ``before_capture()`` puts a left-out object's
state into plain data, or resets it to what a resumed run will have (a solver reloaded cold, without
HiGHS's basis); ``before_restore(fields)`` builds lazily built parts the checkpoint holds state of (a
power flow per topology); ``after_restore()`` rebuilds what is derived (a Jacobian's factors; a solver
reloaded cold, as the checkpointed run did). The ledger's consensus runs as SimPy processes (generators),
which cannot be stored: it is rebuilt by replaying its logged inputs (`cosim.models.ledger.sim.replay`).

The files are pickles: load only checkpoints your own runs wrote.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosim.errors import CosimError

if TYPE_CHECKING:
    from cosim.scenario import Scenario

FORMAT = 2  # 2: the ledger's inputs in <output>.ckpt.log, the recorder's buffered steps
_MAX_DEPTH = 8


def checkpoint_path(output: Path) -> Path:
    """The checkpoint file beside a run's output: ``<output>.ckpt``."""
    return output.with_name(output.name + ".ckpt")


def log_path(checkpoint: Path) -> Path:
    """The input log beside a checkpoint: ``<output>.ckpt.log``."""
    return checkpoint.with_name(checkpoint.name + ".log")


def remove(checkpoint: Path) -> None:
    """Remove a checkpoint and its input log (the run is whole: nothing to resume)."""
    for path in (checkpoint, log_path(checkpoint)):
        path.unlink(missing_ok=True)


class InputLog:
    """An append-only file of a model's inputs, synced at each checkpoint.

    :meth:`append` writes an entry (its own pickle frame) after the others at once, so the entries of an
    interval between checkpoints (at scale, ~0.5 MB a step for a week of steps) are never held in memory;
    :meth:`commit` (at a checkpoint) syncs the file and returns its extent (bytes and entries), which the
    checkpoint records. :meth:`reopen` (on resume) cuts the file back to a checkpoint's extent, dropping
    what a crash after that checkpoint appended, and :meth:`entries` reads the entries up to it. As a
    core's state (:func:`capture`) the log commits before it is captured, and is captured as its extent
    alone; restored, it cuts its file back to that extent.
    """

    checkpoint_drop = ("path", "n_written", "_file")

    def __init__(self, path: Path, n_bytes: int = 0, n_entries: int = 0) -> None:
        self.path, self.n_bytes, self.n_entries = path, n_bytes, n_entries
        self.n_written = 0  # entries written since the last commit (not synced: a crash may lose them)
        self._file: Any = None

    def before_capture(self) -> None:
        self.commit()

    def before_restore(self, fields: dict[str, Any]) -> None:
        self._cut(fields["n_bytes"][1])

    def append(self, entry: Any) -> None:
        """Write one entry after the others (synced at the next commit)."""
        pickle.dump([entry], self._open(), protocol=pickle.HIGHEST_PROTOCOL)
        self.n_written += 1

    def commit(self) -> dict[str, int]:
        """Sync the entries written since the last commit (a fresh file at the first commit of a run); the
        extent to record in the checkpoint."""
        f = self._open()
        f.flush()
        os.fsync(f.fileno())
        self.n_bytes = f.tell()
        self.n_entries += self.n_written
        self.n_written = 0
        return {"bytes": self.n_bytes, "entries": self.n_entries}

    def close(self) -> None:
        """Close the file (the run ended; nothing is synced that a commit did not)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> Any:
        """The file, open for appending after the last commit (a tail a crash left after it cut off)."""
        if self._file is None:
            self._file = open(self.path, "r+b" if self.n_bytes else "wb")  # noqa: SIM115 - kept for the run
            self._file.truncate(self.n_bytes)
            self._file.seek(self.n_bytes)
        return self._file

    @classmethod
    def reopen(cls, path: Path, extent: dict[str, int]) -> InputLog:
        """The log of a resumed run: the file cut back to the checkpoint's ``extent``; CosimError when the
        file is missing or shorter."""
        log = cls(path, extent["bytes"], extent["entries"])
        log._cut(extent["bytes"])
        return log

    def _cut(self, n_bytes: int) -> None:
        """Cut the file back to ``n_bytes`` (what a checkpoint recorded); CosimError if it is shorter."""
        size = self.path.stat().st_size if self.path.is_file() else -1
        if size < n_bytes:
            raise CosimError(
                f"--resume: the input log {self.path} is missing or shorter than its checkpoint records "
                f"({max(size, 0)} of {n_bytes} bytes); {self._advice}"
            )
        os.truncate(self.path, n_bytes)

    def entries(self) -> Iterator[Any]:
        """The committed entries, in order; CosimError if the file does not hold as many as committed."""
        n = 0
        try:
            with open(self.path, "rb") as f:
                while f.tell() < self.n_bytes:
                    frame = pickle.load(f)
                    n += len(frame)
                    yield from frame
        except Exception as exc:  # noqa: BLE001 - a truncated, corrupt or foreign file
            raise CosimError(f"--resume: cannot read the input log {self.path} ({type(exc).__name__}); "
                             f"{self._advice}") from None  # fmt: skip
        if n != self.n_entries:
            raise CosimError(f"--resume: the input log {self.path} holds {n} entries, its checkpoint "
                             f"{self.n_entries}; {self._advice}")  # fmt: skip

    @property
    def _advice(self) -> str:
        return f"delete the checkpoint {self.path.with_suffix('')} and run without --resume"


_FOREIGN = ("pyomo", "highspy", "simpy", "opendp", "ctypes")  # handles into solvers and engines: never stored


def _foreign(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] in _FOREIGN


class _Sink:
    """A file that keeps nothing: the trial pickle only asks whether an object pickles."""

    def write(self, data: bytes) -> int:
        return len(data)


class _Trial(pickle.Pickler):
    """A pickler that gives up at the first object of a solver or engine (instead of pickling, say, a
    whole Pyomo model before failing on its solver: several times the cost of the checkpoint itself)."""

    def reducer_override(self, obj: Any) -> Any:
        if _foreign(obj):
            raise pickle.PicklingError(f"{type(obj).__module__} objects are never stored")
        return NotImplemented


def _pickles(obj: Any) -> bool:
    """Whether ``obj`` pickles whole, holding nothing of a solver or engine."""
    if _foreign(obj):
        return False
    try:
        _Trial(_Sink(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
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
