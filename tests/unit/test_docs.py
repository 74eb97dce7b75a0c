"""The generated reference pages in docs/ agree with the code."""

from __future__ import annotations

from cosim.docs import DOCS_DIR, PAGES, scenario_keys_markdown


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
