"""The service's own state in SQLite: settings, the last schedule, telemetry, job runs, holds.

The ledger (journal, balances, readings, stakes) lives in its own file, owned by
:class:`settlement.SqliteLedgerStore`; this store keeps what only the service needs to
continue where it stopped: the clock anchor of a fast-forward, the next hour to settle,
the staking round, the last schedule (so the controller has a plan before the first
re-solve), operator holds and the reserve setting, and a thin telemetry series for the
dashboard. Every write commits at once (WAL, ``synchronous=FULL``), so a killed process
loses at most the statement in flight.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ServiceState", "StoredSchedule"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    issued_at TEXT NOT NULL,
    status TEXT NOT NULL,
    plan TEXT NOT NULL,
    relays TEXT NOT NULL,
    allotment TEXT NOT NULL,
    reasons TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS telemetry (
    time TEXT PRIMARY KEY,
    data TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job TEXT NOT NULL,
    due TEXT NOT NULL,
    started TEXT NOT NULL,
    duration_s REAL NOT NULL,
    ok INTEGER NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS holds (
    connection TEXT PRIMARY KEY,
    closed INTEGER NOT NULL,
    reason TEXT NOT NULL,
    since TEXT NOT NULL
) WITHOUT ROWID;
"""

# Schedules are kept for the report and the API; older ones add nothing (one a quarter
# hour is ≈ 100 a day at ≈ 100 kB each for the default site).
_KEEP_SCHEDULES = 200
_KEEP_JOB_RUNS = 5000


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule as the service stored it (enough for the controller and the API)."""

    issued_at: datetime
    status: str
    plan: pd.DataFrame
    relays: pd.DataFrame
    allotment_kw: pd.DataFrame
    reasons: pd.DataFrame
    summary: dict[str, Any]


def _frame_json(frame: pd.DataFrame) -> str:
    return frame.to_json(orient="split", date_format="iso", date_unit="s")


def _frame(text: str, index_is_time: bool = True) -> pd.DataFrame:
    frame = pd.read_json(StringIO(text), orient="split")
    if index_is_time and len(frame.index):
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame.index, utc=True))
    return frame


class ServiceState:
    """The service's SQLite state (module docstring).

    Examples
    --------
    >>> state = ServiceState(":memory:")
    >>> state.set("round", 3)
    >>> state.get("round"), state.get("missing", "default")
    (3, 'default')
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # --- settings and progress ---------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """A stored JSON value, or ``default``."""
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set(self, key: str, value: Any) -> None:
        """Store a JSON value."""
        self._db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    # --- schedules ---------------------------------------------------------------------
    def save_schedule(
        self,
        issued_at: datetime,
        status: str,
        plan: pd.DataFrame,
        relays: pd.DataFrame,
        allotment_kw: pd.DataFrame,
        reasons: pd.DataFrame,
        summary: dict[str, Any],
    ) -> None:
        """Store a new schedule (the latest is the one in force)."""
        self._db.execute(
            "INSERT INTO schedules (issued_at, status, plan, relays, allotment, reasons, summary)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                issued_at.astimezone(UTC).isoformat(),
                status,
                _frame_json(plan.drop(columns=["binding"], errors="ignore")),
                _frame_json(relays),
                _frame_json(allotment_kw),
                reasons.to_json(orient="split", date_format="iso", date_unit="s"),
                json.dumps(summary),
            ),
        )
        self._db.execute(
            "DELETE FROM schedules WHERE id <= (SELECT MAX(id) FROM schedules) - ?",
            (_KEEP_SCHEDULES,),
        )

    def last_schedule(self) -> StoredSchedule | None:
        """The schedule in force, if any."""
        row = self._db.execute(
            "SELECT issued_at, status, plan, relays, allotment, reasons, summary "
            "FROM schedules ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        relays = _frame(row[3]).astype(bool)
        return StoredSchedule(
            datetime.fromisoformat(row[0]),
            row[1],
            _frame(row[2]),
            relays,
            _frame(row[4]),
            _frame(row[5], index_is_time=False),
            json.loads(row[6]),
        )

    def schedule_count(self) -> int:
        """How many schedules are stored."""
        return int(self._db.execute("SELECT COUNT(*) FROM schedules").fetchone()[0])

    # --- telemetry -----------------------------------------------------------------------
    def add_telemetry(self, time: datetime, data: dict[str, Any]) -> None:
        """Record one snapshot of the container (idempotent per instant)."""
        self._db.execute(
            "INSERT OR REPLACE INTO telemetry (time, data) VALUES (?, ?)",
            (time.astimezone(UTC).isoformat(), json.dumps(data)),
        )

    def telemetry(self, since: datetime | None = None, limit: int = 2000) -> list[dict[str, Any]]:
        """Snapshots since ``since``, oldest first, each with its ``time``."""
        start = "" if since is None else since.astimezone(UTC).isoformat()
        rows = self._db.execute(
            "SELECT time, data FROM telemetry WHERE time >= ? ORDER BY time DESC LIMIT ?",
            (start, limit),
        ).fetchall()
        return [{"time": t, **json.loads(d)} for t, d in reversed(rows)]

    # --- job runs --------------------------------------------------------------------------
    def log_job(
        self,
        job: str,
        due: datetime,
        started: datetime,
        duration_s: float,
        error: str | None,
    ) -> None:
        """Record one run of a job."""
        self._db.execute(
            "INSERT INTO job_runs (job, due, started, duration_s, ok, error) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                job,
                due.astimezone(UTC).isoformat(),
                started.astimezone(UTC).isoformat(),
                duration_s,
                int(error is None),
                error,
            ),
        )
        self._db.execute(
            "DELETE FROM job_runs WHERE id <= (SELECT MAX(id) FROM job_runs) - ?",
            (_KEEP_JOB_RUNS,),
        )

    def job_stats(self) -> dict[str, dict[str, Any]]:
        """Per job: runs, failures, last, median and max duration [s], last run and error."""
        out: dict[str, dict[str, Any]] = {}
        rows = self._db.execute(
            "SELECT job, due, duration_s, ok, error FROM job_runs ORDER BY id"
        ).fetchall()
        for job, due, duration, ok, error in rows:
            s = out.setdefault(
                job, {"runs": 0, "failures": 0, "durations": [], "last": None, "last_error": None}
            )
            s["runs"] += 1
            s["failures"] += 0 if ok else 1
            s["durations"].append(duration)
            s["last"] = due
            s["last_s"] = duration
            if not ok:
                s["last_error"] = error
        for s in out.values():
            d = sorted(s.pop("durations"))
            s["median_s"] = d[len(d) // 2]
            s["max_s"] = d[-1]
        return out

    # --- operator holds --------------------------------------------------------------------
    def set_hold(self, connection: str, closed: bool, reason: str, since: datetime) -> None:
        """Record an operator hold on a connection's relay."""
        self._db.execute(
            "INSERT OR REPLACE INTO holds (connection, closed, reason, since) VALUES (?, ?, ?, ?)",
            (connection, int(closed), reason, since.astimezone(UTC).isoformat()),
        )

    def release_hold(self, connection: str) -> bool:
        """Remove a hold; whether there was one."""
        cursor = self._db.execute("DELETE FROM holds WHERE connection = ?", (connection,))
        return cursor.rowcount > 0

    def holds(self) -> dict[str, dict[str, Any]]:
        """Holds in force by connection id."""
        rows = self._db.execute("SELECT connection, closed, reason, since FROM holds").fetchall()
        return {c: {"closed": bool(v), "reason": r, "since": s} for c, v, r, s in rows}
