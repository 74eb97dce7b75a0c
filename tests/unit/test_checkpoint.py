"""Checkpoint pieces: segment boundaries, the checkpoint_steps key, state capture/restore, atomic files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cosim.checkpoint import capture, load, restore, save, segments
from cosim.errors import CosimError
from cosim.scenario import OutputConfig


def test_segments_end_at_checkpoints() -> None:
    """Runs between checkpoints end at multiples of the interval, also when resumed mid-run; 0: one run."""
    assert segments(0, 50, 12) == [(0, 12), (12, 24), (24, 36), (36, 48), (48, 50)]
    assert segments(24, 50, 12) == [(24, 36), (36, 48), (48, 50)]
    assert segments(0, 10, 0) == [(0, 10)]
    assert segments(0, 24, 12) == [(0, 12), (12, 24)]


@pytest.mark.parametrize("bad", [-1, True, "month", 1.5])
def test_checkpoint_steps_refuses_nonsense(bad: Any) -> None:
    """checkpoint_steps takes 'week', a count >= 0 or null; negatives, booleans, other words: refused."""
    assert OutputConfig().checkpoint_steps == "week"
    assert OutputConfig(checkpoint_steps=None).checkpoint_steps is None
    with pytest.raises(ValueError, match="checkpoint_steps"):
        OutputConfig(checkpoint_steps=bad)


class _Core:
    """A core with plain state, a generator, a derived part and an unpicklable part."""

    checkpoint_drop = ("_cache",)

    def __init__(self) -> None:
        self.rng = np.random.default_rng(1)
        self.soc = np.zeros(3)
        self.solver = lambda: None  # cannot be pickled: kept as built
        self._cache = {"written": 0}
        self.rebuilt = 0

    def after_restore(self) -> None:
        self.rebuilt += 1


def test_capture_restore_keeps_state_and_rebuilds_the_rest() -> None:
    """Restored: arrays and the generator's state; kept fresh: the unpicklable and the dropped attributes."""
    run = _Core()
    run.soc += 2.5
    run.rng.random(5)
    run._cache["written"] = 7
    tree = pickle.loads(pickle.dumps(capture(run)))
    fresh = _Core()
    solver = fresh.solver
    assert restore(fresh, tree) is fresh
    assert np.array_equal(fresh.soc, [2.5] * 3)
    assert fresh.rng.random() == run.rng.random()
    assert fresh.solver is solver and fresh._cache == {"written": 0} and fresh.rebuilt == 1


def test_checkpoint_file_is_atomic_and_checked(tmp_path: Path) -> None:
    """save leaves no temporary file; load refuses another seed and a missing file with one message."""
    path = tmp_path / "run.h5.ckpt"
    save(path, {"identity": {"seed": 1}, "step": 12})
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5.ckpt"]
    assert load(path, {"seed": 1})["step"] == 12
    with pytest.raises(CosimError, match="different seed"):
        load(path, {"seed": 2})
    with pytest.raises(CosimError, match="no checkpoint"):
        load(tmp_path / "none.ckpt", {"seed": 1})
