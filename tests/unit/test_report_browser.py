"""Every report page opened in headless Chromium: every image loads and every figure has a caption."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cosim.analysis.report import compare_runs, write_report
from tests.unit.test_ledger_report import _add_ledger
from tests.unit.test_report import _make_run
from tests.unit.test_society_report import _add_society

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)


def _dom(page: Path, profile: Path) -> str:
    """The DOM of a page after load, images decoded (broken ones marked by their onerror handler)."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=5000",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def _check(page: Path, profile: Path) -> int:
    """Assert every <figure> has one image that loaded and a non-empty caption; return the figure count."""
    dom = _dom(page, profile)
    figures = re.findall(r"<figure>(.*?)</figure>", dom, re.S)
    assert figures, f"no figure in the DOM of {page}"
    for fig in figures:
        img = re.search(r"<img [^>]*>", fig)
        assert img is not None, fig
        assert "data-broken" not in img.group(0), f"image failed to load in {page}: {img.group(0)}"
        cap = re.search(r"<figcaption>(.*?)</figcaption>", fig, re.S)
        assert cap is not None and len(re.sub(r"<[^>]+>", "", cap.group(1)).strip()) > 40, fig
    assert len(re.findall(r"<img ", dom)) == len(figures)  # no image outside a captioned figure
    return len(figures)


def test_broken_image_is_detected(tmp_path: Path) -> None:
    """The check can fail: a figure whose PNG is missing is reported as not loaded."""
    page = tmp_path / "p.html"
    page.write_text(
        '<html><body><figure><img src="missing.png" onerror="this.dataset.broken=1">'
        "<figcaption>" + "x" * 50 + "</figcaption></figure></body></html>",
        encoding="utf-8",
    )
    with pytest.raises(AssertionError, match="failed to load"):
        _check(page, tmp_path / "profile")


def test_every_report_page_loads_in_chromium(tmp_path: Path) -> None:
    """Run reports (grid, market, ledger, society) and a comparison: images load, figures captioned."""
    a = _add_society(_make_run(tmp_path / "a.h5", market="dcopf", name="a"))
    b = _add_ledger(_make_run(tmp_path / "b.h5", market="uniform", name="b"))
    pages = [write_report(a, tmp_path / "ra"), write_report(b, tmp_path / "rb")]
    pages.append(compare_runs([a, b], tmp_path / "cmp"))
    counts = [_check(p, tmp_path / f"profile{i}") for i, p in enumerate(pages)]
    assert counts[0] >= 14 and all(counts)
