"""What only the PostgreSQL store adds: sites isolated in one database, several writer
processes at once (serialisable transactions with retries), clear errors for bad input."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from microgrid import load_site
from settlement import AlarmKind, Asset, Batch, SqliteLedgerStore, Transfer
from settlement.ledger import FIAT_BRIDGE
from settlement.postgres_store import PostgresLedgerStore
from tests.postgres import new_site_id
from tests.settlement import pg_writer

ROOT = Path(__file__).resolve().parents[2]


def topup(account: str, amount: int, key: str) -> Batch:
    return Batch(key, (Transfer(FIAT_BRIDGE, account, Asset.COIN, amount, "fiat.topup"),))


def test_sites_in_one_database_are_isolated(pg_conninfo):
    north, south = new_site_id("north"), new_site_id("south")
    with (
        PostgresLedgerStore(pg_conninfo, north) as a,
        PostgresLedgerStore(pg_conninfo, south) as b,
    ):
        a.post(topup("user:amina", 500, "pay:1"))
        # The same key on another site is another batch, with its own chain from seq 1.
        posted = b.post(topup("user:amina", 7, "pay:1"))
        assert not posted.replayed
        assert posted.first_seq == 1
        assert (a.balance("user:amina"), b.balance("user:amina")) == (500, 7)
        assert a.keys_with_prefix("pay:") == b.keys_with_prefix("pay:") == ["pay:1"]
        a.set_owner("user:amina", "amina")
        assert b.owner_of("user:amina") is None
        # Tampering with one site's journal leaves the other's verify clean.
        a._db.execute("UPDATE journal SET amount = amount + 1 WHERE seq = 1")
        assert not a.verify().ok
        assert b.verify().ok


def test_bad_site_id_is_named(pg_conninfo):
    with pytest.raises(ValueError, match=r"site id 'North Site!'.*lower-case"):
        PostgresLedgerStore(pg_conninfo, "North Site!")


def test_threads_posting_to_one_site_lose_and_double_nothing(pg_conninfo):
    """Each thread has its own connection; all post replays of each other's keys too."""
    site_id = new_site_id("threads")
    with PostgresLedgerStore(pg_conninfo, site_id) as s:
        s.post(topup("user:pool", 10**9, "seed"))
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            with PostgresLedgerStore(pg_conninfo, site_id) as s:
                for k in range(40):
                    s.post(topup(f"user:{k % 5}", 1, f"shared:{k}"))  # every thread
                    s.post(
                        Batch(
                            f"own:{writer}:{k}",
                            (Transfer("user:pool", f"user:w{writer}", Asset.COIN, 3, "fund"),),
                        )
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with PostgresLedgerStore(pg_conninfo, site_id) as s:
        report = s.verify()
        assert report.ok, report.problems[:3]
        assert report.rows == 1 + 40 + 4 * 40
        assert sum(s.balance(f"user:{k}") for k in range(5)) == 40
        assert all(s.balance(f"user:w{w}") == 120 for w in range(4))
        assert s.balance("user:pool") == 10**9 - 4 * 120


@pytest.mark.slow
def test_two_processes_doing_a_services_ledger_work_on_one_site_lose_and_double_nothing(
    pg_conninfo, tmp_path
):
    """Two processes do a service's ledger work on one site at once: the same readings,
    the same webhook top-ups, the same hours to settle, plus top-ups of their own."""
    site_id, hours = new_site_id("fleet"), 8
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.settlement.pg_writer",
                pg_conninfo,
                site_id,
                str(w),
                str(hours),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for w in (0, 1)
    ]
    for proc in writers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    site = load_site(None)
    with SqliteLedgerStore(tmp_path / "reference.sqlite", synchronous="NORMAL") as ref:
        for w in (0, 1):  # the same work, one writer after the other
            pg_writer.work(ref, site, w, hours)
        with PostgresLedgerStore(pg_conninfo, site_id) as pg:
            report = pg.verify()
            assert report.ok, report.problems[:3]
            assert pg.balances() == ref.balances()
            assert report.rows == ref.verify().rows
            assert len(pg.keys_with_prefix("settle:")) == hours
            assert len(pg.keys_with_prefix("fiat:")) == len(ref.keys_with_prefix("fiat:"))


def test_alarm_rows_of_an_older_schema_are_folded_into_conditions(pg_conninfo):
    site_id = new_site_id("old")
    with PostgresLedgerStore(pg_conninfo, site_id) as store:
        store._db.execute(
            "CREATE TABLE alarms (kind TEXT NOT NULL, subject TEXT NOT NULL, "
            "at_us BIGINT NOT NULL, message TEXT NOT NULL)"
        )
        t0 = 1_785_000_000_000_000
        store._db.execute(
            "INSERT INTO alarms VALUES ('bus_fault', 'meters-a', %s, 'silent'), "
            "('bus_fault', 'meters-a', %s, 'still silent'), "
            "('connection_trip', 'H001', %s, 'tripped')",
            (t0, t0 + 5_000_000, t0),
        )
    with PostgresLedgerStore(pg_conninfo, site_id) as store:
        records = {r.kind: r for r in store.alarm_records()}
        assert records[AlarmKind.BUS_FAULT].count == 2
        assert records[AlarmKind.BUS_FAULT].message == "still silent"
        assert records[AlarmKind.BUS_FAULT].first_seen == datetime.fromtimestamp(t0 / 1e6, UTC)
        assert records[AlarmKind.CONNECTION_TRIP].count == 1
        gone = store._db.execute("SELECT to_regclass('alarms')").fetchone()
        assert gone is not None
        assert gone[0] is None


def test_connect_again_opens_the_same_site_on_its_own_connection(pg_conninfo):
    with PostgresLedgerStore(pg_conninfo, new_site_id()) as store:
        store.post(topup("user:amina", 1_000, "pay:1"))
        found: list[int] = []

        def work() -> None:
            with store.connect_again() as other:
                assert other._db is not store._db
                found.append(other.balance("user:amina"))
                found.append(other.verify().rows)

        thread = threading.Thread(target=work)
        thread.start()
        thread.join(30)
        assert found == [1_000, 1]
