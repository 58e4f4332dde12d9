"""Seed 002 over Modbus: prosumers and the battery settle every hour of a simulated day.

Households with their own panels (seed 002's Angel and Bennie) export through their
meters, the controller polls the simulated container over loopback Modbus TCP every 5
minutes, its readings (the prosumers' export registers, the battery's derived charge
register) go to the ledger, and every hour is settled with storage accounting; Σ WATT
is reconciled with the state of charge read over Modbus after every hour.
"""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

from controllers.simulator import HourFixture, SimulatorSettings
from dispatch.setpoints import Setpoints
from microgrid import Site
from microgrid.site import RooftopPv
from settlement import SqliteLedgerStore, record_readings, settle_hour
from settlement.ledger import HELD, WATT_ISSUER, Asset, meter_account
from settlement.settle import (
    SettlementConfig,
    reconcile_hour,
    reconciliation_tolerance_wh,
    storage_policy_for,
)
from settlement.storage import STORAGE_PRODUCER, watt_invariant_problems
from tests.controllers.conftest import START, Rig, on_free_ports, run, settings
from tests.controllers.test_day import SOC0, _schedule
from tests.settlement.test_storage import seed_002_site

ROOF = RooftopPv(dc_capacity_kwp=3.0, surface_tilt_deg=15, surface_azimuth_deg=180)
HOUR = dt.timedelta(hours=1)
EXAMPLE_HOUR = START + 11 * HOUR  # 11:00–12:00 local (Africa/Niamey)
"""The hour that plays seed 002's worked example: Carlos 3 kWh and Danny 2 kWh; Angel's
and Bennie's roofs 3 and 2.5 kWh; the container's array washed (no output)."""
EXAMPLE = HourFixture(
    pv_kw=0.0,
    demand_kw={"carlos": 3.0, "danny": 2.0},
    own_pv_kw={"angel": 3.0, "bennie": 2.5},
)
BMAX_WH = 1000
"""Each household may hold 1 kWh of WATT: Angel and Bennie fill it in the morning, so in
the worked example's hour they sell all they export (their stored share goes to the pool,
rule 4 of :mod:`settlement.storage`), as seed 002's formula pays them."""


def _with_prosumers(site: Site) -> tuple[Site, tuple[str, str]]:
    angel, bennie = (c.id for c in site.households[:2])
    connections = tuple(
        c.model_copy(update={"pv": ROOF}) if c.id in (angel, bennie) else c
        for c in site.connections
    )
    # Seed 002's households have no service plans: a daily budget used up overnight would
    # open a prosumer's meter until midnight, and with it its export (a prepaid meter's
    # relay cuts both directions).
    small = site.model_copy(update={"connections": connections, "service_plan_defaults": {}})
    return Site.model_validate(small.model_dump()), (angel, bennie)


def _all_on(site: Site, pv_limit_kw: float) -> Setpoints:
    """Every relay group closed, no meter limits or budgets, the PV limited, all day."""
    index = pd.date_range(START, periods=26 * 4, freq="15min")
    groups = [g.id for g in site.relay_groups]
    return Setpoints(
        inverters=pd.DataFrame(
            {"pv_limit_kw": pv_limit_kw, "charge_limit_kw": np.inf, "discharge_limit_kw": np.inf},
            index=index,
        ),
        relays=pd.DataFrame(True, index=index, columns=groups),
        power_limit_kw=pd.DataFrame(index=index),
        switch_only=tuple(groups),
    )


@pytest.mark.slow
def test_seed_002_over_modbus_every_hour_settles_and_the_example_pays_exactly(tmp_path):
    """Carlos, Danny, Angel, Bennie and the container: a day over Modbus (issue 15)."""
    site = on_free_ports(seed_002_site())
    policy = storage_policy_for(site, commission_ppm=25, bmax_wh=BMAX_WH)
    config = SettlementConfig(storage=policy)

    async def scenario():
        sim_settings = SimulatorSettings(
            seed=1, pv_noise=0.05, soc_fraction=0.3, fixtures={EXAMPLE_HOUR: EXAMPLE}
        )
        ctl = settings(timeout_s=2.0, device_timeout_s=600.0)
        async with Rig(site, sim_settings, ctl) as rig:
            # A 3 kW limit on the container's array keeps the battery from filling up.
            rig.controller.set_schedule(_all_on(site, pv_limit_kw=3.0))
            readings, soc_kwh = [], {}
            for k in range(25 * 12 + 1):
                result = await rig.step(0.0 if k == 0 else 300.0)
                readings += result.readings
                if result.time.minute == 0:
                    soc_kwh[result.time] = result.measured.soc_kwh
            return readings, soc_kwh

    readings, soc_kwh = run(scenario)
    hours = [START + h * HOUR for h in range(24)]
    with SqliteLedgerStore(tmp_path / "ledger.sqlite") as store:
        record_readings(store, site, readings, recorded_at=START + 26 * HOUR, config=config)
        results, reconciled = [], []
        unheld = None
        for hour in hours:
            results.append(settle_hour(store, site, hour, config))
            check = reconcile_hour(store, site, hour, config, soc_kwh[hour + HOUR] * 1000, unheld)
            assert check is not None
            reconciled.append(check)
            unheld = check.unheld_wh
        held = store.balance(HELD)
        assert store.verify().ok
        watt = {a: v for (a, _), v in store.balances(Asset.WATT).items()}
        alarms = [a for a in store.alarms() if a.kind == "watt_mismatch"]
    # 24 of 24 hours settled, nothing held.
    assert [r.plan.complete for r in results] == [True] * 24
    assert held == 0
    # Seed 002's worked example, metered over Modbus, pays exactly.
    example = results[hours.index(EXAMPLE_HOUR)].plan
    energies = {m: (e.import_wh, e.export_wh) for m, e in example.energies.items()}
    assert energies["carlos"] == (3000, 0)
    assert energies["danny"] == (2000, 0)
    assert energies["angel"] == (0, 3000)
    assert energies["bennie"] == (0, 2500)
    assert energies["pv_inverter"][1] == 0
    assert energies["battery_inverter"] == (500, 0)  # the 0.5 kWh surplus charged it
    assert example.pool_minor == 5_000_000
    assert example.fee == 10_000
    assert example.payouts == {"angel": 2_721_818, "bennie": 2_268_182}
    assert example.storage is not None
    # Both at Bmax: their stored share (pro rata, per quarter) is sold to the pool, and
    # the storage owner holds the 500 WATT.
    assert sum(example.storage.over_cap_wh.values()) == 500
    assert example.storage.minted == {STORAGE_PRODUCER: 500}
    # Seed 002's formula in every hour: (pool − fee) pro rata to energy sold.
    for r in results:
        plan = r.plan
        assert plan.storage is not None
        sold = plan.storage.sold_wh
        rest = plan.pool_minor - plan.fee
        paid = {meter_account(m): v for m, v in plan.payouts.items()} | plan.account_payouts
        assert sum(paid.values()) == rest
        for account, wh in sold.items():
            assert abs(paid.get(account, 0) - rest * wh / sum(sold.values())) < 1
    # The night is paid from the battery: the storage owner's initial charge, then WATT.
    night = [r for r in results if r.plan.energies["battery_inverter"].export_wh > 0]
    assert len(night) >= 8
    assert all(r.plan.payouts or r.plan.account_payouts for r in night if r.plan.pool_minor)
    assert any(r.plan.storage and r.plan.storage.burned for r in night)
    # Σ WATT reconciles with the state of charge read over Modbus after every hour.
    tolerance = reconciliation_tolerance_wh(site)
    worst = max(
        max(-c.unheld_wh, c.unheld_wh - b.unheld_wh) for b, c in itertools.pairwise(reconciled)
    )
    print(f"reconciliation: worst excess {worst:.1f} Wh (tolerance {tolerance:.0f} Wh)")
    assert [c.problems for c in reconciled] == [()] * 24
    assert alarms == []
    assert (
        watt_invariant_problems(
            watt,
            policy,
            site.battery.soc_kwh_max * 1000,
            {meter_account(c.id) for c in site.connections},
            soc_kwh[hours[-1] + HOUR] * 1000,
            tolerance,
        )
        == []
    )
    assert watt[STORAGE_PRODUCER] > 0
    assert 0 < watt["meter:angel"] <= BMAX_WH


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
