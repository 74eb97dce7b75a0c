"""On-disk cache of parsed SimBench nets: a second run of the same grid skips SimBench's CSV parsing.

Reading a SimBench grid from its CSV files takes seconds (about 5 s for an LV grid); unpickling the parsed
pandapower net, profiles included, takes about 0.05 s. One entry per SimBench code lives in the user's cache
directory (``platformdirs.user_cache_dir("cosim-te")``, e.g. ``~/.cache/cosim-te`` on Linux), or in
``$COSIM_CACHE_DIR`` when set. ``COSIM_NO_CACHE=1`` (or ``cosim run --no-cache``) neither reads nor writes it.

Key
    The file name holds the code, the installed simbench and pandapower versions and `FORMAT`: upgrading
    either package, or changing what an entry holds, makes a new entry instead of reading a stale one.
Concurrent writers
    An entry is written to a temporary file in the same directory, then renamed over the entry with
    ``os.replace`` (atomic on POSIX and Windows): readers see the old entry, the new one, or none, never
    a partial file. Two runs writing the same entry at once both succeed; the last rename wins.
Damage
    An entry that cannot be read (truncated, corrupt, another format) is ignored and rebuilt, with a debug
    log line; a cache directory that cannot be written is skipped the same way. The cache never fails a run.
Trust
    Entries are pickles, read only from the user's own cache directory: do not point ``COSIM_CACHE_DIR`` at a
    directory others can write to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

FORMAT = 1  # what an entry holds: {"format", "code", "versions", "net"}; bump when that changes
ENV_DIR = "COSIM_CACHE_DIR"
ENV_OFF = "COSIM_NO_CACHE"
PREFIX = "simbench_"

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """Directory of the cache: ``$COSIM_CACHE_DIR``, else the user's cache directory for cosim-te."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("cosim-te", appauthor=False))


def enabled() -> bool:
    """False when ``COSIM_NO_CACHE`` is set to anything but ``""`` or ``"0"``."""
    return os.environ.get(ENV_OFF, "") in ("", "0")


def _versions() -> str:
    return f"simbench-{metadata.version('simbench')}_pandapower-{metadata.version('pandapower')}"


def entry_path(code: str) -> Path:
    """File of the entry of one SimBench code under the installed package versions."""
    safe = re.sub(r"[^A-Za-z0-9.+-]", "_", code)
    return cache_dir() / f"{PREFIX}{safe}_{_versions()}_v{FORMAT}.pickle"


def has(code: str) -> bool:
    """Whether the entry of ``code`` exists (False for a code longer than a file name may be)."""
    try:
        return entry_path(code).is_file()
    except OSError:
        return False


def load(code: str) -> Any | None:
    """The cached net of ``code``, or None when there is no readable entry (the caller rebuilds it)."""
    path = entry_path(code)
    try:
        with path.open("rb") as f:
            entry = pickle.load(f)
    except FileNotFoundError:
        return None
    except Exception as exc:  # truncated, corrupt, unreadable: rebuild it
        log.debug("SimBench cache: ignoring unreadable entry %s (%s: %s)", path, type(exc).__name__, exc)
        return None
    if not (
        isinstance(entry, dict)
        and entry.get("format") == FORMAT
        and entry.get("code") == code
        and entry.get("versions") == _versions()
        and "net" in entry
    ):
        log.debug("SimBench cache: ignoring entry %s of another code, version or format", path)
        return None
    log.debug("SimBench cache: read %s", path)
    return entry["net"]


def store(code: str, net: Any) -> Path | None:
    """Write the entry of ``code`` atomically; return its path, or None when it could not be written."""
    path = entry_path(code)
    entry = {"format": FORMAT, "code": code, "versions": _versions(), "net": net}
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except Exception as exc:  # disk full, read-only directory, an unpicklable net: run without the cache
        log.debug("SimBench cache: cannot write %s (%s)", path, exc)
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return None
    log.debug("SimBench cache: wrote %s", path)
    return path


def clear() -> list[Path]:
    """Delete every entry (and leftover temporary file) of the cache; return the files deleted."""
    directory = cache_dir()
    removed = []
    for path in sorted(directory.glob(f"{PREFIX}*")) if directory.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed
