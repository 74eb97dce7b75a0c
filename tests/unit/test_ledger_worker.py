"""The ledger's worker process and the recorder's late rows: the hand-over and its failures."""

from __future__ import annotations

import contextlib
import mmap
import tempfile
import threading
from collections.abc import Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import pytest

from cosim.component import plain_scenario
from cosim.models.adapter import Late
from cosim.models.ledger import chain
from cosim.models.ledger.worker import LedgerWorker, serve
from cosim.recorder_sim import HeldRows, RecorderSim
from cosim.scenario import load_scenario
from tests.conftest import ROOT

N_AGENTS = 4
TRADES = {
    "buyer": np.array([0, 1]), "seller": np.array([2, 3]), "mwh": np.array([0.002, 0.001]),
    "price": np.full(2, 60.0), "seller_price": np.full(2, 55.0),
}  # fmt: skip
P_MW = np.array([0.001, 0.001, -0.003, -0.002])


def _plain() -> dict[str, Any]:
    return plain_scenario(load_scenario(ROOT / "scenarios" / "default.yaml"))


def test_worker_returns_each_step_in_order_and_may_keep_the_newest_back() -> None:
    """collect(keep=1) waits for every step but the newest (and takes it if done); collect(0) drains; the
    outputs are the ledger's, in step order."""
    w = LedgerWorker(_plain(), N_AGENTS, 0.0, 3600, 10)
    try:
        w.submit(0, TRADES, P_MW)
        w.submit(1, TRADES, P_MW)
        first = w.collect(keep=1)
        assert [k for k, _ in first] in ([0], [0, 1]) and w.n_outstanding == 2 - len(first)
        out = first[0][1]
        assert set(out) >= {"throughput_tps", "tx", "blocks", "votes"}
        assert out["tx"]["status"].tolist() == [b"ok", b"ok"]  # the two trades of step 0, signed and admitted
        w.submit(2, TRADES, P_MW, summary=True)
        assert [k for k, _ in first + w.collect(keep=0)] == [0, 1, 2]
        assert w.n_outstanding == 0 and w.summary["n_rejected"] == 0 and w.step_s > 0
    finally:
        w.close()
    assert w.proc.returncode == 0  # it ended on its closed input


def test_megabytes_each_way_never_block_both_sides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps whose inputs fill the pipe while the worker writes outputs larger than its pipe (as at the
    MVLV scale): the worker's outputs are read as they come, so neither side waits for the other for ever."""
    from cosim.models.ledger import worker

    monkeypatch.setattr(worker, "PIPE_BYTES", 1 << 16)
    n = 50
    pairs = np.array([(b, s) for b in range(n) for s in range(n) if b != s][:600])
    trades = {
        "buyer": pairs[:, 0], "seller": pairs[:, 1], "mwh": np.full(len(pairs), 0.001),
        "price": np.full(len(pairs), 60.0), "seller_price": np.full(len(pairs), 55.0),
    }  # fmt: skip
    w = LedgerWorker(_plain(), n, 0.0, 3600, 10)
    done: list[int] = []

    def run() -> None:
        for k in range(6):  # ~29 KB in, ~1 MB out a step; nothing collected until the end
            w.submit(k, trades, np.zeros(n))
        done.extend(k for k, _ in w.collect(keep=0))

    loop = threading.Thread(target=run, daemon=True)
    loop.start()
    loop.join(timeout=60)
    try:
        assert not loop.is_alive(), "the world and its ledger worker wait for each other"
        assert done == list(range(6))
    finally:
        w.close()


def test_an_error_in_a_step_comes_back_as_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A step the ledger cannot take is answered with the error, where it happened, and the loop ends."""
    monkeypatch.setattr(chain, "SIGNATURE_THREADS", chain.SIGNATURE_THREADS)  # serve() sets it
    with _serving() as (inbox, outbox, _):
        inbox.send(("step", 0, {"buyer": TRADES["buyer"]}, P_MW, False))  # no seller column
        reply = outbox.recv()
    assert reply[0] == "error" and reply[1].startswith("step 0: KeyError: 'seller'")


@contextlib.contextmanager
def _serving() -> Iterator[tuple[Connection, Connection, mmap.mmap]]:
    """The worker's loop (``serve``) in a thread, set up on the default scenario: its input, its output and
    the byte it shares with the world; the loop has ended when the block does."""
    inbox_r, inbox = Pipe(duplex=False)
    outbox, outbox_w = Pipe(duplex=False)
    loop = threading.Thread(target=serve, args=(inbox_r, outbox_w))
    loop.start()
    with tempfile.TemporaryFile() as shared:
        shared.truncate(1)
        waited = mmap.mmap(shared.fileno(), 1)
        inbox.send(("setup", _plain(), N_AGENTS, 0.0, 3600, 10, None, shared.fileno()))
        try:
            yield inbox, outbox, waited
        finally:
            inbox.close()
            loop.join(timeout=30)
            waited.close()
    assert not loop.is_alive()


class _Rows:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)


def test_recorder_holds_a_row_until_its_late_values_come() -> None:
    """Late values land in the rows of their steps, also across segments; a row is written once it is
    whole, in step order."""
    rows, done, held = _Rows(), [], HeldRows()

    def segment(offset_s: int) -> RecorderSim:
        sim = RecorderSim()
        sim.init("Recorder-0", recorder=rows, routes={("g", "v"): "grid/v", ("l", "x"): "ledger/x"},
                 start_unix_s=100, step_s=10, held=held, on_step=done.append, time_offset_s=offset_s,
                 wire_inputs=False)  # fmt: skip
        return sim

    def step(sim: RecorderSim, t: int, v: float, late: Any) -> None:
        sim.step(t, {"recorder": {"v": {"g": v}, "x": {"l": late}}}, -1)

    first = segment(0)
    step(first, 0, 1.0, Late([]))
    assert rows.rows == []  # step 0 waits for its ledger value
    step(first, 10, 2.0, Late([(0, "a")]))
    second = segment(20)  # a checkpoint between: step 1's row is held across it
    step(second, 0, 3.0, Late([(1, "b"), (2, "c")]))
    step(second, 10, 4.0, "d")  # a plain value (a resume without the worker) ends the wait
    assert rows.rows == [
        {"time": 100, "grid/v": 1.0, "ledger/x": "a"},
        {"time": 110, "grid/v": 2.0, "ledger/x": "b"},
        {"time": 120, "grid/v": 3.0, "ledger/x": "c"},
        {"time": 130, "grid/v": 4.0, "ledger/x": "d"},
    ]
    assert done == [0, 1, 2, 3] and held.rows == {}


def test_auto_runs_the_worker_only_where_it_can_pay_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: a second core, a market and a week of steps, and not inside a sweep's Dask worker."""
    import distributed

    from cosim.models.ledger import component

    year = load_scenario(ROOT / "scenarios" / "default.yaml")
    day = year.model_copy(update={"time": year.time.model_copy(update={"duration": "1d"})})
    monkeypatch.setattr(component, "usable_cores", lambda: 2)
    assert component.uses_worker(year, True) and not component.uses_worker(year, False)
    assert not component.uses_worker(day, True)  # a day: not worth the worker's start
    forced = year.model_copy(
        update={"orchestration": year.orchestration.model_copy(update={"ledger_worker": True})}
    )
    assert component.uses_worker(forced.model_copy(update={"time": day.time}), True)
    monkeypatch.setattr(distributed, "get_worker", lambda: object())  # as in a sweep's task
    assert not component.uses_worker(year, True)
    monkeypatch.undo()
    monkeypatch.setattr(component, "usable_cores", lambda: 1)
    assert not component.uses_worker(year, True)


@pytest.mark.parametrize("scenario", ["default.yaml", "ledger_pos.yaml"])
def test_signatures_left_to_the_caller_are_the_ones_the_ledger_makes(scenario: str) -> None:
    """With ``sign_elsewhere`` (the worker) the block and vote rows come unsigned with what to sign; signed by
    the caller (LedgerSim, with the same keys) they equal the rows of a ledger that signs them itself,
    including the head the validators sign at the end."""
    from cosim.models.ledger.component import build_ledger
    from cosim.models.ledger.sim import LedgerSim, ledger_step

    parsed = load_scenario(ROOT / "scenarios" / scenario)
    itself, elsewhere = (build_ledger(parsed, N_AGENTS)[0] for _ in range(2))
    elsewhere.sign_elsewhere = True
    signer = LedgerSim()
    signer.init("Ledger-0", step_s=3600, n_steps=6, model=elsewhere, validator_keys=elsewhere.validator_keys)
    n_signed = 0
    for k in range(6):
        want = vars(ledger_step(itself, k, TRADES, P_MW, 0.0, 3600, 6))
        got = vars(ledger_step(elsewhere, k, TRADES, P_MW, 0.0, 3600, 6))
        assert want["unsigned"] == [] and all(not got[t]["signature"][r] for t, r, _, _ in got["unsigned"])
        n_signed += len(got["unsigned"])
        signer._sign(got)
        for table in ("blocks", "votes"):
            for column, values in want[table].items():
                np.testing.assert_array_equal(got[table][column], values, err_msg=f"{table}/{column}")
    assert n_signed > 6  # blocks, their certificates or attestations, and the head


def test_the_worker_leaves_the_validators_signatures_to_a_waiting_world() -> None:
    """While the shared byte says the world waited (its core idle), the worker's steps come with their block
    and vote signatures to make (``unsigned``); otherwise signed."""
    replies = []
    with _serving() as (inbox, outbox, waited):
        for k, world_waited in enumerate([1, 0, 1]):
            waited[0] = world_waited
            inbox.send(("step", k, TRADES, P_MW, False))
            replies.append(outbox.recv())
    left = [reply[2]["unsigned"] for reply in replies]
    assert left[0] and not left[1] and left[2]
    for reply, unsigned in zip(replies, left, strict=True):
        signed = reply[2]["blocks"]["signature"]
        assert {bool(signed[row]) for table, row, _, _ in unsigned if table == "blocks"} <= {False}
        assert unsigned or all(signed[1 if reply[1] == 0 else 0 :])  # (genesis is never signed)
