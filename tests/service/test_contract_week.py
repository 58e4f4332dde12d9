"""A mill on a band contract, metered over Modbus on the simulated container, its contract
charged hour by hour by the service's ``contracts`` job: a simulated week (slow) and a
morning (default suite)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from lastwatt.contract_job import open_registry
from microgrid import Site
from microgrid.site import ConnectionKind
from settlement.contracts import (
    CONTRACT_BUDGET,
    CONTRACT_PENALTIES,
    BandContract,
    contract_account,
    open_contract,
    statement,
)
from settlement.hourly import EnergyStatus, hourly_energy
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer
from tests.controllers.conftest import on_free_ports
from tests.service.conftest import Rig, service_site

MILL = "B02_grain_mill"
H = dt.timedelta(hours=1)
DAY_START = dt.datetime(2026, 8, 1, 0, tzinfo=dt.UTC)
BONUS = 5_000_000


def sunny_site() -> Site:
    """The service site with a 20 kWp array: the mill is served around midday."""
    site = service_site()
    pv = site.pv.model_copy(update={"dc_capacity_kwp": 20.0, "inverter_ac_capacity_kw": 15.0})
    return on_free_ports(Site.model_validate(site.model_copy(update={"pv": pv}).model_dump()))


def week_bands(start: dt.datetime, hours: int) -> tuple[tuple[int, int], ...]:
    """The mill's forecast: 1.5–2.2 kWh an hour from 10:00 to 15:00 local, idle otherwise."""
    bands = []
    for k in range(hours):
        utc_hour = (start + k * H).hour
        bands.append((1_500, 2_200) if 9 <= utc_hour < 14 else (0, 300))
    return tuple(bands)


def _run(tmp_path, start: dt.datetime, hours: int):
    opening = {
        ConnectionKind.HOUSEHOLD: 20_000_000,
        ConnectionKind.BUSINESS: 500_000_000,
        ConnectionKind.PRIORITY: 50_000_000,
    }
    contract = BandContract(
        contract_id="mill-week",
        meter_id=MILL,
        start=start,
        interval=H,
        bands_wh=week_bands(start, hours),
        tolerance_wh=100,
        bonus=BONUS,
        over_rate=400_000,
        under_rate=200_000,
        disconnect_penalty=500_000,
        discount_ppm=800_000,
    )
    charged_by_hour: list[int] = []

    async def scenario():
        async with Rig(
            tmp_path,
            site=sunny_site(),
            start=start,
            opening=opening,
            reserve=False,
            cycle_s=600.0,
            dispatch_period=dt.timedelta(hours=2),
        ) as rig:
            store = rig.service.store
            budget = Transfer(FIAT_BRIDGE, CONTRACT_BUDGET, Asset.COIN, 10 * BONUS, "fiat.topup")
            store.post(Batch("test:budget", (budget,)), start)
            open_contract(store, contract, start)
            with open_registry(store, tmp_path) as registry:
                registry.create(contract, start)
            for _ in range(hours + 1):
                await rig.run_for(1)
                with open_registry(store, tmp_path) as registry:
                    charged_by_hour.append(len(registry.outcomes(contract.contract_id)))
            with open_registry(store, tmp_path) as registry:
                outcomes = registry.outcomes(contract.contract_id)
                closed = registry.require(contract.contract_id).closed
            readings = store.readings(start - H, start + (hours + 1) * H, [MILL])
            metered = [hourly_energy(MILL, readings, o.start).import_wh for o in outcomes]
            statuses = [hourly_energy(MILL, readings, o.start).status for o in outcomes]
            report = statement(store, contract, outcomes)
            money = {
                "escrow": store.balance(contract_account(contract.contract_id, "escrow")),
                "penalties": store.balance(CONTRACT_PENALTIES),
            }
            return outcomes, closed, metered, statuses, report, money, store.verify().ok

    return contract, charged_by_hour, asyncio.run(scenario())


def _check(contract, charged_by_hour, result, hours):
    outcomes, closed, metered, statuses, report, money, verified = result
    # Hour by hour: each hourly run (at 7 past) charges the hour that just ended, once.
    assert charged_by_hour == list(range(hours + 1))
    assert len(outcomes) == hours
    # The contract saw the energy the Modbus meter reported, as settlement sees it.
    for outcome, wh, status in zip(outcomes, metered, statuses, strict=True):
        if status is not EnergyStatus.MISSING:
            assert outcome.energy_wh == wh
            assert not outcome.estimated
    assert sum(metered) > 0, "the mill never ran: nothing was metered"
    # The bonus never goes below zero; what it paid is what the penalties took from it.
    assert all(row.bonus_left >= 0 for row in report.rows)
    assert report.bonus_left == BONUS - sum(row.from_bonus for row in report.rows)
    assert money["penalties"] == report.penalties
    assert closed
    assert report.discount == report.bonus_left * contract.discount_ppm // 1_000_000
    assert money["escrow"] == 0
    assert verified
    return outcomes


def test_a_mills_contract_is_charged_hour_by_hour_over_a_midday(tmp_path):
    start = DAY_START + 9 * H  # 10:00 local: the mill runs on the midday sun
    hours = 4
    contract, charged, result = _run(tmp_path, start, hours)
    outcomes = _check(contract, charged, result, hours)
    assert any(o.energy_wh > 0 for o in outcomes)


@pytest.mark.slow
def test_a_mills_contract_is_charged_hour_by_hour_over_a_simulated_week(tmp_path):
    hours = 7 * 24
    contract, charged, result = _run(tmp_path, DAY_START, hours)
    outcomes = _check(contract, charged, result, hours)
    penalties = sum(o.penalty for o in outcomes)
    waived = sum(o.under_waived for o in outcomes)
    print(f"week: {penalties} µcoin penalties, {waived} under-band hours waived as the grid's")
