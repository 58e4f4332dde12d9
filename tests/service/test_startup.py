"""Start-up from what is measured: the service started at any hour drives a grid that holds.

The service and the simulated container (real Modbus TCP on loopback) share one
simulated clock. Started at each hour of a day, a short run each: the meters' relays
come up closed (their power-on default), the relay history is empty, and yet no inverter
trips and priority users are never dark.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from lastwatt.relay_history import UNKNOWN, RelayHistory
from microgrid.io import load_site
from microgrid.site import ConnectionKind
from tests.controllers.conftest import on_free_ports, small_site
from tests.service.conftest import Rig

DAY = dt.datetime(2026, 3, 19, 23, 0, tzinfo=dt.UTC)  # local midnight, Africa/Niamey


COIN = 1_000_000
OPENING = {
    ConnectionKind.HOUSEHOLD: 5 * COIN,
    ConnectionKind.BUSINESS: 20 * COIN,
    ConnectionKind.PRIORITY: 10 * COIN,
}


async def _start_and_run(data_dir, start: dt.datetime, hours: float, site=None):
    async with Rig(data_dir, site=site, start=start, opening=OPENING) as rig:
        relays = rig.service.dispatch_relays_at_start
        await rig.run_for(hours)
        return relays, rig.sim.state, rig.service.last_cycle


def _check(relays, physics, last) -> None:
    # Unknown relay history: dispatch saw every unit as off, never as "just switched on".
    assert set(relays.values()) == {UNKNOWN}
    assert physics.inverter_trips == 0, "the inverter tripped on overload"
    assert physics.low_battery_trips == 0
    assert physics.tripped_h == 0.0, "priority users were dark"
    assert last is not None
    assert not last.faults


@pytest.mark.slow
def test_started_mid_morning_nothing_trips(tmp_path):
    relays, physics, last = asyncio.run(
        _start_and_run(tmp_path, DAY + dt.timedelta(hours=10), hours=0.5)
    )
    _check(relays, physics, last)


@pytest.mark.slow
def test_default_site_started_at_ten_nothing_trips(tmp_path):
    # The reported case (≈ 1 min): the default 400-connection site started at 10:00
    # local, every meter relay read back closed. With the old start-up ("closed for
    # 0 h") and no meter limits the inverter trips within the first 1.5 h (measured:
    # 1 trip, 5 min dark for everyone); with both, nothing trips.
    site = on_free_ports(load_site())
    relays, physics, last = asyncio.run(
        _start_and_run(tmp_path, DAY + dt.timedelta(hours=10), hours=1.5, site=site)
    )
    _check(relays, physics, last)


@pytest.mark.slow
@pytest.mark.parametrize("hour", range(24))
def test_started_at_any_hour_nothing_trips(tmp_path, hour):
    # The controllers' small site (4 kWp, 5 kW battery inverter): in business hours its
    # four businesses at full demand overload PV and battery together, as the default
    # site's seventy do. Checked: with unknown relays taken as "closed for 0 h" (with or
    # without meter limits) the runs started at 10:00 and 13:00 local trip the inverter;
    # the service's 10 kWp site never trips, whatever the start-up does.
    relays, physics, last = asyncio.run(
        _start_and_run(
            tmp_path, DAY + dt.timedelta(hours=hour), hours=1.5, site=on_free_ports(small_site())
        )
    )
    _check(relays, physics, last)


def test_relay_history_survives_a_restart_and_unknown_states_stay_conservative():
    t0 = dt.datetime(2026, 3, 20, 10, tzinfo=dt.UTC)
    history = RelayHistory()
    history.observe({"B1": False, "HG1": True}, t0, household_groups=("HG1",))
    history.observe({"B1": True, "HG1": False}, t0 + dt.timedelta(minutes=5), ("HG1",))
    history.observe({"B1": True, "HG1": False}, t0 + dt.timedelta(minutes=15), ("HG1",))
    assert history.shed_hours == {"HG1": pytest.approx(10 / 60)}
    restored = RelayHistory.from_json(history.to_json())
    later = t0 + dt.timedelta(hours=1)
    # After a restart: B1 read back as persisted → its time in state continues; HG1 read
    # back closed although persisted open → changed while nobody watched → unknown.
    restored.observe({"B1": True, "HG1": True}, later, ("HG1",))
    states = restored.relay_states(later, ["B1", "HG1", "B2"])
    assert states["B1"].closed
    assert states["B1"].hours_in_state == pytest.approx(55 / 60)
    assert states["HG1"] == UNKNOWN
    assert states["B2"] == UNKNOWN  # never read back
    assert restored.shed_hours == {"HG1": pytest.approx(10 / 60)}
    assert RelayHistory.from_json({"since": {"B1": "garbage"}}).since == {}
