"""What a run records about the code that made it: package versions and the source tree's version."""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("cosim-te", "numpy", "scipy", "pandas", "pandapower", "simbench", "mosaik", "h5py", "pydantic")


def versions() -> str:
    """JSON of the versions of the packages a run depends on."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return json.dumps(found, sort_keys=True)


def code_version() -> str:
    """``git describe`` of the source tree when available, else the package version."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return metadata.version("cosim-te")
