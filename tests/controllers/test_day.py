"""A day's schedule applied through real Modbus TCP to the simulated container."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from controllers.failsafe import Mode
from controllers.simulator import SimulatorSettings
from dispatch import problem_from_site, solve_dispatch
from forecasts.forecast import forecast_site
from forecasts.weather import synthetic_weather
from microgrid import TimeGrid
from tests.controllers.conftest import Rig, run, settings

SOC0 = 0.5


def _schedule(site: Any) -> Any:
    grid = TimeGrid.from_days("2026-03-20", 1, site.location.timezone)
    forecast = forecast_site(site, grid, synthetic_weather(grid.index, site.location, seed=1))
    demand = {c: forecast.demand_kw[c].to_numpy() for c in forecast.demand_kw.columns}
    problem = problem_from_site(
        site,
        grid,
        forecast.pv_kw["p50"].to_numpy(),
        forecast.pv_kw["p10"].to_numpy(),
        demand,
        soc_kwh=SOC0 * site.battery.energy_capacity_kwh,
    )
    return grid, solve_dispatch(problem)


def _with_pv(site: Any, kwp: float) -> Any:
    pv = site.pv.model_copy(update={"dc_capacity_kwp": kwp, "inverter_ac_capacity_kw": 0.8 * kwp})
    return type(site).model_validate(site.model_copy(update={"pv": pv}).model_dump())


@pytest.mark.parametrize(
    ("kwp", "business_kwh_min"),
    [
        (None, 0.0),  # 4 kWp: rationing, households shed and businesses dark all day
        (10.0, 5.0),  # 10 kWp: businesses switched on and off by the plan
    ],
    ids=["short", "sunny"],
)
def test_day_schedule_metered_energy_per_tier_matches(site, kwp, business_kwh_min):
    site = site if kwp is None else _with_pv(site, kwp)
    grid, schedule = _schedule(site)
    kinds = {c.id: c.kind.value for c in site.connections}
    # What the relays in the plan imply: a closed relay lets the load draw its demand.
    # (The plan's business *allotment* may be below demand — a relay cannot deliver part
    # of a load — so relay-implied energy is what metering must match.)
    forecast_demand = _demand(site, grid)

    async def scenario():
        # Device timeout 10 min, cycles every 5 min: the devices' revert timers and the relay
        # board's watchdog never fire while the controller is alive.
        sim_settings = SimulatorSettings(seed=1, pv_noise=0.05, soc_fraction=SOC0)
        async with Rig(site, sim_settings, settings(device_timeout_s=600.0)) as rig:
            rig.controller.set_schedule(schedule)
            first = await rig.step(1.0)
            modes = set()
            # Three cycles per 15-min period: at its start (+1 s), +5 min, +10 min.
            for _ in range(grid.periods * 3 - 1):
                result = await rig.step(300.0)
                modes.add(result.mode)
                assert not result.faults
            last = await rig.step(299.0)
            return first, last, modes, rig.sim.state.tripped_h

    first, last, modes, tripped_h = run(scenario)
    assert modes == {Mode.SCHEDULE}
    start = {r.meter_id: r.import_wh for r in first.readings}
    metered = {"priority": 0.0, "household": 0.0, "business": 0.0}
    for r in last.readings:
        if r.meter_id in kinds:
            metered[kinds[r.meter_id]] += (r.import_wh - start[r.meter_id]) / 1000.0
    step = grid.step_hours
    planned = schedule.tier_energy_kwh()["served"]
    relays = schedule.relays
    implied_business = sum(
        float((forecast_demand[b.id] * relays[b.id].to_numpy()).sum() * step)
        for b in site.businesses
    )
    # PV noise (σ 5 %) can push the battery to its planned discharge limit + headroom
    # for a few minutes: the inverter trips (every load dark). Measured: 2 min a day.
    assert tripped_h < 0.1
    # Tolerance 3 % + 0.1 kWh per tier: relays switch 1 s into a period (0.1 %), meters
    # count whole Wh (≤ 1 Wh per meter and day), and trips of up to 0.1 h a day (≤ 0.1/24
    # of the day's energy in the worst hour, measured 1.7 % of the household tier).
    for tier in ("priority", "household"):
        assert metered[tier] == pytest.approx(planned[tier], rel=0.03, abs=0.1)
    assert implied_business >= business_kwh_min
    assert metered["business"] == pytest.approx(implied_business, rel=0.03, abs=0.1)


def _demand(site: Any, grid: Any) -> dict[str, np.ndarray]:
    from forecasts.demand import demand_kw

    frame: pd.DataFrame = demand_kw(site, grid)
    return {c: frame[c].to_numpy() for c in frame.columns}
