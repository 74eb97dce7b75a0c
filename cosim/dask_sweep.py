"""Run a study's runs on Dask (a LocalCluster by default, or an existing cluster) and write its summary.

Each run is one Dask task that calls :func:`cosim.run` on a worker and writes ``DIR/runs/<run_id>.h5``
(through ``.partial`` and a rename, so a file at its final name is whole); the task returns the run's
headline numbers (:mod:`cosim.analysis.metrics`), and the client writes ``DIR/runs/<run_id>.json`` and
``DIR/summary.csv`` / ``summary.parquet``. A run whose file is complete and whose stored scenario hashes
as planned is skipped on a re-run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import yaml

from cosim.errors import CosimError, ResultsError
from cosim.machine import usable_cores
from cosim.study import Plan, Run, plan_study, scenario_hash

STATUS_COLUMNS = ("seed", "status", "error", "wall_s")
POLL_S = 0.25  # progress-bar refresh while waiting for runs
CONNECT_TIMEOUT_S = 15


def metric_names() -> list[str]:
    """The headline-metric columns of a summary."""
    from cosim.analysis.metrics import METRICS

    return list(METRICS)


@dataclass(frozen=True)
class Task:
    """What a worker needs for one run (pickled to it)."""

    run: Run
    path: str  # final HDF5 path (shared filesystem), or the file name when transferred
    steps: int | None
    days: float | None
    transfer: bool


def run_task(task: Task) -> dict[str, Any]:
    """Run one study run on a worker; never raises: a failure comes back as status 'failed' and its error."""
    from cosim.analysis.metrics import headline
    from cosim.results import open_results
    from cosim.world import run

    t0 = time.perf_counter()
    row: dict[str, Any] = {"status": "ok", "error": "", "host": socket.gethostname()}
    tmp = Path(tempfile.mkdtemp(prefix="cosim-sweep-")) if task.transfer else None
    out = tmp / Path(task.path).name if tmp is not None else Path(task.path)
    try:
        summary = run(task.run.scenario, steps=task.steps, days=task.days, seed=task.run.seed, out=out)
        row["wall_s"] = summary.wall_s
        with open_results(summary.path) as res:
            row |= headline(res.file)
        if tmp is not None:
            row["file_bytes"] = summary.path.read_bytes()
    except Exception as exc:  # any failure of a run is data: recorded, the sweep goes on
        message = str(exc) if isinstance(exc, CosimError) else f"{type(exc).__name__}: {exc}"
        row |= {"status": "failed", "error": message, "wall_s": time.perf_counter() - t0}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return row


def _stored_hash(path: Path) -> str | None:
    """Scenario hash of a complete run file; None when missing, partial or unreadable."""
    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get("complete", False)):
                return None
            text = f.attrs.get("scenario_yaml", "")
            return scenario_hash(text.decode() if isinstance(text, bytes) else str(text))
    except (OSError, KeyError):
        return None


def _finished_row(run: Run, path: Path) -> dict[str, Any]:
    """Row of a run skipped because its file is complete: from its sidecar, else recomputed from the file."""
    from cosim.analysis.metrics import headline
    from cosim.results import open_results

    sidecar = path.with_suffix(".json")
    try:
        saved = json.loads(sidecar.read_text())
        if saved.get("hash") == run.hash and saved.get("status") == "ok":
            return {k: saved.get(k, np.nan) for k in ("status", "error", "wall_s", *metric_names())}
    except (OSError, ValueError):
        pass
    with open_results(path) as res:
        return {"status": "ok", "error": "", "wall_s": np.nan} | headline(res.file)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a .partial file and a rename: never a half-written file at the final name."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _record(run: Run, row: dict[str, Any], path: Path) -> dict[str, Any]:
    """Store what a worker returned: the file (when transferred) and the sidecar JSON; return the row."""
    data = row.pop("file_bytes", None)
    if data is not None:
        _write_atomic(path, data)
    side = {"run_id": run.run_id, "seed": run.seed, "hash": run.hash, "values": run.values} | row
    text = json.dumps(side, indent=1, default=lambda v: None if v is None else str(v), allow_nan=True)
    _write_atomic(path.with_suffix(".json"), text.encode())
    return row


def _columns(plan: Plan) -> list[str]:
    return ["run_id", *plan.keys, *STATUS_COLUMNS, *metric_names()]


def _frame(plan: Plan, rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The summary: one row per run in plan order, every column present (NaN where a section is absent)."""
    records = []
    for run in plan.runs:
        row = rows.get(run.run_id, {"status": "not run", "error": "", "wall_s": np.nan})
        rec: dict[str, Any] = {"run_id": run.run_id}
        rec |= {
            k: v if isinstance(v, str | int | float | bool) else json.dumps(v, default=str)
            for k, v in run.values.items()
        }
        rec |= {"seed": run.seed, "status": row["status"], "error": row.get("error", "") or ""}
        rec["wall_s"] = row.get("wall_s", np.nan)
        rec |= {k: row.get(k, np.nan) for k in metric_names()}
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=_columns(plan))
    for key in plan.keys:  # parquet needs one type per column
        kinds = {type(v) for v in df[key]}
        if len(kinds) > 1 and not kinds <= {int, float}:
            df[key] = df[key].map(str)
    for col in ("wall_s", *metric_names()):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def write_summary(df: pd.DataFrame, out: Path) -> None:
    """DIR/summary.csv and DIR/summary.parquet, each written atomically."""
    _write_atomic(out / "summary.csv", df.to_csv(index=False).encode())
    tmp = out / "summary.parquet.partial"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / "summary.parquet")


def _write_study(plan: Plan, out: Path) -> None:
    """DIR/study.yaml: the study as run (base resolved to its path), for the report and for the record."""
    spec = plan.study.model_dump(mode="json")
    spec |= {"source": plan.source, "factor_keys": plan.keys, "n_runs": len(plan.runs)}
    _write_atomic(out / "study.yaml", yaml.safe_dump(spec, sort_keys=False).encode())


def _cluster(workers: int | None, scheduler: Any, n_runs: int) -> tuple[Any, Any]:
    """A Dask client and the LocalCluster it runs on (None for an existing cluster)."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            return Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False), None
        except (OSError, TimeoutError) as exc:
            raise CosimError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    cores = usable_cores()
    n = max(1, min(workers or cores, n_runs))
    # Ctrl-C reaches the whole process group: the worker processes inherit an ignored SIGINT, so only
    # this process stops (and closes the cluster) instead of every worker printing a traceback
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            # a run's failure comes back through its future into the summary; what the workers log
            # themselves is noise, e.g. a heartbeat's traceback when Ctrl-C closes the scheduler first
            silence_logs=logging.CRITICAL,
        )
    finally:
        signal.signal(signal.SIGINT, handler)
    return Client(cluster, set_as_default=False), cluster


def _check_workers(client: Any, out: Path, transfer: bool) -> None:
    """Every worker imports cosim and, unless files are transferred, sees the output directory."""

    def probe(path: str) -> tuple[str, bool]:
        import cosim.world  # noqa: F401  (fails where the package is not installed; warms the import)

        return socket.gethostname(), os.path.isdir(path)

    try:
        seen = client.run(probe, str(out))
    except Exception as exc:
        raise CosimError(
            f"a Dask worker cannot import cosim ({exc}): install cosim-te on every worker"
        ) from None
    if not seen:
        raise CosimError("the Dask cluster has no worker")
    blind = [w for w, (_, ok) in seen.items() if not ok]
    if blind and not transfer:
        raise CosimError(
            f"{len(blind)} Dask worker(s) (e.g. {blind[0]}) cannot see {out}: put --out on a filesystem "
            "shared with the workers, or pass --transfer to have each run's file sent back"
        )


class _Progress:
    """One bar over the runs: done, failed, running, ETA."""

    def __init__(self, total: int, show: bool) -> None:
        from tqdm import tqdm

        self.ok = self.failed = self.running = 0
        self.bar = tqdm(total=total, unit="run", desc="runs", dynamic_ncols=True, disable=not show)

    def update(self, ok: int = 0, failed: int = 0, running: int | None = None) -> None:
        self.ok, self.failed = self.ok + ok, self.failed + failed
        self.running = self.running if running is None else running
        self.bar.set_postfix_str(
            f"done {self.ok}, failed {self.failed}, running {self.running}", refresh=False
        )
        self.bar.update(ok + failed)
        if not ok + failed:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _gather(client: Any, tasks: list[Task], rows: dict[str, dict[str, Any]], progress: _Progress) -> None:
    """Submit the tasks and record each result as it arrives."""
    from distributed import as_completed

    run_of, futures = {}, []
    for task in tasks:
        fut = client.submit(
            run_task, task, key=f"cosim-run-{task.run.run_id}-{os.urandom(4).hex()}", pure=False, retries=0
        )
        run_of[fut.key] = task
        futures.append(fut)
    ac = as_completed(futures, loop=client.loop)
    last_poll = 0.0
    while not ac.is_empty():
        batch = ac.next_batch(block=False)
        for fut in batch:
            task = run_of[fut.key]
            try:
                row = fut.result()
            except Exception as exc:  # the worker died (KilledWorker) or the task could not run
                row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "wall_s": np.nan}
            rows[task.run.run_id] = _record(task.run, row, Path(task.path))
        now = time.monotonic()
        if batch or now - last_poll > 1.0:  # assigned to a worker, at most one per worker thread
            last_poll = now
            assigned = sum(1 for keys in client.processing().values() for k in keys if k in run_of)
            n_ok = sum(1 for f in batch if rows[run_of[f.key].run.run_id]["status"] == "ok")
            progress.update(
                ok=n_ok, failed=len(batch) - n_ok, running=min(assigned, sum(client.nthreads().values()))
            )
        if not batch:
            time.sleep(POLL_S)


def sweep(
    study: str | Path | dict[str, Any],
    *,
    out: str | Path | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    days: float | None = None,
    steps: int | None = None,
    transfer: bool = False,
    progress: bool = False,
    log: Any = None,
) -> pd.DataFrame:
    """Run every run of a study on Dask and return its summary (one row per run).

    Parameters
    ----------
    study : study YAML file or mapping (see :func:`cosim.study.plan_study`)
    out : output directory (default ``results/<study name>``)
    workers : LocalCluster worker processes (default: one per core, at most one per run)
    scheduler : address of an existing Dask scheduler (``tcp://host:8786``) or a cluster object
        (``dask_jobqueue.SLURMCluster(...)``, ``LocalCluster``); its workers need cosim installed and,
        unless ``transfer``, ``out`` on a shared filesystem
    days, steps : override the study's run length
    transfer : workers write to a local temporary file and send it back (no shared filesystem needed)
    progress : show a progress bar over the runs on stderr
    log : callable taking one line of text (e.g. ``print``) for what is skipped and started

    Returns
    -------
    pandas.DataFrame
        the summary also written to ``DIR/summary.csv`` and ``DIR/summary.parquet``; ``df.attrs`` has
        ``out``, ``skipped``, ``rerun`` (scenario changed), ``ran``, ``failed`` and ``wall_s``.
        Ctrl-C writes the summary of the runs finished so far (the others 'not run') and re-raises.
    """
    t0 = time.perf_counter()
    say = log or (lambda _line: None)
    plan = plan_study(study, days=days, steps=steps)
    root = Path(out) if out is not None else Path("results") / plan.study.name
    root = root.resolve()
    runs_dir = root / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    _write_study(plan, root)
    rows: dict[str, dict[str, Any]] = {}
    tasks: list[Task] = []
    changed = 0
    for run in plan.runs:
        path = runs_dir / f"{run.run_id}.h5"
        stored = _stored_hash(path) if path.is_file() else None
        if stored == run.hash:
            rows[run.run_id] = _finished_row(run, path)
            continue
        changed += stored is not None or path.is_file()
        tasks.append(Task(run, str(path), plan.study.steps, plan.study.days, transfer))
    skipped = len(plan.runs) - len(tasks)
    say(
        f"{plan.study.name}: {len(plan.runs)} runs; {skipped} skipped (complete, same scenario)"
        + (f", {changed} re-run (scenario changed)" if changed else "")
        + f", {len(tasks)} to run"
    )
    if tasks:
        client, cluster = _cluster(workers, scheduler, len(tasks))
        bar, interrupted = None, False
        try:
            _check_workers(client, root, transfer)
            n_workers = len(client.nthreads())
            link = "" if cluster is None else f"; dashboard {client.dashboard_link}"
            say(f"on {n_workers} Dask worker(s) at {client.scheduler.address}{link}")
            bar = _Progress(len(tasks), progress)
            _gather(client, tasks, rows, bar)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if bar is not None:
                bar.close()
            client.close()
            if cluster is not None:
                cluster.close()
        if interrupted:
            for task in tasks:  # finished on a worker, result not collected: the file is whole
                path = Path(task.path)
                if task.run.run_id not in rows and _stored_hash(path) == task.run.hash:
                    rows[task.run.run_id] = _record(task.run, _finished_row(task.run, path), path)
            write_summary(_frame(plan, rows), root)
            raise KeyboardInterrupt
    df = _frame(plan, rows)
    write_summary(df, root)
    failed = int((df["status"] != "ok").sum())
    df.attrs |= {
        "out": str(root),
        "skipped": skipped,
        "rerun": changed,
        "ran": len(tasks),
        "failed": failed,
        "wall_s": time.perf_counter() - t0,
    }
    return df


def load_study(out: str | Path) -> pd.DataFrame:
    """The summary of a sweep directory (``summary.parquet``, else ``summary.csv``); attrs: the factors."""
    root = Path(out)
    parquet, csv = root / "summary.parquet", root / "summary.csv"
    if parquet.is_file():
        df = pd.read_parquet(parquet)
    elif csv.is_file():
        df = pd.read_csv(csv, keep_default_na=False, na_values=[""])
        df["error"] = df["error"].fillna("").astype(str)
    else:
        raise ResultsError(
            f"{root} has no summary.parquet or summary.csv: not a sweep directory (cosim sweep)"
        )
    spec_path = root / "study.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.is_file() else {}
    known = {"run_id", *STATUS_COLUMNS, *metric_names()}
    df.attrs["factors"] = spec.get("factor_keys") or [c for c in df.columns if c not in known]
    df.attrs["name"] = spec.get("name", root.name)
    return df
