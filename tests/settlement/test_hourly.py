"""Hourly settlement: seed 002's worked example, reading edge cases, corrections."""

from __future__ import annotations

from datetime import timedelta

import pytest

from microgrid import Site
from microgrid.readings import ENERGY_REGISTER_MODULUS_WH, MeterReading
from settlement import (
    AlarmKind,
    EnergyStatus,
    MeterEnergy,
    RecordOutcome,
    SqliteLedgerStore,
    hourly_energy,
    plan_hour,
    record_readings,
    settle_hour,
)
from settlement.hourly import transfers_through_pool
from settlement.ledger import HELD, POOL, UTILITY
from tests.settlement.conftest import HOUR, hourly_readings

H = timedelta(hours=1)


def test_seed_002_worked_example_with_its_typos_fixed():
    """Carlos 3 kWh + Danny 2 kWh at 1 coin/kWh; fee 0.01; Angel 3 kWh, Bennie 2.5 kWh.

    The seed prints Bennie's share as 2.286 and moves "2.084 into Angel's account"; the
    arithmetic gives 4.99 × 2.5 / 5.5 = 2.268181… into Bennie's. In micro-coins the
    remainders .18 (Angel) and .82 (Bennie) give the spare micro-coin to Bennie.
    """
    energies = {
        m: MeterEnergy(m, i, x, EnergyStatus.MEASURED)
        for m, i, x in [
            ("carlos", 3000, 0),
            ("danny", 2000, 0),
            ("angel", 0, 3000),
            ("bennie", 0, 2500),
        ]
    }
    prices = {"carlos": 1_000_000, "danny": 1_000_000}
    plan = plan_hour(HOUR, energies, prices, ["angel", "bennie"], 10_000)
    assert plan.charges == {"carlos": 3_000_000, "danny": 2_000_000}
    assert plan.fee == 10_000
    assert plan.pool_minor - plan.fee == 4_990_000
    assert plan.payouts == {"angel": 2_721_818, "bennie": 2_268_182}
    transfers = transfers_through_pool(plan.net(), {})
    into_pool = sum(t.amount for t in transfers if t.credit == POOL)
    out_of_pool = sum(t.amount for t in transfers if t.debit == POOL)
    assert into_pool == out_of_pool == 5_000_000


def test_rollover_is_energy_not_a_reset():
    readings = [
        MeterReading("H001", HOUR, ENERGY_REGISTER_MODULUS_WH - 500),
        MeterReading("H001", HOUR + H, 500),
    ]
    energy = hourly_energy("H001", readings, HOUR)
    assert (energy.import_wh, energy.status) == (1000, EnergyStatus.MEASURED)


def test_register_below_the_last_is_unknown_and_alarmed_not_zero():
    readings = hourly_readings("H001", HOUR - H, [4000, 5000, 100, 300])
    energy = hourly_energy("H001", readings, HOUR)
    assert energy.status is EnergyStatus.PARTIAL
    assert energy.import_wh == 0
    assert [a.kind for a in energy.alarms] == [AlarmKind.REGISTER_DECREASED]
    assert "fell from 5000 to 100" in energy.alarms[0].message
    # The next hour, after the new meter's baseline, is measured again.
    assert hourly_energy("H001", readings, HOUR + H).import_wh == 200


def test_implausible_jump_is_alarmed():
    readings = hourly_readings("H001", HOUR, [0, 500_000])
    energy = hourly_energy("H001", readings, HOUR, max_power_w=100_000)
    assert energy.status is EnergyStatus.PARTIAL
    assert energy.alarms[0].kind is AlarmKind.IMPLAUSIBLE_JUMP


def test_a_gap_is_interpolated_and_hours_telescope():
    readings = [MeterReading("H001", HOUR, 0), MeterReading("H001", HOUR + 3 * H, 1001)]
    parts = [hourly_energy("H001", readings, HOUR + k * H).import_wh for k in range(3)]
    assert parts == [333, 334, 334] or sum(parts) == 1001
    assert sum(parts) == 1001


def test_no_closing_reading_is_missing_not_zero():
    energy = hourly_energy("H001", [MeterReading("H001", HOUR, 10)], HOUR)
    assert energy.status is EnergyStatus.MISSING
    assert energy.alarms[0].kind is AlarmKind.READING_MISSING


def test_conflicting_duplicate_in_one_call_is_an_error():
    with pytest.raises(ValueError, match="two different readings"):
        hourly_energy("H001", [MeterReading("H001", HOUR, 1), MeterReading("H001", HOUR, 2)], HOUR)


def _base(
    store: SqliteLedgerStore,
    site: Site,
    consumers: tuple[str, ...] = ("H001",),
    pv: tuple[int, int] = (0, 5000),
) -> RecordOutcome:
    readings = hourly_readings("pv_inverter", HOUR, [0, 0], list(pv))
    for m in consumers:
        readings += hourly_readings(m, HOUR, [1000, 3000])
    return record_readings(store, site, readings, recorded_at=HOUR + H)


def test_settle_charges_pays_and_is_idempotent(store, site):
    _base(store, site)
    first = settle_hour(store, site, HOUR)
    assert first.plan.charges == {"H001": 500_000}  # 2 kWh × 0.25 coin
    assert first.plan.payouts == {"pv_inverter": 490_000}
    assert store.balance("meter:H001") == -500_000
    assert store.balance(UTILITY) == 10_000
    assert store.balance(POOL) == 0
    again = settle_hour(store, site, HOUR)
    assert again.posted is None
    assert again.transfers == ()
    assert store.verify().ok


def test_duplicate_conflict_and_unknown_meter_readings(store, site):
    _base(store, site)
    outcome = record_readings(
        store,
        site,
        [
            MeterReading("H001", HOUR, 1000),  # exact duplicate
            MeterReading("H001", HOUR + H, 9999),  # conflicts with 3000
            MeterReading("NOPE", HOUR, 1),
        ],
        recorded_at=HOUR + H,
    )
    assert len(outcome.duplicates) == 1
    assert len(outcome.conflicts) == 1
    assert outcome.conflicts[0][1].import_wh == 3000
    assert [r.meter_id for r in outcome.unknown] == ["NOPE"]
    kinds = {a.kind for a in store.alarms()}
    assert {AlarmKind.READING_CONFLICT, AlarmKind.UNKNOWN_METER} <= kinds
    assert settle_hour(store, site, HOUR).plan.charges == {"H001": 500_000}


def test_late_reading_gives_a_correcting_batch_never_an_edit(store, site):
    _base(store, site)
    record_readings(store, site, [MeterReading("H002", HOUR, 0)], recorded_at=HOUR + H)
    first = settle_hour(store, site, HOUR)
    assert "H002" in first.plan.missing
    assert not first.plan.complete
    assert HOUR in store.incomplete_hours(site.name)
    late = record_readings(store, site, [MeterReading("H002", HOUR + H, 4000)])
    assert late.late_hours == (HOUR,)
    fix = settle_hour(store, site, HOUR)
    assert fix.correction
    assert fix.posted is not None
    assert fix.posted.key.endswith("#1")
    assert {t.debit for t in fix.transfers if t.credit == POOL} == {"meter:H002"}
    assert store.balance("meter:H002") == -1_000_000
    assert store.balance("meter:pv_inverter") == 1_500_000 - 10_000
    assert store.verify().ok
    assert settle_hour(store, site, HOUR).posted is None


def test_no_production_holds_and_alarms_then_releases(store, site):
    readings = [*hourly_readings("H001", HOUR, [0, 2000]), MeterReading("pv_inverter", HOUR, 0)]
    record_readings(store, site, readings, recorded_at=HOUR)
    held = settle_hour(store, site, HOUR)
    assert held.plan.held == 490_000
    assert store.balance(HELD) == 490_000
    assert any(a.kind is AlarmKind.NO_PRODUCTION for a in store.alarms())
    record_readings(store, site, [MeterReading("pv_inverter", HOUR + H, 0, 3000)])
    settle_hour(store, site, HOUR)
    assert store.balance(HELD) == 0
    assert store.balance("meter:pv_inverter") == 490_000


def test_no_consumption_no_fee(store, site):
    _base(store, site, consumers=())
    result = settle_hour(store, site, HOUR)
    assert result.plan.fee == 0
    assert result.transfers == ()
    assert result.posted is not None  # the hour is marked settled, with no transfers
    assert store.balance(UTILITY) == 0


def test_time_of_use_and_prosumer_export(store, site):
    business = site.businesses[0].id
    readings = hourly_readings("pv_inverter", HOUR, [0, 0], [0, 3000])
    early = HOUR - 4 * H  # 07:00 Niamey: the 400 000 band; 11:00 is the 200 000 band
    readings += hourly_readings(business, early, [0, 1000, 1000, 1000, 1000, 2000])
    readings += hourly_readings("H001", HOUR, [0, 0], [0, 1000])  # a prosumer
    record_readings(store, site, readings)
    assert settle_hour(store, site, HOUR).plan.charges == {business: 200_000}
    assert settle_hour(store, site, early).plan.charges == {business: 400_000}
    plan = settle_hour(store, site, HOUR).plan
    assert plan.payouts == {"H001": 47_500, "pv_inverter": 142_500}


def test_hour_must_start_on_the_hour(store, site):
    with pytest.raises(ValueError, match="did you mean"):
        settle_hour(store, site, HOUR + timedelta(minutes=5))
