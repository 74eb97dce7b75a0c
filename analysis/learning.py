"""The learning curve of a trained bidding policy (profit per training episode), as a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure


def learning_curve_figure(
    curve: Sequence[float],
    *,
    population: int | None = None,
    references: dict[str, float] | None = None,
    title: str = "Learning curve",
) -> Figure:
    """Profit of every training episode, the best of each iteration, and horizontal reference lines.

    Parameters
    ----------
    curve : profit [$] of every episode in training order
    population : episodes per iteration (cross-entropy search); draws each iteration's best when given
    references : label -> profit [$] drawn as lines, e.g. the perfect-foresight LP and the fixed bids
    """
    y = np.asarray(curve, dtype=float)
    fig = Figure(figsize=(7.0, 3.6), dpi=110)
    ax = fig.add_subplot()
    ax.plot(np.arange(1, len(y) + 1), y, ".", ms=2, color="0.6", label="episode")
    if population and len(y) >= population:
        n = len(y) // population
        best = y[: n * population].reshape(n, population).max(axis=1)
        ax.plot((np.arange(n) + 1) * population, best, "-", color="C0", label="best of iteration")
    for i, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, ls="--", color=f"C{i + 1}", label=f"{label} ({value:.3g} $)")
    ax.set(xlabel="training episode", ylabel="profit per episode [$]", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
