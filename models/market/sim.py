"""mosaik adapter of the market: one entity ``market`` clearing the bids it gets each step."""

from __future__ import annotations

import time as wallclock
from typing import Any

import numpy as np
from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.adapter import ShiftedSim, SolverStats
from cosim.models.market.market import Market, MarketResult

OUTPUTS = (
    "price_per_mwh",
    "price_q_per_mvarh",
    "award_mw",
    "payment",
    "cleared_mwh",
    "welfare",
    "cost",
    "variable_cost",
    "vm_pu",
    "q_mvar",
    "congestion_rent",
    "unserved_mwh",
    "ok",
    "security_cost",
    "admm_iterations",
    "admm_messages",
    "admm_residual",
    "storage_profit",
    "agent_unserved_mwh",
    "agent_curtailed_mwh",
    "balancing_cost",
    "scheduled_mw",
    "day",
    "trades",
    "detail",
    "hhi",
    "rsi",
    "rsi_min",
    "pivotal",
    "strategic_offer_per_mwh",
    "strategic_optimal",
    "strategic_profit",
    "competitive_profit",
    "lerner_index",
    "welfare_loss",
)
META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Market": {
            "public": True,
            "params": [],
            "attrs": ["bids", "forecast_mw", "grid_forming_mwh", *OUTPUTS],
        }
    },
}


def _admm_outputs(res: Any, k: int) -> dict[str, Any]:
    """Iterations, messages and the residual trace of an ADMM interval (zeros and no rows otherwise)."""
    n = 0 if res is None else res.iterations
    trace = {
        "step": np.full(n, k, dtype=np.int64),
        "iteration": np.arange(1, n + 1, dtype=np.int64),
        **{key: np.zeros(0) if res is None else np.asarray(getattr(res, key), dtype=float)
           for key in ("primal_residual", "dual_residual", "rho", "price")},
    }  # fmt: skip
    return {"admm_iterations": n, "admm_messages": 0 if res is None else res.messages, "admm_residual": trace}


DAY_COLUMNS = (
    "vss",
    "evpi",
    "expected_cost",
    "ws",
    "eev",
    "expected_balancing_cost",
)  # the per-day table of design stochastic, $


def _day_outputs(day: Any, k: int, dt_h: float) -> dict[str, np.ndarray]:
    """One row of the per-day table ($) at a day's first interval (stochastic), else no row."""
    if day is None:
        return {"day_step": np.zeros(0, np.int64), **{c: np.zeros(0) for c in DAY_COLUMNS}}
    money = {c: np.array([getattr(day, c) * dt_h]) for c in DAY_COLUMNS}  # $/h summed over the day -> $
    return {"day_step": np.array([k], np.int64), **money}


class MarketSim(ShiftedSim):
    """Clears one interval per step; a trade row carries the step it was cleared for."""

    def __init__(self) -> None:
        super().__init__(META)
        self.market: Market | None = None
        self._out: dict[str, Any] = {}

    def setup(  # type: ignore[override]
        self,
        *,
        market: Market,
        step_s: int,
        stats: SolverStats | None = None,
    ) -> None:
        self.market, self.step_s = market, step_s
        self.stats = stats if stats is not None else SolverStats()

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1 or self._out:
            raise ValueError("MarketSim holds exactly one Market entity")
        return [{"eid": "market", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        assert self.market is not None
        (bids,) = inputs["market"]["bids"].values()
        (forecast_mw,) = inputs["market"]["forecast_mw"].values()
        k = self.step_index(time, self.step_s)
        t0 = wallclock.perf_counter()
        stored = inputs["market"].get("grid_forming_mwh", {})
        stored_mwh = next(iter(stored.values())) if stored else np.inf
        result: MarketResult = self.market.clear(bids, forecast_mw, k, stored_mwh)
        self.stats.solver_s += wallclock.perf_counter() - t0
        self.stats.n_not_converged += not result.ok
        trades = dict(result.trades)
        trades["step"] = np.full(len(trades["mwh"]), k, dtype=np.int64)
        self._out = {name: getattr(result, name) for name in OUTPUTS if hasattr(result, name)}
        self._out |= {"trades": trades} | _admm_outputs(result.admm, k)
        self._out["day"] = _day_outputs(result.day, k, self.step_s / 3600.0)
        self._out["storage_profit"] = -result.payment[self.market.bidder.battery_agents]
        # for the accounting: what was cleared, and the DC network of the topology it was cleared on
        network = getattr(self.market.model, "network", None)
        self._out["detail"] = (self.market.last_bids, self.market.last_clearing, network)
        return time + self.step_s
