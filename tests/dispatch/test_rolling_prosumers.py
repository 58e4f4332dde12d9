"""The planners' delivery meets the prosumers' own panels, as the simulated container does.

Their panels serve their own load behind the meter and export the surplus as supply at
their connection (``microgrid.physics``); a delivery that forgets them measures a grid
without them: more battery discharge, less served.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tomli_w

from dispatch import proportional_rule
from dispatch.problem import BatteryState, problem_from_site
from dispatch.rolling import UnitTiers, deliver_block, roll, unit_own_pv_kw
from forecasts.forecast import forecast_site
from forecasts.weather import synthetic_weather
from microgrid import Site, TimeGrid
from microgrid.site import RooftopPv
from scenarios import parse_scenario, run_scenario
from tests.dispatch.test_rolling import GROUPS, rolling_village

ROOF = RooftopPv(dc_capacity_kwp=1.5, surface_tilt_deg=15, surface_azimuth_deg=180)


@pytest.fixture(scope="module")
def sunny_village() -> Site:
    """The rolling tests' village with a roof on both clinics and every fourth household."""
    village = rolling_village()
    households = {c.id for c in village.households[::4]} | {c.id for c in village.priority_users}
    connections = tuple(
        c.model_copy(update={"pv": ROOF}) if c.id in households else c for c in village.connections
    )
    return Site.model_validate(village.model_copy(update={"connections": connections}).model_dump())


def _battery(soc_kwh: float = 3.0) -> BatteryState:
    return BatteryState(
        soc_kwh=soc_kwh,
        soc_kwh_min=0.6,
        soc_kwh_max=6.0,
        power_kw_max=5.0,
        charge_efficiency=1.0,
        discharge_efficiency=1.0,
    )


def test_a_prosumers_surplus_serves_the_others_before_the_battery():
    # A clinic wants 1 kW; a business wants 2 kW and has 3 kW on its roof; no container PV.
    tiers = UnitTiers.of(1, 0, 1)
    relays = np.ones((1, 2), dtype=bool)
    allotment = np.array([[1.0, 2.0]])
    demand = np.array([[1.0, 2.0]])
    args = (relays, allotment, np.zeros(1), demand, _battery(5.0), 1.0, tiers)
    dark = deliver_block(*args)
    sunny = deliver_block(*args, own_pv_kw=np.array([[0.0, 3.0]]))
    assert dark.battery_kw[0] == pytest.approx(3.0)  # the roof forgotten: all from the battery
    assert sunny.battery_kw[0] == pytest.approx(0.0)
    assert sunny.exported_kw[0] == pytest.approx(1.0)
    # The grid served the clinic; the business's own panels served the business.
    np.testing.assert_allclose(sunny.served_kw[0], [1.0, 0.0])
    assert sunny.soc_kwh[0] == pytest.approx(5.0)


def test_own_pv_is_summed_into_the_units_that_hold_the_connections(sunny_village):
    prosumers = list(sunny_village.prosumers)
    units = ["P_anything", *GROUPS]
    own = {c.id: np.full(3, 1.0) for c in prosumers}
    out = unit_own_pv_kw(sunny_village, units, own, 3)
    expected = [sum(c.relay_group == g for c in prosumers) for g in GROUPS]
    assert min(expected) > 0
    np.testing.assert_allclose(out[0], [0.0, *expected])  # a unit not named gets nothing
    with pytest.raises(ValueError, match="not a connection of the site"):
        unit_own_pv_kw(sunny_village, units, {"nobody": np.ones(3)}, 3)


def _roll(site: Site, with_roofs: bool, planned_roofs: bool = False, problems=None):
    horizon = 24
    full = TimeGrid(
        start=pd.Timestamp("2026-08-10", tz="UTC"),
        periods=48 + horizon - 1,
        step=pd.Timedelta("1h"),
    )
    run = TimeGrid(start=full.start, periods=48, step=full.step)
    weather = synthetic_weather(full.index, site.location, seed=3)
    actual = forecast_site(site, full, weather)  # the forecasts' and simulator's pvlib chain
    pv = actual.pv_kw["p50"].to_numpy()
    demand = {c: actual.demand_kw[c].to_numpy() for c in actual.demand_kw.columns}
    roofs = {c: actual.prosumer_pv_kw[c].to_numpy()[:48] for c in actual.prosumer_pv_kw.columns}
    forecast_roofs = {c: actual.prosumer_pv_kw[c].to_numpy() for c in actual.prosumer_pv_kw}
    problems = [] if problems is None else problems
    return roll(
        site,
        run,
        (pv, 0.8 * pv),
        demand,
        pv[:48],
        {c: d[:48] for c, d in demand.items()},
        lambda p, prev: problems.append(p) or proportional_rule(p),
        soc_kwh=3.0,
        horizon_periods=horizon,
        replan_every=4,
        actual_own_pv_kw=roofs if with_roofs else None,
        forecast_own_pv_kw=forecast_roofs if planned_roofs else None,
    )


def test_roll_delivers_the_prosumers_export_as_supply(sunny_village):
    dark = _roll(sunny_village, with_roofs=False)
    sunny = _roll(sunny_village, with_roofs=True)
    flows = sunny.flows
    # The one physics' balance: the grid's load is container PV, battery and export.
    np.testing.assert_allclose(
        sunny.served_kw.sum(axis=1),
        flows["pv_used_kw"] + flows["battery_kw"] + flows["export_kw"],
        atol=1e-6,
    )
    assert flows["export_kw"].sum() > 1.0  # [kWh at 1 h periods] the roofs exported
    assert dark.flows["export_kw"].sum() == 0.0
    # The roofs' supply spares the battery: fewer overload blackouts, less net discharge.
    assert sunny.flows["short_kw"].sum() < dark.flows["short_kw"].sum()
    assert sunny.flows["battery_kw"].sum() < dark.flows["battery_kw"].sum()


def _roofs_scenario(site: Site, tmp_path, *, days: int, oracle_every_days: int):
    """A proportional-rule scenario on ``site`` from 1 August."""
    path = tmp_path / "village.toml"
    path.write_text(tomli_w.dumps(site.model_dump(mode="json", exclude_none=True)))
    return parse_scenario(
        f'name = "roofs"\nsite = "{path.name}"\n[horizon]\nstart = "2026-08-01"\n'
        f'days = {days}\n[policy]\ndispatch = "proportional"\n'
        f"oracle_every_days = {oracle_every_days}\n",
        base_dir=tmp_path,
    )


def test_the_scenario_engine_delivers_the_roofs(sunny_village, tmp_path):
    scenario = _roofs_scenario(sunny_village, tmp_path, days=2, oracle_every_days=0)
    d = run_scenario(scenario).daily
    served = d["priority_kwh"] + d["household_kwh"] + d["business_kwh"]
    # What the loads got beyond container PV and battery is what the roofs exported.
    export = served - (d["pv_used_kwh"] + d["battery_net_kwh"])
    assert (export > 0.5).all(), export.tolist()


def test_roll_plans_the_prosumers_export_as_supply_and_their_import_as_demand(sunny_village):
    """As the live service plans: a prosumer's meter import is its demand, its export
    supply at its connection (never negative demand)."""
    without, planned = [], []
    _roll(sunny_village, with_roofs=True, problems=without)
    _roll(sunny_village, with_roofs=True, planned_roofs=True, problems=planned)
    assert all(p.prosumer_export_kw is None for p in without)
    export = sum(float(p.prosumer_export_kw.sum()) for p in planned)
    assert export > 1.0  # [kW summed over periods] the roofs' surplus is supply
    household_demand = [sum(float(g.demand_kw.sum()) for g in p.households) for p in planned]
    before = [sum(float(g.demand_kw.sum()) for g in p.households) for p in without]
    assert sum(household_demand) < sum(before)  # their own load met behind the meter
    assert all(min(g.demand_kw.min() for g in p.households) >= 0.0 for p in planned)


def test_the_scenario_engine_plans_the_roofs_as_supply(sunny_village, tmp_path, monkeypatch):
    """The planners plan as the live service does: every plan (the policy's and the
    oracle's) gets the prosumers' export as supply and their import as demand."""
    import scenarios.engine as engine

    seen = []

    def recording(site, grid, *args, **kwargs):
        problem = problem_from_site(site, grid, *args, **kwargs)
        seen.append(problem)
        return problem

    monkeypatch.setattr(engine, "problem_from_site", recording)
    run_scenario(_roofs_scenario(sunny_village, tmp_path, days=1, oracle_every_days=1))
    assert len(seen) > 1  # the policy's plans and the oracle's
    assert all(p.prosumer_export_kw is not None for p in seen)
    assert all(float(p.prosumer_export_kw.sum()) > 0.5 for p in seen)  # [kW over periods]
