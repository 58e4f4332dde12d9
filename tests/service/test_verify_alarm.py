"""A tampered ledger raises the critical verify alarm: from the service's periodic check and
from ``GET /api/ledger/verify``, on a real SQLite ledger edited behind the service's back."""

from __future__ import annotations

import sqlite3

from settlement import AlarmKind, Severity
from tests.service.conftest import run_api


def _verify_alarms(store):
    return [a for a in store.alarm_records(standing_only=True) if a.kind is AlarmKind.VERIFY_FAILED]


async def _tamper_and_verify(rig, client):
    service = rig.service
    await service.verify_job(rig.clock.now())
    clean = _verify_alarms(service.store)
    with sqlite3.connect(rig.data_dir / "ledger.sqlite") as db:  # an edited amount
        db.execute("UPDATE journal SET amount = amount + 1 WHERE seq = 2")
    await service.verify_job(rig.clock.now())  # the periodic check, incremental
    periodic = _verify_alarms(service.store)
    answer = await client.get("/api/ledger/verify", auth=("operator", rig.passwords["operator"]))
    return clean, periodic, answer.json(), _verify_alarms(service.store)


def test_a_tampered_ledger_is_a_critical_alarm(tmp_path):
    rig, (clean, periodic, answer, after_api) = run_api(tmp_path, _tamper_and_verify)
    assert clean == []
    (alarm,) = periodic
    assert alarm.severity is Severity.CRITICAL
    assert alarm.subject == "ledger"
    assert "first bad row 2" in alarm.message
    assert answer["ok"] is False
    (again,) = after_api  # the API's verify found it too: the same standing condition
    assert again.id == alarm.id
    assert "verify" in {job.id for job in rig.service.jobs()}
