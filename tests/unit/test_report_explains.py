"""The report explains: captions, key findings from the numbers, tariff baseline, flagged releases, fixes."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.figure import Figure

from cosim.analysis import common, report, society_report, uncertainty_report
from cosim.analysis.common import fmt, num
from cosim.analysis.society_report import SocietySection, curve_gini, load_society, plot_equity
from cosim.analysis.uncertainty_report import UncertaintySection, load_uncertainty, plot_islanding
from tests.unit.test_report import _make_run
from tests.unit.test_society_report import SURPLUS, _add_society
from tests.unit.test_uncertainty_report import _add

ANALYSIS = Path(report.__file__).parent


def test_numbers_have_separators_and_no_negative_zero() -> None:
    """Thousands separators, '-0.00' written as '0.00', noise below the shown precision as 0, n/a for NaN."""
    assert num(1234567.891, 2, " $") == "1,234,567.89 $"
    assert num(-0.001, 2, " $") == "0.00 $" and num(-1e-11, 2) == "0.00"
    assert fmt(-12345.6, ".1f") == "-12,345.6" and fmt(np.nan, ".2f") == "n/a"
    assert common.power(0.0015) == "1.5 kW" and common.power(2.5) == "2.500 MW"


def test_curve_gini_of_a_known_lorenz_curve() -> None:
    """Gini of the Lorenz curve of 1..5 is 4/15 (population form, as in models/accounting/equity.py)."""
    x = np.arange(1.0, 6.0)
    lorenz = np.column_stack([np.arange(6) / 5, np.concatenate([[0.0], np.cumsum(x)]) / x.sum()])
    assert curve_gini(lorenz) == pytest.approx(4 / 15)


def test_no_import_cycle_between_analysis_modules() -> None:
    """The analysis modules import each other without a cycle; common imports none, sections only common."""

    def local_imports(name: str) -> set[str]:
        tree = ast.parse((ANALYSIS / f"{name}.py").read_text(encoding="utf-8"))
        found: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found |= {node.module} if node.module else {a.name for a in node.names}
        return found

    graph = {p.stem: local_imports(p.stem) for p in ANALYSIS.glob("*.py") if p.stem != "__init__"}
    seen: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in seen:
            return
        for nxt in graph.get(node, set()):
            visit(nxt, (*path, node))
        seen.add(node)

    for module in graph:
        visit(module, ())
    assert graph["common"] == set()
    sections = ("ledger_report", "society_report", "uncertainty_report", "market_power_report")
    for section in sections:
        assert graph[section] == {"common"}, section
    mine = ("common", "report", *sections)
    assert "fmt: skip" not in "".join((ANALYSIS / f"{m}.py").read_text(encoding="utf-8") for m in mine)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A market run with society groups, two households and releases swamped by noise in steps 0-4."""
    tmp = tmp_path_factory.mktemp("explains")
    h5 = _add_society(_make_run(tmp / "s.h5", market="dcopf", name="s"))
    with h5py.File(h5, "a") as f:
        rel = f["privacy/released"]
        rel[0:5, 0] = rel[0:5, 0] + 50.0  # bus 1 consumption, true ~0.5 MWh: error far above 100 %
        names = np.array(["home A"] * 4 + ["home B"] * 4, dtype=object)
        f.create_dataset("agents/household", data=names, dtype=h5py.string_dtype())
    path = report.write_report(h5, tmp / "out")
    return path, path.read_text(encoding="utf-8")


def test_every_figure_captioned_every_section_with_findings(page: tuple[Path, str]) -> None:
    """Each <figure> has an image and a caption; each section heading is followed by its key findings."""
    _, text = page
    figures = re.findall(r"<figure>(.*?)</figure>", text, re.S)
    assert len(figures) >= 16 and len(figures) == text.count("<img ")
    assert all(re.search(r"<figcaption>.{40,}</figcaption>", f, re.S) for f in figures)
    for heading in ("Grid", "Market (dcopf)", "Society (emissions, equity, privacy)"):
        after = text.split(f"<h2>{heading}</h2>")[1]
        assert after.lstrip().startswith("<div class='findings'>"), heading


def test_versions_are_a_table(page: tuple[Path, str]) -> None:
    """The versions attribute is shown as a table of package and version, not as raw JSON."""
    _, text = page
    cell = re.search(r"<tr><th>Versions</th><td>(.*?)</td></tr>\n", text, re.S)
    assert (
        cell is not None and cell.group(1).startswith("<table class='versions'>") and "{" not in cell.group(1)
    )


def test_baseline_findings_count_gainers_and_losers(page: tuple[Path, str]) -> None:
    """The findings count the accounts with a surplus over and under the tariff, and name households."""
    _, text = page
    gain, lose = int((SURPLUS > 0.005).sum()), int((SURPLUS < -0.005).sum())
    assert f"{gain} of {SURPLUS.size} accounts gain and {lose} lose" in text
    by_home = {h: SURPLUS[k : k + 4].sum() for h, k in (("home A", 0), ("home B", 4))}
    best = max(by_home, key=lambda h: by_home[h])
    assert f"By household: {best} gains most ({by_home[best]:,.2f} $)" in text
    assert (page[0].parent / society_report.BASELINE_FIG).stat().st_size > 1000


def test_swamped_releases_flagged(page: tuple[Path, str]) -> None:
    """Releases whose error exceeds 100 % of the true total are counted exactly as computed from the file."""
    path, text = page
    with h5py.File(path.parent.parent / "s.h5") as f:
        true, released = f["privacy/true"][()], f["privacy/released"][()]
        names = [s.decode() if isinstance(s, bytes) else s for s in f["privacy/series_name"][()]]
    cons = np.array(["count" not in n for n in names])
    with np.errstate(invalid="ignore"):
        err = np.nansum(np.abs(released[:, cons] - true[:, cons]), axis=1) / np.abs(true[:, cons]).sum(axis=1)
    evaluated = np.isfinite(released[:, cons]).any(axis=1)
    n_flag = int((err[evaluated] > 1).sum())
    assert n_flag == 5
    assert f"<span class='flag'>{n_flag} of " in text
    assert (path.parent / society_report.PRIVACY_ERROR_FIG).stat().st_size > 1000


def test_lorenz_legend_quotes_the_gini_of_the_curve_drawn(page: tuple[Path, str]) -> None:
    """The Lorenz legend's Gini equals the Gini computed from the curve it draws, not another quantity."""
    path, _ = page
    with h5py.File(path.parent.parent / "s.h5") as f:
        soc = load_society(f)
    assert soc is not None and soc.equity is not None
    fig = plot_equity(soc.equity)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    quoted = float(re.search(r"Gini of this curve (\d\.\d+)", " ".join(labels)).group(1))  # type: ignore[union-attr]
    assert quoted == pytest.approx(curve_gini(soc.equity.lorenz), abs=5e-4)


def test_plot_functions_return_figures(page: tuple[Path, str]) -> None:
    """Sections hand back matplotlib Figures (for notebooks); kW for small losses, depth axis downwards."""
    path, _ = page
    with h5py.File(path.parent.parent / "s.h5") as f:
        d = report._load(f)
        soc = load_society(f)
    assert soc is not None
    grid = report.GridSection(d).figures()
    assert all(isinstance(g.figure, Figure) for g in grid + SocietySection(soc).figures())
    losses = report.plot_losses_import(d)
    small = np.nanmax(np.abs(d["losses"])) < 1
    assert losses.axes[0].get_ylabel() == ("power (kW)" if small else "power (MW)")
    net = report.plot_network(d)
    assert "grey" not in net.axes[0].get_title() or not np.isfinite(d["vm"].col_min).all()
    assert net.axes[0].yaxis_inverted() and min(net.axes[0].get_ylim()) > -1  # depth counted downwards from 0


def test_security_noise_is_zero_and_island_prices_at_midday(tmp_path: Path) -> None:
    """Security cost below half a cent is 0 (no '-0.00'); daily island-timeline prices sit at 12:00 UTC."""
    h5 = _add(_make_run(tmp_path / "u.h5", t=24 * 9, nan_steps=(), market="dcopf", failed=()), "outages")
    with h5py.File(h5, "a") as f:
        cost = np.zeros(24 * 9)
        cost[::2] = -1e-11
        cost[1::2] = 1e-11
        cost[5] = 7.0
        f.create_dataset("market/security_cost", data=cost)
        unc = load_uncertainty(f)
    assert unc is not None and unc.security is not None and unc.outages is not None
    assert np.count_nonzero(unc.security.cost) == 1
    rows = dict(uncertainty_report.security_rows(unc.security))
    assert rows["Security cost (N-1)"].startswith("7.00 $ over 216 intervals")
    assert "in 1 of 216 intervals" in " ".join(UncertaintySection(unc).findings())
    fig = plot_islanding(unc, unc.outages)
    line = fig.axes[0].get_lines()[0]
    x = np.asarray(line.get_xdata()).astype("datetime64[s]")
    assert ((x.astype(np.int64) % 86400) == 43200).all()


def test_comparison_findings_from_the_prices(tmp_path: Path) -> None:
    """The comparison opens with each run's mean price, as computed from /market/price_per_mwh."""
    a = _make_run(tmp_path / "a.h5", t=6, market="uniform", name="a", failed=(), nan_steps=())
    b = _make_run(tmp_path / "b.h5", t=6, market="dcopf", name="b", failed=(), nan_steps=())
    text = report.compare_runs([a, b], tmp_path / "cmp").read_text(encoding="utf-8")
    block = text.split("<div class='findings'>")[1].split("</div>")[0]
    for h5, name in ((a, "a"), (b, "b")):
        with h5py.File(h5) as f:
            mean = float(np.mean(np.mean(f["market/price_per_mwh"][()], axis=1)))
        assert f"{name} (" in block and f"mean price {mean:,.2f} $/MWh" in block
