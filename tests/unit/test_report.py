"""Tests for cosim.analysis.report on a synthetic HDF5 run file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from cosim.analysis.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAN_STEPS = (5, 17)


def _ds(g: h5py.Group, name: str, data: object, units: str = "-") -> None:
    """Create a dataset with a units attribute."""
    g.create_dataset(name, data=data).attrs["units"] = units


def _make_run(path: Path, t: int = 48, nan_steps: tuple[int, ...] = NAN_STEPS) -> Path:
    """Synthesise a run file in the fixed HDF5 layout (6 buses, 5 lines, 1 trafo, 8 agents)."""
    rng = np.random.default_rng(0)
    n_bus, n_line = 6, 5
    time = 1_704_067_200 + 3600 * np.arange(t, dtype=np.int64)
    vm = 1.0 + 0.04 * rng.standard_normal((t, n_bus))
    va = rng.standard_normal((t, n_bus))
    line = 100 * rng.random((t, n_line)) + 20
    trafo = 90 * rng.random((t, 1))
    losses = rng.random(t)
    imp = 2 * rng.standard_normal(t)
    conv = np.ones(t, dtype=bool)
    for k in nan_steps:
        if k < t:
            for a in (vm, va, line, trafo):
                a[k] = np.nan
            losses[k] = imp[k] = np.nan
            conv[k] = False
    kinds = [b"load", b"load", b"load", b"sgen", b"pv", b"battery", b"battery", b"ev"]
    p = rng.standard_normal((t, len(kinds)))
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update(
            scenario_yaml="name: demo\nnote: <b>&</b>\n",
            seed=7,
            versions=json.dumps({"numpy": np.__version__}),
            code_version="test",
            name="demo",
            step_s=3600,
        )
        _ds(f, "time", time, "s")
        _ds(f, "grid/bus/vm_pu", vm, "pu")
        _ds(f, "grid/bus/va_degree", va, "degree")
        _ds(f, "grid/bus/name", np.array([f"bus{i}".encode() for i in range(n_bus)]))
        _ds(f, "grid/bus/vn_kv", np.array([20.0, 0.4, 0.4, 0.4, 0.4, 0.4]), "kV")
        _ds(f, "grid/bus/index", np.arange(10, 10 + n_bus))
        _ds(f, "grid/line/loading_percent", line, "%")
        _ds(f, "grid/line/name", np.array([f"line{i}" for i in range(n_line)], dtype=s))
        _ds(f, "grid/line/from_bus", np.array([11, 12, 12, 11, 15]))
        _ds(f, "grid/line/to_bus", np.array([12, 13, 14, 15, 13]))
        _ds(f, "grid/trafo/loading_percent", trafo, "%")
        _ds(f, "grid/trafo/name", np.array([b"trafo0"]))
        _ds(f, "grid/trafo/hv_bus", np.array([10]))
        _ds(f, "grid/trafo/lv_bus", np.array([11]))
        _ds(f, "grid/losses_mw", losses, "MW")
        _ds(f, "grid/import_mw", imp, "MW")
        _ds(f, "grid/converged", conv)
        _ds(f, "agents/p_mw", p, "MW")
        _ds(f, "agents/q_mvar", 0.1 * p, "Mvar")
        _ds(f, "agents/name", np.array([f"a{i}" for i in range(len(kinds))], dtype=s))
        _ds(f, "agents/bus", np.array([11, 12, 13, 14, 15, 13, 14, 15]))
        _ds(f, "agents/kind", np.array(kinds))
        _ds(f, "agents/soc_mwh", rng.random((t, 2)), "MWh")
        _ds(f, "agents/storage_name", np.array([b"a5", b"a6"]))
    return path


def _summary(html_path: Path) -> dict[str, str]:
    """Parse the summary table rows into {header: cell text}."""
    text = html_path.read_text(encoding="utf-8")
    return dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", text))


def _first_float(s: str) -> float:
    """Return the first number in a string."""
    m = re.search(r"-?\d+\.?\d*", s)
    assert m is not None, s
    return float(m.group())


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    """A 48-step synthetic run with two failed steps."""
    return _make_run(tmp_path / "demo.h5")


def test_report_writes_html_and_pngs(run_file: Path) -> None:
    """write_report creates index.html and every referenced PNG exists and is a valid PNG."""
    html_path = write_report(run_file)
    assert html_path == run_file.with_name("demo_report") / "index.html"
    srcs = re.findall(r'<img src="([^"]+)"', html_path.read_text(encoding="utf-8"))
    assert len(srcs) >= 5
    for src in srcs:
        png = html_path.parent / src
        assert png.stat().st_size > 1000
        assert png.read_bytes()[:8] == PNG_MAGIC


def test_summary_values_match_independent_computation(run_file: Path) -> None:
    """Summary reports non-converged count, min voltage and net import energy correctly."""
    rows = _summary(write_report(run_file, run_file.parent / "out"))
    with h5py.File(run_file) as f:
        vm = f["grid/bus/vm_pu"][()]
        imp = f["grid/import_mw"][()]
        nonconv = int((~f["grid/converged"][()]).sum())
    assert int(rows["Non-converged steps"]) == nonconv == len(NAN_STEPS)
    assert _first_float(rows["Min voltage (pu)"]) == pytest.approx(np.nanmin(vm), abs=1e-4)
    assert _first_float(rows["Total import (net)"]) == pytest.approx(np.nansum(imp), abs=1e-3)
    exported = -np.nansum(np.minimum(imp, 0))
    assert _first_float(rows["Export (negative part)"]) == pytest.approx(exported, abs=1e-3)


def test_yaml_is_escaped_in_details_block(run_file: Path) -> None:
    """The scenario YAML appears HTML-escaped inside a <details><pre> block."""
    text = write_report(run_file).read_text(encoding="utf-8")
    assert "<details>" in text and "&lt;b&gt;&amp;&lt;/b&gt;" in text and "<b>&</b>" not in text


def test_single_step_file(tmp_path: Path) -> None:
    """A run with T=1 produces a report without errors."""
    html_path = write_report(_make_run(tmp_path / "one.h5", t=1, nan_steps=()))
    assert _summary(html_path)["Steps"] == "1"
    assert all((html_path.parent / s).exists() for s in re.findall(r'src="([^"]+)"', html_path.read_text()))


def test_all_nan_run(tmp_path: Path) -> None:
    """A run where every grid step failed still yields a report with n/a extremes."""
    path = _make_run(tmp_path / "bad.h5", t=4, nan_steps=(0, 1, 2, 3))
    rows = _summary(write_report(path))
    assert rows["Non-converged steps"] == "4"
    assert rows["Min voltage (pu)"] == "n/a"
