"""Seed 002 over Modbus: prosumers and the battery settle every hour of a simulated day.

Two households have their own panels (seed 002's Angel and Bennie), the rest consume;
the controller polls the simulated container over loopback Modbus TCP every 5 minutes,
its readings (the prosumers' export registers, the battery's derived charge register)
go to the ledger, and every hour is settled with storage accounting.
"""

from __future__ import annotations

import datetime as dt

import pytest

from controllers.simulator import SimulatorSettings
from dispatch.setpoints import Setpoints
from microgrid import Site
from microgrid.site import RooftopPv
from settlement import SqliteLedgerStore, record_readings, settle_hour
from settlement.ledger import HELD, WATT_ISSUER, Asset
from settlement.settle import SettlementConfig, storage_policy_for
from settlement.storage import STORAGE_PRODUCER
from tests.controllers.conftest import Rig, run, settings
from tests.controllers.test_day import SOC0, _schedule

ROOF = RooftopPv(dc_capacity_kwp=3.0, surface_tilt_deg=15, surface_azimuth_deg=180)
HOUR = dt.timedelta(hours=1)


def _with_prosumers(site: Site) -> tuple[Site, tuple[str, str]]:
    angel, bennie = (c.id for c in site.households[:2])
    connections = tuple(
        c.model_copy(update={"pv": ROOF}) if c.id in (angel, bennie) else c
        for c in site.connections
    )
    small = site.model_copy(update={"connections": connections})
    return Site.model_validate(small.model_dump()), (angel, bennie)


@pytest.mark.slow
def test_a_modbus_day_settles_all_24_hours_with_prosumers_and_the_battery(site, tmp_path):
    site, prosumers = _with_prosumers(site)
    _, schedule = _schedule(site)
    config = SettlementConfig(storage=storage_policy_for(site, commission_ppm=25))

    async def scenario():
        sim_settings = SimulatorSettings(seed=1, pv_noise=0.05, soc_fraction=SOC0)
        # A generous Modbus timeout: the machine is shared; a missed poll loses nothing
        # (the next reading carries the energy), so faults are not asserted here.
        ctl = settings(timeout_s=2.0, device_timeout_s=600.0)
        async with Rig(site, sim_settings, ctl) as rig:
            rig.controller.set_schedule(Setpoints.from_schedule(schedule))
            readings = list((await rig.step(1.0)).readings)
            for _ in range(25 * 12):
                readings += (await rig.step(300.0)).readings
            return readings, rig.sim

    readings, sim = run(scenario)
    start = min(r.read_at for r in readings)
    first_hour = (start + HOUR).replace(minute=0, second=0, microsecond=0)
    with SqliteLedgerStore(tmp_path / "ledger.sqlite") as store:
        record_readings(store, site, readings, recorded_at=start + 26 * HOUR, config=config)
        results = [settle_hour(store, site, first_hour + h * HOUR, config) for h in range(24)]
        held = store.balance(HELD)
        outstanding = -store.balance(WATT_ISSUER, Asset.WATT)
        owner = store.balance(STORAGE_PRODUCER, Asset.WATT)
        assert store.verify().ok
    # Every hour settles completely; nothing is held.
    assert [r.plan.complete for r in results] == [True] * 24
    assert held == 0
    # The prosumers' meters export around noon, and are paid for it.
    exported = {p: max(r.export_wh for r in readings if r.meter_id == p) for p in prosumers}
    assert min(exported.values()) > 1000
    assert all(any(r.plan.payouts.get(p, 0) > 0 for r in results) for p in prosumers)
    # The night is paid to the WATT holders, from discharge.
    assert sum(1 for r in results if r.plan.storage and r.plan.storage.burned) >= 6
    # Seed 002's formula in every hour: (pool − fee) pro rata to energy sold.
    for r in results:
        plan = r.plan
        assert plan.storage is not None
        sold = plan.storage.sold_wh
        rest = plan.pool_minor - plan.fee
        paid = {f"meter:{m}": v for m, v in plan.payouts.items()} | plan.account_payouts
        assert sum(paid.values()) == rest
        for account, wh in sold.items():
            exact = rest * wh / sum(sold.values())
            assert abs(paid.get(account, 0) - exact) < 1
    # WATT reconcile with the battery: holders' WATT × charge efficiency is the stored
    # energy gained since the start, apart from the initial charge nobody holds (it only
    # shrinks) and ≤ 1 Wh of rounding per hour.
    initial_wh = SOC0 * site.battery.energy_capacity_kwh * 1000
    not_held_wh = sim.state.soc_kwh * 1000 - outstanding * site.battery.charge_efficiency
    print(f"stored {sim.state.soc_kwh:.3f} kWh, WATT {outstanding}, not held {not_held_wh:.0f}")
    minted = sum(sum(r.plan.storage.minted.values()) for r in results if r.plan.storage)
    burned = sum(sum(r.plan.storage.burned.values()) for r in results if r.plan.storage)
    print(f"minted {minted}, burned {burned}, owner {owner}")
    charged = sum(r.plan.energies["battery_inverter"].import_wh for r in results)
    assert minted == charged > 0
    assert charged <= sim.state.battery_charge_wh + 1
    assert -24 <= not_held_wh <= initial_wh + 24
    assert owner >= 0
