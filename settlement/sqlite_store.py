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
:meth:`SqliteLedgerStore.settling` holds that lock for a whole settlement (its reads
included), so two processes never settle at once, and makes it one transaction: the
writes inside become savepoints and the settlement commits (and fsyncs) once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from microgrid.readings import MeterReading
from settlement.alarms import Alarm, AlarmKind, AlarmRecord, fold_observation, record_from_row
from settlement.anchor import Anchor
from settlement.decisions import MeterDecision
from settlement.ledger import (
    GENESIS_HASH,
    Asset,
    Batch,
    JournalRow,
    PostedBatch,
    Problem,
    Transfer,
    VerifiedPoint,
    VerifyReport,
    check_balance_bounds,
    from_us,
    to_us,
    validate_batch,
    verify_journal,
)
from settlement.posting import covered_debits, plan_posting
from settlement.store import LedgerStore, ReadingsAdded

__all__ = ["SqliteLedgerStore", "beside_ledger"]

_ASSETS = {a.value: a for a in Asset}
"""Stored asset names to members: ``Asset(name)`` costs ~1 µs a row in hot reads."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    batch_key TEXT NOT NULL,
    code TEXT NOT NULL,
    debit TEXT NOT NULL,
    credit TEXT NOT NULL,
    asset TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (typeof(amount) = 'integer'),
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
    -- never REAL: SQLite turns an integer that leaves int64 into an inexact float
    balance INTEGER NOT NULL CHECK (typeof(balance) = 'integer'),
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
CREATE TABLE IF NOT EXISTS alarm_conditions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    severity TEXT NOT NULL,
    first_seen_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL,
    count INTEGER NOT NULL,
    message TEXT NOT NULL,
    cleared_at_us INTEGER,
    acked_by TEXT,
    acked_at_us INTEGER
);
-- One standing condition per kind and subject (settlement/alarms.py).
CREATE UNIQUE INDEX IF NOT EXISTS alarm_standing
    ON alarm_conditions (kind, subject) WHERE cleared_at_us IS NULL;
CREATE INDEX IF NOT EXISTS alarm_last_seen ON alarm_conditions (last_seen_us);
CREATE TABLE IF NOT EXISTS settled_hours (
    site TEXT NOT NULL,
    hour_us INTEGER NOT NULL,
    complete INTEGER NOT NULL,
    PRIMARY KEY (site, hour_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour_retries (
    site TEXT NOT NULL,
    hour_us INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    next_at_us INTEGER NOT NULL,
    PRIMARY KEY (site, hour_us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_decisions (
    site TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    hour_us INTEGER NOT NULL,
    import_wh INTEGER NOT NULL,
    export_wh INTEGER NOT NULL,
    status TEXT NOT NULL,
    charge_minor INTEGER NOT NULL,
    payout_minor INTEGER NOT NULL,
    balance_minor INTEGER NOT NULL,
    connected INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (site, meter_id, hour_us)
) WITHOUT ROWID;
-- Settling an hour reads the previous hour's decisions of every meter: without this
-- index that read scanned every decision ever stored (400 rows more each hour).
CREATE INDEX IF NOT EXISTS meter_decisions_by_hour ON meter_decisions (site, hour_us);
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
    anchor : Anchor, optional
        Write a signed checkpoint of the chain head after every commit that adds rows
        (:mod:`settlement.anchor`), so that :func:`settlement.anchor.verify_anchored`
        can tell a rewritten, truncated or extended journal from the one posted here.

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
        anchor: Anchor | None = None,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            msg = f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            raise ValueError(msg)
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.anchor = anchor
        self._synchronous: Literal["FULL", "NORMAL"] = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._head: tuple[int, int, bytes] | None = None  # rows, batches, head hash
        self._anchor_due = False  # rows added since the last commit: checkpoint after it
        self._settling = 0  # depth of settling(): writes inside are savepoints
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=busy_timeout_ms / 1000)
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(f"PRAGMA synchronous = {synchronous}")
        self._db.executescript(_SCHEMA)
        self._migrate_alarm_rows()

    def connect_again(self) -> SqliteLedgerStore:
        """The same file on a connection of its own (e.g. for another thread).

        Raises
        ------
        ValueError
            For an in-memory store, which no other connection can open.
        """
        if self.path == ":memory:":
            msg = "an in-memory SQLite ledger cannot be opened on a second connection"
            raise ValueError(msg)
        return SqliteLedgerStore(self.path, self._synchronous, self._busy_timeout_ms, self.anchor)

    # --- context management --------------------------------------------------------------
    def __enter__(self) -> SqliteLedgerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # --- transactions --------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction; inside :meth:`settling`, a savepoint of its transaction.

        A failed write undoes only itself either way (the savepoint is rolled back), so a
        caller that catches its error keeps the settlement's earlier writes.
        """
        db = self._db
        if self._settling:
            db.execute("SAVEPOINT write")
            try:
                yield
            except BaseException:
                db.execute("ROLLBACK TO write")
                db.execute("RELEASE write")
                raise
            db.execute("RELEASE write")
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            self._anchor_due = False
            raise
        db.execute("COMMIT")
        self._committed()

    def _committed(self) -> None:
        """After a commit: the anchor's checkpoint, if it added journal rows."""
        if self._anchor_due and self.anchor is not None:
            assert self._head is not None
            self.anchor.checkpoint(*self._head)
        self._anchor_due = False

    @contextmanager
    def settling(self, site_id: str) -> Iterator[None]:
        """Hold the ledger's write lock for a settlement, in one transaction.

        ``BEGIN IMMEDIATE`` is taken first, before the settlement reads anything: a second
        process (or connection) settling waits for it (up to ``busy_timeout``) and then
        plans from what this one committed. The writes inside are savepoints; the
        settlement commits, and fsyncs, once. An error rolls all of it back. Reentrant.

        Parameters
        ----------
        site_id : str
            The site being settled (one SQLite file is locked as a whole).
        """
        del site_id  # the whole file is one lock
        if self._settling:
            self._settling += 1
            try:
                yield
            finally:
                self._settling -= 1
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._settling = 1
        try:
            yield
        except BaseException:
            self._settling = 0
            db.execute("ROLLBACK")
            self._anchor_due = False
            raise
        self._settling = 0
        db.execute("COMMIT")
        self._committed()

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
        with self._write():
            results = self._post_locked(batches, posted_at_us)
            if any(r.count and not r.replayed for r in results):
                self._anchor_due = True
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
        self._check_bounds({(account, asset): delta for account, asset, delta in plan.deltas})
        if plan.journal:  # the chain head the anchor checkpoints after the commit
            last_seq, last_hash = plan.journal[-1][0], plan.journal[-1][8]
            self._head = (last_seq, plan.index[-1][5], last_hash)
        db.executemany("INSERT INTO journal VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", plan.journal)
        db.executemany("INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)", plan.index)
        db.executemany(
            "INSERT INTO balances VALUES (?, ?, ?) ON CONFLICT (account, asset) "
            "DO UPDATE SET balance = balance + excluded.balance",
            plan.deltas,
        )
        return plan.results

    def _check_bounds(self, deltas: dict[tuple[str, str], int]) -> None:
        """Refuse the post if a balance would leave ±MAX_BALANCE (int64 stays exact)."""
        accounts = sorted({a for (a, _), d in deltas.items() if d})
        current: dict[tuple[str, str], int] = {}
        for i in range(0, len(accounts), _CHUNK):
            chunk = accounts[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for account, asset, balance in self._db.execute(
                f"SELECT account, asset, balance FROM balances WHERE account IN ({marks})",
                chunk,
            ):
                current[str(account), str(asset)] = int(balance)
        for (account, asset), delta in deltas.items():
            check_balance_bounds(account, asset, current.get((account, asset), 0) + delta)

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
        wanted = None if asset is None else asset.value
        return {(str(a), _ASSETS[s]): int(b) for a, s, b in rows if wanted is None or s == wanted}

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

    def verify(self, since: VerifiedPoint | None = None) -> VerifyReport:
        """Recompute the hash chain and every invariant from a consistent snapshot.

        SQLite's own ``PRAGMA integrity_check`` runs first: a corrupt index can hide rows
        from the queries the chain check makes. With ``since`` (an earlier report's
        ``point``) only the rows after it are read — unless row ``since.rows`` no longer
        has the hash it had then, when everything is verified again.
        """
        db = self._db
        damage = [str(r[0]) for r in db.execute("PRAGMA integrity_check(20)")]
        db.execute("BEGIN")  # one read snapshot for journal, index and balances
        try:
            if since is not None and since.rows:
                row = db.execute("SELECT hash FROM journal WHERE seq = ?", (since.rows,)).fetchone()
                if row is None or bytes(row[0]) != since.head_hash:
                    since = None  # rewritten or truncated since: verify in full
            batches = {
                str(k): (bytes(d), int(f), int(c))
                for k, d, f, c in db.execute("SELECT key, digest, first_seq, count FROM batches")
            }
            balances = {
                (str(a), str(s)): int(b)
                for a, s, b in db.execute("SELECT account, asset, balance FROM balances")
            }
            start = 0 if since is None else since.rows
            rows = db.execute("SELECT * FROM journal WHERE seq > ? ORDER BY seq", (start,))
            report = verify_journal(rows, batches, balances, since)
        finally:
            db.execute("COMMIT")
        if damage == ["ok"]:
            return report
        found = tuple(Problem(0, f"SQLite integrity check: {line}") for line in damage)
        return VerifyReport(report.rows, report.batches, report.head_hash, found + report.problems)

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
        with self._write():
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
        # Meters are read in sweeps: many readings share an instant; convert each once.
        instants: dict[int, datetime] = {}
        return [
            MeterReading(
                str(m), instants.get(t) or instants.setdefault(t, from_us(int(t))), int(i), int(e)
            )
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

    def _migrate_alarm_rows(self) -> None:
        """Fold the alarm rows of an older store (one row per observation) into conditions."""
        db = self._db
        old = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alarms'"
        ).fetchone()
        if old is None:
            return
        rows = db.execute("SELECT kind, subject, at_us, message FROM alarms ORDER BY at_us")
        alarms = [Alarm(AlarmKind(k), str(s), from_us(int(t)), str(m)) for k, s, t, m in rows]
        self.add_alarms(alarms)
        db.execute("DROP TABLE alarms")

    def add_alarms(self, alarms: Sequence[Alarm]) -> None:
        """Fold observations into standing conditions (see :mod:`settlement.alarms`).

        A new ``(kind, subject)`` opens an alarm; a later observation of a standing one
        moves its last sighting and counts it; an observation at or before the last
        sighting is a replay and changes nothing.
        """
        if not alarms:
            return
        with self._write():
            self._add_alarms_locked(alarms)

    def clear_alarm(self, kind: AlarmKind, subject: str, at: datetime) -> bool:
        """Close the standing ``(kind, subject)`` condition; whether one stood."""
        cursor = self._db.execute(
            "UPDATE alarm_conditions SET cleared_at_us = ? "
            "WHERE kind = ? AND subject = ? AND cleared_at_us IS NULL",
            (to_us(at), kind.value, subject),
        )
        return cursor.rowcount > 0

    def _add_alarms_locked(self, alarms: Sequence[Alarm]) -> None:
        db = self._db
        for a in alarms:
            at = to_us(a.at)
            row = db.execute(
                "SELECT id, first_seen_us, last_seen_us FROM alarm_conditions "
                "WHERE kind = ? AND subject = ? AND cleared_at_us IS NULL",
                (a.kind.value, a.subject),
            ).fetchone()
            fold = fold_observation(at, None if row is None else (int(row[1]), int(row[2])))
            if fold == "open":
                db.execute(
                    "INSERT INTO alarm_conditions (kind, subject, severity, first_seen_us, "
                    "last_seen_us, count, message) VALUES (?, ?, ?, ?, ?, 1, ?)",
                    (a.kind.value, a.subject, a.severity.value, at, at, a.message),
                )
            elif fold == "later":
                db.execute(
                    "UPDATE alarm_conditions SET last_seen_us = ?, count = count + 1, "
                    "message = ? WHERE id = ?",
                    (at, a.message, row[0]),
                )
            elif fold == "earlier":
                db.execute(
                    "UPDATE alarm_conditions SET first_seen_us = ?, count = count + 1 WHERE id = ?",
                    (at, row[0]),
                )

    def alarms(self, since: datetime | None = None) -> list[Alarm]:
        """The latest observation of every condition seen since ``since``, oldest first."""
        start = -(2**62) if since is None else to_us(since)
        rows = self._db.execute(
            "SELECT kind, subject, last_seen_us, message FROM alarm_conditions "
            "WHERE last_seen_us >= ? ORDER BY last_seen_us, kind, subject",
            (start,),
        )
        return [Alarm(AlarmKind(k), str(s), from_us(int(t)), str(m)) for k, s, t, m in rows]

    def alarm_records(self, standing_only: bool = False, limit: int = 200) -> list[AlarmRecord]:
        """Alarm conditions, the most recently seen first.

        Parameters
        ----------
        standing_only : bool
            Only conditions that still stand.
        limit : int
            At most this many.
        """
        where = "WHERE cleared_at_us IS NULL " if standing_only else ""
        rows = self._db.execute(
            f"SELECT * FROM alarm_conditions {where}ORDER BY last_seen_us DESC, id DESC LIMIT ?",
            (int(limit),),
        )
        return [record_from_row(row) for row in rows]

    def alarm_record(self, alarm_id: int) -> AlarmRecord | None:
        """One alarm condition by id."""
        row = self._db.execute(
            "SELECT * FROM alarm_conditions WHERE id = ?", (int(alarm_id),)
        ).fetchone()
        return None if row is None else record_from_row(row)

    def ack_alarm(self, alarm_id: int, by: str, at: datetime) -> AlarmRecord | None:
        """Record that ``by`` has seen alarm ``alarm_id``; None if there is no such alarm.

        Acknowledging again keeps the first acknowledgement.
        """
        self._db.execute(
            "UPDATE alarm_conditions SET acked_by = ?, acked_at_us = ? "
            "WHERE id = ? AND acked_by IS NULL",
            (by, to_us(at), int(alarm_id)),
        )
        return self.alarm_record(alarm_id)

    def mark_hour(
        self, site_id: str, hour: datetime, complete: bool, retry_at: datetime | None = None
    ) -> None:
        """Record that an hour was settled, completely or with meters still missing.

        An incomplete hour counts one more attempt and is due again at ``retry_at``
        (at once if None); a complete one forgets its attempts.
        """
        self.finish_hour(site_id, hour, complete, retry_at)

    def finish_hour(
        self,
        site_id: str,
        hour: datetime,
        complete: bool,
        retry_at: datetime | None = None,
        alarms: Sequence[Alarm] = (),
        decisions: Sequence[MeterDecision] = (),
    ) -> None:
        """Record an hour's alarms, mark and meter decisions, atomically.

        One transaction (one fsync, not three): the alarms, :meth:`mark_hour` and
        :meth:`add_decisions` after the hour's batch is posted.
        """
        with self._write():
            self._add_alarms_locked(alarms)
            self._mark_hour_locked(site_id, hour, complete, retry_at)
            self._add_decisions_locked(site_id, decisions)

    def _mark_hour_locked(
        self, site_id: str, hour: datetime, complete: bool, retry_at: datetime | None
    ) -> None:
        hour_us = to_us(hour)
        db = self._db
        db.execute(
            "INSERT INTO settled_hours VALUES (?, ?, ?) ON CONFLICT (site, hour_us) "
            "DO UPDATE SET complete = excluded.complete",
            (site_id, hour_us, int(complete)),
        )
        if complete:
            db.execute(
                "DELETE FROM hour_retries WHERE site = ? AND hour_us = ?", (site_id, hour_us)
            )
        else:
            db.execute(
                "INSERT INTO hour_retries VALUES (?, ?, 1, ?) ON CONFLICT (site, hour_us) "
                "DO UPDATE SET attempts = attempts + 1, next_at_us = excluded.next_at_us",
                (site_id, hour_us, hour_us if retry_at is None else to_us(retry_at)),
            )

    def hour_attempts(self, site_id: str, hour: datetime) -> int:
        """How many settlements of an hour ended incomplete since it was last complete."""
        row = self._db.execute(
            "SELECT attempts FROM hour_retries WHERE site = ? AND hour_us = ?",
            (site_id, to_us(hour)),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def settled_hours(self, site_id: str, start: datetime, end: datetime) -> list[datetime]:
        """Settled hours (complete or not) starting in ``[start, end)``, oldest first."""
        rows = self._db.execute(
            "SELECT hour_us FROM settled_hours WHERE site = ? AND hour_us >= ? AND hour_us < ? "
            "ORDER BY hour_us",
            (site_id, to_us(start), to_us(end)),
        )
        return [from_us(int(r[0])) for r in rows]

    def incomplete_hours(self, site_id: str, due_at: datetime | None = None) -> list[datetime]:
        """Settled hours that still miss readings (or hold payouts), oldest first.

        With ``due_at``, only those whose retry is due by then.
        """
        if due_at is None:
            rows = self._db.execute(
                "SELECT hour_us FROM settled_hours WHERE site = ? AND complete = 0 "
                "ORDER BY hour_us",
                (site_id,),
            )
        else:
            rows = self._db.execute(
                "SELECT s.hour_us FROM settled_hours AS s LEFT JOIN hour_retries AS r "
                "ON r.site = s.site AND r.hour_us = s.hour_us WHERE s.site = ? AND "
                "s.complete = 0 AND (r.next_at_us IS NULL OR r.next_at_us <= ?) "
                "ORDER BY s.hour_us",
                (site_id, to_us(due_at)),
            )
        return [from_us(int(r[0])) for r in rows]

    # --- meter decisions (seed 002's two-way hour) -----------------------------------
    def add_decisions(self, site_id: str, decisions: Sequence[MeterDecision]) -> None:
        """Store meters' decisions; a re-settled hour replaces its earlier ones."""
        with self._write():
            self._add_decisions_locked(site_id, decisions)

    def _add_decisions_locked(self, site_id: str, decisions: Sequence[MeterDecision]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meter_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    site_id,
                    d.meter_id,
                    to_us(d.hour),
                    d.import_wh,
                    d.export_wh,
                    d.status,
                    d.charge_minor,
                    d.payout_minor,
                    d.balance_minor,
                    int(d.connected),
                    d.state,
                )
                for d in decisions
            ],
        )

    def decisions(self, site_id: str, meter_id: str, limit: int = 24) -> list[MeterDecision]:
        """A meter's latest decisions, newest first."""
        rows = self._db.execute(
            "SELECT meter_id, hour_us, import_wh, export_wh, status, charge_minor, "
            "payout_minor, balance_minor, connected, state FROM meter_decisions "
            "WHERE site = ? AND meter_id = ? ORDER BY hour_us DESC LIMIT ?",
            (site_id, meter_id, limit),
        )
        return [
            MeterDecision(m, from_us(int(h)), i, x, st, c, p, b, bool(on), state)
            for m, h, i, x, st, c, p, b, on, state in rows
        ]

    def connected_after(self, site_id: str, hour: datetime) -> dict[str, bool]:
        """Each meter's decision (relay closed?) made when ``hour`` was settled."""
        rows = self._db.execute(
            # Without statistics SQLite would walk the primary key's site prefix instead.
            "SELECT meter_id, connected FROM meter_decisions INDEXED BY meter_decisions_by_hour "
            "WHERE site = ? AND hour_us = ?",
            (site_id, to_us(hour)),
        )
        return {str(m): bool(on) for m, on in rows}

    def thin_readings(self, site_id: str, start: datetime, end: datetime) -> int:
        """Downsample readings of completely settled hours in ``[start, end)``; rows deleted.

        Per meter and hour only the first and the last reading are kept: the first
        reading at or after each hour boundary and the last one before it, which are all
        that interpolating the register at the boundaries needs, so settling the hour
        again gives the same energies (and a subset of a plausible, rising register is
        plausible and rising). Hours not settled, or settled incomplete, keep every
        reading. Bounded by ``[start, end)`` (floored to whole hours) so that a daily call
        touches one day.
        """
        hour_us = 3_600_000_000
        lo, hi = to_us(start) // hour_us * hour_us, to_us(end) // hour_us * hour_us
        with self._write():
            deleted = self._db.execute(
                "DELETE FROM readings WHERE read_at_us >= ? AND read_at_us < ? "
                "AND (read_at_us / ?) * ? IN (SELECT hour_us FROM settled_hours "
                "  WHERE site = ? AND complete = 1 AND hour_us >= ? AND hour_us < ?) "
                "AND (meter_id, read_at_us) NOT IN ("
                "  SELECT meter_id, MIN(read_at_us) FROM readings "
                "    WHERE read_at_us >= ? AND read_at_us < ? GROUP BY meter_id, read_at_us / ? "
                "  UNION ALL SELECT meter_id, MAX(read_at_us) FROM readings "
                "    WHERE read_at_us >= ? AND read_at_us < ? GROUP BY meter_id, read_at_us / ?)",
                (lo, hi, hour_us, hour_us, site_id, lo - hour_us, hi) + (lo, hi, hour_us) * 2,
            ).rowcount
        return int(deleted)

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


def beside_ledger(store: LedgerStore, data_dir: str | Path, name: str) -> Path:
    """Where a site's own SQLite tables (band contracts, ballots) live next to its ledger.

    In the ledger's own file on SQLite, so that a backup of the ledger carries them; a
    PostgreSQL ledger has no file, so ``data_dir/name`` beside the service's data.
    """
    if isinstance(store, SqliteLedgerStore):
        return Path(store.path)
    return Path(data_dir) / name
