"""Headline numbers of one run (one row of a study's summary), from the report's own readers.

Every metric is the number the run report prints (same reader, same reduction); a metric whose section
the run does not have is NaN, never absent, so rows of different runs line up.
"""

from __future__ import annotations

import h5py
import numpy as np

from .ledger_report import _pct, load_ledger
from .report import _attr, _load_market, _vec
from .society_report import final_epsilon, load_society, total_emissions_t

METRICS: dict[str, str] = {  # column: unit and meaning
    "n_steps": "steps recorded",
    "total_cost": "$: generation cost of the dispatch, sum of /market/cost",
    "welfare": "$: sum of /market/welfare",
    "mean_price_per_mwh": "$/MWh: mean over steps of the mean price over buses",
    "unserved_mwh": "MWh: sum of /market/unserved_mwh",
    "traded_mwh": "MWh: energy of the rows of /market/trades",
    "losses_mwh": "MWh: sum of /grid/losses_mw times the step",
    "emissions_t": "t CO2: sum of /emissions/total_kg",
    "gini_surplus": "-: Gini of surplus over the study (/equity attribute)",
    "finality_p50_s": "s: median time to finality of the final ledger transactions",
    "late_trades": "trades not final by their deadline, sum of /ledger/n_late",
    "late_cost": "$: sum of /ledger/late_cost",
    "ledger_energy_kwh": "kWh: consensus energy, sum of /ledger/energy_kwh",
    "dp_epsilon_spent": "-: privacy budget spent by the end of the run",
    "dp_relative_error": "-: relative error of the released consumption (/privacy attribute)",
}


def headline(f: h5py.File) -> dict[str, float]:
    """The METRICS of an open run file (``Results.file``); NaN where the run has no such section."""
    out = dict.fromkeys(METRICS, np.nan)
    time = f["time"]
    t = int(time.shape[0])
    out["n_steps"] = float(t)
    step_s = float(_attr(f, "step_s", 0) or (time[1] - time[0] if t > 1 else 3600))
    if "grid/losses_mw" in f:
        out["losses_mwh"] = float(np.nansum(_vec(f["grid/losses_mw"], t))) * step_s / 3600
    m = _load_market(f, {"T": t}, figures=False)
    if m is not None:
        fin = np.isfinite(m["price"].row_mean)
        out |= {
            "total_cost": float(np.nansum(m["cost"])),
            "welfare": float(np.nansum(m["welfare"])),
            "mean_price_per_mwh": float(np.mean(m["price"].row_mean[fin])) if fin.any() else np.nan,
            "unserved_mwh": float(np.nansum(m["unserved_mwh"])),
            "traded_mwh": float(m["traded_mwh"]),
        }
    led = load_ledger(f)
    if led is not None:
        out |= {
            "finality_p50_s": _pct(led.finality_s, 50),
            "late_trades": float(np.nansum(led.n_late)),
            "late_cost": float(np.nansum(led.late_cost)),
            "ledger_energy_kwh": float(np.nansum(led.energy_kwh)),
        }
    soc = load_society(f)
    if soc is not None and soc.emissions is not None:
        out["emissions_t"] = total_emissions_t(soc.emissions)
    if soc is not None and soc.equity is not None:
        out["gini_surplus"] = soc.equity.gini_surplus
    if soc is not None and soc.privacy is not None:
        out["dp_epsilon_spent"] = final_epsilon(soc.privacy)
        out["dp_relative_error"] = soc.privacy.relative_error_consumption
    return out
