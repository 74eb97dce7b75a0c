"""Households in the equity accounts: a household's load and the devices behind its meter as one unit."""

from __future__ import annotations

import numpy as np
import pytest

from cosim.models.accounting.equity import EquityAccumulator, by_unit, study_outputs

# agents: 0 load of household 0, 1 its PV, 2 load of household 1, 3 a business load (no household), 4 the
# battery of household 1
UNIT_OF = np.array([0, 0, 1, -1, 1])


def _accumulator() -> EquityAccumulator:
    """One step, flat baseline 100 $/MWh: payments and energies chosen so each agent's surplus is known."""
    acc = EquityAccumulator(5, np.zeros(1, dtype=np.int64))
    # energy (+ = bought) and payment (+ = pays): surplus = energy * 100 - payment
    energy = np.array([[1.0, -0.5, 2.0, 3.0, 0.1]])
    payment = np.array([[60.0, -40.0, 150.0, 300.0, 5.0]])
    acc.add_many([0], payment, energy, [100.0])
    return acc


def test_by_unit_sums_agents_and_leaves_out_the_others() -> None:
    """(months, agents) -> (months, households): each household the sum of its agents; -1 left out."""
    values = np.array([[1.0, 2.0, 3.0, 100.0, 5.0], [0.0, 1.0, 0.0, 7.0, 1.0]])
    np.testing.assert_array_equal(by_unit(values, UNIT_OF, 2), [[3.0, 8.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="one entry per agent"):
        by_unit(values, UNIT_OF[:3], 2)


def test_by_unit_without_the_dense_membership_equals_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond the dense limit (every set, here) the agent-order sums equal the 0/1 product to round-off."""
    import cosim.models.accounting.equity as equity

    rng = np.random.default_rng(3)
    unit_of = rng.integers(-1, 40, size=300)
    for shape in [(300,), (12, 300), (2, 12, 300)]:
        values = rng.normal(size=shape) * 10.0 ** rng.uniform(-3, 3, size=shape)
        dense = by_unit(values, unit_of, 45)  # five units without any agent: zero
        monkeypatch.setattr(equity, "_DENSE_MEMBER_MAX", 0)
        summed = by_unit(values, unit_of, 45)
        monkeypatch.undo()
        assert summed.shape == dense.shape == (*shape[:-1], 45)
        np.testing.assert_allclose(summed, dense, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(summed[..., 40:], 0.0)


def test_household_sums_equal_device_sums() -> None:
    """Every per-household quantity is the sum of that household's devices' per-agent quantities."""
    acc = _accumulator()
    device = study_outputs(acc, np.array([True, False, False, False, False]))
    home = study_outputs(acc, np.array([True, False, False, False, False]), unit_of=UNIT_OF, n_unit=2)
    for key in ("surplus", "bill", "revenue", "net_cost", "baseline_cost", "energy_bought_mwh"):
        expected = [device[key][UNIT_OF == h].sum() for h in (0, 1)]
        np.testing.assert_allclose(home[key], expected, err_msg=key)
    # surplus of household 0: load 100 - 60 = 40, PV -50 + 40 = -10 -> 30; household 1: 50 + 5 = 55
    np.testing.assert_allclose(home["surplus"], [30.0, 55.0])


def test_gini_is_over_households() -> None:
    """Two households with surpluses 30 and 55 $: Gini = |30 - 55| * 2 / (2 * 2**2 * 42.5) = 0.1470..."""
    home = study_outputs(_accumulator(), np.zeros(5, dtype=bool), unit_of=UNIT_OF, n_unit=2)
    assert home["gini_surplus"] == pytest.approx(50.0 / (8 * 42.5))
    assert home["lorenz"].shape == (3, 2)  # 0, then one point per household
    np.testing.assert_allclose(home["lorenz"][-1], [1.0, 1.0])


def test_a_household_is_low_income_when_its_load_is() -> None:
    """The level-up rule hands the levy to the household whose load is flagged, not to its devices apart."""
    acc = _accumulator()
    home = study_outputs(
        acc, np.array([False, False, True, False, False]), "level_up", 10.0, unit_of=UNIT_OF, n_unit=2
    )
    bought = np.array([1.0, 2.1])  # MWh bought by each household's devices
    pot = 10.0 * bought.sum()
    np.testing.assert_allclose(home["transfer"], [-10.0 * bought[0], pot - 10.0 * bought[1]])
