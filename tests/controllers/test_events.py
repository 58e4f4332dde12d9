"""Device events over Modbus: a meter's limit trip and the inverter's overload are alarms."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd

from controllers.failsafe import FailsafeSettings
from controllers.simulator import SimulatorSettings
from dispatch.setpoints import Setpoints
from settlement.alarms import AlarmKind
from tests.controllers.conftest import START, Rig, run, settings

NOON = START + dt.timedelta(hours=12)  # local noon: businesses open


def _setpoints(site, discharge_kw: float, business_limit_kw: float) -> Setpoints:
    index = pd.date_range(pd.Timestamp(NOON), periods=96, freq="15min")
    groups = tuple(g.id for g in site.relay_groups)
    businesses = [b.id for b in site.businesses]
    return Setpoints(
        inverters=pd.DataFrame(
            {"pv_limit_kw": np.inf, "charge_limit_kw": np.inf, "discharge_limit_kw": discharge_kw},
            index=index,
        ),
        relays=pd.DataFrame(True, index=index, columns=[*groups, *businesses]),
        power_limit_kw=pd.DataFrame(business_limit_kw, index=index, columns=businesses),
        switch_only=groups,
    )


def _alarms(site, discharge_kw, business_limit_kw, headroom_pct, hours, until):
    async def scenario():
        ctl = settings(device_timeout_s=600.0)
        fs = FailsafeSettings(device_timeout_s=600.0, discharge_headroom_pct=headroom_pct)
        ctl = dataclasses.replace(ctl, failsafe=fs)
        async with Rig(site, SimulatorSettings(seed=1), ctl, start=NOON) as rig:
            rig.controller.set_schedule(_setpoints(site, discharge_kw, business_limit_kw))
            alarms, opened = [], set()
            # 20-s steps: a tripped meter recloses by itself after 60 s.
            for _ in range(int(hours * 180)):
                result = await rig.step(20.0)
                alarms += result.alarms
                opened |= {c for c, why in result.measured.meters_open.items() if why == "tripped"}
                if until in {a.kind for a in alarms}:
                    break
            return alarms, rig.sim.state, dict(rig.controller.events.counts), opened

    return run(scenario)


def test_a_business_above_its_limit_trips_its_meter_and_raises_an_alarm(site):
    # Every relay closed, businesses limited to 10 W: the first business load above
    # 10 W trips its meter (the limit is written in the first cycle).
    alarms, physics, counts, opened = _alarms(
        site, np.inf, 0.01, 100.0, hours=10, until=AlarmKind.CONNECTION_TRIP
    )
    trips = [a for a in alarms if a.kind is AlarmKind.CONNECTION_TRIP]
    assert trips
    assert {a.subject for a in trips} <= {b.id for b in site.businesses}
    # The meter reports itself open after the trip: the console says why it is dark.
    assert {a.subject for a in trips} <= opened
    assert counts[AlarmKind.CONNECTION_TRIP.value] == int(physics.meter_trips.sum())


def test_an_inverter_overload_is_an_alarm(site):
    # A discharge limit of 0 kW with no headroom; everything closed: more load than PV
    # trips the inverter.
    alarms, physics, counts, _ = _alarms(
        site, 0.0, np.inf, 0.0, hours=0.5, until=AlarmKind.INVERTER_OVERLOAD
    )
    assert physics.inverter_trips >= 1
    assert AlarmKind.INVERTER_OVERLOAD in {a.kind for a in alarms}
    assert counts[AlarmKind.INVERTER_OVERLOAD.value] >= 1
