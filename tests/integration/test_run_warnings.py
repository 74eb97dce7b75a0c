"""A run whose ledger halted, lost safety or whose private releases were refused says so when it ends."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cosim.cli import main

HALTED = """
name: halted
time: {start: 2024-01-01T00:00:00, duration: 1h, step: 1min}
ledger: {consensus: bft, validators: 4, faulty: 2, workload: {tx_per_s: 1, accounts: 10}}
"""
REFUSED = """
name: refused
time: {start: 2016-01-01T00:00:00, duration: 1d, step: 1h}
grid: {source: pandapower, case: case9}
privacy: {epsilon: 1.0, budget: 2.0, declared_max_kw: 10}
"""
CALM = """
name: calm
time: {start: 2024-01-01T00:00:00, duration: 1h, step: 1min}
ledger: {consensus: bft, validators: 4, workload: {tx_per_s: 1, accounts: 10}}
"""


@pytest.mark.parametrize(
    ("text", "steps", "words"),
    [(HALTED, 3, "the ledger halted"), (REFUSED, 6, "4 private release(s) refused")],
    ids=["halted", "refused"],
)
def test_warning_line_and_count(
    text: str, steps: int, words: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The summary counts the warnings and a `warning:` line names each."""
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(text))
    assert main(["run", str(path), "--steps", str(steps), "--out", str(tmp_path / "r.h5"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "; 1 warning(s)" in out
    assert f"warning: {words}" in err


def test_no_warning_for_a_healthy_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A ledger with every validator honest ends without a warning."""
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent(CALM))
    assert main(["run", str(path), "--steps", "3", "--out", str(tmp_path / "r.h5"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "warning(s)" not in out and "warning:" not in err
