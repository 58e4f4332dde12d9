"""GET /metrics: Prometheus text with the cycle, plan, SoC, tiers, weather and alarms."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lastwatt.api import create_app
from tests.service.conftest import Rig


def _scrape(tmp_path, hours=2.5):
    async def scenario():
        async with Rig(tmp_path) as rig:
            await rig.run_for(hours)
            app = create_app(rig.service, rig.credentials)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                answer = await client.get("/metrics")
            return rig, rig.service.state.job_stats(), answer

    return asyncio.run(scenario())


def test_metrics_parse_and_carry_the_service_state(tmp_path):
    rig, stats, answer = _scrape(tmp_path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("lastwatt_job_runs_total", (("job", "control"),))] == stats["control"]["runs"]
    assert samples[("lastwatt_job_duration_seconds", (("job", "dispatch"), ("stat", "max")))] > 0
    soc = rig.service.last_cycle.measured.soc_kwh
    assert samples[("lastwatt_battery_soc_kwh", ())] == soc
    status = rig.service.stored_schedule.status
    assert samples[("lastwatt_plan_status", (("status", status),))] == 1
    served = rig.service.stored_schedule.summary["tiers_kwh"]["priority"]["served"]
    key = ("lastwatt_plan_energy_kwh", (("quantity", "served"), ("tier", "priority")))
    assert samples[key] == served
    # No feed configured: the climatology is a flagged, alarmed fallback.
    assert samples[("lastwatt_weather_fallback", ())] == 1
    assert samples[("lastwatt_alarms", (("kind", "weather_fallback"),))] == 1
    assert ("lastwatt_control_faults", ()) in samples
    assert any(name == "lastwatt_load_kw" for name, _ in samples)
    assert ("lastwatt_demand_error_kwh", (("model", "profile"), ("stat", "mae"))) in samples
