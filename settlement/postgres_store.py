"""The ledger on PostgreSQL: many sites in one database, several services writing at once.

Sites
-----
Each site's ledger lives in its own schema (``lastwatt_<site>``), with the same tables as
:mod:`settlement.sqlite_store`. A store opened for one site sets its ``search_path`` to
that schema only, so no query can read or write another site's journal, balances or
readings, and each site has its own hash chain, batch keys and sequence numbers.

Concurrency
-----------
Every transaction is ``SERIALIZABLE`` and is retried (with jittered back-off) when
PostgreSQL reports a serialisation failure or a deadlock, so any number of services may
write to one site at once and the result is as if they had written one after the other.
Writers to a site also take a session advisory lock of that site *before* their
transaction starts: the chain head is a single hot row every post must read, so without
the lock concurrent posters would mostly abort and retry; with it they queue, and the
serialisable transaction plus retries remain the guarantee (a writer that does not take
the lock still cannot break the chain). Writers of different sites never wait for each
other.

Durability
----------
A post returns after PostgreSQL's ``COMMIT``, which with the server's default
``synchronous_commit = on`` means the WAL is flushed to disk: the same promise as the
SQLite store's ``synchronous=FULL``.

All rules (idempotency, preconditions, overdrafts, the hash chain) come from
:func:`settlement.posting.plan_posting` and ``verify`` from
:func:`settlement.ledger.verify_journal`, as on SQLite.
"""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

import psycopg
from psycopg import errors, sql
from psycopg.rows import TupleRow

from microgrid.readings import MeterReading
from settlement.alarms import Alarm, AlarmKind
from settlement.ledger import (
    GENESIS_HASH,
    Asset,
    Batch,
    JournalRow,
    PostedBatch,
    Transfer,
    VerifyReport,
    from_us,
    to_us,
    validate_batch,
    verify_journal,
)
from settlement.posting import BatchRow, covered_debits, plan_posting
from settlement.store import ReadingsAdded

__all__ = ["PostgresLedgerStore", "site_schema"]

T = TypeVar("T")

_SITE_ID = re.compile(r"[a-z0-9][a-z0-9_]{0,47}")

# Text columns compare byte-wise (COLLATE "C"), as SQLite does: prefix ranges and the
# order of keys and accounts are then the same on both stores whatever the server locale.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq BIGINT PRIMARY KEY,
    batch_key TEXT COLLATE "C" NOT NULL,
    code TEXT COLLATE "C" NOT NULL,
    debit TEXT COLLATE "C" NOT NULL,
    credit TEXT COLLATE "C" NOT NULL,
    asset TEXT COLLATE "C" NOT NULL,
    amount BIGINT NOT NULL,
    posted_at_us BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    key TEXT COLLATE "C" PRIMARY KEY,
    digest BYTEA NOT NULL,
    first_seq BIGINT NOT NULL,
    count BIGINT NOT NULL,
    posted_at_us BIGINT NOT NULL,
    ordinal BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_ordinal ON batches (ordinal);
CREATE TABLE IF NOT EXISTS balances (
    account TEXT COLLATE "C" NOT NULL,
    asset TEXT COLLATE "C" NOT NULL,
    balance BIGINT NOT NULL,
    PRIMARY KEY (account, asset)
);
CREATE TABLE IF NOT EXISTS readings (
    meter_id TEXT COLLATE "C" NOT NULL,
    read_at_us BIGINT NOT NULL,
    import_wh BIGINT NOT NULL,
    export_wh BIGINT NOT NULL,
    recorded_at_us BIGINT NOT NULL,
    PRIMARY KEY (meter_id, read_at_us)
);
CREATE TABLE IF NOT EXISTS alarms (
    kind TEXT COLLATE "C" NOT NULL,
    subject TEXT COLLATE "C" NOT NULL,
    at_us BIGINT NOT NULL,
    message TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, subject, at_us, message)
);
CREATE TABLE IF NOT EXISTS settled_hours (
    site TEXT COLLATE "C" NOT NULL,
    hour_us BIGINT NOT NULL,
    complete BOOLEAN NOT NULL,
    PRIMARY KEY (site, hour_us)
);
CREATE TABLE IF NOT EXISTS owners (
    account TEXT COLLATE "C" PRIMARY KEY,
    owner TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS stake_choices (
    household TEXT COLLATE "C" NOT NULL,
    effective_round BIGINT NOT NULL,
    business TEXT COLLATE "C",
    PRIMARY KEY (household, effective_round)
);
"""

# One advisory-lock key for creating schemas, so two services opening a new site at once
# do not race on CREATE SCHEMA IF NOT EXISTS (which is not atomic in PostgreSQL).
_DDL_LOCK = 0x4C57_4444_4C00_0001

_RETRYABLE = (errors.SerializationFailure, errors.DeadlockDetected)


def site_schema(site_id: str) -> str:
    """The schema holding ``site_id``'s ledger.

    Raises
    ------
    ValueError
        If the id is not 1-48 lower-case letters, digits or underscores, starting with a
        letter or digit (so every site maps to its own valid schema name).

    Examples
    --------
    >>> site_schema("niamey_01")
    'lastwatt_niamey_01'
    """
    if not isinstance(site_id, str) or not _SITE_ID.fullmatch(site_id):
        msg = (
            f"site id {site_id!r} is not usable for a PostgreSQL ledger: use 1-48 lower-case "
            "letters, digits or underscores, starting with a letter or digit (e.g. 'niamey_01')"
        )
        raise ValueError(msg)
    return f"lastwatt_{site_id}"


def _lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory-lock key per site."""
    return int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)


class PostgresLedgerStore:
    """A :class:`settlement.store.LedgerStore` for one site in a PostgreSQL database.

    Parameters
    ----------
    conninfo : str
        A libpq connection string or URL (``postgresql://user:pw@127.0.0.1:5432/db``).
    site_id : str
        The site whose ledger this store reads and writes (:func:`site_schema`).
    retries : int
        How many times a transaction is retried after a serialisation failure or deadlock.
    connect_timeout_s : int
        How long connecting may take [s].

    Raises
    ------
    ValueError
        For an unusable site id or retry count.
    psycopg.OperationalError
        If the server cannot be reached.
    """

    def __init__(
        self, conninfo: str, site_id: str, retries: int = 20, connect_timeout_s: int = 10
    ) -> None:
        self.schema = site_schema(site_id)
        self.site_id = site_id
        if retries < 0:
            msg = f"retries must be >= 0, got {retries}"
            raise ValueError(msg)
        self.retries = retries
        self._lock_key = _lock_key(self.schema)
        self._db = psycopg.connect(conninfo, autocommit=True, connect_timeout=connect_timeout_s)
        self._db.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        try:
            self._create_schema()
        except BaseException:
            self._db.close()
            raise

    def _create_schema(self) -> None:
        schema = sql.Identifier(self.schema)
        with self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            self._db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            self._db.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
            self._db.execute(_SCHEMA.encode())
        self._db.execute(sql.SQL("SET search_path TO {}").format(schema))

    # --- context management --------------------------------------------------------------
    def __enter__(self) -> PostgresLedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # --- transactions ---------------------------------------------------------------------
    def _run(self, work: Callable[[psycopg.Connection[TupleRow]], T], write: bool) -> T:
        """Run ``work`` in a serialisable transaction, retrying serialisation failures.

        Writers hold the site's advisory lock around the transaction (module docstring).
        """
        db = self._db
        for attempt in range(self.retries + 1):
            if write:
                db.execute("SELECT pg_advisory_lock(%s)", (self._lock_key,))
            try:
                with db.transaction():
                    return work(db)
            except _RETRYABLE:
                if attempt == self.retries:
                    raise
            finally:
                if write:
                    db.execute("SELECT pg_advisory_unlock(%s)", (self._lock_key,))
            # Jittered exponential back-off, capped at 0.2 s: spreads retrying writers.
            time.sleep(random.uniform(0, min(0.2, 0.001 * 2**attempt)))
        msg = "unreachable: the last attempt returns or raises"
        raise AssertionError(msg)  # pragma: no cover

    # --- the journal ---------------------------------------------------------------------
    def post(self, batch: Batch, posted_at: datetime | None = None) -> PostedBatch:
        """Post one batch atomically and idempotently; see :meth:`post_many`."""
        return self.post_many([batch], posted_at)[0]

    def post_many(
        self, batches: Sequence[Batch], posted_at: datetime | None = None
    ) -> list[PostedBatch]:
        """Post batches in one serialisable transaction: all or none.

        Raises
        ------
        IdempotencyConflictError, InsufficientFundsError, BatchRejectedError
            Nothing is posted then.
        """
        for batch in batches:
            validate_batch(batch)
        posted_at_us = to_us(posted_at or datetime.now(UTC))
        return self._run(lambda db: self._post_locked(db, batches, posted_at_us), write=True)

    def _post_locked(
        self, db: psycopg.Connection[TupleRow], batches: Sequence[Batch], at_us: int
    ) -> list[PostedBatch]:
        head = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        chain_head = (0, GENESIS_HASH) if head is None else (int(head[0]), bytes(head[1]))
        ordinal_row = db.execute("SELECT COALESCE(MAX(ordinal), 0) FROM batches").fetchone()
        plan = plan_posting(
            batches,
            at_us,
            chain_head,
            int(ordinal_row[0]) if ordinal_row else 0,
            self._checked_balances(db, batches),
            lambda key: self._batch_row(key, db),
        )
        with db.cursor() as cur:
            if plan.journal:
                with cur.copy(
                    "COPY journal (seq, batch_key, code, debit, credit, asset, amount, "
                    "posted_at_us, hash) FROM STDIN"
                ) as copy:
                    for row in plan.journal:
                        copy.write_row(row)
            if plan.index:
                cur.executemany("INSERT INTO batches VALUES (%s, %s, %s, %s, %s, %s)", plan.index)
            if plan.deltas:
                accounts, assets, deltas = zip(*plan.deltas, strict=True)
                cur.execute(
                    "INSERT INTO balances SELECT * FROM unnest(%s::text[], %s::text[], "
                    "%s::bigint[]) ON CONFLICT (account, asset) "
                    "DO UPDATE SET balance = balances.balance + excluded.balance",
                    (list(accounts), list(assets), list(deltas)),
                )
        return plan.results

    def _checked_balances(
        self, db: psycopg.Connection[TupleRow], batches: Sequence[Batch]
    ) -> dict[tuple[str, Asset], int]:
        """Current balances of the accounts whose debits must be covered."""
        wanted = covered_debits(batches)
        accounts = sorted({a for a, _ in wanted})
        found: dict[tuple[str, Asset], int] = {}
        if accounts:
            rows = db.execute(
                "SELECT account, asset, balance FROM balances WHERE account = ANY(%s)",
                (accounts,),
            )
            for account, asset, balance in rows:
                key = (str(account), Asset(asset))
                if key in wanted:
                    found[key] = int(balance)
        return {key: found.get(key, 0) for key in wanted}

    def _batch_row(
        self, key: str, db: psycopg.Connection[TupleRow] | None = None
    ) -> BatchRow | None:
        row = (
            (db or self._db)
            .execute(
                "SELECT digest, first_seq, count, posted_at_us FROM batches WHERE key = %s", (key,)
            )
            .fetchone()
        )
        if row is None:
            return None
        return bytes(row[0]), int(row[1]), int(row[2]), int(row[3])

    def posted(self, key: str) -> PostedBatch | None:
        """The batch posted under ``key``, if any."""
        row = self._batch_row(key)
        if row is None:
            return None
        return PostedBatch(key, row[1], row[2], from_us(row[3]))

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Posted batch keys starting with ``prefix``, in posting order."""
        rows = self._db.execute(
            "SELECT key FROM batches WHERE key >= %s AND key < %s ORDER BY ordinal",
            (prefix, prefix + "\U0010ffff"),
        )
        return [str(r[0]) for r in rows]

    def transfers_of(self, key: str) -> tuple[Transfer, ...]:
        """The transfers of a posted batch (empty if the key is unknown)."""
        row = self._batch_row(key)
        if row is None or row[2] == 0:
            return ()
        first, count = row[1], row[2]
        rows = self._db.execute(
            "SELECT debit, credit, asset, amount, code FROM journal "
            "WHERE seq >= %s AND seq < %s ORDER BY seq",
            (first, first + count),
        )
        return tuple(Transfer(str(d), str(c), Asset(a), int(n), str(k)) for d, c, a, n, k in rows)

    def balance(self, account: str, asset: Asset = Asset.COIN) -> int:
        """Balance of one account [minor units]; zero for an unknown account."""
        row = self._db.execute(
            "SELECT balance FROM balances WHERE account = %s AND asset = %s",
            (account, asset.value),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def balances(
        self, asset: Asset | None = None, prefix: str = ""
    ) -> dict[tuple[str, Asset], int]:
        """Non-zero balances, optionally of one asset and of accounts starting with ``prefix``."""
        rows = self._db.execute(
            "SELECT account, asset, balance FROM balances WHERE balance != 0 "
            "AND account >= %s AND account < %s ORDER BY account, asset",
            (prefix, prefix + "\U0010ffff"),
        )
        return {(str(a), Asset(s)): int(b) for a, s, b in rows if asset is None or s == asset.value}

    def history(self, account: str, limit: int = 50) -> list[JournalRow]:
        """The latest journal rows that touch ``account``, newest first."""
        rows = self._db.execute(
            "SELECT * FROM journal WHERE debit = %s OR credit = %s ORDER BY seq DESC LIMIT %s",
            (account, account, limit),
        )
        return [_journal_row(r) for r in rows]

    def journal_rows(self, start_seq: int = 1) -> Iterator[JournalRow]:
        """Journal rows from ``start_seq`` on, in order (fetched in pages)."""
        last = start_seq - 1
        while True:
            page = self._db.execute(
                "SELECT * FROM journal WHERE seq > %s ORDER BY seq LIMIT 10000", (last,)
            ).fetchall()
            if not page:
                return
            for row in page:
                yield _journal_row(row)
            last = int(page[-1][0])

    def verify(self) -> VerifyReport:
        """Recompute the hash chain and every invariant from one consistent snapshot."""

        def check(db: psycopg.Connection[TupleRow]) -> VerifyReport:
            batches = {
                str(k): (bytes(d), int(f), int(c))
                for k, d, f, c in db.execute("SELECT key, digest, first_seq, count FROM batches")
            }
            balances = {
                (str(a), str(s)): int(b)
                for a, s, b in db.execute("SELECT account, asset, balance FROM balances")
            }
            # A server-side cursor streams the journal instead of loading it whole.
            with db.cursor(name="verify_journal") as cur:
                cur.itersize = 20_000
                cur.execute("SELECT * FROM journal ORDER BY seq")
                return verify_journal((_journal_row(r) for r in cur), batches, balances)

        return self._run(check, write=False)

    # --- readings, alarms, settled hours ------------------------------------------------
    def add_readings(
        self, readings: Sequence[MeterReading], recorded_at: datetime
    ) -> ReadingsAdded:
        """Store readings; duplicates are ignored and conflicting ones reported, not stored."""
        recorded_us = to_us(recorded_at)

        def add(db: psycopg.Connection[TupleRow]) -> ReadingsAdded:
            keys = [(r.meter_id, to_us(r.read_at)) for r in readings]
            stored: dict[tuple[str, int], MeterReading] = {}
            if keys:
                meters, instants = zip(*keys, strict=True)
                for m, t, i, e in db.execute(
                    "SELECT r.meter_id, r.read_at_us, r.import_wh, r.export_wh FROM readings r "
                    "JOIN unnest(%s::text[], %s::bigint[]) AS k(meter_id, read_at_us) "
                    "USING (meter_id, read_at_us)",
                    (list(meters), list(instants)),
                ):
                    at = int(t)
                    stored[str(m), at] = MeterReading(str(m), from_us(at), int(i), int(e))
            accepted: list[MeterReading] = []
            duplicates: list[MeterReading] = []
            conflicts: list[tuple[MeterReading, MeterReading]] = []
            for r, key in zip(readings, keys, strict=True):
                before = stored.get(key)
                if before is None:
                    stored[key] = r
                    accepted.append(r)
                elif (before.import_wh, before.export_wh) == (r.import_wh, r.export_wh):
                    duplicates.append(r)
                else:
                    conflicts.append((r, before))
            if accepted:
                with db.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO readings VALUES (%s, %s, %s, %s, %s)",
                        [
                            (r.meter_id, to_us(r.read_at), r.import_wh, r.export_wh, recorded_us)
                            for r in accepted
                        ],
                    )
            return ReadingsAdded(tuple(accepted), tuple(duplicates), tuple(conflicts))

        return self._run(add, write=True)

    def readings(
        self, start: datetime, end: datetime, meter_ids: Sequence[str] | None = None
    ) -> list[MeterReading]:
        """Stored readings with ``start <= read_at <= end``, by meter then time."""
        rows = self._db.execute(
            "SELECT meter_id, read_at_us, import_wh, export_wh FROM readings "
            "WHERE read_at_us >= %s AND read_at_us <= %s ORDER BY meter_id, read_at_us",
            (to_us(start), to_us(end)),
        )
        wanted = None if meter_ids is None else set(meter_ids)
        return [
            MeterReading(str(m), from_us(int(t)), int(i), int(e))
            for m, t, i, e in rows
            if wanted is None or m in wanted
        ]

    def reading_before(self, meter_id: str, moment: datetime) -> MeterReading | None:
        """The meter's last reading strictly before ``moment``."""
        row = self._db.execute(
            "SELECT read_at_us, import_wh, export_wh FROM readings WHERE meter_id = %s "
            "AND read_at_us < %s ORDER BY read_at_us DESC LIMIT 1",
            (meter_id, to_us(moment)),
        ).fetchone()
        if row is None:
            return None
        return MeterReading(meter_id, from_us(int(row[0])), int(row[1]), int(row[2]))

    def reading_after(self, meter_id: str, moment: datetime) -> MeterReading | None:
        """The meter's first reading strictly after ``moment``."""
        row = self._db.execute(
            "SELECT read_at_us, import_wh, export_wh FROM readings WHERE meter_id = %s "
            "AND read_at_us > %s ORDER BY read_at_us LIMIT 1",
            (meter_id, to_us(moment)),
        ).fetchone()
        if row is None:
            return None
        return MeterReading(meter_id, from_us(int(row[0])), int(row[1]), int(row[2]))

    def add_alarms(self, alarms: Sequence[Alarm]) -> None:
        """Record alarms (an identical alarm is recorded once)."""
        rows = [(a.kind.value, a.subject, to_us(a.at), a.message) for a in alarms]
        if not rows:
            return

        def add(db: psycopg.Connection[TupleRow]) -> None:
            with db.cursor() as cur:
                cur.executemany(
                    "INSERT INTO alarms VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING", rows
                )

        self._run(add, write=True)

    def alarms(self, since: datetime | None = None) -> list[Alarm]:
        """Recorded alarms, oldest first."""
        start = -(2**62) if since is None else to_us(since)
        rows = self._db.execute(
            "SELECT kind, subject, at_us, message FROM alarms WHERE at_us >= %s "
            "ORDER BY at_us, kind, subject",
            (start,),
        )
        return [Alarm(AlarmKind(k), str(s), from_us(int(t)), str(m)) for k, s, t, m in rows]

    def mark_hour(self, site_id: str, hour: datetime, complete: bool) -> None:
        """Record that an hour was settled, completely or with meters still missing."""
        self._run(
            lambda db: db.execute(
                "INSERT INTO settled_hours VALUES (%s, %s, %s) ON CONFLICT (site, hour_us) "
                "DO UPDATE SET complete = excluded.complete",
                (site_id, to_us(hour), bool(complete)),
            ),
            write=True,
        )

    def settled_hours(self, site_id: str, start: datetime, end: datetime) -> list[datetime]:
        """Settled hours (complete or not) starting in ``[start, end)``, oldest first."""
        rows = self._db.execute(
            "SELECT hour_us FROM settled_hours WHERE site = %s AND hour_us >= %s "
            "AND hour_us < %s ORDER BY hour_us",
            (site_id, to_us(start), to_us(end)),
        )
        return [from_us(int(r[0])) for r in rows]

    def incomplete_hours(self, site_id: str) -> list[datetime]:
        """Settled hours that still miss readings (or hold payouts), oldest first."""
        rows = self._db.execute(
            "SELECT hour_us FROM settled_hours WHERE site = %s AND NOT complete ORDER BY hour_us",
            (site_id,),
        )
        return [from_us(int(r[0])) for r in rows]

    # --- owners and stakes ---------------------------------------------------------------
    def set_owner(self, account: str, owner: str) -> None:
        """Register who may withdraw from ``account``."""
        self._run(
            lambda db: db.execute(
                "INSERT INTO owners VALUES (%s, %s) ON CONFLICT (account) "
                "DO UPDATE SET owner = excluded.owner",
                (account, owner),
            ),
            write=True,
        )

    def owner_of(self, account: str) -> str | None:
        """Who may withdraw from ``account``, if registered."""
        row = self._db.execute("SELECT owner FROM owners WHERE account = %s", (account,)).fetchone()
        return None if row is None else str(row[0])

    def set_stake_choice(
        self, household_id: str, effective_round: int, business_id: str | None
    ) -> None:
        """Record a household's choice (a business, or None to skip) from ``effective_round`` on."""
        self._run(
            lambda db: db.execute(
                "INSERT INTO stake_choices VALUES (%s, %s, %s) "
                "ON CONFLICT (household, effective_round) "
                "DO UPDATE SET business = excluded.business",
                (household_id, effective_round, business_id),
            ),
            write=True,
        )

    def stake_choices(self, round_number: int) -> dict[str, str | None]:
        """Each household's choice in force in ``round_number``."""
        rows = self._db.execute(
            "SELECT household, business FROM stake_choices AS s WHERE effective_round = ("
            "SELECT MAX(effective_round) FROM stake_choices WHERE household = s.household "
            "AND effective_round <= %s) ORDER BY household",
            (round_number,),
        )
        return {str(h): (None if b is None else str(b)) for h, b in rows}


def _journal_row(row: TupleRow) -> JournalRow:
    seq, key, code, debit, credit, asset, amount, at, digest = row
    return JournalRow(
        int(seq),
        str(key),
        str(code),
        str(debit),
        str(credit),
        str(asset),
        int(amount),
        int(at),
        bytes(digest),
    )
