from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from microgrid import load_site
from microgrid.readings import MeterReading
from settlement import LedgerStore, SqliteLedgerStore
from settlement.anchor import Anchor
from settlement.postgres_store import PostgresLedgerStore
from tests.postgres import new_site_id, postgres_database

HOUR = datetime(2026, 8, 1, 10, tzinfo=UTC)  # 11:00 in Niamey: not a friendly hour

STORE_KINDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def site():
    return load_site(None)


@pytest.fixture(scope="session")
def pg_conninfo() -> Iterator[str]:
    """A conninfo of a throwaway database on the local PostgreSQL server (skips if none)."""
    yield from postgres_database()


@pytest.fixture(scope="session", params=STORE_KINDS)
def open_store(request, tmp_path_factory) -> Callable[..., LedgerStore]:
    """Opens a store of one kind: a fresh one, or again the one named ``name``.

    ``anchor=`` opens it with an :class:`settlement.anchor.Anchor` (both kinds take one).

    The store suite runs once per kind: SQLite files, and sites (schemas) of one
    PostgreSQL database.
    """
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("ledgers")

        def open_sqlite(name: str | None = None, anchor: Anchor | None = None) -> LedgerStore:
            return SqliteLedgerStore(
                folder / f"{name or new_site_id()}.sqlite", synchronous="NORMAL", anchor=anchor
            )

        return open_sqlite
    conninfo = request.getfixturevalue("pg_conninfo")

    def open_postgres(name: str | None = None, anchor: Anchor | None = None) -> LedgerStore:
        return PostgresLedgerStore(conninfo, name or new_site_id(), anchor=anchor)

    return open_postgres


@pytest.fixture
def store(open_store) -> Iterator[LedgerStore]:
    s = open_store(None)
    try:
        yield s
    finally:
        s.close()


def execute_raw(store: LedgerStore, statement: str) -> None:
    """Run SQL on a store's tables behind its back (to play an attacker or a crash)."""
    if isinstance(store, SqliteLedgerStore):
        sqlite3.connect(store.path, isolation_level=None).execute(statement)
    elif isinstance(store, PostgresLedgerStore):
        store._db.execute(statement)
    else:  # pragma: no cover
        raise TypeError(type(store))


def hourly_readings(
    meter_id: str, start: datetime, values: list[int], export: list[int] | None = None
) -> list[MeterReading]:
    """One reading per hour boundary from ``start``: ``values[k]`` at ``start + k h``."""
    export = export or [0] * len(values)
    return [
        MeterReading(meter_id, start + timedelta(hours=k), v, x)
        for k, (v, x) in enumerate(zip(values, export, strict=True))
    ]
