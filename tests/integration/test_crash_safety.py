"""Nothing lost on a crash: killed, terminated, disk-full and competing runs leave a readable partial file."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import cosim
from cosim.cli import main
from cosim.errors import CosimError, ScenarioError
from cosim.runguard import OutputBusy, OutputLock, raise_if_stopped, sigterm_as_interrupt

CHUNK = 24
TINY = """
name: tiny
time: {start: 2016-01-01T00:00:00, duration: 4y, step: 1h}
grid: {source: pandapower, case: case9}
output: {chunk_steps: 24}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A fast study (a 9-bus case, no market) of four years of hours, written in chunks of 24 steps: it runs
    for about a minute (one year now ends in ~10 s, which a test's signal could come too late for)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent(TINY))
    return path


def start_run(scenario: Path, out: Path, **kw: object) -> subprocess.Popen[str]:
    """`cosim run` in its own process."""
    cmd = [sys.executable, "-m", "cosim.cli", "run", str(scenario), "--out", str(out), "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)  # type: ignore[call-overload]


def steps_on_disk(partial: Path) -> int:
    """Steps a running process has flushed (read without HDF5's lock); 0 while unreadable."""
    try:
        with h5py.File(partial, "r", locking=False) as f:
            return int(f["time"].shape[0])
    except (OSError, KeyError, RuntimeError):
        return 0


def wait_for_steps(proc: subprocess.Popen[str], partial: Path, n: int, timeout_s: float = 60) -> None:
    """Wait until the running process has flushed at least ``n`` steps."""
    end = time.monotonic() + timeout_s
    while steps_on_disk(partial) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "the run wrote nothing"
        time.sleep(0.2)


def assert_readable(partial: Path, whole_chunks: bool = True) -> int:
    """The partial file opens with h5py and through open_results; every series reads; returns its steps."""
    with h5py.File(partial, "r") as f:
        n = f["time"].shape[0]
        times = f["time"][:]
        assert not f.attrs["complete"]
    assert n > 0 and (n % CHUNK == 0 or not whole_chunks), n  # killed: whole chunks only
    np.testing.assert_array_equal(np.diff(times), 3600)
    with cosim.open_results(partial) as res:
        for key in res.keys():
            assert len(res[key]) == n
    return n


def test_kill_9_leaves_a_readable_partial(tiny: Path, tmp_path: Path) -> None:
    """`kill -9` mid-run leaves a .partial that h5py opens, holding every chunk flushed before the kill."""
    out = tmp_path / "k.h5"
    partial = out.with_name("k.h5.partial")
    proc = start_run(tiny, out)
    try:
        wait_for_steps(proc, partial, 3 * CHUNK)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert assert_readable(partial) >= 3 * CHUNK
    OutputLock(out, "--out").release()  # the killed run's lock went with it: a new run may start


def test_sigterm_stops_like_ctrl_c_and_a_second_run_is_refused(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A second run on the same --out refuses at once; SIGTERM then ends the first with one message."""
    out = tmp_path / "t.h5"
    partial = out.with_name("t.h5.partial")
    proc = start_run(tiny, out)
    try:
        wait_for_steps(proc, partial, CHUNK)
        assert main(["run", str(tiny), "--out", str(out), "--quiet"]) == 1
        assert "another run is writing" in capsys.readouterr().err
        assert proc.poll() is None  # refused while the first still runs (before building: test below)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    n = assert_readable(partial, whole_chunks=False)  # stopped: the buffered steps are written too
    with h5py.File(partial, "r") as f:
        assert f.attrs["n_steps"] == n >= CHUNK  # closed properly: the attributes of a stopped run
    assert not out.exists() and not out.with_name("t.h5.lock").exists()


def test_a_stop_signal_mosaik_swallows_still_stops_the_run(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM landing in mosaik's own coroutine (it catches KeyboardInterrupt and returns) stops the run."""
    import mosaik.scheduler

    real = mosaik.scheduler.run

    async def signalled(*args: object, **kwargs: object) -> None:
        await real(*args, **kwargs)  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGTERM)  # raises in this coroutine: mosaik logs "canceled", returns

    monkeypatch.setattr(mosaik.scheduler, "run", signalled)
    scenario = tmp_path / "week.yaml"  # two segments: without the fix, the second runs and the file completes
    scenario.write_text(tiny.read_text().replace("duration: 4y", "duration: 8d"))
    out = tmp_path / "w.h5"
    with pytest.raises(CosimError, match=r"after 168 of 192 steps \(interrupted by SIGTERM\)"):
        cosim.run(scenario, out=out)
    assert not out.exists() and out.with_name("w.h5.partial").exists()


def test_a_stop_signal_python_cannot_raise_is_not_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM landing in a weakref callback, where Python prints an exception as ignored with its traceback
    (``sys.unraisablehook``), is not reported there and is raised at the next check (the recorder checks at
    every step)."""
    ignored: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)

    class Thing:
        pass

    def callback(_: object) -> None:
        signal.raise_signal(signal.SIGTERM)
        sum(range(1000))  # the handler runs here, inside the callback

    with sigterm_as_interrupt():
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        assert ref() is None
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            raise_if_stopped()
    assert ignored == []


def test_lock_refuses_before_building(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A held output lock stops a run before any model is built."""
    monkeypatch.setattr("cosim.world.build_all", _not_built)
    out = tmp_path / "l.h5"
    with OutputLock(out, "--out"), pytest.raises(OutputBusy, match="another run is writing"):
        cosim.run(tiny, out=out)


def _not_built(*args: object) -> None:
    raise AssertionError("the models were built")


def test_full_disk_stops_cleanly(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills after the first reserve: the run stops with one line, the partial whole up to it."""
    real, calls = os.posix_fallocate, []

    def fallocate(fd: int, offset: int, length: int) -> None:
        calls.append(length)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    out = tmp_path / "d.h5"
    with pytest.raises(CosimError, match=r"of 100 steps .*the disk is full") as info:
        cosim.run(tiny, steps=100, out=out)
    assert str(info.value).count("\n") == 0
    n = assert_readable(out.with_name("d.h5.partial"))
    assert f"after {n} of 100 steps" in str(info.value) and len(calls) == 2


def test_failed_write_stops_with_one_message(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails inside HDF5 (ENOSPC) stops the run with one line, marked to exit at once."""
    from cosim.recorder import H5Recorder

    real, calls = H5Recorder._write_chunk, []

    def write(self: H5Recorder, n: int, final: bool = False) -> None:
        calls.append(n)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, n, final)

    monkeypatch.setattr(H5Recorder, "_write_chunk", write)
    with pytest.raises(CosimError, match="after 24 of 100 steps .*the disk is full") as info:
        cosim.run(tiny, steps=100, out=tmp_path / "w.h5")
    assert info.value.exit_now  # type: ignore[attr-defined]


def test_file_size_limit_in_a_real_process(tiny: Path, tmp_path: Path) -> None:
    """Under a 1.15 MB file size limit (RLIMIT_FSIZE) a run stops with one line and a readable partial."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_150_000, 1_150_000))

    out = tmp_path / "f.h5"
    proc = start_run(tiny, out, preexec_fn=limit)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert err.strip().count("\n") == 0 and "file size limit" in err, err
    assert assert_readable(out.with_name("f.h5.partial")) >= CHUNK


@pytest.mark.parametrize("kind", ["directory", "empty", "too long", "partial is a directory"])
def test_bad_output_paths_refused_before_building(
    kind: str, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory, an empty or too long path is refused (naming --out) before the models are built."""
    monkeypatch.setattr("cosim.world.build_all", _not_built)
    out = {
        "directory": tmp_path,
        "empty": Path(""),
        "too long": tmp_path / ("x" * 300 + ".h5"),
        "partial is a directory": tmp_path / "p.h5",
    }[kind]
    (tmp_path / "p.h5.partial").mkdir()
    with pytest.raises(ScenarioError, match="--out"):
        cosim.run(tiny, out=out)


def test_read_only_mount_refused(tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder on a read-only mount is refused before the models are built."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)]
    mounted = subprocess.run(mount, capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        monkeypatch.setattr("cosim.world.build_all", _not_built)
        with pytest.raises(ScenarioError, match="read-only"):
            cosim.run(tiny, out=ro / "x.h5")
    finally:
        subprocess.run(["umount", str(ro)], check=False)


def test_ctrl_c_stops_a_run_and_its_ledger_worker(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group) while the ledger runs in its worker: one message, no
    traceback, the steps so far in the partial file, and no process of the group left behind."""
    from cosim.scenario_io import read_yaml

    data = read_yaml(Path(cosim.__file__).resolve().parents[1] / "scenarios" / "default.yaml")
    data |= {"orchestration": {"ledger_worker": True}, "output": {"chunk_steps": CHUNK}}
    data["time"]["duration"] = "90d"
    scenario = tmp_path / "worker.yaml"
    scenario.write_text(yaml.safe_dump(data, default_flow_style=False))
    out = tmp_path / "w.h5"
    proc = start_run(scenario, out, start_new_session=True)
    try:
        wait_for_steps(proc, out.with_name("w.h5.partial"), 2 * CHUNK)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1 and "interrupted" in err and "Traceback" not in err, err
    assert assert_readable(out.with_name("w.h5.partial"), whole_chunks=False) >= 2 * CHUNK
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):  # the worker ended with the run
        os.killpg(proc.pid, 0)
