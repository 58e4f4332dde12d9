"""Without a plan the controller still limits every business at its meter (Modbus TCP)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from controllers.failsafe import FailsafeSettings, Mode
from controllers.simulator import SimulatorSettings
from dispatch.setpoints import safe_setpoints
from tests.controllers.conftest import DEVICE_TIMEOUT_S, Rig, run, settings

# Local 11:00 in Niamey: the businesses are open and want more than the fallback share.
LATE_MORNING = dt.datetime(2026, 3, 20, 10, 0, tzinfo=dt.UTC)


def test_safe_setpoints_share_the_fallback_power_by_rated_power(site):
    sp = safe_setpoints(site, pd.Timestamp(LATE_MORNING), 2.0, periods=2, business_kw=1.0)
    period = sp.at(sp.index[0])
    assert period is not None
    rated = {b.id: b.business.power_kw_max for b in site.businesses}
    assert sum(period.power_limit_kw.values()) == pytest.approx(1.0)
    for unit, kw in period.power_limit_kw.items():
        assert kw == pytest.approx(rated[unit] / sum(rated.values()))
    with pytest.raises(ValueError, match="business_kw"):
        safe_setpoints(site, pd.Timestamp(LATE_MORNING), 2.0, business_kw=-1.0)


def test_soc_rules_write_each_business_meter_its_fallback_limit(site):
    # No schedule ever given, SoC 90 %: the SoC rules switch households and businesses
    # on. Each business meter must hold its share of 10 % of the battery inverter's
    # rating (5 kW → 0.5 kW for the four), read back from the simulated meters, and no
    # business draws more; without the limit each would draw its demand (0.8–2 kW).
    fs = FailsafeSettings(device_timeout_s=DEVICE_TIMEOUT_S, rules_business_pct=10.0)
    ctl = dataclasses.replace(settings(), failsafe=fs)
    rated = np.array([b.business.power_kw_max for b in site.businesses])
    expected = site.battery.power_kw_max * 0.10 * rated / rated.sum()
    ids = [c.id for c in site.connections]
    columns = [ids.index(b.id) for b in site.businesses]

    async def scenario():
        sim_settings = SimulatorSettings(seed=1, pv_noise=0.0, soc_fraction=0.9)
        async with Rig(site, sim_settings, ctl, start=LATE_MORNING) as rig:
            modes, drawn = {(await rig.controller.cycle()).mode}, []
            for _ in range(10):  # 10 min, a cycle a minute
                result = await rig.step(60.0)
                modes.add(result.mode)
                drawn.append(rig.sim.drawn_kw[columns].copy())
            limits, _, _ = rig.sim._meter_settings()
            closed = rig.sim._closed()[columns]
            return modes, np.array(drawn), limits[columns], closed, rig.sim.state

    modes, drawn, limits, closed, physics = run(scenario)
    assert modes == {Mode.SOC_RULES}
    assert closed.all(), "the SoC rules switch the businesses on at 90 %"
    # Without the limits the four (0.8–2 kW each) overload the 5 kW inverter: 2 trips.
    assert physics.inverter_trips == 0
    assert (drawn <= expected + 1e-3).all(), drawn.max(axis=0)
    assert drawn[-1].sum() > 0, "the businesses run, within their limits"
    np.testing.assert_allclose(limits, expected, atol=1e-3)  # whole W in the register
