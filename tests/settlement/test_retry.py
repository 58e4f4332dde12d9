"""Held hours are retried with backoff, not every hour for ever."""

from __future__ import annotations

from datetime import timedelta

from settlement import record_readings, settle_hour
from settlement.settle import SettlementConfig, settle_pending
from tests.settlement.conftest import HOUR, hourly_readings
from tests.settlement.test_storage import seed_002_site

H = timedelta(hours=1)


def test_a_held_hour_is_retried_after_1_2_4_hours_then_settles_on_its_reading(store):
    site = seed_002_site()
    config = SettlementConfig()
    readings = hourly_readings("carlos", HOUR, [0, 3000])
    for m in ("danny", "angel", "bennie"):
        readings += hourly_readings(m, HOUR, [0, 0], [0, 100])
    record_readings(store, site, readings, recorded_at=HOUR + H)  # pv_inverter missing
    now = HOUR + H
    assert not settle_hour(store, site, HOUR, config, now).plan.complete
    retried = []
    for minutes in range(30, 8 * 60 + 1, 30):
        at = now + timedelta(minutes=minutes)
        if settle_pending(store, site, config, at):
            retried.append(minutes / 60)
    # Due 1 h after the first try, then 2 h after that, then 4 h: 1, 3, 7 h.
    assert retried == [1.0, 3.0, 7.0]
    late = record_readings(
        store, site, hourly_readings("pv_inverter", HOUR, [0, 0], [0, 900]), recorded_at=now
    )
    assert late.late_hours == (HOUR,)
    assert settle_hour(store, site, HOUR, config, now + 8 * H).plan.complete
    assert store.incomplete_hours(site.name) == []
    assert store.hour_attempts(site.name, HOUR) == 0
