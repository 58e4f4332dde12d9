"""Property tests: for random readings and tariffs every batch balances, the pool ends at
zero, no coin appears outside the fiat bridge, and settling again changes nothing — on
both stores (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microgrid.readings import ENERGY_REGISTER_MODULUS_WH, MeterReading
from microgrid.site import Tariff, TariffBand
from settlement import (
    EnergyStatus,
    LedgerStore,
    MeterEnergy,
    plan_hour,
    record_readings,
    settle_hour,
)
from settlement.hourly import transfers_through_pool
from settlement.ledger import FIAT_BRIDGE, POOL, Asset
from tests.settlement.conftest import HOUR

H = timedelta(hours=1)
METERS = ["H001", "H002", "B01_grain_mill", "P01_health_centre", "pv_inverter"]

energies_st = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.tuples(st.integers(0, 20_000), st.integers(0, 20_000), st.booleans()),
    min_size=1,
)


@given(
    energies=energies_st,
    price=st.integers(0, 2_000_000),
    fee=st.integers(0, 50_000),
    producers=st.sets(st.sampled_from(["a", "e", "z"])),
)
def test_plan_balances_and_pool_nets_to_zero(energies, price, fee, producers):
    meters = {
        m: MeterEnergy(m, i, x, EnergyStatus.MISSING if missing else EnergyStatus.MEASURED)
        for m, (i, x, missing) in energies.items()
    }
    plan = plan_hour(HOUR, meters, dict.fromkeys(meters, price), producers, fee)
    assert plan.fee + sum(plan.payouts.values()) + plan.held == plan.pool_minor
    assert plan.fee <= fee
    assert all(v > 0 for v in plan.charges.values())
    assert sum(plan.net().values()) == 0
    transfers = transfers_through_pool(plan.net(), {})
    assert sum(t.amount for t in transfers if t.credit == POOL) == sum(
        t.amount for t in transfers if t.debit == POOL
    )


def _readings(draw_steps: dict[str, list[tuple[int, int, bool]]]) -> list[MeterReading]:
    readings = []
    for meter, steps in draw_steps.items():
        value_i = value_x = ENERGY_REGISTER_MODULUS_WH - 3000 if meter == "H002" else 0
        for k, (di, dx, present) in enumerate(steps):
            value_i = (value_i + di) % ENERGY_REGISTER_MODULUS_WH
            value_x = (value_x + dx) % ENERGY_REGISTER_MODULUS_WH
            if present or k in (0, len(steps) - 1):
                readings.append(MeterReading(meter, HOUR + k * H, value_i, value_x))
    return readings


steps_st = st.lists(
    st.tuples(st.integers(0, 8000), st.integers(0, 8000), st.booleans()), min_size=5, max_size=5
)


def _all_balances(store: LedgerStore) -> dict[tuple[str, Asset], int]:
    return store.balances(Asset.COIN)


_settling_inputs = given(
    steps=st.fixed_dictionaries(dict.fromkeys(METERS, steps_st)),
    household_price=st.integers(0, 1_000_000),
    day_price=st.integers(0, 1_000_000),
    split=st.integers(0, 100),
    seed=st.randoms(use_true_random=False),
)


@pytest.mark.parametrize("open_store", ["sqlite"], indirect=True)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@_settling_inputs
def test_settling_random_readings_keeps_every_invariant(
    site, open_store, steps, household_price, day_price, split, seed
):
    _settle_in_lots_and_at_once(site, open_store, steps, household_price, day_price, split, seed)


# Settling a 400-meter site reads each meter's neighbouring readings one by one: on
# PostgreSQL each is a round trip (~0.5 ms here), so fewer examples and the slow mark.
@pytest.mark.slow
@pytest.mark.parametrize("open_store", ["postgres"], indirect=True)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@_settling_inputs
def test_settling_random_readings_keeps_every_invariant_on_postgres(
    site, open_store, steps, household_price, day_price, split, seed
):
    _settle_in_lots_and_at_once(site, open_store, steps, household_price, day_price, split, seed)


def _settle_in_lots_and_at_once(site, open_store, steps, household_price, day_price, split, seed):
    tariffs = dict(site.tariffs)
    tariffs["household"] = Tariff(kind="flat", price_per_kwh_minor=household_price)
    tariffs["business"] = Tariff(
        kind="time_of_use",
        bands=(
            TariffBand(start_hour=0, price_per_kwh_minor=2 * day_price),
            TariffBand(start_hour=12, price_per_kwh_minor=day_price),
        ),
    )
    local_site = site.model_copy(update={"tariffs": tariffs})
    readings = _readings(steps)
    seed.shuffle(readings)
    cut = len(readings) * split // 100
    hours = [HOUR + k * H for k in range(4)]

    with open_store(None) as late, open_store(None) as once:
        # Readings arriving in two lots, settling after each: corrections.
        record_readings(late, local_site, readings[:cut])
        for h in hours:
            settle_hour(late, local_site, h)
        record_readings(late, local_site, readings[cut:])
        for h in hours:
            settle_hour(late, local_site, h)
        # All readings at once.
        record_readings(once, local_site, readings)
        for h in hours:
            settle_hour(once, local_site, h)
        for store in (late, once):
            report = store.verify()
            assert report.ok, report.problems
            assert store.balance(POOL) == 0
            assert store.balance(FIAT_BRIDGE) == 0  # no coin from anywhere else
            assert sum(_all_balances(store).values()) == 0
        assert _all_balances(late) == _all_balances(once)
        before = _all_balances(once)
        rows = once.verify().rows
        for h in hours:
            assert settle_hour(once, local_site, h).posted is None
        assert _all_balances(once) == before
        assert once.verify().rows == rows
