"""A strategic player in a run: scenarios/pjm5_strategic.yaml records the MPEC's offers and the screens."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import cosim
from analysis.report import write_report
from cosim.errors import ScenarioError
from tests.conftest import ROOT

CAP = "offer_price_max_per_mwh: 60}}"


def test_pjm5_strategic_day_records_market_power(tmp_path: Path) -> None:
    """A day of case5 with Solitude strategic: offer at the 60 $/MWh cap, 722.02 $/h profit against 0
    competitive, Lerner 0.5 at bus C, a positive welfare loss, a report section; Brighton (gen 2, 600 MW
    of 1530) is the one pivotal supplier: RSI = (1530 - 600) / 1000 = 0.93."""
    summary = cosim.run(ROOT / "scenarios" / "pjm5_strategic.yaml", out=tmp_path / "s.h5")
    with h5py.File(summary.path) as f:
        m = f["market"]
        assert m["ok"][:].all() and m["strategic_optimal"][:].all()
        np.testing.assert_allclose(m["strategic_offer_per_mwh"][:], 60.0, atol=1e-6)
        np.testing.assert_allclose(m["strategic_profit"][:], 722.02, atol=0.01)
        np.testing.assert_allclose(m["competitive_profit"][:], 0.0, atol=1e-6)
        np.testing.assert_allclose(m["lerner_index"][:], 0.5, atol=1e-9)
        assert np.all(m["welfare_loss"][:] > 0)
        names = [n.decode() for n in m["supplier_name"][:]]
        assert names == ["sgen 0", "gen 0", "gen 1", "gen 2", "upstream"]
        assert m["rsi"].shape == (24, 5)
        np.testing.assert_allclose(m["rsi"][:, names.index("gen 2")], 0.93, atol=1e-9)
        assert (m["pivotal"][:] == (np.array(names) == "gen 2")).all()
        np.testing.assert_allclose(m["rsi_min"][:], m["rsi"][:].min(axis=1))
        assert np.all((m["hhi"][:] > 0) & (m["hhi"][:] <= 10000))
    page = write_report(summary.path, tmp_path / "report").read_text()
    assert "Market power" in page and "market_power_rsi.png" in page and "Lerner index mean / max" in page


def test_screens_without_a_strategic_player(tmp_path: Path) -> None:
    """Every dcopf run records HHI, RSI and pivotal suppliers, and no strategic datasets."""
    summary = cosim.run(ROOT / "scenarios" / "pjm5.yaml", out=tmp_path / "p.h5")
    with h5py.File(summary.path) as f:
        assert {"hhi", "rsi", "rsi_min", "pivotal"} <= set(f["market"])
        assert "strategic_profit" not in f["market"]


def test_strategic_player_under_scopf(tmp_path: Path) -> None:
    """With design scopf the MPEC anticipates the N-1 secure clearing: optimal every hour, the player
    earns at least its competitive profit, and the welfare loss is never negative."""
    text = (ROOT / "scenarios" / "pjm5_strategic.yaml").read_text()
    path = tmp_path / "scopf.yaml"
    path.write_text(text.replace("design: dcopf", "design: scopf\n  contingency_limit_factor: 1.5"))
    summary = cosim.run(path, out=tmp_path / "scopf.h5", days=0.125)
    with h5py.File(summary.path) as f:
        m = f["market"]
        assert m["ok"][:].all() and m["strategic_optimal"][:].all()
        assert np.all(m["strategic_profit"][:] >= m["competitive_profit"][:] - 1e-6)
        assert np.all(m["welfare_loss"][:] >= -1e-6)
        assert "security_cost" in m


@pytest.mark.parametrize(
    ("market", "where", "says"),
    [
        (
            "{design: uniform, strategic: {player: gen 1, offer_price_max_per_mwh: 60}}",
            "market",
            "dcopf or scopf",
        ),
        (
            "{design: dcopf, strategic: {player: gen 7, offer_price_max_per_mwh: 60}}",
            "player",
            "nearest: 'gen",
        ),
        ("{design: dcopf, strategic: {player: load 0, offer_price_max_per_mwh: 60}}", "player", "is a load"),
    ],
)
def test_strategic_refusals(tmp_path: Path, market: str, where: str, says: str) -> None:
    """A non-network design, an unknown name (with the nearest names) and a load as player are refused."""
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ntime: {start: 2024-01-01T00:00:00, duration: 1h}\n"
        f"grid: {{source: pandapower, case: case5}}\nmarket: {market}\n"
    )
    with pytest.raises(ScenarioError, match=says) as err:
        cosim.run(path, out=tmp_path / "bad.h5")
    assert where in str(err.value)
