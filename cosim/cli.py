"""The ``cosim`` command: run, sweep, validate, schema, report, verify-ledger, train.

A mistake of the user's (bad YAML, missing file) ends with a message and exit code 2 (1 for a run
that stopped), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any


def _parser() -> argparse.ArgumentParser:
    from cosim import __version__

    parser = argparse.ArgumentParser(prog="cosim", description="Transactive-energy co-simulation")
    parser.add_argument("--version", action="version", version=f"cosim {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log what the models do (-vv: debug messages too)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario and write its HDF5 file")
    run.add_argument("scenario", type=Path, help="scenario YAML file")
    length = run.add_mutually_exclusive_group()
    length.add_argument("--days", type=float, help="run this many days instead of the scenario's period")
    length.add_argument("--steps", type=int, help="run this many steps instead of the scenario's period")
    run.add_argument("--out", type=Path, help="HDF5 file to write (default: output.path)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its checkpoint <out>.ckpt (same scenario, seed and code)",
    )
    run.add_argument("--seed", type=int, help="override the scenario seed")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--report", action="store_true", help="write the report when the run ends")
    run.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the cache of parsed SimBench nets"
    )

    sweep = sub.add_parser("sweep", help="run every run of a study file on Dask; write DIR/summary.csv")
    sweep.add_argument("study", type=Path, help="study YAML file (base scenario, factors, seeds)")
    sweep.add_argument("--out", type=Path, help="output directory (default: results/<study name>)")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    where.add_argument("--scheduler", help="address of an existing Dask scheduler, e.g. tcp://host:8786")
    span = sweep.add_mutually_exclusive_group()
    span.add_argument("--days", type=float, help="run every run for this many days")
    span.add_argument("--steps", type=int, help="run every run for this many steps")
    sweep.add_argument(
        "--transfer", action="store_true", help="workers send each file back (no shared filesystem needed)"
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--report", action="store_true", help="write the study report when the sweep ends")

    validate = sub.add_parser("validate", help="check scenario files; report every problem")
    validate.add_argument("scenarios", type=Path, nargs="+", help="scenario YAML files")

    sub.add_parser("schema", help="print the scenario JSON Schema (for editor completion)")

    report = sub.add_parser(
        "report",
        help="write figures and an HTML page for a run; several runs: also compare them; a sweep "
        "directory: the study report",
    )
    report.add_argument("results", type=Path, nargs="+", help="HDF5 file(s) of runs, or one sweep directory")
    report.add_argument(
        "--out",
        type=Path,
        help="directory (default: <file stem>_report beside each file); with several files each report goes "
        "into DIR/<stem>/ and the comparison into DIR (default: comparison_report/ beside the first file); "
        "for a sweep directory default SWEEP/report/",
    )
    train = sub.add_parser(
        "train", help="train a learning bidder (cross-entropy search) for one agent; write its policy file"
    )
    train.add_argument("scenario", type=Path, help="scenario YAML file")
    train.add_argument("--agent", required=True, help="agent name (as in /agents/name)")
    train.add_argument("--episodes", type=int, default=600, help="training episodes (default 600)")
    train.add_argument("--episode", choices=("day", "week"), default="day", help="episode length")
    train.add_argument("--start-day", type=int, help="train on this day only (default: days drawn at random)")
    train.add_argument("--seed", type=int, default=0, help="seed of the search and the episode days")
    train.add_argument("--soc-bins", type=int, default=1, help="state-of-charge bins of the policy table")
    train.add_argument("--out", type=Path, default=Path("policy.json"), help="policy file (JSON)")
    verify = sub.add_parser(
        "verify-ledger",
        help="re-check a run's stored chain: hashes, signatures, certificates, receipts (re-executed)",
    )
    verify.add_argument("results", type=Path, help="HDF5 file of a run with a ledger")
    verify.add_argument(
        "--keep-steps", type=_natural, metavar="N",
        help="hold the contract state of the last N delivery intervals only (bounded memory for long chains; "
        "default: all)",
    )  # fmt: skip
    cache = sub.add_parser("cache", help="the cache of parsed SimBench nets: where it is, or clear it")
    cache.add_argument("action", choices=("dir", "clear"), help="dir: print its directory; clear: empty it")
    return parser


def _natural(text: str) -> int:
    """A whole number >= 0 (argparse's type: anything else exits 2 with a message)."""
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _run(args: argparse.Namespace) -> int:
    import logging

    from cosim.overrides import effective, override_notes
    from cosim.scenario import load_scenario
    from cosim.world import run

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # a stopped run leaves mosaik's tasks pending
    if args.no_cache:
        from cosim.models.grid import netcache

        os.environ[netcache.ENV_OFF] = "1"
    scenario = load_scenario(args.scenario)
    for note in override_notes(scenario, effective(scenario, steps=args.steps, days=args.days)):
        print(f"note: {note}", file=sys.stderr)
    summary = run(
        scenario, days=args.days, steps=args.steps, seed=args.seed, out=args.out, progress=not args.quiet,
        resume=args.resume,
    )  # fmt: skip
    share = 100 * summary.power_flow_s / summary.wall_s if summary.wall_s else 0.0
    print(
        f"wrote {summary.path}: {summary.n_steps} steps in {summary.wall_s:.1f} s "
        f"({summary.power_flow_s:.1f} s in the power flow, {share:.0f} %); "
        f"{summary.n_not_converged} step(s) without a converged power flow"
        + (
            f"; market clearing {summary.market_s:.1f} s, {summary.n_market_failed} failed clearing(s)"
            if summary.market_s
            else ""
        )
        + (f"; ledger {summary.ledger_s:.1f} s" if summary.ledger_s else "")
        + (
            f" in its worker process (the run waited {summary.ledger_wait_s:.1f} s for it)"
            if summary.ledger_wait_s is not None
            else ""
        )
        + (f"; {len(summary.warnings)} warning(s)" if summary.warnings else "")
    )
    for note in summary.warnings:
        print(f"warning: {note}", file=sys.stderr)
    if args.report:
        from cosim.analysis.report import write_report

        print(f"report: {write_report(summary.path)}")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from cosim.dask_sweep import sweep

    try:
        df = sweep(args.study, out=args.out, workers=args.workers, scheduler=args.scheduler, days=args.days,
                   steps=args.steps, transfer=args.transfer, progress=not args.quiet, log=print)  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted: finished runs are intact and in the summary; run the same command to finish the "
              "rest", file=sys.stderr)  # fmt: skip
        return 130
    out = Path(df.attrs["out"])
    failed = df[df["status"] != "ok"]
    print(
        f"{len(df) - len(failed)} of {len(df)} runs ok ({df.attrs['ran']} run now, {df.attrs['skipped']} "
        f"skipped) in {df.attrs['wall_s']:.1f} s; summary {out / 'summary.csv'} and summary.parquet"
    )
    for run_id, error in zip(failed["run_id"], failed["error"], strict=True):
        print(f"  failed {run_id}: {' '.join(str(error).split())[:300] or 'no error recorded'}")
    if args.report:
        from cosim.analysis.study_report import write_study_report

        print(f"report: {write_study_report(out)}")
    return 1 if len(failed) else 0


def _validate(args: argparse.Namespace) -> int:
    from cosim.errors import ScenarioError
    from cosim.scenario import load_scenario

    status = 0
    for path in args.scenarios:
        try:
            s = load_scenario(path)
        except ScenarioError as exc:
            print(exc, file=sys.stderr)
            status = 2
            continue
        print(f"{path}: ok ({s.name}: {s.time.n_steps} steps of {s.time.step_s} s, {_what(s)})")
    return status


def _what(s: Any) -> str:
    """One line on what a scenario simulates."""
    if s.grid is None:
        return f"ledger alone: {s.ledger.consensus} on {s.ledger.workload.tx_per_s} tx/s"
    parts = ("market", "ledger", "emissions", "equity", "privacy")
    extra = "".join(f", {part}" for part in parts if getattr(s, part) is not None)
    return f"grid {s.grid.source}{extra}"


def _schema(args: argparse.Namespace) -> int:
    from cosim.scenario import Scenario

    print(json.dumps(Scenario.model_json_schema(), indent=2))
    return 0


def reading(path: Any) -> Any:
    """Any failure to read ``path`` in the block becomes one ResultsError (exit 1, no traceback)."""
    from cosim.results import reading as guard

    return guard(path)


def _report(args: argparse.Namespace) -> int:
    from cosim.analysis.report import compare_runs, write_report
    from cosim.results import open_h5, stale_partial

    paths: list[Path] = args.results
    if len(paths) == 1 and paths[0].is_dir():
        from cosim.analysis.study_report import write_study_report

        print(f"study report: {write_study_report(paths[0], args.out)}")
        return 0
    for path in paths:
        open_h5(path).close()  # missing, a directory, not HDF5: one message
        stale = stale_partial(path)
        if stale is not None:
            print(f"warning: {stale}", file=sys.stderr)
    if len(paths) == 1:
        with reading(paths[0]):
            print(f"report: {write_report(paths[0], args.out)}")
        return 0
    used: set[str] = set()
    for path in paths:
        sub = path.stem
        while sub in used:  # same stem from different folders: keep the reports apart
            sub += "_"
        used.add(sub)
        with reading(path):
            print(f"report: {write_report(path, None if args.out is None else args.out / sub)}")
    out = args.out if args.out is not None else paths[0].parent / "comparison_report"
    with reading(", ".join(map(str, paths))):
        print(f"comparison: {compare_runs(paths, out)}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from cosim.analysis.learning import learning_curve_figure
    from cosim.learn import train_cem
    from cosim.rl import MarketEnv

    env = MarketEnv(args.scenario, agent=args.agent, episode=args.episode, start_day=args.start_day)
    policy, curve = train_cem(env, episodes=args.episodes, seed=args.seed, n_soc_bins=args.soc_bins)
    path = policy.save(args.out)
    fig = learning_curve_figure(curve, population=policy.meta["population"], title=f"{args.agent}")
    png = path.with_suffix(".png")
    fig.savefig(png)
    n = policy.meta["population"]
    print(
        f"wrote {path} and {png}: {len(curve)} episodes, best episode {max(curve):.4g} $, "
        f"last iteration mean {sum(curve[-n:]) / n:.4g} $"
    )
    return 0


def _verify_ledger(args: argparse.Namespace) -> int:
    from cosim.results import open_h5, verify_ledger

    open_h5(args.results).close()  # missing, a directory, not HDF5: one message
    with reading(args.results):
        ok, problem, n_blocks, n_tx = verify_ledger(args.results, args.keep_steps)
    if ok:
        import h5py

        with h5py.File(args.results, "r") as f:
            genesis = f["ledger/blocks/hash"].asstr()[0]
            complete = bool(f.attrs.get("complete", False))
        print(
            f"{args.results}: ledger intact ({n_blocks} blocks and {n_tx} transactions re-hashed, signatures "
            f"and certificates checked against the genesis keys, receipts re-executed); genesis {genesis}"
            + ("" if complete else "; the run is incomplete: no signed head, so a cut end goes unnoticed")
        )
        return 0
    print(f"{args.results}: ledger ALTERED: {problem}", file=sys.stderr)
    return 1


def _cache(args: argparse.Namespace) -> int:
    from cosim.models.grid import netcache

    if args.action == "dir":
        print(netcache.cache_dir())
        return 0
    removed = netcache.clear()
    print(f"removed {len(removed)} file(s) from {netcache.cache_dir()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cosim`` console script."""
    from cosim.errors import CosimError

    args = _parser().parse_args(argv)
    if args.verbose:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose > 1 else logging.INFO,
            format="%(asctime)s %(name)s %(levelname)s: %(message)s",
        )
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    handler = {
        "run": _run,
        "sweep": _sweep,
        "validate": _validate,
        "schema": _schema,
        "report": _report,
        "verify-ledger": _verify_ledger,
        "train": _train,
        "cache": _cache,
    }[args.command]
    try:
        return handler(args)
    except CosimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if getattr(exc, "exit_now", False):  # a failed write: HDF5's cleanup at exit would crash
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exc.exit_code)
        return exc.exit_code
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
