"""The live service's weather: fetched over HTTP, each fallback flagged on the plan and alarmed."""

from __future__ import annotations

import asyncio
import datetime as dt

from forecasts.feed import WeatherSource
from lastwatt.config import WeatherSettings
from settlement import AlarmKind
from tests.forecasts.feed_server import FeedServer, forecast_for
from tests.service.conftest import Rig


def _weather_alarms(rig):
    return [a for a in rig.service.store.alarms() if a.kind is AlarmKind.WEATHER_FALLBACK]


async def _hour(rig):
    """One hour later: fetch, forecast and re-plan as the jobs would."""
    rig.clock.advance(3600)
    now = rig.clock.now()
    await rig.service.weather_job(now)
    await rig.service.forecast_job(now)
    await rig.service.dispatch_job(now)
    return rig.service.stored_schedule.summary["weather"]


def test_feed_outage_falls_back_to_last_good_then_climatology_and_recovers(tmp_path):
    async def scenario():
        rig_ref = {}

        def payload():
            rig = rig_ref["rig"]
            return forecast_for(rig.site.location, rig.clock.now())

        with FeedServer(payload) as server:
            weather = WeatherSettings(feed_url=server.url, max_age_hours=2.5, timeout_s=5)
            rig = Rig(tmp_path, weather=weather)
            rig_ref["rig"] = rig
            async with rig:
                flag = rig.service.stored_schedule.summary["weather"]
                assert flag["source"] == WeatherSource.FEED
                assert flag["fallback"] is False
                assert _weather_alarms(rig) == []
                server.mode = "down"
                flag = await _hour(rig)
                assert flag["source"] == WeatherSource.LAST_GOOD
                assert flag["fallback"] is True
                assert "HTTP 503" in flag["reason"]
                assert len(_weather_alarms(rig)) == 1
                flag = await _hour(rig)  # a standing fallback: no second alarm
                assert flag["source"] == WeatherSource.LAST_GOOD
                assert len(_weather_alarms(rig)) == 1
                flag = await _hour(rig)  # 3 h old > 2.5 h: stale
                assert flag["source"] == WeatherSource.CLIMATOLOGY
                assert "older than 2.5 h" in flag["reason"]
                alarms = _weather_alarms(rig)
                assert len(alarms) == 2
                assert "climatology" in alarms[-1].message
                server.mode = "ok"
                flag = await _hour(rig)
                assert flag["source"] == WeatherSource.FEED
                assert flag["age_hours"] == 0.0
                assert server.requests == 5

    asyncio.run(scenario())


def test_a_restart_during_an_outage_starts_from_the_cached_forecast(tmp_path):
    async def scenario():
        rig_ref = {}
        with FeedServer(
            lambda: forecast_for(rig_ref["rig"].site.location, rig_ref["rig"].clock.now())
        ) as server:
            weather = WeatherSettings(feed_url=server.url, max_age_hours=6, timeout_s=5)
            rig = Rig(tmp_path, weather=weather)
            rig_ref["rig"] = rig
            async with rig:
                pass
            server.mode = "down"
            again = Rig(tmp_path, start=rig.clock.now() + dt.timedelta(hours=1), weather=weather)
            rig_ref["rig"] = again
            async with again:
                flag = again.service.stored_schedule.summary["weather"]
                assert flag["source"] == WeatherSource.LAST_GOOD
                assert flag["age_hours"] == 1.0

    asyncio.run(scenario())


def test_demand_is_learned_only_from_connections_that_were_on(tmp_path):
    from microgrid.site import ConnectionKind

    async def scenario():
        # Households funded, businesses not: businesses are off (prepaid) and households
        # shed in the morning; only hours a connection was on all through are learned.
        opening = {ConnectionKind.HOUSEHOLD: 5_000_000, ConnectionKind.PRIORITY: 5_000_000}
        async with Rig(tmp_path, opening=opening, cycle_s=300.0) as rig:
            await rig.run_for(4.0)
            service = rig.service
            learner = service.demand
            seen = dict(zip(learner.connections, learner.seen.sum(axis=1), strict=True))
            through = dt.datetime.fromisoformat(service.state.get("demand_learned_through"))
            learned_hours = [h for h in service._censored if h < through]
            on_hours = {
                c.id: sum(c.id not in service._censored[h] for h in learned_hours)
                for c in rig.site.connections
            }
            summary = service.stored_schedule.summary
            stored = service.state.get("demand_model")
            return rig.site, seen, on_hours, summary, stored

    site, seen, on_hours, summary, stored = asyncio.run(scenario())
    assert all(seen[b.id] == 0 for b in site.businesses)
    assert all(seen[p.id] > 0 for p in site.priority_users)
    assert seen == on_hours
    assert summary["demand_error"]["hours"] > 0
    assert stored is not None
