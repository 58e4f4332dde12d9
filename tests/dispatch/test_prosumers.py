"""Prosumers: their export is supply at their connections, never negative demand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dispatch import HouseholdGroupLoad, problem_from_site, solve_dispatch
from forecasts.forecast import forecast_site
from forecasts.weather import synthetic_weather
from microgrid import Site, TimeGrid
from microgrid.site import RooftopPv
from tests.dispatch.test_dispatch import problem
from tests.sites import village

ROOF = RooftopPv(dc_capacity_kwp=3.0, surface_tilt_deg=15, surface_azimuth_deg=180)


def test_export_serves_households_the_container_alone_cannot():
    group = HouseholdGroupLoad("g1", np.full(4, 2.0))
    alone = problem(pv=0.0, households=(group,))
    with_export = dataclasses.replace(alone, prosumer_export_kw=np.full(4, 2.5))
    served = [
        solve_dispatch(p).tier_energy_kwh().loc["household", "served"] for p in (alone, with_export)
    ]
    assert served == [pytest.approx(0.0, abs=1e-6), pytest.approx(8.0)]


def test_export_beyond_demand_is_curtailed_not_infeasible():
    group = HouseholdGroupLoad("g1", np.full(4, 1.0))
    flooded = dataclasses.replace(
        problem(pv=5.0, households=(group,)), prosumer_export_kw=np.full(4, 9.0)
    )
    schedule = solve_dispatch(flooded)
    assert schedule.status.value in ("optimal", "time_limit")
    assert schedule.tier_energy_kwh().loc["household", "served"] == pytest.approx(4.0)


def _prosumer_village() -> Site:
    site = village(("HG01",), lambda b: b[:2], 2, 6.0, 5.0, 10.0, 5.0)
    assert len(site.households) >= 3
    connections = tuple(
        c.model_copy(update={"pv": ROOF}) if c.id in {h.id for h in site.households[:3]} else c
        for c in site.connections
    )
    return Site.model_validate(site.model_copy(update={"connections": connections}).model_dump())


def test_forecast_models_prosumer_pv_with_the_pvlib_chain_and_splits_import_from_export():
    site = _prosumer_village()
    grid = TimeGrid.from_days("2026-03-20", 1, site.location.timezone)
    forecast = forecast_site(site, grid, synthetic_weather(grid.index, site.location, seed=1))
    roofs = forecast.prosumer_pv_kw
    assert list(roofs.columns) == [c.id for c in site.prosumers]
    local = roofs.index.tz_convert(site.location.timezone).hour
    assert (roofs[(local < 5) | (local > 20)] == 0).all().all()
    assert 0.5 < roofs[(local >= 11) & (local <= 13)].max().max() <= ROOF.dc_capacity_kwp
    export, imported = forecast.prosumer_export_kw(), forecast.grid_demand_kw()
    assert (export >= 0).all().all()
    assert (imported >= 0).all().all()
    for c in site.prosumers:
        net = forecast.demand_kw[c.id] - roofs[c.id]
        assert np.allclose(imported[c.id] - export[c.id], net)
    # Dispatch takes import as demand and export as supply.
    dispatch_problem = problem_from_site(
        site,
        grid,
        forecast.pv_kw["p50"].to_numpy(),
        forecast.pv_kw["p10"].to_numpy(),
        {c: imported[c].to_numpy() for c in imported.columns},
        soc_kwh=5.0,
        export_kw={c: export[c].to_numpy() for c in export.columns},
    )
    assert dispatch_problem.prosumer_export_kw is not None
    assert dispatch_problem.prosumer_export_kw.sum() == pytest.approx(export.to_numpy().sum())
    with pytest.raises(ValueError, match="without PV"):
        problem_from_site(
            site,
            grid,
            forecast.pv_kw["p50"].to_numpy(),
            forecast.pv_kw["p10"].to_numpy(),
            {c: imported[c].to_numpy() for c in imported.columns},
            soc_kwh=5.0,
            export_kw={site.businesses[0].id: export.iloc[:, 0].to_numpy()},
        )
