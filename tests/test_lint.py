"""Code quality gates run with the suite: ruff (lint and format) and mypy on the package."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "cmd",
    [
        ["ruff", "check", "cosim", "models", "analysis", "tests", "benchmarks"],
        ["ruff", "format", "--check", "cosim", "models", "analysis", "tests", "benchmarks"],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(cmd: list[str]) -> None:
    """The tool reports no problem."""
    if cmd[0] == "ruff" and shutil.which("ruff") is None:
        cmd = [sys.executable, "-m", *cmd]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
