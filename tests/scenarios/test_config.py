from __future__ import annotations

import pytest

from scenarios import (
    ScenarioFileError,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
    with_parameter,
)


def test_every_problem_is_reported_with_its_field_path():
    text = 'name = "x"\n[horizon]\ndays = 0\n[stakers]\nloyal = 0.9\n[policy]\ndispatch = "magic"\n'
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text)
    problems = info.value.problems
    assert any(p.startswith("horizon.days") for p in problems)
    assert any(p.startswith("stakers") and "must be 1" in p for p in problems)
    assert any(p.startswith("policy.dispatch") for p in problems)


def test_unknown_keys_and_bad_toml_are_rejected():
    with pytest.raises(ScenarioFileError, match="unknown field"):
        parse_scenario('name = "x"\n[horizon]\ndayz = 3\n')
    with pytest.raises(ScenarioFileError, match="not valid TOML"):
        parse_scenario("name = ")


def test_with_parameter_validates_again():
    s = parse_scenario('name = "x"\n')
    assert with_parameter(s, "equipment.battery_kwh", 90).equipment.battery_kwh == 90
    with pytest.raises(ScenarioFileError):
        with_parameter(s, "equipment.pv_kwp", -1)
    with pytest.raises(ScenarioFileError, match="no such"):
        with_parameter(s, "equipment.wind_kw", 5)


def test_a_time_limit_that_leaves_the_milp_no_time_is_refused():
    # 1 s used to be the planners' default: every plan was silently the rule plan.
    assert parse_scenario('name = "x"\n').policy.time_limit_s == 10.0
    with pytest.raises(ScenarioFileError, match=r"policy\.time_limit_s"):
        parse_scenario('name = "x"\n[policy]\ntime_limit_s = 1.0\n')


def test_bundled_examples_load():
    names = set(bundled_scenarios())
    assert {"seeds_year", "rainy_season", "growth_100", "sizing_sweep"} <= names
    for path in bundled_scenarios().values():
        assert load_scenario(path).name == path.stem
