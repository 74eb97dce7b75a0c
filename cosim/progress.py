"""The progress bar of a run: simulated date, steps per second and time left, advanced by the recorder."""

from __future__ import annotations

from typing import Any

import numpy as np


def progress_bar(n_steps: int, times_s: np.ndarray, step_s: int, k0: int = 0) -> Any:
    """A tqdm bar advanced by the recorder; shows simulated date, steps/s and ETA."""
    from tqdm import tqdm

    bar = tqdm(total=n_steps, initial=k0, unit="step", dynamic_ncols=True, mininterval=0.25)
    every = max(1, 86400 // step_s)

    def on_step(k: int) -> None:
        if k % every == 0:
            stamp = np.datetime64(int(times_s[k]), "s")
            bar.set_postfix_str(f"sim {str(stamp).replace('T', ' ')[:16]}", refresh=False)
        bar.update(1)

    on_step.close = bar.close  # type: ignore[attr-defined]
    return on_step
