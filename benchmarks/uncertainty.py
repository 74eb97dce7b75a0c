"""Benchmark: markets under uncertainty - the stochastic day-ahead year, its persistent clearing, ADMM.

Three parts, each against the obvious alternative measured in the same run:

1. ``stochastic``: ``scenarios/stochastic.yaml`` (LV grid ``1-LV-semiurb4--0-sw``, hourly, every day
   cleared ahead at midnight against 10 PV and load scenarios, settled in real time) run with
   ``cosim.run`` for ``--days`` days. Prints wall and market clearing time, failed clearings, and
   from the HDF5 file the day-ahead measures ``/market/day/vss``, ``/market/day/evpi``,
   ``/market/day/expected_cost`` (one row per day, $) and the realised ``/market/balancing_cost`` (per
   interval, $): totals, means per day, VSS and EVPI as shares of the expected cost, the share of days
   with VSS > 0.01 $, and the realised against the expected balancing cost. Target: the year (365 days,
   extrapolated from the wall time when ``--days`` is shorter) under ``TARGET_YEAR_S``.
2. ``compare``: the same scenario's day-ahead inputs (bids and `DayScenarios` of the first
   ``--compare-days`` days, drawn exactly as the run draws them: the `DayAheadMarket` of
   ``build_market`` with its ``StochasticDayAhead`` replaced by a recorder) cleared (a) by one
   persistent ``StochasticDayAhead`` (HiGHS instances built once, later days push changed vectors and
   warm-start), (b) by a ``StochasticDayAhead`` built for each day (``stochastic.clear_day``), both with
   VSS and EVPI (RP, WS, EV and EEV solves), and (c) persistent, RP only (``measures=False``). The first
   day builds the persistent instances and is reported apart; medians are over the other days. Both
   clearings must give the same expected cost, VSS and EVPI (1e-6 relative to the larger of the two
   and 1 $). When part 1 ran, the persistent clearing is also compared with the run's file.
3. ``admm``: ``scenarios/admm.yaml`` (same grid, the uniform double auction cleared by ADMM) for
   ``--admm-days`` days; every interval's bids are also cleared by the central ``UniformAuction``
   (persistent HiGHS), so both see the same bids (two separate runs would drift apart: awards equal
   within ADMM's tolerance leave slightly different states of charge). Prints ADMM iterations and
   messages per interval, clearing time per interval of both on the same bids and the ratio, and their
   agreement over the intervals where both cleared: max price difference (target <= 0.01 $/MWh) and
   max relative welfare difference (target <= 1e-4, plus 1e-6 $ absolute).

Exit code 0 when every target and check holds, 1 otherwise. Timings are wall-clock on this machine,
with whatever else runs on it.

Run from the repository root::

    python benchmarks/uncertainty.py                                   # the year, 30 + 30 days
    python benchmarks/uncertainty.py --days 30 --compare-days 20 --admm-days 14
    python benchmarks/uncertainty.py --part compare --compare-days 60
    python benchmarks/uncertainty.py --part admm --admm-days 365 --keep /tmp/uncertainty
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import cosim
from cosim.cores import build_market, build_models
from cosim.models.market import stochastic
from cosim.models.market.admm import ADMMClearing
from cosim.models.market.auction import UniformAuction
from cosim.models.market.stochastic import StochasticDayAhead
from cosim.overrides import effective
from cosim.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
STOCHASTIC_YAML = ROOT / "scenarios" / "stochastic.yaml"
ADMM_YAML = ROOT / "scenarios" / "admm.yaml"
DAYS_PER_YEAR = 365
TARGET_YEAR_S = 600.0  # the stochastic year, wall time
VSS_POSITIVE = 0.01  # $: a day "has" a VSS above this
SAME_REL = 1e-6  # persistent vs rebuilt clearing: expected cost, VSS, EVPI
PRICE_TOL = 0.01  # $/MWh, ADMM vs the uniform auction (the acceptance)
WELFARE_REL = 1e-4  # relative, ADMM vs the uniform auction
WELFARE_ABS = 1e-6  # $, below which a welfare difference counts as equal (near-zero welfare)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ms(seconds: list[float]) -> np.ndarray:
    return 1e3 * np.asarray(seconds, dtype=float)


# ---- 1. the stochastic year ---------------------------------------------------------------------------


def part_stochastic(args: argparse.Namespace, out_dir: Path, results: list[tuple[str, bool]]) -> np.ndarray:
    """Run the stochastic scenario; returns the run's /market/day/expected_cost per day ($)."""
    print(f"\n== 1. stochastic day-ahead year: {STOCHASTIC_YAML.relative_to(ROOT)}, {args.days} days ==")
    summary = cosim.run(STOCHASTIC_YAML, days=args.days, out=out_dir / "stochastic.h5")
    with h5py.File(summary.path) as f:
        day_step = f["market/day/day_step"][:]
        vss, evpi = f["market/day/vss"][:], f["market/day/evpi"][:]
        expected = f["market/day/expected_cost"][:]
        expected_bal = f["market/day/expected_balancing_cost"][:]
        balancing = f["market/balancing_cost"][:]
        ok = f["market/ok"][:]
    n_days = len(day_step)
    finite = np.isfinite(vss) & np.isfinite(evpi)
    vss_f, evpi_f = vss[finite], evpi[finite]
    if not len(vss_f):  # no day to sum over: report NaN (the checks below then fail)
        vss_f = evpi_f = np.full(1, np.nan)
    cost_scale = float(np.abs(expected[finite]).sum())
    print(f"intervals: {summary.n_steps} ({n_days} days cleared ahead)")
    print(f"wall time: {summary.wall_s:.1f} s")
    print(
        f"market clearing time: {summary.market_s:.1f} s ({100 * summary.market_s / summary.wall_s:.0f}% "
        f"of the wall time), {1e3 * summary.market_s / max(n_days, 1):.0f} ms per day"
    )
    print(f"power flow time: {summary.power_flow_s:.1f} s")
    print(f"failed clearings (intervals): {summary.n_market_failed} (file: {int((~ok).sum())})")
    print(
        f"days with non-finite VSS or EVPI (no feasible recourse for x_EV, or WS/EV failed): "
        f"{n_days - int(finite.sum())}"
    )
    print(f"expected cost (RP), total: {expected.sum():,.2f} $ (mean {expected.mean():,.2f} $/day)")
    print(
        f"VSS, total: {vss_f.sum():,.2f} $ (mean {vss_f.mean():.3f} $/day, max {vss_f.max():.3f} $); "
        f"VSS / |expected cost| {vss_f.sum() / cost_scale:.1e}"
    )
    print(
        f"EVPI, total: {evpi_f.sum():,.2f} $ (mean {evpi_f.mean():.3f} $/day, max {evpi_f.max():.3f} $); "
        f"EVPI / |expected cost| {evpi_f.sum() / cost_scale:.1e}"
    )
    print(f"min VSS, min EVPI (>= 0 up to solver tolerance): {vss_f.min():.2e} $, {evpi_f.min():.2e} $")
    share = float(np.mean(vss_f > VSS_POSITIVE))
    print(
        f"days with VSS > {VSS_POSITIVE} $: {int((vss_f > VSS_POSITIVE).sum())} of {len(vss_f)} "
        f"({100 * share:.0f}%)"
    )
    realised = float(np.nansum(balancing))
    print(f"balancing cost, realised total: {realised:,.2f} $ (mean {realised / max(n_days, 1):.2f} $/day)")
    print(
        f"balancing cost, expected by the day-ahead clearing: {expected_bal.sum():,.2f} $; "
        f"realised / expected: {realised / expected_bal.sum():.3f}"
    )
    year_s = summary.wall_s * DAYS_PER_YEAR / args.days
    how = "measured" if args.days >= DAYS_PER_YEAR else f"extrapolated from {args.days} days"
    print(f"year ({DAYS_PER_YEAR} days) wall time: {year_s:.1f} s ({how})")
    results.append((f"stochastic year wall time <= {TARGET_YEAR_S:.0f} s ({how})", year_s <= TARGET_YEAR_S))
    no_failure = summary.n_market_failed == 0 and bool(ok.all()) and bool(finite.all()) and n_days > 0
    results.append(("stochastic run: no failed clearing, finite VSS and EVPI every day", no_failure))
    return expected


# ---- 2. persistent vs rebuilt stochastic clearing -----------------------------------------------------


class _Recorder:
    """Stands in for a `StochasticDayAhead`: records the inputs of each ``clear_day`` call, solves nothing."""

    def __init__(self) -> None:
        self.days: list[tuple[list[Any], Any, Any, Any]] = []

    def clear_day(self, bids: Any, scenarios: Any, up: Any, down: Any, *, measures: bool = True) -> None:
        self.days.append((list(bids), scenarios, up, down))


def day_inputs(n_days: int, run_days: int) -> tuple[list[tuple[list[Any], Any, Any, Any]], Any]:
    """The run's bids and scenarios of its first ``n_days`` days, and its `DayAheadMarket`."""
    scenario = effective(load_scenario(STOCHASTIC_YAML), days=run_days)
    net, fleet, _, _, events = build_models(scenario)
    market = build_market(scenario, net, fleet, events)
    assert market is not None and market.design == "stochastic"
    day_ahead = market.model
    recorder = _Recorder()
    day_ahead.model = recorder  # the market's own clearing core, replaced on this instance only
    for d in range(n_days):
        day_ahead.clear_day(d * day_ahead.steps_per_day)
    return recorder.days, day_ahead


def _rel(a: float, b: float) -> float:
    if a == b or (np.isnan(a) and np.isnan(b)):  # equal infinities, or failed both (counted apart)
        return 0.0
    if np.isnan(a) or np.isnan(b):
        return np.inf
    return abs(a - b) / max(abs(a), abs(b), 1.0)


def part_compare(
    args: argparse.Namespace, run_cost: np.ndarray | None, results: list[tuple[str, bool]]
) -> None:
    """Time one persistent StochasticDayAhead against one built per day, and RP alone."""
    n = args.compare_days
    print(
        f"\n== 2. stochastic clearing, persistent vs rebuilt: {n} days of "
        f"{STOCHASTIC_YAML.relative_to(ROOT)} =="
    )
    t0 = time.perf_counter()
    days, day_ahead = day_inputs(n, max(args.days, n))
    prep_s = time.perf_counter() - t0
    n_t = day_ahead.steps_per_day
    bids0, scen0, up0, down0 = days[0]
    n_d, n_s = len(bids0[0].demand_mw), len(bids0[0].supply_max_mw)
    lp = StochasticDayAhead(n_t, n_d, n_s).problem(bids0, scen0, up0, down0)
    n_col = lp.n_x + lp.n_scenarios * lp.n_y
    n_row = lp.m1 + lp.n_scenarios * lp.m2
    print(
        f"day: {n_t} hours, {n_d} demand steps ({int(scen0.uncertain_demand.sum())} uncertain), {n_s} supply "
        f"steps ({int(scen0.uncertain_supply.sum())} uncertain), {scen0.n_scenarios} scenarios"
    )
    print(f"extensive form (RP): {n_col} columns, {n_row} rows, {_nnz(lp)} nonzeros")
    print(f"inputs of {n} days drawn as the run draws them: {prep_s:.1f} s (not timed below)")

    persistent, rp_only = StochasticDayAhead(n_t, n_d, n_s), StochasticDayAhead(n_t, n_d, n_s)
    t_pers, t_fresh, t_rp = [], [], []
    worst = {"expected_cost": 0.0, "vss": 0.0, "evpi": 0.0}
    worst_rp, not_optimal, pers_cost = 0.0, 0, []
    for bids, scen, up, down in days:
        t0 = time.perf_counter()
        a = persistent.clear_day(bids, scen, up, down, measures=True)
        t_pers.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b = stochastic.clear_day(bids, scen, up, down, measures=True)
        t_fresh.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        c = rp_only.clear_day(bids, scen, up, down, measures=False)
        t_rp.append(time.perf_counter() - t0)
        not_optimal += sum(x.status != "optimal" for x in (a, b, c))
        for key in worst:
            worst[key] = max(worst[key], _rel(getattr(a, key), getattr(b, key)))
        worst_rp = max(worst_rp, _rel(a.expected_cost, c.expected_cost))
        pers_cost.append(a.expected_cost * day_ahead.dt_h)

    pers, fresh, rp = _ms(t_pers), _ms(t_fresh), _ms(t_rp)
    rest = slice(1, None) if n > 1 else slice(None)
    med_a, med_b, med_c = (float(np.median(x[rest])) for x in (pers, fresh, rp))
    print(f"first day (builds the persistent instances): persistent {pers[0]:.1f} ms, RP only {rp[0]:.1f} ms")
    print(
        f"(a) persistent, with VSS/EVPI : median {med_a:.1f} ms/day, "
        f"p95 {np.percentile(pers[rest], 95):.1f} ms"
    )
    print(
        f"(b) rebuilt each day, VSS/EVPI: median {med_b:.1f} ms/day, "
        f"p95 {np.percentile(fresh[rest], 95):.1f} ms"
    )
    print(
        f"(c) persistent, RP only       : median {med_c:.1f} ms/day, p95 {np.percentile(rp[rest], 95):.1f} ms"
    )
    print(f"speed-up of the persistent model, (b)/(a): {med_b / med_a:.2f}x")
    print(f"cost of VSS and EVPI (WS, EV, EEV solves), (a)/(c): {med_a / med_c:.2f}x")
    print(
        f"HiGHS instance builds: persistent {persistent.solver.n_builds} over {n} days, "
        f"RP only {rp_only.solver.n_builds}, rebuilt {3 * n}"
    )
    print(
        f"max relative difference (a) vs (b): expected cost {worst['expected_cost']:.1e}, "
        f"VSS {worst['vss']:.1e}, EVPI {worst['evpi']:.1e}"
    )
    print(f"max relative difference (a) vs (c): expected cost {worst_rp:.1e}")
    print(f"non-optimal clearings: {not_optimal}")
    if run_cost is not None:
        k = min(len(run_cost), n)
        diff = max((_rel(x, y) for x, y in zip(run_cost[:k], pers_cost[:k], strict=True)), default=0.0)
        print(f"persistent (a) vs the run's /market/day/expected_cost, first {k} days: max rel. {diff:.1e}")
    same = max(*worst.values(), worst_rp) <= SAME_REL and not_optimal == 0
    results.append((f"persistent = rebuilt clearing (expected cost, VSS, EVPI, {SAME_REL:g} rel.)", same))


def _nnz(lp: Any) -> int:
    """Nonzeros of the extensive form: A, and the T and W blocks of every scenario."""
    return int(lp.A.nnz + sum(lp.T_of(s).nnz + lp.W_of(s).nnz for s in range(lp.n_scenarios)))


# ---- 3. ADMM vs the uniform auction -------------------------------------------------------------------


def part_admm(args: argparse.Namespace, out_dir: Path, results: list[tuple[str, bool]]) -> None:
    """Run the ADMM scenario; every interval's bids are also cleared by the central uniform auction."""
    print(
        f"\n== 3. ADMM clearing vs the uniform auction: {ADMM_YAML.relative_to(ROOT)}, "
        f"{args.admm_days} days =="
    )
    # The same bids go to both: comparing two runs would compare diverging battery trajectories
    # (awards equal within the ADMM tolerance leave slightly different states of charge).
    central: dict[tuple[int, int], UniformAuction] = {}
    pairs: list[tuple[float, float, float, float]] = []  # ADMM, central: price, welfare
    seconds = {"admm": 0.0, "uniform": 0.0}
    solve = ADMMClearing.clear

    def clear_both(self: ADMMClearing, bids: Any, price0: float | None = None) -> Any:
        t0 = time.perf_counter()
        got = solve(self, bids, price0)
        t1 = time.perf_counter()
        key = (len(bids.demand_mw), len(bids.supply_max_mw))
        if key not in central:
            central[key] = UniformAuction(*key)
            central[key].clear(bids)  # the first solve loads the model into HiGHS: not timed
        t2 = time.perf_counter()
        ref = central[key].clear(bids)
        seconds["admm"] += t1 - t0
        seconds["uniform"] += time.perf_counter() - t2
        if got.status == "optimal" and ref.status == "optimal":
            pairs.append((got.price_per_mwh[0], ref.price_per_mwh[0], got.welfare, ref.welfare))
        return got

    ADMMClearing.clear = clear_both  # type: ignore[method-assign]
    try:
        run_a = cosim.run(ADMM_YAML, days=args.admm_days, out=out_dir / "admm.h5")
    finally:
        ADMMClearing.clear = solve  # type: ignore[method-assign]
    with h5py.File(run_a.path) as a:
        it = a["market/admm_iterations"][:]
        msg = a["market/admm_messages"][:]
        ok_a = a["market/ok"][:]
    print(f"intervals: {run_a.n_steps}; wall time {run_a.wall_s:.1f} s")
    print(
        f"ADMM iterations per interval: mean {it.mean():.1f}, median {np.median(it):.0f}, "
        f"p95 {np.percentile(it, 95):.0f}, max {it.max()} (interval {int(np.argmax(it))})"
    )
    print(f"ADMM messages per interval: mean {msg.mean():.0f}; total {int(msg.sum()):,}")
    print(f"failed clearings (intervals): ADMM {run_a.n_market_failed} (file: {int((~ok_a).sum())})")
    ms_a, ms_u = (1e3 * seconds[k] / run_a.n_steps for k in ("admm", "uniform"))
    print(f"clearing time per interval, same bids: ADMM {ms_a:.2f} ms, uniform auction {ms_u:.2f} ms")
    print(f"ADMM / uniform clearing time: {ms_a / ms_u:.2f}x")
    if pairs:
        pa, pu, wa, wu = np.array(pairs).T
        dp = float(np.max(np.abs(pa - pu)))
        dw = np.abs(wa - wu)
        big = np.abs(wu) > WELFARE_ABS
        rel_w = float(np.max(dw[big] / np.abs(wu[big]))) if big.any() else 0.0
        welfare_ok = bool(np.all(dw <= WELFARE_REL * np.abs(wu) + WELFARE_ABS))
        n_price_off = int((np.abs(pa - pu) > PRICE_TOL).sum())
    else:
        dp, rel_w, welfare_ok, n_price_off, dw = np.inf, np.inf, False, 0, np.full(1, np.inf)
    print(f"intervals where both cleared: {len(pairs)} of {run_a.n_steps}")
    print(
        f"max |price difference| ADMM vs uniform: {dp:.2e} $/MWh "
        f"({n_price_off} intervals > {PRICE_TOL} $/MWh)"
    )
    print(
        f"max relative welfare difference ADMM vs uniform: {rel_w:.2e} (max absolute {float(dw.max()):.2e} $)"
    )
    results.append((f"ADMM price within {PRICE_TOL} $/MWh of the uniform auction", dp <= PRICE_TOL))
    results.append((f"ADMM welfare within {WELFARE_REL:g} (relative) of the uniform auction", welfare_ok))
    results.append(("ADMM run: no failed clearing", run_a.n_market_failed == 0 and bool(ok_a.all())))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["all", "stochastic", "compare", "admm"], default="all")
    ap.add_argument("--days", type=int, default=DAYS_PER_YEAR, help="days of the stochastic run (part 1)")
    ap.add_argument("--compare-days", type=int, default=30, help="days cleared in part 2")
    ap.add_argument("--admm-days", type=int, default=30, help="days of the ADMM and uniform runs (part 3)")
    ap.add_argument(
        "--keep", type=Path, default=None, help="write the HDF5 files here (else a temporary dir)"
    )
    args = ap.parse_args(argv)
    if min(args.days, args.compare_days, args.admm_days) < 1:
        ap.error("--days, --compare-days and --admm-days must be >= 1")
    logging.getLogger("pandapower").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")

    results: list[tuple[str, bool]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep if args.keep is not None else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        run_cost = None
        if args.part in ("all", "stochastic"):
            run_cost = part_stochastic(args, out_dir, results)
        if args.part in ("all", "compare"):
            part_compare(args, run_cost, results)
        if args.part in ("all", "admm"):
            part_admm(args, out_dir, results)
    print("\n== summary ==")
    for label, ok in results:
        print(f"{_verdict(ok)}  {label}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
