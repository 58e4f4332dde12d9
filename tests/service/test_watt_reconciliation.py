"""The service reconciles Σ WATT with the battery's measured energy after every settled hour."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from settlement.alarms import AlarmKind
from settlement.ledger import HELD, WATT_ISSUER, Asset, Batch, Transfer
from settlement.settle import settlement_key
from tests.service.conftest import MORNING, Rig

HOUR = dt.timedelta(hours=1)
EVENING = MORNING + 10 * HOUR  # 17:00 local: the night runs on the battery


@pytest.mark.slow
def test_a_night_on_the_battery_settles_every_hour_and_watt_reconcile_each_period(tmp_path):
    async def scenario():
        async with Rig(tmp_path, start=EVENING) as rig:
            service = rig.service
            assert service.settlement.storage is not None  # the default: storage on
            await rig.run_for(15.0)
            store = service.store
            settled = [
                EVENING + dt.timedelta(hours=h)
                for h in range(14)
                if store.keys_with_prefix(settlement_key(rig.site.name, EVENING + h * HOUR))
            ]
            reconciled = service.state.get("watt_unheld_wh")
            mismatches = [r for r in store.alarm_records() if r.kind is AlarmKind.WATT_MISMATCH]
            night = [
                s
                for s in store.readings(EVENING, EVENING + dt.timedelta(hours=14))
                if s.meter_id == "battery_inverter"
            ]
            incomplete = store.incomplete_hours(rig.site.name)
            held = store.balance(HELD)
            outstanding = -store.balance(WATT_ISSUER, Asset.WATT)
            # A rogue mint (WATT for energy never stored) is caught at the next hour.
            store.post(
                Batch(
                    "rogue",
                    (Transfer(WATT_ISSUER, "meter:H001", Asset.WATT, 10**6, "watt.mint"),),
                )
            )
            await rig.run_for(1.5)
            after = [r for r in store.alarm_records() if r.kind is AlarmKind.WATT_MISMATCH]
            return settled, reconciled, mismatches, night, incomplete, held, outstanding, after

    settled, reconciled, mismatches, night, incomplete, held, outstanding, after = asyncio.run(
        scenario()
    )
    assert len(settled) == 14  # 16:00 … 05:00 UTC
    assert night[-1].export_wh > night[0].export_wh  # the battery delivered at night
    assert incomplete == []  # every hour settled completely
    assert held == 0
    assert reconciled is not None  # the service reconciled
    assert mismatches == []
    assert outstanding >= 0  # the night may burn every WATT (the battery ran empty)
    assert len(after) == 1
    assert "more" in after[0].message or "stores" in after[0].message
