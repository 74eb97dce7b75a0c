"""What a run checks and holds before it builds anything: a writable output path, locked; SIGTERM as Ctrl-C.

A run takes ``<output>.lock`` (an exclusive ``flock``) before the models are built, so a second run writing
the same file refuses at once; the lock goes when the process ends, however it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from cosim.errors import CosimError, ScenarioError

MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4000


class OutputBusy(CosimError):
    """Another run is writing the same results file."""


def path_problem(text: str) -> str | None:
    """Why a results path written as ``text`` cannot be a file name, or None."""
    if not text.strip():
        return "empty; give a file name, or leave the key out for results/<name>.h5"
    if len(text.encode()) > MAX_PATH_BYTES or any(
        len(part.encode()) > MAX_NAME_BYTES for part in Path(text).parts
    ):
        return f"too long: at most {MAX_NAME_BYTES} bytes a name and {MAX_PATH_BYTES} bytes in all"
    return None


class OutputLock:
    """An exclusive lock on ``<path>.lock``, released (and the lock file removed) by :meth:`release`."""

    def __init__(self, path: Path, key: str) -> None:
        self.lock_path = path.with_name(path.name + ".lock")
        try:
            self._fd: int | None = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ScenarioError([(key, f"cannot create files in {path.parent}: {exc.strerror}")]) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise OutputBusy(
                f"another run is writing {path} (it holds {self.lock_path}); wait for it to end or give "
                "another --out"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        """Remove the lock file and release the lock."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_output(path: Path, key: str = "output.path") -> OutputLock:
    """Check that ``path`` can be written and lock it; ScenarioError (naming ``key``) or OutputBusy.

    Refused: an empty or too long path, a directory, a folder that cannot be created or written
    (a read-only mount), and a path another run holds.
    """
    problem = path_problem(str(path)) or (None if path.name not in ("", "..") else "no file name given")
    if problem is not None:
        raise ScenarioError([(key, problem)])
    for candidate in (path, path.with_name(path.name + ".partial")):
        if candidate.is_dir():
            raise ScenarioError([(key, f"{candidate} is a directory; give a file name, e.g. {path}/run.h5")])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScenarioError([(key, f"cannot create the folder {path.parent}: {exc.strerror}")]) from None
    if not os.access(path.parent, os.W_OK):
        raise ScenarioError([(key, f"{path.parent} is not writable (read-only)")])
    return OutputLock(path, key)


_stops: list[tuple[str, ...]] = []  # the KeyboardInterrupt arguments of the stop signals received


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, a job scheduler's stop) stops the run as Ctrl-C does.

    Both signals are also remembered: mosaik's ``World.run`` catches a KeyboardInterrupt raised in its own
    coroutine and returns as if the segment had ended, so the world calls :func:`raise_if_stopped` after
    each segment to stop all the same. A signal that lands in a weakref callback or a ``__del__``, where
    Python cannot raise, is not printed as an ignored exception with its traceback: the recorder's next
    step raises it again.
    """
    _stops.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        _stops.append(("SIGTERM",) if signum == signal.SIGTERM else ())
        raise KeyboardInterrupt(*_stops[-1])

    def unraisable(info: sys.UnraisableHookArgs) -> None:
        if not isinstance(info.exc_value, KeyboardInterrupt):
            hook(info)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)
        sys.unraisablehook = hook
        _stops.clear()


def raise_if_stopped() -> None:
    """Raise again the KeyboardInterrupt of a stop signal received in the block (one mosaik swallowed)."""
    if _stops:
        raise KeyboardInterrupt(*_stops[-1])
