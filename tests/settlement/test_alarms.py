"""The alarm model: one standing condition is one alarm; credit raises on changes only."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from microgrid.site import ConnectionKind
from settlement import (
    Alarm,
    AlarmKind,
    CreditPolicy,
    Severity,
    SqliteLedgerStore,
    credit_alarms,
    read_credit,
)
from settlement.prepaid import credit_status
from tests.settlement.conftest import HOUR


def _bus(at_s: float, message: str = "silent") -> Alarm:
    return Alarm(AlarmKind.BUS_FAULT, "meters-a", HOUR + timedelta(seconds=at_s), message)


def test_a_standing_condition_is_one_alarm_with_first_last_and_count(store):
    store.add_alarms([_bus(0), _bus(5), _bus(10, "still silent")])
    store.add_alarms([_bus(5)])  # a replay changes nothing
    (record,) = store.alarm_records()
    assert record.kind is AlarmKind.BUS_FAULT
    assert record.severity is Severity.CRITICAL
    assert record.first_seen == HOUR
    assert record.last_seen == HOUR + timedelta(seconds=10)
    assert record.count == 3
    assert record.message == "still silent"
    assert record.standing


def test_cleared_conditions_close_and_a_return_is_a_new_alarm(store):
    store.add_alarms([_bus(0)])
    assert store.clear_alarm(AlarmKind.BUS_FAULT, "meters-a", HOUR + timedelta(seconds=1))
    assert not store.clear_alarm(AlarmKind.BUS_FAULT, "meters-a", HOUR + timedelta(seconds=2))
    store.add_alarms([_bus(3)])
    records = store.alarm_records()
    assert len(records) == 2
    assert [r.standing for r in records] == [True, False]
    assert [r.id for r in store.alarm_records(standing_only=True)] == [records[0].id]


def test_ack_records_who_and_keeps_the_first(store):
    store.add_alarms([_bus(0)])
    (record,) = store.alarm_records()
    acked = store.ack_alarm(record.id, "ops", HOUR + timedelta(minutes=1))
    assert acked is not None
    assert acked.acked_by == "ops"
    again = store.ack_alarm(record.id, "someone", HOUR + timedelta(minutes=2))
    assert again is not None
    assert again.acked_by == "ops"
    assert again.acked_at == HOUR + timedelta(minutes=1)
    assert store.ack_alarm(record.id + 100, "ops", HOUR) is None


def test_rows_of_an_older_store_are_folded_into_conditions(tmp_path):
    path = tmp_path / "ledger.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE alarms (kind TEXT NOT NULL, subject TEXT NOT NULL, at_us INTEGER NOT "
        "NULL, message TEXT NOT NULL, PRIMARY KEY (kind, subject, at_us, message)) WITHOUT ROWID"
    )
    base = int(HOUR.timestamp() * 1_000_000)
    db.executemany(
        "INSERT INTO alarms VALUES ('priority_debt', 'P001', ?, 'owes')",
        [(base + k * 5_000_000,) for k in range(4)],
    )
    db.commit()
    db.close()
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        (record,) = store.alarm_records()
        assert (record.kind, record.count) == (AlarmKind.PRIORITY_DEBT, 4)
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:  # migrated once
        assert store.alarm_records()[0].count == 4


def test_read_credit_writes_no_alarm(site, store):
    for k in range(3):
        read_credit(store, site, HOUR + timedelta(seconds=5 * k))
    assert store.alarm_records() == []


def test_low_credit_warns_before_the_disconnect_and_each_is_raised_once(site, store):
    policy = CreditPolicy()
    low = {"H001": credit_status("H001", ConnectionKind.HOUSEHOLD, 1, True, 12, HOUR, policy)}
    empty = {"H001": credit_status("H001", ConnectionKind.HOUSEHOLD, 0, True, 12, HOUR, policy)}
    raised, cleared = credit_alarms({}, low, HOUR)
    assert [a.kind for a in raised] == [AlarmKind.LOW_CREDIT]
    assert cleared == []
    assert credit_alarms(low, low, HOUR) == ([], [])  # standing: nothing new
    raised, cleared = credit_alarms(low, empty, HOUR)
    assert [a.kind for a in raised] == [AlarmKind.CREDIT_DISCONNECT]
    assert cleared == [(AlarmKind.LOW_CREDIT, "H001")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-3_000_000, 3_000_000), min_size=1, max_size=12))
def test_standing_credit_alarms_match_the_last_status(tmp_path_factory, balances):
    """Folding credit changes into the store leaves exactly the last status's conditions."""
    policy = CreditPolicy()
    with SqliteLedgerStore(tmp_path_factory.mktemp("a") / "l.sqlite", "NORMAL") as store:
        previous: dict = {}
        connected = True
        for k, balance in enumerate(balances):
            at = HOUR + timedelta(seconds=5 * k)
            status = credit_status(
                "H001", ConnectionKind.HOUSEHOLD, balance, connected, 12, at, policy
            )
            current = {"H001": status}
            raised, cleared = credit_alarms(previous, current, at)
            store.add_alarms(raised)
            for kind, subject in cleared:
                store.clear_alarm(kind, subject, at)
            previous, connected = current, status.connected
        standing = {r.kind for r in store.alarm_records(standing_only=True)}
        expected = set()
        if previous["H001"].state.value == "disconnected":
            expected.add(AlarmKind.CREDIT_DISCONNECT)
        elif previous["H001"].warning:
            expected.add(AlarmKind.LOW_CREDIT)
        assert standing == expected
