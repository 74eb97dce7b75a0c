"""mosaik adapter of the accounting: emissions of each interval and the equity accounts of the study.

Inputs come from the market (what it cleared, trades, payments, awards) and the grid (the AC voltages of
the interval, for the loss factors); nothing flows back, so the connections are same-time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from mosaik_api_v3.types import CreateResult, Meta

from cosim.models.accounting.emissions import EmissionAccounting
from cosim.models.accounting.equity import EquityAccumulator
from cosim.models.adapter import ShiftedSim

EMISSION_OUTPUTS = (
    "total_kg",
    "average_kg_per_mwh",
    "upstream_kg",
    "marginal_kg_per_mwh",
    "marginal_lossless_kg_per_mwh",
    "trades",
)
META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Accounting": {
            "public": True,
            "params": [],
            "attrs": [
                "detail",
                "market_trades",
                "payment",
                "award_mw",
                "vm_pu",
                "va_degree",
                *EMISSION_OUTPUTS,
            ],
        }
    },
}


class AccountingSim(ShiftedSim):
    """Accounts one interval per step.

    ``emissions`` (optional) gives the emissions outputs; ``equity`` (optional) is fed the payments and
    energies with ``baseline_price_per_mwh`` (T,) and ``baseline_export_per_mwh`` (T,) or None.
    """

    def __init__(self) -> None:
        super().__init__(META)
        self._out: dict[str, Any] = {}

    def setup(  # type: ignore[override]
        self,
        *,
        step_s: int,
        n_bus: int,
        emissions: EmissionAccounting | None = None,
        equity: EquityAccumulator | None = None,
        baseline_price_per_mwh: np.ndarray | None = None,
        baseline_export_per_mwh: np.ndarray | None = None,
    ) -> None:
        self.step_s, self.dt_h, self.n_bus = step_s, step_s / 3600.0, n_bus
        self.emissions, self.equity = emissions, equity
        self.baseline, self.baseline_export = baseline_price_per_mwh, baseline_export_per_mwh

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("AccountingSim holds exactly one Accounting entity")
        return [{"eid": "accounting", "type": model}]

    def advance(self, time: int, inputs: dict[str, Any]) -> int:
        got = {attr: next(iter(src.values())) for attr, src in inputs.get("accounting", {}).items()}
        k = self.step_index(time, self.step_s)
        if self.emissions is not None:
            self._out = self._emissions(k, got)
        if self.equity is not None:
            assert self.baseline is not None
            export = None if self.baseline_export is None else float(self.baseline_export[k])
            energy_mwh = np.asarray(got["award_mw"]) * self.dt_h
            self.equity.add(k, got["payment"], energy_mwh, float(self.baseline[k]), export)
        return time + self.step_s

    def _emissions(self, k: int, got: dict[str, Any]) -> dict[str, Any]:
        assert self.emissions is not None
        bids, clearing, network = got["detail"]
        trades = got["market_trades"]
        if clearing is None:  # the clearing failed: nothing dispatched by the market to account
            nan_bus = np.full(self.n_bus, np.nan)
            return {
                "total_kg": np.nan, "average_kg_per_mwh": np.nan, "upstream_kg": np.nan,
                "marginal_kg_per_mwh": nan_bus, "marginal_lossless_kg_per_mwh": nan_bus,
                "trades": {"step": np.zeros(0, np.int64), "kg": np.zeros(0)},
            }  # fmt: skip
        acc = self.emissions.update(
            k, bids, clearing, self.dt_h, got.get("vm_pu"), got.get("va_degree"), trades, network
        )
        n = len(trades["mwh"])
        return {
            "total_kg": acc.total_kg,
            "average_kg_per_mwh": acc.average_kg_per_mwh,
            "upstream_kg": acc.upstream_kg,
            "marginal_kg_per_mwh": acc.mef_loss_kg_per_mwh,
            "marginal_lossless_kg_per_mwh": acc.mef_kg_per_mwh,
            "trades": {"step": np.full(n, k, dtype=np.int64), "kg": acc.trades.total_kg},
        }
