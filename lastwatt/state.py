"""The service's own state in SQLite: settings, the last schedule, telemetry, job runs, holds.

The ledger (journal, balances, readings, stakes) lives in its own file, owned by
:class:`settlement.SqliteLedgerStore`; this store keeps what only the service needs to
continue where it stopped: the clock anchor of a fast-forward, the next hour to settle,
the staking round, the last schedule (so the controller has a plan before the first
re-solve: its :class:`~dispatch.setpoints.Setpoints` as they were applied, with the plan
and reasons that explain them), operator holds and the reserve setting, and a thin
telemetry series for the dashboard — raw snapshots for a few days, then hourly means
(:meth:`ServiceState.downsample_telemetry`), so it does not grow without bound. Every
write commits at once (WAL, ``synchronous=FULL``), so a killed process loses at most the
statement in flight.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dispatch.setpoints import Setpoints

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
    summary TEXT NOT NULL,
    setpoints TEXT
);
CREATE TABLE IF NOT EXISTS telemetry (
    time TEXT PRIMARY KEY,
    data TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS telemetry_hourly (
    hour TEXT PRIMARY KEY,
    samples INTEGER NOT NULL,
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
_INVERTER_COLUMNS = ("pv_limit_kw", "charge_limit_kw", "discharge_limit_kw")


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A schedule as the service stored it (enough for the controller and the API).

    Attributes
    ----------
    issued_at : datetime.datetime
        When dispatch issued it (UTC).
    status : str
        The dispatch status (:class:`dispatch.schedule.DispatchStatus` value).
    setpoints : Setpoints or None
        What the controller carries out: the one typed structure, restored as it was
        applied. None for a schedule stored before setpoints were stored: it is shown,
        never applied.
    plan, allotment_kw, reasons : pandas.DataFrame
        The plan that explains the setpoints: per-period flows, planned power per unit
        [kW] and reason codes, for the operator.
    summary : dict
        Energy per tier, status and solve time, as the API shows them.
    """

    issued_at: datetime
    status: str
    setpoints: Setpoints | None
    plan: pd.DataFrame
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


def _setpoints_json(setpoints: Setpoints) -> str:
    """Setpoints as JSON, exactly.

    Python's float repr round-trips; inf ("no limit", which JSON lacks) travels as null,
    and nothing else is null (Setpoints refuses NaN).
    """

    def frame(values: pd.DataFrame, kind: type) -> dict[str, Any]:
        rows = values.to_numpy(kind).tolist()
        if kind is float:
            rows = [[None if v == np.inf else v for v in row] for row in rows]
        return {"columns": [str(c) for c in values.columns], "data": rows}

    return json.dumps(
        {
            "index": [t.isoformat() for t in setpoints.index],
            "inverters": frame(setpoints.inverters[list(_INVERTER_COLUMNS)], float),
            "relays": frame(setpoints.relays, bool),
            "power_limit_kw": frame(setpoints.power_limit_kw, float),
            "switch_only": list(setpoints.switch_only),
            "energy_budget_wh": {c: int(b) for c, b in setpoints.energy_budget_wh.items()},
        }
    )


def _setpoints(text: str) -> Setpoints:
    data = json.loads(text)
    index = pd.DatetimeIndex([pd.Timestamp(t) for t in data["index"]]).tz_convert(UTC)

    def frame(part: dict[str, Any], kind: type) -> pd.DataFrame:
        values = np.array(part["data"], dtype=object).reshape(len(index), len(part["columns"]))
        if kind is float:
            values = np.where(values == None, np.inf, values)  # noqa: E711 (elementwise)
        return pd.DataFrame(values.astype(kind), index=index, columns=part["columns"])

    return Setpoints(
        inverters=frame(data["inverters"], float),
        relays=frame(data["relays"], bool),
        power_limit_kw=frame(data["power_limit_kw"], float),
        switch_only=tuple(data["switch_only"]),
        energy_budget_wh={str(c): int(b) for c, b in data["energy_budget_wh"].items()},
    )


_MAX_FIELDS = frozenset({"faults", "meters_missing"})


def _hour_mean(samples: list[dict[str, Any]], weights: list[int]) -> dict[str, Any]:
    """Weighted means of numeric fields; maxima of counts; the last value of the rest."""
    out: dict[str, Any] = {}
    for key in {k for s in samples for k in s}:
        values = [(s.get(key), w) for s, w in zip(samples, weights, strict=True)]
        numbers = [(v, w) for v, w in values if isinstance(v, int | float) and v is not None]
        if key in _MAX_FIELDS and numbers:
            out[key] = max(v for v, _ in numbers)
        elif numbers and not any(isinstance(v, bool) for v, _ in numbers):
            total = sum(w for _, w in numbers)
            out[key] = sum(v * w for v, w in numbers) / total
        else:
            present = [v for v, _ in values if v is not None]
            out[key] = present[-1] if present else None
    return out


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
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(schedules)")}
        if "setpoints" not in columns:  # a state file from before setpoints were stored
            self._db.execute("ALTER TABLE schedules ADD COLUMN setpoints TEXT")

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
        setpoints: Setpoints,
        plan: pd.DataFrame,
        allotment_kw: pd.DataFrame,
        reasons: pd.DataFrame,
        summary: dict[str, Any],
    ) -> None:
        """Store a new schedule (the latest is the one in force).

        Parameters
        ----------
        issued_at : datetime.datetime
            When it was issued (timezone-aware).
        status : str
            Dispatch status.
        setpoints : Setpoints
            What the controller applies; restored by :meth:`last_schedule` as they are.
        plan, allotment_kw, reasons : pandas.DataFrame
            The plan's explanation (:class:`dispatch.schedule.Schedule` frames).
        summary : dict
            JSON-serialisable summary.
        """
        self._db.execute(
            "INSERT INTO schedules (issued_at, status, plan, relays, allotment, reasons, summary,"
            " setpoints) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                issued_at.astimezone(UTC).isoformat(),
                status,
                _frame_json(plan.drop(columns=["binding"], errors="ignore")),
                _frame_json(setpoints.relays),  # kept for readers of older versions
                _frame_json(allotment_kw),
                reasons.to_json(orient="split", date_format="iso", date_unit="s"),
                json.dumps(summary),
                _setpoints_json(setpoints),
            ),
        )
        self._db.execute(
            "DELETE FROM schedules WHERE id <= (SELECT MAX(id) FROM schedules) - ?",
            (_KEEP_SCHEDULES,),
        )

    def last_schedule(self) -> StoredSchedule | None:
        """The schedule in force, if any."""
        row = self._db.execute(
            "SELECT issued_at, status, setpoints, plan, allotment, reasons, summary "
            "FROM schedules ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return StoredSchedule(
            datetime.fromisoformat(row[0]),
            row[1],
            None if row[2] is None else _setpoints(row[2]),
            _frame(row[3]),
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

    def downsample_telemetry(
        self, raw_before: datetime, hourly_before: datetime
    ) -> tuple[int, int]:
        """Fold raw snapshots older than ``raw_before`` into hourly means; drop old hours.

        Numeric fields are averaged per hour (``faults`` and ``meters_missing``: the
        hour's maximum, which is what an operator looks for); the last mode of the hour is
        kept. Hourly rows older than ``hourly_before`` are deleted. Idempotent: an hour
        folded twice (a snapshot arriving late) is re-averaged with its earlier mean,
        weighted by sample counts.

        Returns
        -------
        tuple of int
            Raw snapshots folded, hourly rows deleted.
        """
        cutoff = raw_before.astimezone(UTC).isoformat()
        rows = self._db.execute(
            "SELECT time, data FROM telemetry WHERE time < ? ORDER BY time", (cutoff,)
        ).fetchall()
        hours: dict[str, list[dict[str, Any]]] = {}
        for time, data in rows:
            start = datetime.fromisoformat(time).replace(minute=0, second=0, microsecond=0)
            hours.setdefault(start.isoformat(), []).append(json.loads(data))
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for hour, samples in hours.items():
                old = self._db.execute(
                    "SELECT samples, data FROM telemetry_hourly WHERE hour = ?", (hour,)
                ).fetchone()
                weights = [1] * len(samples)
                if old is not None:
                    samples.append(json.loads(old[1]))
                    weights.append(int(old[0]))
                self._db.execute(
                    "INSERT OR REPLACE INTO telemetry_hourly (hour, samples, data) "
                    "VALUES (?, ?, ?)",
                    (hour, sum(weights), json.dumps(_hour_mean(samples, weights))),
                )
            self._db.execute("DELETE FROM telemetry WHERE time < ?", (cutoff,))
            deleted = self._db.execute(
                "DELETE FROM telemetry_hourly WHERE hour < ?",
                (hourly_before.astimezone(UTC).isoformat(),),
            ).rowcount
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return len(rows), deleted

    def telemetry_hourly(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Hourly means of downsampled telemetry since ``since``, oldest first."""
        start = "" if since is None else since.astimezone(UTC).isoformat()
        rows = self._db.execute(
            "SELECT hour, samples, data FROM telemetry_hourly WHERE hour >= ? ORDER BY hour",
            (start,),
        ).fetchall()
        return [{"time": h, "samples": n, **json.loads(d)} for h, n, d in rows]

    def telemetry_count(self) -> tuple[int, int]:
        """Raw snapshots and hourly rows stored."""
        raw = self._db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0]
        hourly = self._db.execute("SELECT COUNT(*) FROM telemetry_hourly").fetchone()[0]
        return int(raw), int(hourly)

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

    def job_starts(self, job: str, since: datetime) -> list[datetime]:
        """When each run of ``job`` since ``since`` started, oldest first."""
        rows = self._db.execute(
            "SELECT started FROM job_runs WHERE job = ? AND started >= ? ORDER BY id",
            (job, since.astimezone(UTC).isoformat()),
        )
        return [datetime.fromisoformat(r[0]) for r in rows]

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
