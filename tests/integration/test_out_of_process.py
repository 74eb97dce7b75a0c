"""Simulators outside the process: the ledger and the privacy release as processes of their own (mosaik's
cmd starter) or reached on a host and port (mosaik's connect starter) write what an in-process run writes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

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
    own = {"scenario_yaml", "code_version", "versions", "wall_s", "created"}
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
