"""Energo's storage commission every 15 minutes, on each holder's WATT balance at that time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from microgrid.readings import MeterReading
from settlement import SqliteLedgerStore, record_readings, settle_hour
from settlement.ledger import Asset
from settlement.settle import BATTERY_METER, SettlementConfig, storage_policy_for
from settlement.storage import EDUCATION_FUND, NETWORK_FUND, STORAGE_PRODUCER
from tests.settlement.conftest import HOUR
from tests.settlement.test_storage import seed_002_site

Q = timedelta(minutes=15)
METERS = ("carlos", "danny", "angel", "bennie", "pv_inverter", BATTERY_METER)


def _readings(discharge_quarter: int) -> list[MeterReading]:
    """Hour 1: Angel's 10 kWh all go into the battery. Hour 2: Carlos takes 5 kWh from
    the battery in one quarter of the hour."""
    rows = []
    for k in range(9):  # every quarter of two hours
        at = HOUR + k * Q
        angel = min(k, 4) * 2500
        used = 5000 if k >= 5 + discharge_quarter else 0
        cum = {
            "carlos": (used, 0),
            "angel": (0, angel),
            BATTERY_METER: (angel, used),
        }
        rows += [MeterReading(m, at, *cum.get(m, (0, 0))) for m in METERS]
    return rows


def _settle(tmp_path, discharge_quarter):
    site = seed_002_site()
    config = SettlementConfig(storage=storage_policy_for(site, commission_ppm=10_000))
    with SqliteLedgerStore(tmp_path / f"q{discharge_quarter}.sqlite") as store:
        record_readings(store, site, _readings(discharge_quarter), config=config)
        settle_hour(store, site, HOUR, config)
        second = settle_hour(store, site, HOUR + 4 * Q, config)
        again = settle_hour(store, site, HOUR + 4 * Q, config)
        assert store.verify().ok
        watt = {a: v for (a, _), v in store.balances(Asset.WATT).items()}
    return second, again, watt


@pytest.mark.parametrize("quarter", [0, 3])
def test_each_quarters_commission_is_posted_as_its_own_transfers(tmp_path, quarter):
    second, again, watt = _settle(tmp_path, quarter)
    codes = {t.code for t in second.transfers if t.asset is Asset.WATT}
    assert {f"watt.commission.q{n}" for n in (1, 2, 3, 4)} <= codes
    for n in (1, 2, 3, 4):
        moved = [t for t in second.transfers if t.code == f"watt.commission.q{n}"]
        paid = sum(t.amount for t in moved if t.debit == "meter:angel")
        received = {t.credit: t.amount for t in moved if t.debit == "watt:battery"}
        # 80 / 10 / 10 of each quarter's total, exactly.
        total = sum(t.amount for t in moved if t.credit == "watt:battery")
        assert sum(received.values()) == total
        assert (
            received.get(STORAGE_PRODUCER, 0)
            + received.get(EDUCATION_FUND, 0)
            + received.get(NETWORK_FUND, 0)
            == total
        )
        assert paid > 0
    assert again.posted is None  # settling again posts nothing
    assert sum(watt.values()) == 0
    assert [a for a, v in watt.items() if v < 0] == ["watt:battery"]  # only the issuer


def test_the_commission_follows_the_balance_within_the_hour(tmp_path):
    early, _, _ = _settle(tmp_path, 0)
    late, _, _ = _settle(tmp_path, 3)

    def angel_paid(result, n):
        return sum(
            t.amount
            for t in result.transfers
            if t.code == f"watt.commission.q{n}" and t.debit == "meter:angel"
        )

    # The first quarter is charged on the same balance; after an early discharge, the
    # next quarters are charged on about half of it.
    assert angel_paid(early, 1) == angel_paid(late, 1) > 0
    for n in (2, 3, 4):
        assert angel_paid(early, n) < 0.6 * angel_paid(late, n)
