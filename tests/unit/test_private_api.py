"""pandapower's private API is reached from one documented module only, and Pyomo's not at all."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

SOURCES = [p for d in ("cosim", "models", "analysis") for p in sorted((ROOT / d).rglob("*.py"))]
ADAPTER = ROOT / "models" / "grid" / "pp_internals.py"
# private attributes of pandapower nets and of Pyomo's solver objects the code once leaned on
ATTRIBUTES = {
    "_pd2ppc_lookups",
    "_ppc",
    "_options",
    "_isolated_buses",
    "_solver_model",
    "_pyomo_var_to_solver_var_map",
}


def _private_uses(path) -> list[str]:  # noqa: ANN001
    """Private names imported from pandapower or Pyomo, and private attributes read off other objects."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        owner = getattr(getattr(node, "value", None), "id", None)
        if isinstance(node, ast.Attribute) and node.attr in ATTRIBUTES and owner not in ("self", "cls"):
            found.append(node.attr)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("pandapower", "pyomo"):
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            found += [node.module] if any(part.startswith("_") for part in node.module.split(".")) else []
    return found


def test_private_api_only_in_its_adapter() -> None:
    """No module but models/grid/pp_internals.py imports a private name of pandapower or Pyomo or reads a
    private attribute of their objects; that one touches no Pyomo."""
    offenders = {str(p.relative_to(ROOT)): _private_uses(p) for p in SOURCES if p != ADAPTER}
    assert not {k: v for k, v in offenders.items() if v}
    assert "pyomo" not in ADAPTER.read_text(encoding="utf-8")
    assert _private_uses(ADAPTER)  # the adapter is where they are (the scan sees them)
