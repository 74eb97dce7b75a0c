"""Benchmark: preventive N-1 security-constrained clearing (SCOPF) against the DC-OPF, on a SimBench grid.

Grid ``1-MV-rural--0-sw`` with every branch outage in the contingency list. Bids as in
``benchmarks/market_clearing.py`` (same seeded prices): every load bids one step (a seeded 30% of loads
inelastic at 1e4 $/MWh, the others elastic at 20-300 $/MWh), every sgen offers its available power at
0-60 $/MWh, the ext_grid up to 1e4 MW at 50 $/MWh; quantities from the SimBench profiles, one row per
hour (every 4th quarter-hour row).

The grid is run in three cases:

* ``operated``: as SimBench ships it, normally-open switches open. The feeders are radial, so every
  line outage islands part of the grid and is excluded; only the two parallel HV/MV transformers are
  secured. SCOPF then costs about what the DC-OPF does.
* ``meshed``: the normally-open switches closed (the feeders form loops), so most line outages are
  secured; on this lightly loaded grid N-1 still never binds (it does not in any hour of the year).
* ``stressed``: meshed, with every load and sgen quantity multiplied by ``--stress`` (3): N-1 binds in
  some intervals and the lazy constraint loop adds rows.

For each case it times, per interval, ``DCOPF.clear`` and ``SCOPF.clear`` on models built once (the first
interval is a warm-up, not timed), and prints median / p95, the build time, the mean solves per
interval and post-contingency rows added, the intervals where security costs something, and the year
(8,760 intervals) extrapolated from the mean. Each SCOPF clearing is checked: optimal, welfare not above
the DC-OPF's, and every post-contingency flow within its limit.
Exit code 0 when every clearing checks and the SCOPF median is under ``TARGET_MS`` and the year under
``TARGET_YEAR_S``, 1 otherwise.

Run from the repository root::

    python benchmarks/scopf.py                      # 200 hourly intervals, the three cases
    python benchmarks/scopf.py --intervals 8759     # the whole year (after the warm-up hour)
    python benchmarks/scopf.py --factor 1.2 --start-hour 4000 --case stressed --stress 4
    python benchmarks/scopf.py --constraints full   # every post-contingency row from the start
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from cosim.models.grid.network import load_network
from cosim.models.market.clearing import Bids
from cosim.models.market.dcopf import DCOPF
from cosim.models.market.network_dc import dc_network
from cosim.models.market.scopf import SCOPF, security_cost

TARGET_MS = 100.0  # per interval, median ("well under a second")
TARGET_YEAR_S = 600.0  # 8,760 intervals
HOURS_PER_YEAR = 8760
ROWS_PER_HOUR = 4  # SimBench profiles are quarter-hourly
INELASTIC_PRICE = 1e4  # $/MWh
EXT_GRID_PRICE = 50.0  # $/MWh
EXT_GRID_MAX_MW = 1e4
CHECK_TOL_MW = 1e-6


def simbench_bids(
    net: Any, seed: int, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, Callable[[int], Bids]]:
    """The bids of ``benchmarks/market_clearing.py`` (same seeded draws): buses and bids of profile row k.

    ``scale`` multiplies every load and sgen quantity (not the ext_grid's offer).
    """
    import simbench

    profiles = simbench.get_absolute_values(net, profiles_instead_of_study_cases=True)
    load_p = scale * profiles[("load", "p_mw")].to_numpy(dtype=float).clip(min=0.0)
    sgen_p = scale * profiles[("sgen", "p_mw")].to_numpy(dtype=float).clip(min=0.0)
    rng = np.random.default_rng(seed)
    loads, sgens = net.load[net.load.in_service], net.sgen[net.sgen.in_service]
    load_cols = net.load.index.get_indexer(loads.index)
    sgen_cols = net.sgen.index.get_indexer(sgens.index)
    n_d, n_g = len(loads), len(sgens)
    inelastic = rng.random(n_d) < 0.3
    demand_price = np.where(inelastic, INELASTIC_PRICE, rng.uniform(20.0, 300.0, n_d))
    supply_price = np.r_[rng.uniform(0.0, 60.0, n_g), EXT_GRID_PRICE]
    eg = net.ext_grid[net.ext_grid.in_service]
    demand_bus = loads.bus.to_numpy(dtype=np.int64)
    supply_bus = np.r_[sgens.bus.to_numpy(dtype=np.int64), eg.bus.to_numpy(dtype=np.int64)[:1]]

    def bids_at(row: int) -> Bids:
        row %= len(load_p)
        return Bids(
            demand_bus=demand_bus,
            demand_mw=load_p[row, load_cols],
            demand_price=demand_price,
            supply_bus=supply_bus,
            supply_max_mw=np.r_[sgen_p[row, sgen_cols], EXT_GRID_MAX_MW],
            supply_price=supply_price,
        )

    return demand_bus, supply_bus, bids_at


def run(net: Any, label: str, args: argparse.Namespace, scale: float = 1.0) -> bool:
    """Benchmark one topology; True when every check and target holds."""
    network = dc_network(net)
    demand_bus, supply_bus, bids_at = simbench_bids(net, args.seed, scale)
    t0 = time.perf_counter()
    dcopf = DCOPF(network, demand_bus, supply_bus)
    build_dc = time.perf_counter() - t0
    t0 = time.perf_counter()
    scopf = SCOPF(
        network, demand_bus, supply_bus, contingency_limit_factor=args.factor, constraints=args.constraints
    )
    build_sc = time.perf_counter() - t0
    print(
        f"\n[{label}] {network.n_bus} buses, {network.n_branch} branches, factor {args.factor}, "
        f"{args.constraints} constraints:"
    )
    print(
        f"  {len(scopf.contingencies)} outages secured, {len(scopf.islanding)} islanding outages excluded"
        + (f" (all but {', '.join(scopf.contingency_names)})" if len(scopf.contingencies) <= 4 else "")
    )
    start = args.start_hour * ROWS_PER_HOUR
    dcopf.clear(bids_at(start))  # warm-up: the first solve of each instance is not timed
    scopf.clear(bids_at(start))
    rows_after_warmup = scopf.n_security_rows
    t_dc, t_sc, rounds, sec_cost = [], [], [], []
    failures, worst_excess = 0, -np.inf
    limit = scopf.factor * network.rate_mw
    for k in range(1, args.intervals + 1):
        bids = bids_at(start + k * ROWS_PER_HOUR)
        t0 = time.perf_counter()
        res_dc = dcopf.clear(bids)
        t_dc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res_sc = scopf.clear(bids)
        t_sc.append(time.perf_counter() - t0)
        rounds.append(scopf.last_rounds)
        if res_sc.status != "optimal" or res_dc.status != "optimal":
            failures += 1
            continue
        sec_cost.append(security_cost(res_sc, res_dc))
        post = scopf.last_post_flow_mw
        if post.size:
            worst_excess = max(worst_excess, float(np.max(np.abs(post) - limit[:, None])))
        worst_excess = max(worst_excess, float(np.max(np.abs(res_sc.line_flow_mw) - network.rate_mw)))

    dc_ms, sc_ms = 1e3 * np.array(t_dc), 1e3 * np.array(t_sc)
    cost = np.array(sec_cost)
    year_s = build_sc + HOURS_PER_YEAR * float(np.mean(t_sc))
    print(f"  build once: DCOPF {1e3 * build_dc:.1f} ms, SCOPF {1e3 * build_sc:.1f} ms")
    print(
        f"  DCOPF clear: median {np.median(dc_ms):.2f} ms, p95 {np.percentile(dc_ms, 95):.2f} ms, "
        f"mean {np.mean(dc_ms):.2f} ms ({len(dc_ms)} intervals)"
    )
    print(
        f"  SCOPF clear: median {np.median(sc_ms):.2f} ms, p95 {np.percentile(sc_ms, 95):.2f} ms, "
        f"mean {np.mean(sc_ms):.2f} ms, max {np.max(sc_ms):.2f} ms"
    )
    print(
        f"  solves per interval: mean {np.mean(rounds):.2f}, max {max(rounds)}; post-contingency rows "
        f"{rows_after_warmup} after the warm-up, {scopf.n_security_rows} at the end"
    )
    binding = cost > 1e-6
    print(
        f"  security cost (DCOPF welfare - SCOPF welfare) > 0 in {int(binding.sum())} of {len(cost)} "
        f"intervals; mean {cost.mean() if len(cost) else float('nan'):.3f} $/h, "
        f"max {cost.max() if len(cost) else float('nan'):.3f} $/h; min {cost.min() if len(cost) else 0:.2e}"
    )
    print(f"  worst flow beyond its limit (pre and post-contingency): {worst_excess:.2e} MW")
    print(f"  year ({HOURS_PER_YEAR} intervals, from the mean, with the build): {year_s:.1f} s")
    ok_checks = failures == 0 and worst_excess <= CHECK_TOL_MW and (len(cost) == 0 or cost.min() >= -1e-6)
    ok_time = np.median(sc_ms) <= TARGET_MS and year_s <= TARGET_YEAR_S
    print(f"  failures {failures}; checks {'PASS' if ok_checks else 'FAIL'}")
    print(
        f"  target median <= {TARGET_MS:.0f} ms and year <= {TARGET_YEAR_S:.0f} s: "
        f"{'PASS' if ok_time else 'FAIL'}"
    )
    return ok_checks and ok_time


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", default="1-MV-rural--0-sw")
    ap.add_argument("--intervals", type=int, default=200)
    ap.add_argument("--start-hour", type=int, default=0, help="first hour of the profiles (warm-up)")
    ap.add_argument("--factor", type=float, default=1.0, help="contingency_limit_factor")
    ap.add_argument("--case", choices=["all", "operated", "meshed", "stressed"], default="all")
    ap.add_argument("--stress", type=float, default=3.0, help="load and sgen multiplier of 'stressed'")
    ap.add_argument(
        "--constraints", choices=["lazy", "full"], default="lazy", help="SCOPF's post-contingency rows"
    )
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    logging.getLogger("pandapower").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")

    net = load_network("simbench", code=args.code)
    print(f"grid {args.code}, {args.intervals} hourly intervals from hour {args.start_hour + 1}")
    ok = True
    if args.case in ("all", "operated"):
        ok &= run(net, "operated: normally-open switches open", args)
    meshed = copy.deepcopy(net)
    n_open = int((~meshed.switch.closed.astype(bool)).sum())
    meshed.switch["closed"] = True
    if args.case in ("all", "meshed"):
        ok &= run(meshed, f"meshed: the {n_open} normally-open switches closed", args)
    if args.case in ("all", "stressed"):
        label = f"stressed: meshed, loads and sgens x{args.stress:g}"
        ok &= run(meshed, label, args, args.stress)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
