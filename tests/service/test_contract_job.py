"""The service's hourly ``contracts`` job: a mill's band contract charged hour by hour from
its meter's readings, disconnects attributed from the alarm store, the grid's faults free."""

from __future__ import annotations

import asyncio
import datetime as dt

import numpy as np
import pandas as pd

from controllers.simulator import ManualClock
from lastwatt.contract_job import CONTRACT_JOB_ID, ContractEvent, attribute, open_registry
from lastwatt.service import Service
from lastwatt.state import StoredSchedule
from microgrid.readings import MeterReading
from microgrid.site import ConnectionKind
from settlement import record_readings
from settlement.alarms import Alarm, AlarmKind
from settlement.contracts import (
    CONTRACT_BUDGET,
    CONTRACT_PENALTIES,
    BandContract,
    DisconnectCause,
    contract_account,
    fund_deposit,
    open_contract,
    statement,
)
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer, meter_account
from tests.service.conftest import Rig, config, service_site

START = dt.datetime(2026, 8, 1, 6, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)
MILL = "B01_grain_mill"
# Metered energy per hour from 06:00 [Wh]; no reading closes the last hour (11:00–12:00).
ENERGY = [12_000, 16_500, 8_000, 11_000, 3_000]


def mill_contract() -> BandContract:
    return BandContract(
        contract_id="mill-aug",
        meter_id=MILL,
        start=START,
        interval=H,
        bands_wh=((10_000, 14_000),) * 6,
        tolerance_wh=500,
        bonus=2_000_000,
        over_rate=400_000,  # 0.4 coin per kWh above 14.5 kWh
        under_rate=200_000,  # 0.2 coin per kWh below 9.5 kWh
        disconnect_penalty=1_000_000,
        discount_ppm=800_000,
    )


def _schedule(issued: dt.datetime) -> StoredSchedule:
    """A plan that allots the mill 5 kW from 08:00 to 09:00 (below the band's 10 kWh)."""
    index = pd.date_range(START, START + 6 * H, freq="15min", inclusive="left")
    allotment = pd.DataFrame({MILL: 14.0}, index=index)
    allotment.loc[START + 2 * H : START + 2 * H + dt.timedelta(minutes=45), MILL] = 5.0
    empty = pd.DataFrame()
    return StoredSchedule(issued, "optimal", empty, empty, allotment, empty, {})


def _alarm(kind, subject, at):
    return Alarm(kind, subject, at, f"{kind.value} of {subject}")


# Alarms the control job would have raised, by the hour the contracts job next runs. The
# store folds the two inverter trips into one condition counted twice.
ALARMS = {
    START + H: [  # 06:30 the inverter trips on its own: the mill drew 12 kWh, in its band
        _alarm(AlarmKind.INVERTER_OVERLOAD, "battery_inverter", START + 0.5 * H),
    ],
    START + 2 * H: [  # 07:30 it trips while the mill draws 16.5 kWh, above its band: the mill's
        _alarm(AlarmKind.INVERTER_OVERLOAD, "battery_inverter", START + 1.5 * H),
    ],
    START + 4 * H: [  # 09:20 the mill's meter opened at its limit; 09:25 another meter's did
        _alarm(AlarmKind.CONNECTION_TRIP, MILL, START + dt.timedelta(hours=3, minutes=20)),
        _alarm(AlarmKind.CONNECTION_TRIP, "B02_grain_mill", START + 3.42 * H),
    ],
    START + 5 * H: [  # 10:10–10:40 the controller's safe state: the grid's
        _alarm(AlarmKind.SAFE_STATE, "controller", START + dt.timedelta(hours=4, minutes=10)),
    ],
}


def test_the_contracts_job_charges_a_mill_hour_by_hour_and_the_grids_faults_are_free(tmp_path):
    clock = ManualClock(START - H)
    site = service_site()
    service = Service(site, config(tmp_path), clock)
    store = service.store
    service.stored_schedule = _schedule(START - H)
    contract = mill_contract()
    transfers = (
        Transfer(FIAT_BRIDGE, CONTRACT_BUDGET, Asset.COIN, 10_000_000, "fiat.topup"),
        Transfer(FIAT_BRIDGE, meter_account(MILL), Asset.COIN, 1_000_000, "fiat.topup"),
    )
    store.post(Batch("test:funds", transfers), clock.now())
    open_contract(store, contract, clock.now())
    fund_deposit(store, contract, 500_000, "d1", clock.now())
    with open_registry(store, tmp_path) as registry:
        registry.create(contract, clock.now())
    register = 100_000
    readings = [MeterReading(MILL, START, register)]
    for k, wh in enumerate(ENERGY):
        register += wh
        readings.append(MeterReading(MILL, START + (k + 1) * H, register))
    record_readings(store, site, readings, recorded_at=START)
    charged = []

    async def hours():
        # 05:07: the plan in force is noted before the period starts.
        await service.contracts.run(clock.now())
        for hour in range(1, 7):
            at = START + hour * H
            for alarm in ALARMS.get(at, []):
                store.add_alarms([alarm])
            if at == START + 5 * H:
                store.clear_alarm(AlarmKind.SAFE_STATE, "controller", at - dt.timedelta(minutes=20))
            clock.advance((at + dt.timedelta(minutes=7) - clock.now()).total_seconds())
            await service.contracts.run(clock.now())
            with open_registry(store, tmp_path) as registry:
                charged.append(len(registry.outcomes(contract.contract_id)))

    try:
        asyncio.run(hours())
        with open_registry(store, tmp_path) as registry:
            outcomes = registry.outcomes(contract.contract_id)
            closed = registry.require(contract.contract_id).closed
        report = statement(store, contract, outcomes)
        balances = {
            "escrow": store.balance(contract_account(contract.contract_id, "escrow")),
            "deposit": store.balance(contract_account(contract.contract_id, "deposit")),
            "receivable": store.balance(contract_account(contract.contract_id, "receivable")),
            "penalties": store.balance(CONTRACT_PENALTIES),
            "budget": store.balance(CONTRACT_BUDGET),
        }
        verified = store.verify().ok
    finally:
        store.close()
        service.state.close()

    assert charged == [1, 2, 3, 4, 5, 6]  # hour by hour, each interval once
    penalties = [o.penalty for o in outcomes]
    assert penalties == [
        0,  # in band; the inverter tripped on its own
        800_000 + 1_000_000,  # 2 kWh over × 0.4 coin, and its load tripped the inverter
        0,  # 1.5 kWh under, but the plan allotted only 5 kWh: the grid's shortfall
        1_000_000,  # in band; its meter opened at its limit (B02's trip is not its)
        0,  # 6.5 kWh under, in the safe state
        1_300_000,  # no reading: estimated at the last 3 kWh, 6.5 kWh under × 0.2 coin
    ]
    assert outcomes[2].under_waived
    assert outcomes[4].under_waived
    assert [o.consumer_disconnects for o in outcomes] == [0, 1, 0, 1, 0, 0]
    assert outcomes[5].estimated
    split = [(r.from_bonus, r.from_deposit, r.receivable) for r in report.rows]
    assert split == [
        (0, 0, 0),
        (1_800_000, 0, 0),
        (0, 0, 0),
        (200_000, 500_000, 300_000),  # the bonus never goes below zero
        (0, 0, 0),
        (0, 0, 1_300_000),
    ]
    assert closed  # every interval charged: the period is closed, nothing left to discount
    assert report.discount == 0
    assert balances == {
        "escrow": 0,
        "deposit": 0,
        "receivable": -1_600_000,
        "penalties": 4_100_000,
        "budget": 8_000_000,
    }
    assert verified


def test_the_contracts_job_is_registered_hourly_after_settlement(tmp_path):
    service = Service(service_site(), config(tmp_path), ManualClock(START))
    try:
        jobs = {j.id: j for j in service.jobs()}
    finally:
        service.store.close()
        service.state.close()
    job = jobs[CONTRACT_JOB_ID]
    assert job.period == H
    assert job.offset > jobs["settle"].offset


def test_an_inverter_trip_is_the_consumers_only_when_it_drew_above_its_band():
    contract = mill_contract()
    at = START + dt.timedelta(minutes=30)
    trip = [ContractEvent(at, AlarmKind.INVERTER_OVERLOAD, "battery_inverter", 1)]
    over, _ = attribute(contract, trip, [], {START: 14_501})
    in_band, outages = attribute(contract, trip, [], {START: 14_500})
    assert over == ((at, DisconnectCause.CONSUMER_OVERLOAD),)
    assert in_band == ((at, DisconnectCause.CONTAINER_TRIP),)
    assert outages == ((START, START + H),)
    other = [ContractEvent(at, AlarmKind.CONNECTION_TRIP, "B02_grain_mill", 2)]
    assert attribute(contract, other, [], {}) == ((), ())
    before = [ContractEvent(START - H, AlarmKind.CONNECTION_TRIP, MILL, 1)]
    assert attribute(contract, before, [], {}) == ((), ())


# --- the band as firm demand in dispatch --------------------------------------------------------


def test_open_contracts_bands_go_to_dispatch_on_its_grid_and_closed_ones_do_not(tmp_path):
    service = Service(service_site(), config(tmp_path), ManualClock(START))
    try:
        contract = mill_contract()  # 06:00–12:00, 10–14 kWh an hour, tolerance 0.5 kWh
        with open_registry(service.store, tmp_path) as registry:
            registry.create(contract, START)
        index = pd.date_range(START - H, START + 7 * H, freq="15min", inclusive="left")
        (band,) = service.contracts.bands(index)
        with open_registry(service.store, tmp_path) as registry:
            registry.mark_closed(contract.contract_id, START)
        after_close = service.contracts.bands(index)
    finally:
        service.store.close()
        service.state.close()
    assert (band.id, band.connection_id) == ("mill-aug", MILL)
    assert list(band.lower_kw[:4]) == [0.0] * 4  # before the period: no band
    assert list(band.lower_kw[4:28]) == [10.0] * 24  # firm demand: the lower edge
    assert list(band.upper_kw[4:28]) == [14.5] * 24  # the upper edge plus tolerance
    assert list(band.upper_kw[-4:]) == [np.inf] * 4  # after the period: no cap
    assert after_close == ()


def _midday_allotment_kwh(tmp_path, meter, bands):
    from tests.service.test_contract_week import sunny_site

    site = sunny_site()
    start = dt.datetime(2026, 8, 1, 9, tzinfo=dt.UTC)

    async def plan():
        opening = dict.fromkeys(ConnectionKind, 100000000)
        rig = Rig(tmp_path, site=site, start=start, reserve=False, opening=opening)
        if bands is not None:
            contract = BandContract("band", meter, start, H, bands, 0, 0, 400_000, 200_000, 0)
            with open_registry(rig.service.store, tmp_path) as registry:
                registry.create(contract, start)
        async with rig:
            allotment = rig.service.schedule.allotment_kw[meter]
        window = allotment[start : start + 4 * H - dt.timedelta(minutes=1)]
        return (window.groupby(np.arange(len(window)) // 4).sum() * 0.25).tolist()

    return asyncio.run(plan())


def test_dispatch_plans_a_contracted_band_as_demand(tmp_path):
    # Uncontracted, the planner allots the mill B02 its profile's share at midday.
    free = _midday_allotment_kwh(tmp_path / "free", "B02_grain_mill", None)
    # A band of nothing keeps its limit at zero; a band of 3.5–4 kWh an hour is served in
    # the contract tier, every hour at least its lower edge, never above its upper one.
    nothing = _midday_allotment_kwh(tmp_path / "none", "B02_grain_mill", ((0, 0),) * 4)
    firm = _midday_allotment_kwh(tmp_path / "firm", "B02_grain_mill", ((3_500, 4_000),) * 4)
    assert nothing == [0.0] * 4
    assert sum(firm) > sum(free)
    assert all(3.5 - 1e-6 <= kwh <= 4.0 + 1e-6 for kwh in firm), firm
