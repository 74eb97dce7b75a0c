"""`cosim run --resume`: a run killed with SIGKILL after a checkpoint, then resumed, writes the very file an
uninterrupted run writes (every dataset bit for bit; only wall-clock timing attributes may differ)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TIMING_ATTRS = {
    "power_flow_s",
    "market_s",
    "ledger_s",
    "checkpoint_s",
    "ledger_wait_s",
    "ledger_worker_peak_mb",
}  # wall-clock seconds (and a worker's memory): the only attributes that differ
DAYS = "2"


def _scenario(tmp: Path, source: str, out: Path, patch: dict[str, dict[str, Any]] | None = None) -> Path:
    """``scenarios/<source>`` with a checkpoint every 12 steps, chunks of 8, ``out`` as its output and the
    sections' keys in ``patch`` changed."""
    data = yaml.safe_load((REPO / "scenarios" / source).read_text())
    data["output"] = {"path": str(out), "checkpoint_steps": 12, "chunk_steps": 8}
    for section, keys in (patch or {}).items():
        data[section] = data.get(section, {}) | keys
    path = tmp / f"{out.stem}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _cosim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cosim.cli", *args], capture_output=True, text=True, cwd=REPO
    )


def _kill_after_checkpoint(scenario: Path, out: Path) -> None:
    """Start a run, wait for its first checkpoint and SIGKILL it (a real process, nothing cleaned up)."""
    ckpt = out.with_name(out.name + ".ckpt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosim.cli", "run", str(scenario), "--days", DAYS, "--quiet"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while not ckpt.exists() and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not out.exists(), "the run must be killed after a checkpoint, before its end"


def _datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    f.visititems(lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def _attrs(obj: Any) -> dict[str, Any]:
    hidden = {"DIMENSION_LIST", "REFERENCE_LIST"} | TIMING_ATTRS  # object references differ by file
    return {k: v for k, v in obj.attrs.items() if k not in hidden}


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "OSU" or b.dtype.kind in "OSU":
        return a.shape == b.shape and bool(np.all(a == b))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _assert_identical(reference: Path, resumed: Path) -> None:
    with h5py.File(reference) as a, h5py.File(resumed) as b:
        da, db = _datasets(a), _datasets(b)
        assert sorted(da) == sorted(db)
        differ = [n for n in da if not _same(da[n][()], db[n][()])]
        assert not differ, f"datasets differ after --resume: {differ}"
        for name, obj_a, obj_b in [("/", a, b), *((n, da[n], db[n]) for n in da)]:
            ka, kb = _attrs(obj_a), _attrs(obj_b)
            assert sorted(ka) == sorted(kb), name
            assert all(_same(ka[k], kb[k]) for k in ka), f"attributes of {name} differ"


VARIANTS: dict[str, Any] = {
    "default": ("default.yaml", {}),  # BFT ledger, DC-OPF, privacy and emissions/equity accounting
    # the ledger a step behind in a worker process, which a resume starts by replaying the input log
    "worker": ("default.yaml", {"orchestration": {"ledger_worker": True}}),
    "pos": ("ledger_pos.yaml", {}),
    "pow": ("ledger_pow.yaml", {}),
    "arbitrage": ("default.yaml", {"market": {"battery_bidding": "arbitrage"}}),  # the planner's memory
    # an island after the checkpoint: its market's LP is degenerate (HiGHS is reloaded at checkpoints)
    "islanding": ("islanding.yaml", {"time": {"start": "2016-06-04T12:00:00"}}),
    "stochastic": ("stochastic.yaml", {}),
    "scopf": ("mv_rural_scopf.yaml", {}),  # the lazy post-contingency rows added before the checkpoint
}


@pytest.mark.parametrize("variant", list(VARIANTS.values()), ids=list(VARIANTS))
def test_killed_run_resumes_bit_identical(tmp_path: Path, variant: tuple[str, dict[str, Any]]) -> None:
    """SIGKILL after a checkpoint, then --resume: every dataset equals an uninterrupted run's; the checkpoint
    is removed when the run completes."""
    source, patch = variant
    out = tmp_path / "run.h5"
    scenario = _scenario(tmp_path, source, out, patch)
    done = _cosim("run", str(scenario), "--days", DAYS, "--quiet")
    assert done.returncode == 0, done.stderr
    assert not out.with_name("run.h5.ckpt").exists()
    reference = out.rename(tmp_path / "reference.h5")
    _kill_after_checkpoint(scenario, out)
    resumed = _cosim("run", str(scenario), "--days", DAYS, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not out.with_name("run.h5.ckpt").exists()
    _assert_identical(reference, out)


def test_resume_refuses_without_checkpoint_or_changed_scenario(tmp_path: Path) -> None:
    """--resume with no checkpoint, or with another seed than the checkpointed run, says why in one line."""
    out = tmp_path / "run.h5"
    scenario = _scenario(tmp_path, "default.yaml", out)
    missing = _cosim("run", str(scenario), "--days", DAYS, "--quiet", "--resume")
    assert missing.returncode == 1
    assert "no checkpoint" in missing.stderr and "Traceback" not in missing.stderr
    _kill_after_checkpoint(scenario, out)
    changed = _cosim("run", str(scenario), "--days", DAYS, "--quiet", "--resume", "--seed", "7")
    assert changed.returncode == 1
    assert "different scenario and seed" in changed.stderr and "Traceback" not in changed.stderr
    assert out.with_name("run.h5.ckpt").exists()  # refused: the checkpoint is kept for a proper resume
