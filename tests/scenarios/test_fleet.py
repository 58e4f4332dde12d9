"""A fleet of sites in one planner run: own draws per site, per-site and fleet KPIs."""

from __future__ import annotations

import pandas as pd
import pytest

from scenarios import run_scenario, with_parameter
from scenarios.fleet import fleet_kpis, fleet_scenarios, run_fleet, site_kpis


def test_sites_differ_in_equipment_weather_and_community(make_scenario):
    base = with_parameter(make_scenario(days=2), "seeds.runs", 2)
    sites = fleet_scenarios(base, 4, seed=7)
    assert len({s.name for s in sites}) == 4
    assert len({s.equipment.pv_kwp for s in sites}) == 4
    assert len({s.equipment.battery_kwh for s in sites}) == 4
    assert len({s.weather.forecast_cloud_error for s in sites}) == 4
    assert len({s.stakers.learner for s in sites}) == 4
    # Seed ranges never overlap: no two sites share weather or demand draws.
    seeds = [s.seeds.base + r for s in sites for r in range(s.seeds.runs)]
    assert len(set(seeds)) == len(seeds)
    assert fleet_scenarios(base, 4, seed=7) == sites  # reproducible
    assert fleet_scenarios(base, 4, seed=8) != sites


def test_fleet_kpis_are_the_sites_kpis_added_up(make_scenario):
    base = with_parameter(make_scenario(days=1), "seeds.runs", 2)
    sites = fleet_scenarios(base, 3, seed=1)
    result = run_fleet(sites, workers=1)
    per_site, fleet = result.per_site, result.fleet
    assert len(per_site) == 3 * 2
    assert list(fleet["run"]) == [0, 1]
    # Each site's KPIs are those of running it alone (the pool changes nothing).
    alone = site_kpis(run_scenario(sites[1], 1))
    row = per_site[(per_site["site"] == sites[1].name) & (per_site["run"] == 1)].iloc[0]
    for metric in ("household_kwh", "unserved_kwh", "value", "ledger_coins_sum"):
        assert row[metric] == pytest.approx(alone[metric])
    # The fleet adds its sites up, run by run: nothing lost, nothing counted twice.
    for run, group in per_site.groupby("run"):
        f = fleet[fleet["run"] == run].iloc[0]
        assert f["sites"] == 3
        for metric in ("household_kwh", "pv_available_kwh", "curtailed_kwh", "value"):
            assert f[metric] == pytest.approx(group[metric].sum())
        assert f["household_served_fraction"] == pytest.approx(
            group["household_kwh"].sum() / group["household_demand_kwh"].sum()
        )
        assert f["worst_site_household_served_fraction"] <= f["household_served_fraction"]


def test_fleet_input_errors_are_named(make_scenario):
    with pytest.raises(ValueError, match="at least one site, got 0"):
        fleet_scenarios(make_scenario(days=1), 0)
    with pytest.raises(ValueError, match="equipment_spread"):
        fleet_scenarios(make_scenario(days=1), 2, equipment_spread=1.5)


def test_fleet_kpis_of_no_oracle_day_are_nan():
    rows = pd.DataFrame(
        {
            "site": ["a"],
            "run": [0],
            "household_kwh": [1.0],
            "household_demand_kwh": [0.0],
            "value_on_oracle_days": [0.0],
            "oracle_value": [0.0],
            "unserved_priority_kwh": [0.0],
        }
    )
    k = fleet_kpis(rows).iloc[0]
    assert pd.isna(k["eta"])
    assert pd.isna(k["household_served_fraction"])
