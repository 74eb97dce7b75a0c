"""Run one component's mosaik adapter as a process of its own.

``python -m cosim.remote NAME HOST:PORT`` connects to the world at HOST:PORT (how mosaik's ``cmd`` starter
starts it for ``orchestration.out_of_process``); ``python -m cosim.remote NAME HOST:PORT --remote`` listens
on HOST:PORT for a world that reaches it with ``orchestration.connect`` (another machine). NAME is a
component of the registry that can leave the process (ledger, privacy). A process of its own speaks plain
data: every output leaves encoded (`cosim.wire`).
"""

from __future__ import annotations

import importlib
import inspect
import sys

from cosim.component import REGISTRY, Component


def adapter_of(name: str) -> type:
    """The adapter class of component ``name``, which must be able to leave the process."""
    entry = REGISTRY.get(name)
    if entry is None or not entry.leaves:
        leaving = ", ".join(n for n, e in REGISTRY.items() if e.leaves)
        raise SystemExit(f"cosim.remote: {name!r} is not a component that can leave the process ({leaving})")
    module = importlib.import_module(entry.module)
    (component,) = (
        c for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, Component) and c is not Component and c.__module__ == module.__name__
    )  # fmt: skip
    path, _, cls = component.sim.partition(":")
    return getattr(importlib.import_module(path), cls)  # type: ignore[no-any-return]


def main() -> int:
    """Start the adapter named by the first argument; the rest are mosaik's (HOST:PORT, --remote)."""
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    import mosaik_api_v3

    sim = adapter_of(sys.argv.pop(1))()
    sim.wire_all = True
    return mosaik_api_v3.start_simulation(
        sim, f"cosim component {sim.__class__.__name__}", configure_logging=False
    )


if __name__ == "__main__":
    sys.exit(main())
