"""Service plans over HTTP: the operator moves a household to another plan class."""

from __future__ import annotations

import asyncio

import httpx

from lastwatt.api import create_app
from microgrid import Site
from microgrid.site import ConnectionKind, ServicePlan
from tests.service.conftest import Rig, service_site

OPENING = {ConnectionKind.HOUSEHOLD: 2_000_000, ConnectionKind.BUSINESS: 5_000_000}


def planned_site() -> Site:
    """The service site with two plan classes; households take ``small`` by default."""
    site = service_site()
    return site.model_copy(
        update={
            "service_plans": {
                "small": ServicePlan(power_limit_w=50, daily_energy_wh=200),
                "large": ServicePlan(
                    power_limit_w=300,
                    daily_energy_wh=900,
                    evening_start_hour=18,
                    evening_end_hour=22,
                ),
            },
            "service_plan_defaults": {ConnectionKind.HOUSEHOLD: "small"},
        }
    )


def test_the_operator_changes_a_plan_and_it_is_kept_and_dispatched(tmp_path):
    site = planned_site()
    household = site.households[0].id

    async def first_run():
        async with Rig(tmp_path, site=site, opening=OPENING) as rig:
            app = create_app(rig.service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                op = ("operator", rig.passwords["operator"])
                resident = ("amina", rig.passwords["amina"])
                url = f"/api/connections/{household}/service-plan"
                answers = {
                    "anonymous": await client.put(url, json={"plan": "large"}),
                    "resident": await client.put(url, json={"plan": "large"}, auth=resident),
                    "unknown_plan": await client.put(url, json={"plan": "huge"}, auth=op),
                    "extra_field": await client.put(
                        url, json={"plan": "large", "watts": 5}, auth=op
                    ),
                    "not_a_string": await client.put(url, json={"plan": 3}, auth=op),
                    "unknown_connection": await client.put(
                        "/api/connections/NOPE/service-plan", json={"plan": "large"}, auth=op
                    ),
                    "priority": await client.put(
                        f"/api/connections/{site.priority_users[0].id}/service-plan",
                        json={"plan": "large"},
                        auth=op,
                    ),
                    "ok": await client.put(url, json={"plan": "large"}, auth=op),
                    "list": await client.get("/api/service-plans", auth=op),
                }
                await rig.service.dispatch_job(rig.clock.now())
                schedule = rig.service.schedule
            return answers, schedule

    answers, schedule = asyncio.run(first_run())
    assert answers["anonymous"].status_code == 401
    assert answers["resident"].status_code == 403
    assert answers["unknown_plan"].status_code == 422
    assert "unknown service plan 'huge'; defined: large, small" in answers["unknown_plan"].text
    assert answers["extra_field"].status_code == 422
    assert answers["not_a_string"].status_code == 422
    assert answers["unknown_connection"].status_code == 404
    assert answers["priority"].status_code == 422
    assert "never limited" in answers["priority"].text
    assert answers["ok"].status_code == 200
    listed = answers["list"].json()
    assert listed["assignments"] == {household: "large"}
    assert listed["plans"]["large"]["connections"] == 1
    assert listed["defaults"] == {"household": "small"}
    # The next plan holds the household to its new plan: its meter's budget and limit.
    assert schedule is not None
    assert schedule.energy_budget_wh[household] >= 900
    others = [h.id for h in site.households[1:]]
    assert all(schedule.energy_budget_wh[h] >= 200 for h in others)
    assert schedule.meter_limit_kw is not None
    limits = schedule.meter_limit_kw
    assert limits[household].where(limits[household] < float("inf")).max() <= 0.3
    assert limits[others].where(limits[others] < float("inf")).max().max() <= 0.05

    async def restart():
        async with Rig(tmp_path, site=site) as rig:
            create_app(rig.service, rig.credentials)
            return rig.service.site

    kept = asyncio.run(restart())
    assert kept.service_plan_of(household) == site.service_plans["large"]
    assert kept.service_plan_of(site.households[1].id) == site.service_plans["small"]
