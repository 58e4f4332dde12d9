"""Retention: telemetry folded to hourly means, readings of settled hours thinned losslessly."""

from __future__ import annotations

import asyncio
import datetime as dt

from lastwatt.state import ServiceState
from settlement import SettlementConfig, settle_hour
from settlement.settle import plan_site_hour
from tests.service.conftest import MORNING, Rig

T0 = dt.datetime(2026, 8, 1, 0, 0, tzinfo=dt.UTC)


def test_telemetry_is_folded_into_hourly_means_then_dropped():
    state = ServiceState(":memory:")
    for minute in range(0, 180, 5):  # three hours of 5-min snapshots
        state.add_telemetry(
            T0 + dt.timedelta(minutes=minute),
            {"soc_kwh": float(minute), "faults": minute % 7, "mode": "normal", "pv_kw": None},
        )
    folded, dropped = state.downsample_telemetry(T0 + dt.timedelta(hours=2), T0)
    assert (folded, dropped) == (24, 0)
    assert state.telemetry_count() == (12, 2)
    first, second = state.telemetry_hourly()
    assert first["samples"] == 12
    assert first["soc_kwh"] == sum(range(0, 60, 5)) / 12
    assert first["faults"] == 6  # the worst of the hour
    assert first["mode"] == "normal"
    assert first["pv_kw"] is None
    assert second["soc_kwh"] == sum(range(60, 120, 5)) / 12
    # A snapshot arriving late for a folded hour is averaged in with its weight.
    state.add_telemetry(T0 + dt.timedelta(minutes=30), {"soc_kwh": 1000.0})
    state.downsample_telemetry(T0 + dt.timedelta(hours=2), T0)
    first = state.telemetry_hourly()[0]
    assert first["samples"] == 13
    assert first["soc_kwh"] == (sum(range(0, 60, 5)) + 1000.0) / 13
    # Hourly rows past their own limit go.
    assert state.downsample_telemetry(T0, T0 + dt.timedelta(hours=1, minutes=30)) == (0, 2)


def test_thinning_settled_readings_changes_no_settlement(tmp_path):
    async def scenario():
        async with Rig(tmp_path, reading_interval_s=300.0) as rig:
            await rig.run_for(4.0)
            store, site = rig.service.store, rig.site
            key = SettlementConfig().site_key(site)
            hours = [MORNING + dt.timedelta(hours=k) for k in range(1, 3)]
            for hour in hours:
                settle_hour(store, site, hour)
            before = [plan_site_hour(store, site, h, SettlementConfig()) for h in hours]
            rows_before = len(store.readings(MORNING, MORNING + dt.timedelta(hours=4)))
            deleted = store.thin_readings(key, MORNING, MORNING + dt.timedelta(hours=3))
            rows_after = len(store.readings(MORNING, MORNING + dt.timedelta(hours=4)))
            after = [plan_site_hour(store, site, h, SettlementConfig()) for h in hours]
            again = [settle_hour(store, site, h) for h in hours]
            return deleted, rows_before, rows_after, before, after, again, store.verify().ok

    deleted, rows_before, rows_after, before, after, again, ok = asyncio.run(scenario())
    assert deleted > 0
    assert rows_after == rows_before - deleted
    assert [p.charges for p in after] == [p.charges for p in before]
    assert [p.payouts for p in after] == [p.payouts for p in before]
    assert all(not r.transfers for r in again)  # nothing to correct
    assert ok
