"""The generated reference pages in docs/ agree with the code."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cosim.component import LABELS
from cosim.docs import DOCS_DIR, PAGES, component_datasets, scenario_keys_markdown


def test_generated_pages_are_current() -> None:
    """Each generated page in docs/ equals what the code renders now."""
    for name, render in PAGES.items():
        stored = (DOCS_DIR / name).read_text(encoding="utf-8")
        assert stored == render(), f"docs/{name} is out of date: run `python -m cosim.docs`"


def test_every_scenario_key_documented() -> None:
    """Every field of every scenario section has a row with a description."""
    from cosim.scenario import LedgerConfig, MarketConfig, Scenario

    page = scenario_keys_markdown()
    keys = [*Scenario.model_fields]
    keys += [
        f"{prefix}.{key}"
        for prefix, m in (("market", MarketConfig), ("ledger", LedgerConfig))
        for key in m.model_fields
    ]
    for key in keys:
        assert f"| `{key}`" in page or f"| `{key}[]`" in page, f"{key} missing"
    rows = [line for line in page.splitlines() if line.startswith("| `")]
    assert all(not line.rstrip().endswith("|  |") for line in rows), "a key without a description"


GROUPS = ("grid", "agents", "market", "ledger", "emissions", "equity", "privacy")
SECTIONS = {  # on PJM 5-bus (linear costs: every design clears), with every optional section and an outage
    "emissions": {"upstream": {"kg_per_mwh": 500}},
    "equity": {"low_income_share": 0.3, "unit": "device"},
    "privacy": {"epsilon": 1.0, "budget": 100, "declared_max_kw": 1e5, "group_by": "bus", "evaluate": True},
    "ledger": {"consensus": "pos", "validators": 4},
    "events": [
        {"kind": "line_outage", "element": "line 3", "start": "2024-01-01T05:00:00", "duration": "2h"}
    ],
}
TARIFF = [{"from_hour": 0, "price_per_mwh": 60}, {"from_hour": 17, "price_per_mwh": 120}]
MARKETS = [
    {"design": "dcopf", "strategic": {"player": "gen 1", "offer_price_max_per_mwh": 60}},  # screens too
    {"design": "acopf"}, {"design": "scopf"}, {"design": "admm"}, {"design": "stochastic"},
    {"design": "uniform"}, {"design": "central"}, {"design": "tou", "tariff": TARIFF},
]  # fmt: skip


def _scenarios() -> list[Any]:
    """The default study and PJM 5-bus under each market design with every optional section."""
    import yaml

    from cosim.scenario import validate_scenario
    from tests.conftest import ROOT

    default = yaml.safe_load((ROOT / "scenarios" / "default.yaml").read_text())
    default["time"]["duration"] = "2d"
    out = [validate_scenario(default, "default")]
    for market in MARKETS:
        data = {
            "name": f"pjm5_{market['design']}",
            "time": {"start": "2024-01-01T00:00:00", "duration": "1d", "step": "1h"},
            "grid": {"source": "pandapower", "case": "case5"},
            "market": market,
            **SECTIONS,
        }
        if "strategic" in market or market["design"] == "stochastic":  # built for the intact grid: no events
            del data["events"]
        out.append(validate_scenario(data, data["name"]))
    return out


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    """The components of every scenario of `_scenarios`, built (not run)."""
    from cosim.component import build_all

    return [build_all(scenario) for scenario in _scenarios()]


def test_every_contract_dataset_is_in_its_components_table(built: list[dict[str, Any]]) -> None:
    """Each series, table, static and end-of-run dataset of every contract and finish is a row of its
    component's DATASETS, with the same kind, unit, dtype, description and dimension; and every row is
    written by one of the scenarios."""
    tables = component_datasets()
    written: set[str] = set()
    for components in built:
        for name, component in components.items():
            rows = {row.path: row for row in tables[name]}
            contract = component.contract(GROUPS)
            for s in contract.series:
                row = rows[s.path]
                assert (row.kind, row.unit, np.dtype(row.dtype), row.description) == (
                    "series", s.units, np.dtype(s.dtype), s.description
                ), s.path  # fmt: skip
                assert contract.routes[row.attr] == s.path
                assert s.columns == (LABELS[row.along] if row.along else ""), s.path
            for t in contract.tables:
                row = rows[t.path]
                assert (row.kind, row.columns, row.description, row.along) == (
                    "table", t.columns, t.description, t.row_dim
                ), t.path  # fmt: skip
                assert contract.routes[row.attr] == t.path
            for path, (_, unit) in contract.static.items():
                assert (rows[path].kind, rows[path].unit) == ("static", unit), path
            written |= (
                {s.path for s in contract.series} | {t.path for t in contract.tables} | set(contract.static)
            )
            if not component.reports:  # (a reporting component's finish needs the summary of a run)
                final = component.finish(GROUPS)
                for path, (_, unit) in final.static.items():
                    assert (rows[path].kind, rows[path].unit) == ("final", unit), path
                    dims = final.dims.get(path) or (final.labels[path],)
                    assert dims == tuple(str(rows[path].along).split(" x ")), path
                written |= set(final.static)
    assert written == {row.path for rows in tables.values() for row in rows}, "a row no scenario writes"


def test_default_run_file_is_documented(default_run: Any) -> None:
    """Every dataset of the default 2-day run is on docs/datasets.md with the unit and dimensions there (a
    dimension scale the recorder adds: its dimension is listed)."""
    import h5py

    from cosim.units import unit_attrs

    page = (DOCS_DIR / "datasets.md").read_text(encoding="utf-8")
    rows = {row.path: row for rows in component_datasets().values() for row in rows}
    seen: list[str] = []

    def dim(ds: Any, axis: int) -> str:
        return ds.dims[axis][0].attrs["NAME"].decode()

    def check(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        seen.append(name)
        if obj.attrs.get("CLASS") == b"DIMENSION_SCALE":
            label = obj.attrs["NAME"].decode()
            source = str(obj.attrs.get("source", "")).lstrip("/")  # a copy of labels, renamed when taken
            assert f"| `{label}` |" in page or source in set(LABELS.values()), name
            return
        if name == "time":
            assert "`/time`" in page
            return
        table = rows.get(name.rpartition("/")[0])
        if table is not None and table.kind == "table":  # a column of a table
            column = {c: (dtype, unit) for c, dtype, unit in table.columns}[name.rpartition("/")[2]]
            assert f"`/{table.path}` columns" in page and (dim(obj, 0),) == (table.along,), name
            assert dict(obj.attrs).get("units") == unit_attrs(column[1], column[0]).get("units"), name
            return
        row = rows[name]
        assert f"| `/{name}` |" in page, f"/{name} is not on docs/datasets.md"
        expected = (("time",) if row.kind == "series" else ()) + tuple(
            filter(None, (row.along or "").split(" x "))
        )
        renamed = tuple(
            LABELS.get(d, d).replace("/", "_") for d in expected
        )  # the name was taken in the group
        dims = tuple(dim(obj, axis) for axis in range(obj.ndim))
        assert dims in (
            expected,
            tuple(d if d == r else r for d, r in zip(expected, renamed, strict=True)),
        ), (name, dims)
        assert dict(obj.attrs).get("units") == unit_attrs(row.unit, obj.dtype).get("units"), name

    with h5py.File(default_run.path) as f:
        f.visititems(check)
    assert len(seen) > 100


def test_models_page_design_table_is_current() -> None:
    """docs/models.md's "Market designs and what they can do" table equals the one the registry renders."""
    from cosim.docs import MODELS_PAGE, README_MARKERS, design_capabilities_table, readme_with_designs

    text = MODELS_PAGE.read_text(encoding="utf-8")
    assert readme_with_designs(text) == text, (
        "docs/models.md's design table is out of date: run `python -m cosim.docs`"
    )
    start, end = README_MARKERS
    assert design_capabilities_table() in text.split(start, 1)[1].split(end, 1)[0]


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    import re

    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", markdown, flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_links_stay_in_the_repository_and_resolve() -> None:
    """Every relative link of README.md and docs/ names a file of the repository (and a heading it has)."""
    import re

    root = DOCS_DIR.parent
    pages = [root / "README.md", *sorted(DOCS_DIR.glob("*.md"))]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "DESIGN.md" not in text and "../shared" not in text, page.name
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.is_relative_to(root) and linked.exists(), f"{page.name}: {target}"
            if anchor:
                assert anchor in _anchors(linked.read_text(encoding="utf-8")), f"{page.name}: {target}"
