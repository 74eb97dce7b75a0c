"""mosaik adapter of the ledger: one entity ``ledger`` taking each step's trades and meter data."""

from __future__ import annotations

import time as wallclock
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
from mosaik_api_v3.types import CreateResult, Meta

from cosim.checkpoint import InputLog
from cosim.models.adapter import Late, ShiftedSim, SolverStats
from cosim.models.ledger.chain import KeyPair
from cosim.models.ledger.ledger import LedgerModel, StepOutput
from cosim.models.ledger.worker import LedgerWorker

SERIES = (
    "throughput_tps",
    "latency_p50_s",
    "latency_p95_s",
    "finality_p50_s",
    "finality_p95_s",
    "energy_kwh",
    "n_late",
    "late_cost",
)
RECORDED = (*SERIES, "tx", "blocks", "votes")
LAG_STEPS = 24
"""With a worker, the most steps the ledger may be behind the world: a day's busiest hours of trades, which
the worker catches up on at night, do not hold the world up; the recorder holds those steps' rows (also
across a checkpoint, which keeps them: the world waits for the worker only at the run's last step). The
default year: 8 steps 53.6-55.9 s, 24 steps 50.7-54.5 s, 96 steps 51.6 s."""
META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Ledger": {
            "public": True,
            "params": [],
            "attrs": ["trades", "p_mw", *SERIES, "tx", "blocks", "votes", "summary"],
        }
    },
}


def ledger_step(
    model: LedgerModel, k: int, trades: Any, p_mw: Any, tx_per_s: float, step_s: int, n_steps: int
) -> StepOutput:
    """One step of the ledger on its inputs (the adapter's step, and the replay of a resumed run)."""
    n = int(model.rng.poisson(tx_per_s * step_s)) if tx_per_s else 0
    return model.step(k, trades, None if p_mw is None else -np.asarray(p_mw), n, last=k == n_steps - 1)


def replay(
    model: LedgerModel,
    log: Iterable[tuple[int, Any, Any]],
    tx_per_s: float,
    step_s: int,
    n_steps: int,
    undelivered: int = 0,
) -> list[tuple[int, Any, Any]]:
    """Bring a freshly built ledger to a checkpoint's state by re-executing its logged inputs, all but the
    last ``undelivered``, which are returned for the caller to step (their outputs were not recorded: a
    checkpoint taken while a worker was behind).

    The consensus engine's SimPy processes (generators) cannot be stored; the ledger is deterministic
    given its seed and inputs, so the replay reaches the very state the checkpointed run had.
    """
    held: deque[tuple[int, Any, Any]] = deque()
    for entry in log:
        held.append(entry)
        if len(held) > undelivered:
            k, trades, p_mw = held.popleft()
            ledger_step(model, k, trades, p_mw, tx_per_s, step_s, n_steps)
    return list(held)


class LedgerSim(ShiftedSim):
    """Steps the ledger once per co-simulation step.

    With a market, ``trades`` (this step's) and ``p_mw`` (agents, load convention) arrive as inputs; in the
    standalone mode ``tx_per_s`` sets a Poisson number of random transfers per step. ``log`` (the run's
    :class:`~cosim.checkpoint.InputLog`) collects each step's inputs for the checkpoints. In a process of its
    own the adapter gets plain parameters, ``scenario`` (the validated scenario as JSON data) and
    ``n_accounts``, and builds the very ledger the world would. With a ``worker``
    (:class:`~cosim.models.ledger.worker.LedgerWorker`) the ledger runs behind in that process: each step
    hands its inputs over and returns the outputs of the steps the worker has finished as
    :class:`~cosim.models.adapter.Late` values, waiting only when it is ``LAG_STEPS`` behind (the run's last
    step waits for them all). ``undelivered``: a run resumed in the world's process from a checkpoint taken
    with a worker gets the outputs of the steps the worker had not sent, and hands them on at its first step.
    With a worker, ``validator_keys`` sign the blocks and votes the worker leaves unsigned.
    ``summary`` reports what the run's summary needs.
    """

    def __init__(self) -> None:
        super().__init__(META)
        self.model: LedgerModel | None = None
        self._out: dict[str, Any] = {}

    def setup(  # type: ignore[override]
        self,
        *,
        step_s: int,
        n_steps: int,
        model: LedgerModel | None = None,
        scenario: dict[str, Any] | None = None,
        n_accounts: int = 0,
        tx_per_s: float = 0.0,
        stats: SolverStats | None = None,
        log: InputLog | None = None,
        worker: LedgerWorker | None = None,
        undelivered: list[tuple[int, dict[str, Any]]] | None = None,
        validator_keys: list[KeyPair] | None = None,
    ) -> None:
        self.worker, self.undelivered, self.validator_keys = worker, undelivered or [], validator_keys
        if model is None and worker is None:  # out of process: build it here
            from cosim.models.ledger.component import build_ledger
            from cosim.scenario import Scenario

            model = build_ledger(Scenario.model_validate(scenario), n_accounts)[0]  # type: ignore[index]
        self.model, self.step_s, self.n_steps, self.tx_per_s = model, step_s, n_steps, tx_per_s
        self.stats = stats if stats is not None else SolverStats()
        self.log = log

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1 or self._out:
            raise ValueError("LedgerSim holds exactly one Ledger entity")
        return [{"eid": "ledger", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        got = inputs.get("ledger", {})
        k = self.step_index(time, self.step_s)
        trades = next(iter(got["trades"].values())) if "trades" in got else None
        p_mw = next(iter(got["p_mw"].values())) if "p_mw" in got else None
        if self.log is not None:
            self.log.append((k, trades, None if p_mw is None else np.array(p_mw)))
        if self.worker is not None:
            self._out = self._overlapped(k, trades, p_mw)
            return time + self.step_s
        assert self.model is not None
        t0 = wallclock.perf_counter()
        out = vars(ledger_step(self.model, k, trades, p_mw, self.tx_per_s, self.step_s, self.n_steps))
        self.stats.solver_s += wallclock.perf_counter() - t0
        if self.undelivered:  # resumed from a worker's checkpoint: its last steps' outputs go first
            done, self.undelivered = [*self.undelivered, (k, out)], []
            out = {a: Late([(j, o[a]) for j, o in done]) for a in RECORDED}
        self._out = out
        return time + self.step_s

    def _overlapped(self, k: int, trades: Any, p_mw: Any) -> dict[str, Late]:
        """Hand step ``k`` to the worker; the outputs of the steps it finished, as Late values."""
        assert self.worker is not None
        last = k == self.n_steps - 1
        busy_s, wait_s = self.worker.step_s, self.worker.wait_s
        self.worker.submit(k, trades, p_mw, summary=last)  # waits while the pipe is full (at scale)
        done = self.worker.collect(keep=0 if last else LAG_STEPS)
        self.stats.solver_s += self.worker.step_s - busy_s
        self.stats.wait_s += self.worker.wait_s - wait_s
        for _, out in done:
            self._sign(out)
        return {a: Late([(j, out[a]) for j, out in done]) for a in RECORDED}

    def _sign(self, out: dict[str, Any]) -> None:
        """Make the validators' signatures the worker left to this process (``StepOutput.unsigned``): the
        worker is the busier of the two, and the world's process has the same keys."""
        assert self.validator_keys is not None
        keys = self.validator_keys
        for table, row, v, message in out.pop("unsigned"):
            out[table]["signature"][row] = keys[v].sign(message).hex()

    def output(self, attr: str) -> Any:
        if attr != "summary":
            return self._out[attr]
        if self.worker is not None:
            part = self.worker.summary | {"ledger_wait_s": self.stats.wait_s}
        else:
            from cosim.models.ledger.component import ledger_summary

            assert self.model is not None
            part = ledger_summary(self.model)
        return part | {"ledger_s": self.stats.solver_s}
