"""Study files: schema problems, expansion, invalid combinations, run ids, hashes, report statistics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cosim.errors import ScenarioError
from cosim.study import plan_study, run_id, scenario_hash
from tests.conftest import ROOT

PJM5 = str(ROOT / "scenarios" / "pjm5.yaml")
DEFAULT = str(ROOT / "scenarios" / "default.yaml")


def test_expansion_is_factorial_times_zip_times_seeds():
    """2 factor levels x 2 zipped rows x 3 seeds give 12 runs, each scenario with its values applied."""
    plan = plan_study(
        {
            "name": "x",
            "base": PJM5,
            "steps": 1,
            "factors": {"market.design": ["dcopf", "uniform"]},
            "zip": {"market.voll_per_mwh": [1000, 2000], "market.inelastic_share": [0.5, 0.9]},
            "seeds": [1, 2, 3],
        }
    )
    assert len(plan.runs) == 12 and len({r.run_id for r in plan.runs}) == 12
    assert plan.keys == ["market.design", "market.voll_per_mwh", "market.inelastic_share"]
    for r in plan.runs:
        m = r.scenario.market
        assert m is not None and (m.design, m.voll_per_mwh, m.inelastic_share) == tuple(r.values.values())
        assert (m.voll_per_mwh, m.inelastic_share) in {(1000, 0.5), (2000, 0.9)}
    assert plan.runs[0].run_id == (
        "market.design=dcopf__market.voll_per_mwh=1000__market.inelastic_share=0.5__seed=1"
    )
    assert len({r.hash for r in plan.runs}) == 12  # the seed is part of the scenario hash


def test_invalid_combination_names_the_factor_value():
    """Only design 'stochastic' clashes with a carbon price: the message names that value alone."""
    with pytest.raises(ScenarioError) as info:
        plan_study(
            {
                "name": "x",
                "base": DEFAULT,
                "factors": {
                    "ledger.consensus": ["bft", "pos"],
                    "market.design": ["dcopf", "stochastic"],
                    "emissions.carbon_price_per_t": [50],
                },
            }
        )
    ((path, msg),) = info.value.problems
    assert path == "(top level)" and "not built for design stochastic" in msg
    assert msg.endswith("(when market.design=stochastic)")


def test_field_problem_of_one_value():
    """A value the scenario schema refuses is reported at its dotted path with the value that causes it."""
    with pytest.raises(ScenarioError) as info:
        plan_study({"name": "x", "base": PJM5, "factors": {"market.voll_per_mwh": [1000, -5]}})
    ((path, msg),) = info.value.problems
    assert path == "market.voll_per_mwh" and msg.endswith("(when market.voll_per_mwh=-5)")


def test_every_study_problem_listed_with_its_path(tmp_path, capsys):
    """Schema problems, bad and reserved keys all come at once; the command exits 2 without a traceback."""
    from cosim.cli import main

    study = tmp_path / "s.yaml"
    study.write_text(
        "name: bad name\nbase: x.yaml\nsteps: 0\nfactors:\n  ledger.consensus: []\n  seed: [1]\n"
        "zip:\n  a.b: [1, 2]\n  c.d: [1]\nseeds: [1, -1]\ncolour: red\n"
    )
    assert main(["sweep", str(study)]) == 2
    err = capsys.readouterr().err
    for where in (
        "name:",
        "steps:",
        "factors[ledger.consensus]:",
        "seeds[1]:",
        "colour: unknown key",
        "factors.seed: cannot be varied",
    ):
        assert where in err, where
    assert "Traceback" not in err


def test_zip_lengths_and_days_with_steps():
    """Zipped lists of different lengths and days together with steps are refused."""
    with pytest.raises(ScenarioError, match="steps: give days or steps, not both"):
        plan_study({"name": "x", "base": PJM5, "days": 1, "steps": 2})
    with pytest.raises(
        ScenarioError, match=r"zip: .*same length \(market.voll_per_mwh: 2, market.inelastic_share: 1"
    ):
        plan_study(
            {
                "name": "x",
                "base": PJM5,
                "zip": {"market.voll_per_mwh": [1, 2], "market.inelastic_share": [0.5]},
            }
        )


def test_run_id_is_a_safe_file_name():
    """Characters a file name cannot hold are replaced; very long ids are cut and end in a hash."""
    rid = run_id({"grid.path": "nets/a b.json", "equity.rule": "level_up"}, 3)
    assert rid == "grid.path=nets-a-b.json__equity.rule=level_up__seed=3"
    long = run_id({"market.utility_per_mwh": list(range(200))}, 1)
    assert len(long) <= 150 and "/" not in long and long != run_id({"market.utility_per_mwh": [1]}, 1)


def test_scenario_hash_ignores_the_output_path_only():
    """Two effective scenarios that differ in output.path hash alike; any other change changes the hash."""
    a = "name: a\nseed: 1\noutput: {path: x.h5, chunk_steps: 4}\n"
    b = "name: a\nseed: 1\noutput: {path: elsewhere/y.h5, chunk_steps: 4}\n"
    c = "name: a\nseed: 2\noutput: {path: x.h5, chunk_steps: 4}\n"
    assert scenario_hash(a) == scenario_hash(b) != scenario_hash(c)


def test_pareto_front_by_hand():
    """(1,3), (2,2), (3,1) are non-dominated; (3,3) and (2,4) are dominated; NaN rows never optimal."""
    from cosim.analysis.study_report import pareto

    pts = np.array([[1, 3], [2, 2], [3, 1], [3, 3], [2, 4], [np.nan, 0]], dtype=float)
    assert pareto(pts).tolist() == [True, True, True, False, False, False]


def test_effect_interval_is_a_t_interval_over_seeds():
    """Per level: the per-seed means over the other factor, then mean +- t(0.975, n-1) s / sqrt(n)."""
    from cosim.analysis.study_report import Factor, effects

    df = pd.DataFrame(
        {
            "a": ["x"] * 6 + ["y"] * 6,
            "b": [0, 1] * 6,
            "seed": [1, 1, 2, 2, 3, 3] * 2,
            "m": [1, 3, 2, 4, 6, 8, 5, 5, 6, 6, 7, 7],
        }
    )
    e = effects(df, Factor(["a"], "a", ["x", "y"]), "m").set_index("level")
    per_seed = np.array([2.0, 3.0, 7.0])  # level x: seed means over b
    half = stats.t.ppf(0.975, 2) * per_seed.std(ddof=1) / np.sqrt(3)
    assert e.loc["x", "mean"] == pytest.approx(4.0)
    assert (e.loc["x", "lo"], e.loc["x", "hi"]) == pytest.approx((4.0 - half, 4.0 + half))
    assert e.loc["y", "n_seeds"] == 3


def test_import_cosim_does_not_import_dask():
    """``import cosim`` stays light: Dask loads only when cosim.sweep is used."""
    code = "import sys, cosim; assert not {'distributed', 'dask'} & set(sys.modules); cosim.sweep"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


STUDIES = sorted((ROOT / "scenarios" / "studies").glob("*.yaml"))


def test_study_library_is_complete():
    """The library ships the five studies docs/studies.md describes, each with a header comment."""
    assert [p.stem for p in STUDIES] == [
        "carbon_fairness",
        "consensus",
        "consensus_by_design",
        "market_designs",
        "privacy",
    ]
    for p in STUDIES:
        head = p.read_text().splitlines()[0]
        assert head.startswith("# "), p.name


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_every_shipped_study_plans(path):
    """Every study file is valid, every run of it valid, and each runs at most 30 days over <= 54 runs."""
    plan = plan_study(path)
    assert plan.study.days is not None and plan.study.days <= 30
    assert 1 <= len(plan.runs) <= 54 and len({r.run_id for r in plan.runs}) == len(plan.runs)
    assert "cosim sweep scenarios/studies/" + path.name in path.read_text()


def test_shipped_study_plans():
    """The shipped consensus_by_design study is valid: 3 x 2 x 3 zipped x 3 seeds = 54 runs of 30 days."""
    plan = plan_study(ROOT / "scenarios" / "studies" / "consensus_by_design.yaml")
    assert len(plan.runs) == 54 and plan.study.days == 30
    assert all(r.scenario.emissions is not None and r.scenario.ledger is not None for r in plan.runs)
    assert {r.scenario.market.design for r in plan.runs if r.scenario.market} == {"dcopf", "uniform"}


def test_consensus_study_is_like_for_like():
    """consensus: the three mechanisms on the same market, agents and seeds, differing only in consensus."""
    plan = plan_study(ROOT / "scenarios" / "studies" / "consensus.yaml")
    assert {r.values["ledger.consensus"] for r in plan.runs} == {"bft", "pos", "pow"}
    by_seed: dict[int, set[str]] = {}
    for r in plan.runs:
        d = r.scenario.model_dump(mode="json")
        d.pop("output")
        d["ledger"].pop("consensus")
        by_seed.setdefault(r.seed, set()).add(repr(d))
    assert len(by_seed) >= 2 and all(len(v) == 1 for v in by_seed.values())


def test_market_designs_study_covers_every_design_but_acopf():
    """market_designs: the eight designs, carbon price 0, fixed bids, no events; dr alone has events."""
    plan = plan_study(ROOT / "scenarios" / "studies" / "market_designs.yaml")
    designs = {r.values["market.design"] for r in plan.runs}
    assert designs == {"uniform", "dcopf", "scopf", "admm", "stochastic", "central", "tou", "dr"}
    for r in plan.runs:
        m, em = r.scenario.market, r.scenario.emissions
        assert m is not None and em is not None and em.carbon_price_per_t == 0 and not r.scenario.events
        assert m.battery_bidding == "fixed" and bool(m.dr_events) == (m.design == "dr") and m.tariff


def test_carbon_and_privacy_studies_cross_their_factors():
    """carbon_fairness: 4 carbon prices x 3 levies under dcopf; privacy: 3 epsilons x bus/grid x step/day."""
    carbon = plan_study(ROOT / "scenarios" / "studies" / "carbon_fairness.yaml")
    pairs = {
        (r.scenario.emissions.carbon_price_per_t, r.scenario.equity.levy_per_mwh)
        for r in carbon.runs
        if r.scenario.emissions and r.scenario.equity
    }
    assert len(pairs) == 12 and all(
        r.scenario.market.design == "dcopf" for r in carbon.runs if r.scenario.market
    )
    privacy = plan_study(ROOT / "scenarios" / "studies" / "privacy.yaml")
    cells = {(p.epsilon, p.group_by, p.release_every) for r in privacy.runs if (p := r.scenario.privacy)}
    assert len(cells) == 12
    for r in privacy.runs:
        p = r.scenario.privacy
        assert p is not None and p.budget >= 10 * 24 * 30  # hourly releases at epsilon 10 never refused


def test_datetime_factor_value_gets_a_run_id():
    """An unquoted YAML date-time inside a factor value (a mapping) is labelled as text, not a crash."""
    import datetime as dt

    rid = run_id({"market.dr_events": [{"start": dt.datetime(2016, 4, 12, 17)}]}, 1)
    assert "2016-04-12" in rid and rid.endswith("seed=1")
