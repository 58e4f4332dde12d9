"""Fault injection: the controller keeps running, reaches the safe state within 2 × the
device timeout, recovers, and never opens a priority relay."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.control import Controller
from controllers.failsafe import Mode
from tests.controllers.conftest import DEVICE_TIMEOUT_S, Rig, run

STEP_S = 30.0  # controller cycle period [s of simulated time], < device timeout / 2


def _priority_closed(rig: Rig) -> bool:
    return all(rig.sim.supply_closed(c.id) for c in rig.site.priority_users)


def _physically_safe(rig: Rig) -> bool:
    """Priority on, households and businesses off, PV inverter at its safe limit or reverted."""
    site = rig.site
    return (
        _priority_closed(rig)
        and not any(rig.sim.supply_closed(c.id) for c in site.households + site.businesses)
        and rig.sim.pv_limit_pct() in (60.0, 100.0)
    )


async def _settle(rig: Rig, cycles: int = 3) -> None:
    for _ in range(cycles):
        result = await rig.step(STEP_S)
        assert _priority_closed(rig)
    assert result.mode is Mode.SOC_RULES  # no schedule given: SoC 50 % → households on
    assert any(rig.sim.supply_closed(c.id) for c in rig.site.households)


async def _until(rig: Rig, predicate: Any, limit_s: float) -> float:
    waited = 0.0
    while waited <= limit_s:
        result = await rig.step(STEP_S)
        waited += STEP_S
        assert _priority_closed(rig), "a priority relay was opened"
        if predicate(result):
            return waited
    raise AssertionError(f"condition not reached within {limit_s} s")


BATTERY = ("container", 2)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("timeout", "transport"), ("exception", "exception"), ("garbage", "garbage")],
)
def test_battery_fault_reaches_safe_state_and_recovers(site, fault, kind):
    async def scenario():
        async with Rig(site) as rig:
            await _settle(rig)
            if fault == "timeout":
                rig.sim.faults.delay_s[BATTERY] = 1.0  # client timeout is 0.3 s
            elif fault == "exception":
                rig.sim.faults.exception[BATTERY] = 4  # device failure
            else:
                rig.sim.faults.garbage.add(BATTERY)
            kinds: set[str] = set()

            def safe(result):
                kinds.update(f.kind for f in result.faults if f.device == "battery_inverter")
                return result.mode is Mode.SAFE and _physically_safe(rig)

            await _until(rig, safe, 2 * DEVICE_TIMEOUT_S)
            assert kinds == {kind}
            rig.sim.faults.clear()
            await _until(rig, lambda r: r.mode is Mode.SOC_RULES, 60.0)
            await rig.step(STEP_S)
            assert any(rig.sim.supply_closed(c.id) for c in rig.site.households)

    run(scenario)


def test_gateway_down_reaches_safe_state_and_recovers(site):
    async def scenario():
        async with Rig(site) as rig:
            await _settle(rig)
            await rig.sim.stop_gateway("container")
            await _until(
                rig, lambda r: r.mode is Mode.SAFE and _physically_safe(rig), 2 * DEVICE_TIMEOUT_S
            )
            # The relay board's own watchdog opened the household groups; the controller
            # could not reach it. The PV inverter's own revert timer dropped its limit.
            assert rig.sim.pv_limit_pct() == 100.0
            await rig.sim.start_gateway("container")
            await _until(rig, lambda r: r.mode is Mode.SOC_RULES and not r.faults, 60.0)
            await rig.step(STEP_S)
            assert any(rig.sim.supply_closed(c.id) for c in rig.site.households)

    run(scenario)


def test_dropped_connections_are_reconnected_and_setpoints_reapplied(site):
    async def scenario():
        async with Rig(site) as rig:
            await _settle(rig)
            for gateway in rig.site.gateways:
                rig.sim.drop_connections(gateway)
            rig.sim.restart_device("container", 1)  # and the inverter lost its limit
            for _ in range(3):
                result = await rig.step(STEP_S)
                assert result.mode is not Mode.SAFE
                assert _priority_closed(rig)
            await _until(rig, lambda r: not r.faults, 120.0)
            assert rig.sim.pv.raw("123.WMaxLim_Ena") == 1

    run(scenario)


def test_restarted_device_forgets_setpoints_and_gets_them_back(site):
    async def scenario():
        async with Rig(site) as rig:
            await _settle(rig)
            assert rig.sim.pv.raw("123.WMaxLim_Ena") == 1
            assert rig.sim.storage.raw("124.StorCtl_Mod") == 3
            rig.sim.restart_device(*BATTERY)
            rig.sim.restart_device("container", 1)
            rig.sim.restart_device("container", 10)  # relay board: every channel opens
            result = await rig.step(1.0)  # the very next cycle reads back and re-applies
            assert result.writes > 0
            assert rig.sim.pv.raw("123.WMaxLim_Ena") == 1
            assert rig.sim.pv.raw("123.WMaxLimPct_RvrtTms") == DEVICE_TIMEOUT_S
            assert rig.sim.storage.raw("124.StorCtl_Mod") == 3
            assert rig.sim.storage.raw("124.InOutWRte_RvrtTms") == DEVICE_TIMEOUT_S
            assert any(rig.sim.supply_closed(c.id) for c in rig.site.households)

    run(scenario)


def test_meter_faults_are_values_not_crashes(site):
    meter = site.households[0].meter
    key = (meter.gateway, meter.unit_id)

    async def scenario():
        async with Rig(site) as rig:
            await _settle(rig)
            rig.sim.faults.exception[key] = 2
            result = await rig.step(STEP_S)
            (fault,) = result.faults
            assert fault.kind == "exception"
            assert "illegal data address" in fault.message
            assert result.measured.meters_missing == 1
            assert site.households[0].id not in {r.meter_id for r in result.readings}
            rig.sim.faults.clear()
            await _until(rig, lambda r: r.measured.meters_missing == 0, 60.0)

    run(scenario)


def test_credit_and_operator_commands(site):
    household, business = site.households[0], site.businesses[0]
    priority = site.priority_users[0]

    async def scenario():
        async with Rig(site) as rig:
            await _settle(rig)
            rig.controller.set_credit({household.id: False, priority.id: False})
            await rig.step(STEP_S)
            assert not rig.sim.supply_closed(household.id)
            assert rig.sim.supply_closed(priority.id)  # never cut for credit
            rig.controller.set_credit({})
            await rig.step(STEP_S)
            assert rig.sim.supply_closed(household.id)
            # Only an explicit operator command opens a priority relay.
            rig.controller.operator_switch(priority.id, closed=False, reason="line repair")
            await rig.step(STEP_S)
            assert not rig.sim.supply_closed(priority.id)
            rig.controller.operator_release(priority.id)
            await rig.step(STEP_S)
            assert rig.sim.supply_closed(priority.id)
            assert not rig.sim.supply_closed(business.id)  # SoC 50 % < 70 %: businesses off

    run(scenario)
    controller = Controller(site)
    with pytest.raises(ValueError, match="reason"):
        controller.operator_switch(priority.id, closed=False, reason=" ")
