"""Simulators outside the process: the ledger and the privacy release as processes of their own (mosaik's
cmd starter) or reached on a host and port (mosaik's connect starter) write what an in-process run writes."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

import cosim
from tests.conftest import ROOT


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def _assert_identical(a: Path, b: Path) -> None:
    """Every dataset bit-identical, and every root attribute but the run's own (paths, timings, scenario)."""
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db)
    for name, x in da.items():
        y = db[name]
        same = x.tolist() == y.tolist() if x.dtype.kind == "O" else x.tobytes() == y.tobytes()
        assert x.dtype == y.dtype and same, name
    own = {"scenario_yaml", "code_version", "versions", "wall_s", "created", "ledger_worker_peak_mb"}
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        keys = {k for k in fa.attrs if k not in own and not (k.endswith("_s") and k != "step_s")}
        assert keys == {k for k in fb.attrs if k not in own and not (k.endswith("_s") and k != "step_s")}
        for k in keys:
            assert str(fa.attrs[k]) == str(fb.attrs[k]), k


def _scenario(tmp_path: Path, orchestration: dict) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    data["orchestration"] = orchestration
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_ledger_and_privacy_out_of_process_identical(default_run, tmp_path: Path) -> None:
    """The default study for 2 days with ledger and privacy in processes of their own: every dataset and
    attribute equal to the in-process run's (the same seeds, and floats cross JSON bit for bit)."""
    scenario = _scenario(tmp_path, {"out_of_process": ["ledger", "privacy"]})
    run = cosim.run(scenario, days=2, out=tmp_path / "oop.h5")
    _assert_identical(default_run.path, run.path)
    assert run.warnings == default_run.warnings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    """Someone listens on the port (found by failing to bind it: a probe connection would be the server's one
    and only client)."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_ledger_on_another_host_identical(tmp_path: Path) -> None:
    """A ledger started by hand (`python -m cosim.remote ledger HOST:PORT --remote`, as on another machine)
    and reached with orchestration.connect: the same file as in the process."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "cosim.remote", "ledger", f"127.0.0.1:{port}", "--remote"]
    )
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):  # the server listens once its imports are done (one connection only)
            assert time.monotonic() < deadline and server.poll() is None, "the ledger did not start"
            time.sleep(0.2)
        remote = cosim.run(_scenario(tmp_path, {"connect": {"ledger": f"127.0.0.1:{port}"}}), steps=6,
                           out=tmp_path / "far.h5")  # fmt: skip
    finally:
        server.kill()
    local = cosim.run(ROOT / "scenarios" / "default.yaml", steps=6, out=tmp_path / "near.h5")
    _assert_identical(local.path, remote.path)


def test_remote_refuses_a_component_that_cannot_leave() -> None:
    """`python -m cosim.remote grid ...`: one line naming those that can leave, exit non-zero."""
    done = subprocess.run(
        [sys.executable, "-m", "cosim.remote", "grid", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "can leave the process (privacy, ledger)" in done.stderr
    assert "Traceback" not in done.stderr


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def test_ledger_worker_identical_across_checkpoints(tmp_path: Path) -> None:
    """The ledger a step behind in a worker process, its outputs collected late (held across the checkpoints,
    every 5 steps) and drained at the end: the file equals the in-process run's."""
    runs = {}
    for worker in (False, True):
        scenario = _scenario(tmp_path, {"ledger_worker": worker})
        data = yaml.safe_load(scenario.read_text())
        data["output"] = {"checkpoint_steps": 5}  # (checkpoints reload the solvers: same places in both)
        scenario.write_text(yaml.safe_dump(data))
        runs[worker] = cosim.run(scenario, days=2, out=tmp_path / f"worker_{worker}.h5")
    _assert_identical(runs[False].path, runs[True].path)
    assert runs[True].warnings == runs[False].warnings
    assert gc.get_freeze_count() == 0  # the objects the run froze are the collector's again (sweeps)
    with h5py.File(runs[True].path, "r") as f:
        assert 0 < f.attrs["ledger_wait_s"] and 20 < f.attrs["ledger_worker_peak_mb"] < 1000


@pytest.mark.parametrize("resume_with_worker", [True, False], ids=["worker", "in-process"])
def test_a_checkpoint_keeps_the_steps_the_worker_has_not_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resume_with_worker: bool
) -> None:
    """A checkpoint does not wait for the worker: it keeps the rows of the steps whose ledger outputs have
    not come, and a resume (with a worker, or in the world's process on a machine without a second core)
    sends them again; the file equals an uninterrupted run's."""
    from cosim import world
    from cosim.errors import CosimError
    from cosim.models.ledger import component, worker
    from cosim.models.ledger.sim import LAG_STEPS

    class Strict:  # the world takes no output early: the worker is always LAG_STEPS behind
        def __init__(self, replies: Any) -> None:
            self.put, self.get = replies.put, replies.get

        def empty(self) -> bool:
            return True

    def strict(self: worker.LedgerWorker, *args: Any) -> None:
        init(self, *args)
        self._replies = Strict(self._replies)  # type: ignore[assignment]

    init = worker.LedgerWorker.__init__
    monkeypatch.setattr(worker.LedgerWorker, "__init__", strict)
    undelivered: list[int] = []
    state = component.Ledger.state

    def spied(self: component.Ledger) -> dict:
        captured = state(self)
        undelivered.append(self.n_undelivered)
        return captured

    monkeypatch.setattr(component.Ledger, "state", spied)
    scenario = _scenario(tmp_path, {"ledger_worker": True})
    data = yaml.safe_load(scenario.read_text())
    every = LAG_STEPS + 6  # at each checkpoint the worker has sent all but its last LAG_STEPS steps
    data["output"] = {"checkpoint_steps": every}
    scenario.write_text(yaml.safe_dump(data))
    n_steps = 3 * every + 1
    reference = cosim.run(scenario, steps=n_steps, out=tmp_path / "reference.h5").path
    assert undelivered == [LAG_STEPS] * 3

    save = world.save_checkpoint

    def save_then_stop(*args: object) -> None:
        save(*args)
        raise KeyboardInterrupt

    out = tmp_path / "resumed.h5"
    with monkeypatch.context() as m:
        m.setattr(world, "save_checkpoint", save_then_stop)
        with pytest.raises(CosimError, match=f"after 6 of {n_steps} steps"):  # the other rows held
            cosim.run(scenario, steps=n_steps, out=out)
    if not resume_with_worker:
        monkeypatch.setattr(component, "uses_worker", lambda *args: False)
    cosim.run(scenario, steps=n_steps, out=out, resume=True)
    _assert_identical(reference, out)


def test_a_dead_ledger_worker_stops_the_run_with_a_message(tmp_path: Path, monkeypatch) -> None:
    """The worker killed mid-run (an OOM kill, say): the run stops with a CosimError naming the worker and
    keeps the steps recorded so far in the partial file; no worker is left behind."""
    from cosim.errors import CosimError
    from cosim.models.ledger import worker

    started: list[worker.LedgerWorker] = []
    submit = worker.LedgerWorker.submit

    def killing(self, k, *args, **kwargs):
        if not started:
            started.append(self)
        if k == 6:
            self.proc.kill()
            self.proc.wait()
        return submit(self, k, *args, **kwargs)

    monkeypatch.setattr(worker.LedgerWorker, "submit", killing)
    scenario = _scenario(tmp_path, {"ledger_worker": True})
    ended = r"the ledger's worker process \(pid \d+\) ended \(signal 9\)"
    with pytest.raises(CosimError, match=ended) as err:
        cosim.run(scenario, days=1, out=tmp_path / "dead.h5")
    assert "run stopped after" in str(err.value) and "dead.h5.partial" in str(err.value)
    with h5py.File(tmp_path / "dead.h5.partial", "r") as f:
        assert f.attrs["complete"] == False  # noqa: E712 - numpy bool
    assert started[0].proc.poll() is not None
