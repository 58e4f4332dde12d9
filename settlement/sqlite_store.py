"""The ledger on SQLite: WAL mode, one transaction per post, the hash chain computed on insert.

Durability
----------
The store runs with ``journal_mode=WAL`` and ``synchronous=FULL`` by default: every
commit is fsynced to the WAL before :meth:`SqliteLedgerStore.post` returns. With
``NORMAL`` a killed *process* (SIGKILL) still loses nothing committed — the WAL is in the
OS page cache — but a *power cut* may roll back the last commits. Off-grid containers
lose power, and a fiat top-up acknowledged to the payment processor must not vanish, so
FULL is the default; its cost is one fsync per transaction, which batching amortises
(see ``benchmarks/bench_settlement.py``). Pass ``synchronous="NORMAL"`` for simulations.

Concurrency
-----------
Writers take SQLite's write lock up front (``BEGIN IMMEDIATE``) and read the chain head
and balances inside that transaction, so two processes posting at once serialise
correctly; ``busy_timeout`` makes the second one wait instead of failing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

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
from settlement.posting import covered_debits, plan_posting
from settlement.store import ReadingsAdded

__all__ = ["SqliteLedgerStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    batch_key TEXT NOT NULL,
    code TEXT NOT NULL,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount INTEGER NOT NULL,
    posted_at_us INTEGER NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    first_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    posted_at_us INTEGER NOT NULL,
    ordinal INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS balances (
    account TEXT NOT NULL,
    asset TEXT NOT NULL,
    balance INTEGER NOT NULL,
    PRIMARY KEY (account, asset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS readings (
    meter_id TEXT NOT NULL,
    read_at_us INTEGER NOT NULL,
    import_wh INTEGER NOT NULL,
    export_wh INTEGER NOT NULL,
    recorded_at_us INTEGER NOT NULL,
    PRIMARY KEY (meter_id, read_at_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarms (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (kind, subject, at_us, message)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settled_hours (
    site TEXT NOT NULL,
    hour_us INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    PRIMARY KEY (site, hour_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS owners (
    account TEXT PRIMARY KEY,
    owner TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stake_choices (
    household TEXT NOT NULL,
    effective_round INTEGER NOT NULL,
    business TEXT,
    PRIMARY KEY (household, effective_round)
) WITHOUT ROWID;
"""

# SQLite's default limit of host parameters per statement is 999 on old builds.
_CHUNK = 900


class SqliteLedgerStore:
    """A :class:`settlement.store.LedgerStore` in one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file; created with its folder if missing. ``":memory:"`` for tests.
    synchronous : {"FULL", "NORMAL"}
        SQLite's fsync level (module docstring).
    busy_timeout_ms : int
        How long a writer waits for another one [ms].

    Examples
    --------
    >>> from settlement.ledger import Transfer, Batch, Asset, FIAT_BRIDGE
    >>> store = SqliteLedgerStore(":memory:")
    >>> t = Transfer(FIAT_BRIDGE, "user:amina", Asset.COIN, 2_000_000, "fiat.topup")
    >>> store.post(Batch("doc:1", (t,))).count
    1
    >>> store.post(Batch("doc:1", (t,))).replayed
    True
    >>> store.balance("user:amina"), store.verify().ok
    (2000000, True)
    """

    def __init__(
        self,
        path: str | Path,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout_ms: int = 10_000,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            msg = f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            raise ValueError(msg)
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._db.executescript(_SCHEMA)

    # --- context management --------------------------------------------------------------
    def __enter__(self) -> SqliteLedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # --- the journal ---------------------------------------------------------------------
    def post(self, batch: Batch, posted_at: datetime | None = None) -> PostedBatch:
        """Post one batch atomically and idempotently; see :meth:`post_many`."""
        return self.post_many([batch], posted_at)[0]

    def post_many(
        self, batches: Sequence[Batch], posted_at: datetime | None = None
    ) -> list[PostedBatch]:
        """Post batches in one transaction: all or none.

        Raises
        ------
        IdempotencyConflictError, InsufficientFundsError, BatchRejectedError
            Nothing is posted then.
        """
        for batch in batches:
            validate_batch(batch)
        posted_at_us = to_us(posted_at or datetime.now(UTC))
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            results = self._post_locked(batches, posted_at_us)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return results

    def _post_locked(self, batches: Sequence[Batch], posted_at_us: int) -> list[PostedBatch]:
        db = self._db
        head = db.execute("SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1").fetchone()
        chain_head = (0, GENESIS_HASH) if head is None else (int(head[0]), bytes(head[1]))
        ordinal_row = db.execute("SELECT COALESCE(MAX(ordinal), 0) FROM batches").fetchone()
        plan = plan_posting(
            batches,
            posted_at_us,
            chain_head,
            int(ordinal_row[0]),
            self._checked_balances(batches),
            self._batch_row,
        )
        db.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", plan.journal)
        db.executemany("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)", plan.index)
        db.executemany(
            "INSERT INTO balances VALUES (?, ?, ?) ON CONFLICT (account, asset) "
            "DO UPDATE SET balance = balance + excluded.balance",
            plan.deltas,
        )
        return plan.results

    def _checked_balances(self, batches: Sequence[Batch]) -> dict[tuple[str, Asset], int]:
        """Current balances of the accounts whose debits must be covered."""
        wanted = covered_debits(batches)
        accounts = sorted({a for a, _ in wanted})
        found: dict[tuple[str, Asset], int] = {}
        for i in range(0, len(accounts), _CHUNK):
            chunk = accounts[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for account, asset, balance in self._db.execute(
                f"SELECT account, asset, balance FROM balances WHERE account IN ({marks})",
                chunk,
            ):
                key = (str(account), Asset(asset))
                if key in wanted:
                    found[key] = int(balance)
        return {key: found.get(key, 0) for key in wanted}

    def _batch_row(self, key: str) -> tuple[bytes, int, int, int] | None:
        row = self._db.execute(
            "SELECT digest, first_seq, count, posted_at_us FROM batches WHERE key = ?", (key,)
        ).fetchone()
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
        upper = prefix + "\U0010ffff"
        rows = self._db.execute(
            "SELECT key FROM batches WHERE key >= ? AND key < ? ORDER BY ordinal", (prefix, upper)
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
            "WHERE seq >= ? AND seq < ? ORDER BY seq",
            (first, first + count),
        )
        return tuple(Transfer(d, c, Asset(a), int(n), k) for d, c, a, n, k in rows)

    def balance(self, account: str, asset: Asset = Asset.COIN) -> int:
        """Balance of one account [minor units]; zero for an unknown account."""
        row = self._db.execute(
            "SELECT balance FROM balances WHERE account = ? AND asset = ?", (account, asset.value)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def balances(
        self, asset: Asset | None = None, prefix: str = ""
    ) -> dict[tuple[str, Asset], int]:
        """Non-zero balances, optionally of one asset and of accounts starting with ``prefix``."""
        upper = prefix + "\U0010ffff"
        rows = self._db.execute(
            "SELECT account, asset, balance FROM balances WHERE balance != 0 "
            "AND account >= ? AND account < ? ORDER BY account, asset",
            (prefix, upper),
        )
        return {(str(a), Asset(s)): int(b) for a, s, b in rows if asset is None or s == asset.value}

    def history(self, account: str, limit: int = 50) -> list[JournalRow]:
        """The latest journal rows that touch ``account``, newest first."""
        rows = self._db.execute(
            "SELECT * FROM journal WHERE debit = ? OR credit = ? ORDER BY seq DESC LIMIT ?",
            (account, account, limit),
        )
        return [JournalRow(*r) for r in rows]

    def journal_rows(self, start_seq: int = 1) -> Iterator[JournalRow]:
        """Journal rows from ``start_seq`` on, in order."""
        for row in self._db.execute(
            "SELECT * FROM journal WHERE seq >= ? ORDER BY seq", (start_seq,)
        ):
            yield JournalRow(*row)

    def verify(self) -> VerifyReport:
        """Recompute the hash chain and every invariant from a consistent snapshot."""
        db = self._db
        db.execute("BEGIN")  # one read snapshot for journal, index and balances
        try:
            batches = {
                str(k): (bytes(d), int(f), int(c))
                for k, d, f, c in db.execute("SELECT key, digest, first_seq, count FROM batches")
            }
            balances = {
                (str(a), str(s)): int(b)
                for a, s, b in db.execute("SELECT account, asset, balance FROM balances")
            }
            rows = db.execute("SELECT * FROM journal ORDER BY seq")
            return verify_journal(rows, batches, balances)
        finally:
            db.execute("COMMIT")

    # --- readings, alarms, settled hours ------------------------------------------------
    def add_readings(
        self, readings: Sequence[MeterReading], recorded_at: datetime
    ) -> ReadingsAdded:
        """Store readings; duplicates are ignored and conflicting ones reported, not stored."""
        accepted: list[MeterReading] = []
        duplicates: list[MeterReading] = []
        conflicts: list[tuple[MeterReading, MeterReading]] = []
        recorded_us = to_us(recorded_at)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            batch_seen: dict[tuple[str, int], MeterReading] = {}
            for r in readings:
                at = to_us(r.read_at)
                stored = batch_seen.get((r.meter_id, at))
                if stored is None:
                    row = db.execute(
                        "SELECT import_wh, export_wh FROM readings "
                        "WHERE meter_id = ? AND read_at_us = ?",
                        (r.meter_id, at),
                    ).fetchone()
                    if row is not None:
                        stored = MeterReading(r.meter_id, from_us(at), int(row[0]), int(row[1]))
                if stored is None:
                    db.execute(
                        "INSERT INTO readings VALUES (?, ?, ?, ?, ?)",
                        (r.meter_id, at, r.import_wh, r.export_wh, recorded_us),
                    )
                    batch_seen[r.meter_id, at] = r
                    accepted.append(r)
                elif (stored.import_wh, stored.export_wh) == (r.import_wh, r.export_wh):
                    duplicates.append(r)
                else:
                    conflicts.append((r, stored))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return ReadingsAdded(tuple(accepted), tuple(duplicates), tuple(conflicts))

    def readings(
        self, start: datetime, end: datetime, meter_ids: Sequence[str] | None = None
    ) -> list[MeterReading]:
        """Stored readings with ``start <= read_at <= end``, by meter then time."""
        rows = self._db.execute(
            "SELECT meter_id, read_at_us, import_wh, export_wh FROM readings "
            "WHERE read_at_us >= ? AND read_at_us <= ? ORDER BY meter_id, read_at_us",
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
            "SELECT read_at_us, import_wh, export_wh FROM readings WHERE meter_id = ? "
            "AND read_at_us < ? ORDER BY read_at_us DESC LIMIT 1",
            (meter_id, to_us(moment)),
        ).fetchone()
        return None if row is None else MeterReading(meter_id, from_us(row[0]), row[1], row[2])

    def reading_after(self, meter_id: str, moment: datetime) -> MeterReading | None:
        """The meter's first reading strictly after ``moment``."""
        row = self._db.execute(
            "SELECT read_at_us, import_wh, export_wh FROM readings WHERE meter_id = ? "
            "AND read_at_us > ? ORDER BY read_at_us LIMIT 1",
            (meter_id, to_us(moment)),
        ).fetchone()
        return None if row is None else MeterReading(meter_id, from_us(row[0]), row[1], row[2])

    def add_alarms(self, alarms: Sequence[Alarm]) -> None:
        """Record alarms (an identical alarm is recorded once)."""
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT OR IGNORE INTO alarms VALUES (?, ?, ?, ?)",
            [(a.kind.value, a.subject, to_us(a.at), a.message) for a in alarms],
        )
        self._db.execute("COMMIT")

    def alarms(self, since: datetime | None = None) -> list[Alarm]:
        """Recorded alarms, oldest first."""
        start = -(2**62) if since is None else to_us(since)
        rows = self._db.execute(
            "SELECT kind, subject, at_us, message FROM alarms WHERE at_us >= ? "
            "ORDER BY at_us, kind, subject",
            (start,),
        )
        return [Alarm(AlarmKind(k), str(s), from_us(int(t)), str(m)) for k, s, t, m in rows]

    def mark_hour(self, site_id: str, hour: datetime, complete: bool) -> None:
        """Record that an hour was settled, completely or with meters still missing."""
        self._db.execute(
            "INSERT INTO settled_hours VALUES (?, ?, ?) ON CONFLICT (site, hour_us) "
            "DO UPDATE SET complete = excluded.complete",
            (site_id, to_us(hour), int(complete)),
        )

    def settled_hours(self, site_id: str, start: datetime, end: datetime) -> list[datetime]:
        """Settled hours (complete or not) starting in ``[start, end)``, oldest first."""
        rows = self._db.execute(
            "SELECT hour_us FROM settled_hours WHERE site = ? AND hour_us >= ? AND hour_us < ? "
            "ORDER BY hour_us",
            (site_id, to_us(start), to_us(end)),
        )
        return [from_us(int(r[0])) for r in rows]

    def incomplete_hours(self, site_id: str) -> list[datetime]:
        """Settled hours that still miss readings (or hold payouts), oldest first."""
        rows = self._db.execute(
            "SELECT hour_us FROM settled_hours WHERE site = ? AND complete = 0 ORDER BY hour_us",
            (site_id,),
        )
        return [from_us(int(r[0])) for r in rows]

    # --- owners and stakes ---------------------------------------------------------------
    def set_owner(self, account: str, owner: str) -> None:
        """Register who may withdraw from ``account``."""
        self._db.execute(
            "INSERT INTO owners VALUES (?, ?) ON CONFLICT (account) DO UPDATE SET owner = "
            "excluded.owner",
            (account, owner),
        )

    def owner_of(self, account: str) -> str | None:
        """Who may withdraw from ``account``, if registered."""
        row = self._db.execute("SELECT owner FROM owners WHERE account = ?", (account,)).fetchone()
        return None if row is None else str(row[0])

    def set_stake_choice(
        self, household_id: str, effective_round: int, business_id: str | None
    ) -> None:
        """Record a household's choice (a business, or None to skip) from ``effective_round`` on."""
        self._db.execute(
            "INSERT INTO stake_choices VALUES (?, ?, ?) ON CONFLICT (household, effective_round) "
            "DO UPDATE SET business = excluded.business",
            (household_id, effective_round, business_id),
        )

    def stake_choices(self, round_number: int) -> dict[str, str | None]:
        """Each household's choice in force in ``round_number``."""
        rows = self._db.execute(
            "SELECT household, business FROM stake_choices AS s WHERE effective_round = ("
            "SELECT MAX(effective_round) FROM stake_choices WHERE household = s.household "
            "AND effective_round <= ?) ORDER BY household",
            (round_number,),
        )
        return {str(h): (None if b is None else str(b)) for h, b in rows}
