"""The settle lock holds across processes, and an hour is one transaction on SQLite.

Two real processes settle the same day at once, one from the first hour up, the other
from the last hour down (so that nearly every hour it settles replays the later ones):
what they leave must be exactly what one process settling the day alone leaves —
nothing doubled, every hour's WATT moved as in the serial history.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from settlement import LedgerStore, SqliteLedgerStore, record_readings, settle_hour
from settlement.alarms import AlarmKind
from settlement.hourly import posted_net
from settlement.ledger import FIAT_BRIDGE, Asset, Batch, Transfer
from settlement.settle import settlement_key
from tests.postgres import new_site_id
from tests.settlement import settle_worker
from tests.settlement.conftest import HOUR
from tests.settlement.test_storage import _day_readings, seed_002_site

ROOT = Path(__file__).resolve().parents[2]
H = timedelta(hours=1)


def _record_day(store: LedgerStore) -> None:
    site = seed_002_site()
    readings, _ = _day_readings(site)
    record_readings(
        store, site, readings, recorded_at=HOUR + 25 * H, config=settle_worker.config_for_test()
    )


def _history(store: LedgerStore) -> dict[int, dict[tuple[str, Asset], int]]:
    """Net of every asset each hour's batches (first and corrections) moved, per hour."""
    site_id = settle_worker.config_for_test().site_key(seed_002_site())
    out: dict[int, dict[tuple[str, Asset], int]] = {}
    for k in range(settle_worker.HOURS):
        transfers: list[Transfer] = []
        for key in store.keys_with_prefix(settlement_key(site_id, HOUR + k * H)):
            transfers.extend(store.transfers_of(key))
        out[k] = {
            (account, asset): amount
            for asset in Asset
            for account, amount in posted_net(transfers, asset).items()
            if amount
        }
    return out


Balances = dict[tuple[str, Asset], int]


def _serial_reference(folder: Path) -> tuple[Balances, dict[int, Balances]]:
    with SqliteLedgerStore(folder / "serial.sqlite", synchronous="NORMAL") as store:
        _record_day(store)
        settle_worker.settle_in_order(store, "up")
        return store.balances(), _history(store)


def _spawn(
    kind: str, where: str, order: str, start_at: float, trace: Path
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.settlement.settle_worker",
            kind,
            where,
            order,
            str(start_at),
            str(trace),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _race(kind: str, where: str, folder: Path) -> None:
    """Two processes settle the whole day at once, in opposite orders.

    Both must succeed, and no settlement of one may overlap one of the other: each
    worker logs when its settlements ran inside the lock.
    """
    start_at = time.time() + 3.0  # both have imported and connected by then
    traces = {order: folder / f"{order}.trace" for order in ("up", "down")}
    workers = [_spawn(kind, where, order, start_at, trace) for order, trace in traces.items()]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err.decode()[-2000:]
    up, down = (
        [tuple(map(float, line.split())) for line in trace.read_text().splitlines()]
        for trace in traces.values()
    )
    assert len(up) == len(down) == settle_worker.HOURS
    overlapping = [(a, b) for a in up for b in down if a[0] < b[1] and b[0] < a[1]]
    assert not overlapping, f"{len(overlapping)} settlements ran at once in two processes"


def _assert_as_if_serial(store: LedgerStore, folder: Path) -> None:
    balances, history = _serial_reference(folder)
    assert store.verify().ok
    assert _history(store) == history  # every hour's WATT and coins, as settled alone
    assert store.balances() == balances  # nothing doubled
    site_id = settle_worker.config_for_test().site_key(seed_002_site())
    assert store.incomplete_hours(site_id) == []
    assert not [a for a in store.alarms() if a.kind is AlarmKind.WATT_MISMATCH]


@pytest.mark.slow
def test_two_processes_settling_one_sqlite_ledger_leave_the_serial_history(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        _record_day(store)
    _race("sqlite", str(path), tmp_path)
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        _assert_as_if_serial(store, tmp_path)


@pytest.mark.slow
def test_two_processes_settling_one_postgres_site_leave_the_serial_history(pg_conninfo, tmp_path):
    from settlement.postgres_store import PostgresLedgerStore

    site_id = new_site_id("lock")
    with PostgresLedgerStore(pg_conninfo, site_id) as store:
        _record_day(store)
        _race("postgres", f"{pg_conninfo}:{site_id}", tmp_path)
        _assert_as_if_serial(store, tmp_path)


def test_a_sqlite_hour_is_one_transaction(tmp_path):
    """The hour's batch, its mark and its decisions commit together, once."""
    site = seed_002_site()
    config = settle_worker.config_for_test()
    with SqliteLedgerStore(tmp_path / "l.sqlite", synchronous="NORMAL") as store:
        _record_day(store)
        commits: list[str] = []
        store._db.set_trace_callback(
            lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None
        )
        done = settle_hour(store, site, HOUR, config)
        store._db.set_trace_callback(None)
        assert done.posted is not None
        assert done.transfers
        assert commits == ["COMMIT"]
        assert store.settled_hours(config.site_key(site), HOUR, HOUR + H) == [HOUR]


def test_a_failed_settlement_leaves_nothing_behind(tmp_path, monkeypatch):
    """Atomic: an error after the batch was posted rolls the batch back with the rest."""
    site = seed_002_site()
    config = settle_worker.config_for_test()
    with SqliteLedgerStore(tmp_path / "l.sqlite", synchronous="NORMAL") as store:
        _record_day(store)

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("disk gone")

        monkeypatch.setattr(store, "finish_hour", broken)
        with pytest.raises(RuntimeError, match="disk gone"):
            settle_hour(store, site, HOUR, config)
        monkeypatch.undo()
        key = settlement_key(config.site_key(site), HOUR)
        assert store.posted(key) is None
        assert store.settled_hours(config.site_key(site), HOUR, HOUR + H) == []
        settled = settle_hour(store, site, HOUR, config)  # and settles again cleanly
        assert settled.posted is not None
        assert settled.posted.key == key


def test_a_write_failing_inside_a_settlement_undoes_only_itself(tmp_path):
    """Inside ``settling`` a refused post is a savepoint rolled back, not the whole block."""
    from settlement.ledger import InsufficientFundsError

    with SqliteLedgerStore(tmp_path / "l.sqlite", synchronous="NORMAL") as store:
        ok = Batch("ok", (Transfer(FIAT_BRIDGE, "user:a", Asset.COIN, 5, "fiat.topup"),))
        bad = Batch("bad", (Transfer("user:b", "user:a", Asset.COIN, 5, "pay"),))
        with store.settling("x"):
            store.post(ok)
            with pytest.raises(InsufficientFundsError):
                store.post(bad)
        assert store.balance("user:a") == 5
        assert store.posted("bad") is None


def _post_and_fail(store: LedgerStore) -> None:
    with store.settling("x"):
        store.post(Batch("gone", (Transfer(FIAT_BRIDGE, "user:a", Asset.COIN, 5, "fiat.topup"),)))
        raise RuntimeError("rolled back")


def test_an_anchored_store_checkpoints_a_settled_hour_after_its_one_commit(tmp_path):
    """Inside the hour's transaction the post defers its checkpoint to the commit."""
    from settlement.anchor import Anchor, create_anchor_key, verify_anchored

    site = seed_002_site()
    config = settle_worker.config_for_test()
    anchor = Anchor(tmp_path / "export", create_anchor_key(tmp_path / "k"))

    def exported() -> dict[str, bytes]:
        return {f.name: f.read_bytes() for f in anchor.directory.iterdir()}

    with SqliteLedgerStore(tmp_path / "l.sqlite", synchronous="NORMAL", anchor=anchor) as store:
        _record_day(store)
        for k in range(3):
            settle_hour(store, site, HOUR + k * H, config)
        assert verify_anchored(store, anchor.directory, anchor.key).ok
        before = exported()
        with pytest.raises(RuntimeError, match="rolled back"):
            _post_and_fail(store)
        assert exported() == before  # nothing committed, no checkpoint
        assert verify_anchored(store, anchor.directory, anchor.key).ok


def test_reading_an_hours_decisions_searches_by_hour_not_every_decision(tmp_path):
    """Each settlement reads the previous hour's decisions: by index, not by a scan of all.

    A scan grew with every hour ever settled (400 rows an hour: 180-210 ms at 800 000
    rows against 2.5 ms by the index).
    """
    with SqliteLedgerStore(tmp_path / "l.sqlite", synchronous="NORMAL") as store:
        seen: list[str] = []
        store._db.set_trace_callback(seen.append)
        store.connected_after("demo", HOUR)
        store._db.set_trace_callback(None)
        query = next(q for q in seen if "meter_decisions" in q)
        plan = " ".join(str(row[3]) for row in store._db.execute(f"EXPLAIN QUERY PLAN {query}"))
        assert "meter_decisions_by_hour (site=? AND hour_us=?)" in plan
