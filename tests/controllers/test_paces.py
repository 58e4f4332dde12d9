"""Two paces: the fast path keeps its deadline whatever a meter bus does; replaced meters
and a restarted container are read again at once."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from controllers.failsafe import Mode
from controllers.rtu import RtuBus
from controllers.simulator import SimulatedContainer, SimulatorSettings
from settlement import AlarmKind, EnergyStatus, SqliteLedgerStore, record_readings, settle_hour
from tests.controllers.conftest import Rig, run, settings

STEP_S = 30.0


def _slow_bus_settings():
    base = settings(timeout_s=2.0)  # a meter answering in 1.5 s is slow, not silent
    return dataclasses.replace(base, fast_deadline_s=0.25, sweep_deadline_s=2.0)


def test_a_slow_bus_is_faulted_and_backed_off_while_setpoints_keep_their_pace(site):
    slow = "meters-b"

    async def scenario():
        async with Rig(site, ctl_settings=_slow_bus_settings()) as rig:
            for _ in range(2):
                await rig.step(STEP_S)
            for c in site.connections:
                if c.meter.gateway == slow:
                    rig.sim.faults.delay_s[(slow, c.meter.unit_id)] = 1.5
            fast_s, bus_faults, alarms, other_bus_reads = [], [], [], 0
            loop = asyncio.get_running_loop()
            end = loop.time() + 5.0
            while loop.time() < end:  # real time: 0.2-s cycles, 1 s of controller time each
                rig.clock.advance(1.0)
                result = await rig.controller.cycle(wait_for_sweeps=False)
                fast_s.append(result.fast_path_s)
                assert not [
                    f for f in result.faults if f.device in ("pv_inverter", "battery_inverter")
                ]
                assert result.mode is not Mode.SAFE
                bus_faults += result.bus_faults
                alarms += result.alarms
                other_bus_reads += sum(
                    1 for r in result.readings if r.meter_id.startswith(("P", "H"))
                )
                await asyncio.sleep(0.2)
            # The inverters and relay boards were served every cycle, on time.
            assert max(fast_s) < 0.25
            # The slow bus was faulted once and then left alone for its back-off (10 s of
            # controller time here), not hammered every cycle; the alarm was raised once.
            assert [f.bus for f in bus_faults] == [slow]
            assert "deadline" in bus_faults[0].message
            assert [(a.kind, a.subject) for a in alarms] == [(AlarmKind.BUS_FAULT, slow)]
            # The other bus kept sweeping meanwhile.
            assert other_bus_reads > 0
            rig.sim.faults.clear()
            cleared = []
            for _ in range(40):
                rig.clock.advance(1.0)
                result = await rig.controller.cycle()
                cleared += result.cleared
                if (AlarmKind.BUS_FAULT, slow) in cleared:
                    break
            assert (AlarmKind.BUS_FAULT, slow) in cleared
            assert result.measured.meters_missing == 0

    run(scenario)


def test_a_replaced_meter_is_rebaselined_switched_alarmed_and_settled(site, tmp_path):
    household = site.households[0]
    index = [c.id for c in site.connections].index(household.id)

    async def scenario():
        store = SqliteLedgerStore(tmp_path / "ledger.sqlite", synchronous="NORMAL")
        async with Rig(site, start=dt.datetime(2026, 3, 20, 8, 0, tzinfo=dt.UTC)) as rig:

            async def step():
                result = await rig.step(STEP_S)
                record_readings(store, rig.site, result.readings, recorded_at=result.time)
                return result

            for _ in range(240):  # until the old meter has counted something
                await step()
                if rig.sim.state.meter_wh[index] >= 20:
                    break
            assert rig.sim.state.meter_wh[index] >= 20
            rig.sim.state.meter_wh[index] = 0.0  # a new meter, counting from zero
            rig.controller.set_credit({household.id: False})  # and a disconnect decided
            result = await step()
            next_hour = result.time.replace(minute=0, second=0) + dt.timedelta(hours=1)
            # Re-baselined within this one sweep: read, not refused; its relay was written.
            assert household.id in {r.meter_id for r in result.readings}
            assert not [f for f in result.faults if f.device == household.id]
            assert not rig.sim.supply_closed(household.id)
            assert [(a.kind, a.subject) for a in result.alarms] == [
                (AlarmKind.METER_REPLACED, household.id)
            ]
            assert any(
                r.kind is AlarmKind.METER_REPLACED and r.subject == household.id
                for r in store.alarm_records()
            )
            rig.controller.set_credit({})
            result = await step()
            assert rig.sim.supply_closed(household.id)
            while result.time <= next_hour + dt.timedelta(hours=1):
                result = await step()
            plan = settle_hour(store, rig.site, next_hour).plan
            energy = plan.energies[household.id]
            assert energy.status is EnergyStatus.MEASURED
            assert energy.import_wh > 0
        store.close()

    run(scenario)


def test_a_restarted_container_is_read_again_within_two_sweeps(site):
    async def scenario():
        async with Rig(site) as rig:
            for _ in range(3):
                result = await rig.step(STEP_S)
            assert result.measured.meters_missing == 0
            # The battery's charge register is derived from others and kept monotone by the
            # controller, not a device counter: it has nothing to re-baseline.
            counted = {
                r.meter_id
                for r in result.readings
                if r.import_wh > 0 and r.meter_id != "battery_inverter"
            }
            assert len(counted) >= 3
            await rig.sim.stop()
            rig.sim = SimulatedContainer(rig.site, rig.clock)  # every counter back at zero
            await rig.sim.start()
            results = [await rig.step(STEP_S) for _ in range(2)]
            assert results[-1].measured.meters_missing == 0
            # A counter that went down is a new baseline, never refused as garbage.
            assert not [f for r in results for f in r.faults if f.kind == "garbage"]
            replaced = {
                a.subject for r in results for a in r.alarms if a.kind is AlarmKind.METER_REPLACED
            }
            assert counted <= replaced
            for c in rig.site.priority_users:
                assert rig.sim.supply_closed(c.id)

    run(scenario)


def test_an_rtu_bus_costs_its_wire_time_one_transaction_at_a_time(site):
    bus = RtuBus(baud=9_600)
    meters = [c for c in site.connections if c.meter.gateway == "meters-a"]

    async def scenario():
        sim_settings = SimulatorSettings(rtu_buses={"meters-a": bus})
        async with Rig(site, sim_settings=sim_settings) as rig:
            await rig.step(STEP_S)  # connections open, relays written
            loop = asyncio.get_running_loop()
            started = loop.time()
            result = await rig.step(STEP_S)
            elapsed = loop.time() - started
            assert not result.faults
            # Every meter of the bus once (one 6-register read each), one after the other.
            floor = len(meters) * bus.transaction_s(3, 6)
            assert result.sweeps_s["meters-a"] >= floor
            assert elapsed < 2 * floor + 0.5
            assert result.sweeps_s["meters-b"] < floor / 3  # the TCP bus is not slowed

    run(scenario)
