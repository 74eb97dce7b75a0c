"""The ledger in a worker process of its own, its steps overlapping the world's next step.

Nothing in a study takes the ledger's outputs but the recorder, so the world need not wait for them: the
adapter hands step ``k``'s inputs to the worker and goes on with the next steps' grid and market while the
worker signs, orders and executes step ``k``; it collects the outputs of the steps the worker has finished
at each of its steps (waiting only when the worker is ``LAG_STEPS`` behind, and for all of them at the run's
last step; a checkpoint keeps the steps not collected yet), and the recorder writes each at its own step
(:class:`cosim.models.adapter.Late`). The worker builds the very ledger the world would from the scenario
(as a process of its own does, `cosim.remote`), so the results are identical; only where its time is spent
changes.

The hand-over is pickled numpy arrays over the worker's stdin and stdout (:mod:`multiprocessing.connection`
framing). The two processes share one byte (a mapped temporary file): 1 when the world had to wait at its
last collect. While it is 1 the world's core is idle, so the worker leaves its steps' block and vote
signatures to the world (``LedgerModel.sign_elsewhere``; the world has the same keys and Ed25519 is
deterministic, so the rows are the same whoever signs). The worker is started with ``python -m
cosim.models.ledger.worker``, so it imports nothing of the caller's ``__main__``; it ignores Ctrl-C (the world
stops it) and exits when its input closes, also when the world's process is killed.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time as wallclock
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from cosim.errors import CosimError


class LedgerWorker:
    """A ledger running in a child process: steps go in, their outputs come back in order.

    A reader thread takes the worker's outputs as soon as they are written, so the worker never waits
    for the world to read (at scale a step's outputs are megabytes: with both sides writing into full pipes
    they would wait for each other for ever).

    Parameters
    ----------
    scenario : the validated scenario as JSON data (`cosim.component.plain_scenario`)
    n_accounts, tx_per_s, step_s, n_steps : as the adapter's (`cosim.models.ledger.sim.LedgerSim.setup`)
    replay_log : ``(path, n_bytes, n_entries, n_undelivered)`` of a resumed run's input log, which the
        worker replays before its first step; the outputs of its last ``n_undelivered`` steps, which the
        checkpointed run had not collected yet, are sent again (collected as the first steps done)
    """

    def __init__(
        self,
        scenario: dict[str, Any],
        n_accounts: int,
        tx_per_s: float,
        step_s: int,
        n_steps: int,
        replay_log: tuple[str, int, int, int] | None = None,
    ) -> None:
        import cosim

        env = dict(os.environ)
        root = str(Path(cosim.__file__).resolve().parents[1])  # the caller's code, wherever it was imported
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self._shared = tempfile.TemporaryFile()  # one byte both map: did the world wait at its last collect
        self._shared.truncate(1)
        self._waited = mmap.mmap(self._shared.fileno(), 1)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cosim.models.ledger.worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, pass_fds=(self._shared.fileno(),),
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._to = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self._from = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        for conn in (self._to, self._from):
            _widen(conn.fileno())
        self._replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, name="cosim-ledger-reader", daemon=True)
        self._reader.start()
        self.n_outstanding = replay_log[3] if replay_log else 0  # steps sent, their outputs not collected
        self.step_s = 0.0  # the worker's time inside its steps
        self.wait_s = 0.0  # the caller's time waiting for the worker
        self.summary: dict[str, Any] = {}
        shared_fd = self._shared.fileno()
        self._send(("setup", scenario, n_accounts, tx_per_s, step_s, n_steps, replay_log, shared_fd))

    def submit(self, k: int, trades: Any, p_mw: Any, summary: bool = False) -> None:
        """Hand step ``k``'s inputs over; ``summary``: send the run summary back with its outputs."""
        t0 = wallclock.perf_counter()
        self._send(("step", k, trades, p_mw, summary))
        self.wait_s += wallclock.perf_counter() - t0  # a full pipe: the worker reads when its step is done
        self.n_outstanding += 1

    def collect(self, keep: int) -> list[tuple[int, dict[str, Any]]]:
        """The outputs ``(k, outputs)`` of the steps done, in step order: it waits until at most ``keep``
        steps sent are not done, and takes those done meanwhile too."""
        got = []
        t0 = wallclock.perf_counter()
        self._waited[0] = self.n_outstanding > keep and self._replies.empty()
        while self.n_outstanding > keep or (self.n_outstanding and not self._replies.empty()):
            reply = self._replies.get()
            if reply is None:
                raise self._died()
            if reply[0] == "error":
                self.close()
                raise CosimError(f"the ledger's worker process failed: {reply[1]}")
            _, k, out, seconds, summary = reply
            self.n_outstanding -= 1
            self.step_s += seconds
            if summary is not None:
                self.summary = summary
            got.append((k, out))
        self.wait_s += wallclock.perf_counter() - t0
        return got

    def close(self) -> None:
        """Stop the worker (after the step it is in; it takes no more) and wait for it."""
        self._to.close()  # end of input: the worker exits, which ends the reader's input too
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        self._from.close()
        self._waited.close()
        self._shared.close()

    def _read(self) -> None:
        """The reader thread: every reply into the queue; None at the end of the worker's output."""
        try:
            while True:
                self._replies.put(self._from.recv())
        except (EOFError, OSError):
            self._replies.put(None)

    def _send(self, message: Any) -> None:
        try:
            self._to.send(message)
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def _died(self) -> CosimError:
        self.close()
        code = self.proc.returncode
        how = f"exit code {code}" if code is not None and code >= 0 else f"signal {-(code or 0)}"
        return CosimError(f"the ledger's worker process (pid {self.proc.pid}) ended ({how}) before its step "
                          "was done; see the messages above it")  # fmt: skip


PIPE_BYTES = 1 << 20
"""Capacity asked of the pipes (Linux's default is 64 KiB): a step's inputs at scale (the trades and powers
of thousands of agents) then go into the pipe without waiting for the worker to read them."""


def _widen(fd: int) -> None:
    """Ask for a ``PIPE_BYTES`` pipe buffer (Linux; elsewhere, or above the system's limit, keep it)."""
    with contextlib.suppress(ImportError, AttributeError, OSError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]


def _peak_mb() -> float:
    """This process's peak resident memory (MB): ``VmHWM`` (``ru_maxrss`` would count the pages of the
    world's process this one was forked from before its exec); NaN where /proc is missing."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        return float("nan")
    return kib / 1024


def serve(inbox: Connection, outbox: Connection) -> None:
    """The worker's loop: build the ledger at ``setup``, then run each ``step`` and send its outputs."""
    from cosim.checkpoint import InputLog
    from cosim.models.ledger import chain
    from cosim.models.ledger.component import build_ledger, ledger_summary
    from cosim.models.ledger.sim import ledger_step, replay
    from cosim.scenario import Scenario

    if not os.environ.get(chain.ENV_THREADS, "").strip():
        chain.SIGNATURE_THREADS = 1  # the world's process holds the other core
    where = "setting up"
    try:
        _, scenario, n_accounts, tx_per_s, step_s, n_steps, replay_log, shared_fd = inbox.recv()
        world_waited = mmap.mmap(shared_fd, 1)  # (see the module docstring)
        model = build_ledger(Scenario.model_validate(scenario), n_accounts)[0]  # type: ignore[index]
        undelivered: list[tuple[int, Any, Any]] = []
        if replay_log is not None:
            path, n_bytes, n_entries, n_undelivered = replay_log
            entries = InputLog(Path(path), n_bytes, n_entries).entries()
            undelivered = replay(model, entries, tx_per_s, step_s, n_steps, n_undelivered)
        gc.freeze()  # the keys and the engine built: the collector no longer walks them at every pass

        def run(k: int, trades: Any, p_mw: Any, want_summary: bool) -> None:
            model.sign_elsewhere = bool(world_waited[0])  # the world's core is idle: it signs the blocks
            t0 = wallclock.perf_counter()
            out = vars(ledger_step(model, k, trades, p_mw, tx_per_s, step_s, n_steps))
            seconds = wallclock.perf_counter() - t0
            summary = ledger_summary(model) | {"ledger_worker_peak_mb": _peak_mb()} if want_summary else None
            outbox.send(("ok", k, out, seconds, summary))

        for k, trades, p_mw in undelivered:
            where = f"step {k} (replayed)"
            run(k, trades, p_mw, False)
        while True:
            try:
                _, k, trades, p_mw, want_summary = inbox.recv()
            except EOFError:
                return
            where = f"step {k}"
            run(k, trades, p_mw, want_summary)
    except (BrokenPipeError, EOFError):
        raise
    except Exception as exc:  # noqa: BLE001 - reported to the world, which stops the run
        outbox.send(("error", f"{where}: {type(exc).__name__}: {exc}"))


def main() -> int:
    """Entry point of the worker process: stdin and stdout carry the frames, prints go to stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the world, which closes the worker's input
    inbox, outbox = Connection(os.dup(0), writable=False), Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # a stray print must not corrupt the frames
    try:
        serve(inbox, outbox)
    except (BrokenPipeError, EOFError):  # the world is gone
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
