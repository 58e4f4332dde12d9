"""Running the service's jobs: on the wall clock (APScheduler) or in simulated time.

A :class:`Job` is a name, a period, a phase within the period and an ``async`` function
of the due time. :func:`guarded` wraps it so that a run logs its timing, records it,
and never raises (a failing job must not kill the service).

Two runners, one contract — each job never overlaps itself, and missed runs are
coalesced into one:

- :class:`LiveRunner` — APScheduler 3.11's ``AsyncIOScheduler`` with fixed job ids,
  ``replace_existing=True``, ``coalesce=True``, ``max_instances=1`` and a grace time.
  Its job store is the in-memory one: the jobs are code, re-added at every start
  under the same ids, and what must survive a restart (the next hour to settle, the
  staking round, the last schedule) is in the service's own state, so a persistent job
  store would only add SQLAlchemy and a second copy of the truth.
- :class:`SimulatedRunner` — steps a simulated clock from due time to due time and runs
  the due jobs in order (ties in the order the jobs were given). With a
  :class:`~controllers.simulator.ManualClock` it fast-forwards as fast as the jobs
  run; with any other clock it sleeps until the due time in simulated time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controllers.simulator import ManualClock

__all__ = [
    "MARKET_JOB_ID",
    "Job",
    "JobLog",
    "LiveRunner",
    "SimulatedRunner",
    "guarded",
    "market_job",
    "next_due",
]

log = logging.getLogger(__name__)

JobFunction = Callable[[dt.datetime], Coroutine[Any, Any, None]]
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_MINUTE = dt.timedelta(minutes=1)


class Clock(Protocol):
    """A source of timezone-aware UTC time."""

    def now(self) -> dt.datetime:
        """The current time."""
        ...


class JobLog(Protocol):
    """Where job runs are recorded."""

    def log_job(
        self, job: str, due: dt.datetime, started: dt.datetime, duration_s: float, error: str | None
    ) -> None:
        """Record one run."""
        ...


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job.

    Attributes
    ----------
    id : str
        Fixed id (APScheduler job id, log name).
    period : datetime.timedelta
        How often it runs.
    offset : datetime.timedelta
        Phase after each multiple of ``period`` counted from 2000-01-01 UTC (e.g. hourly
        settlement at two minutes past the hour).
    run : callable
        ``async run(due)``.
    grace : datetime.timedelta
        A run later than this after its due time is skipped (coalesced into the next).
    """

    id: str
    period: dt.timedelta
    offset: dt.timedelta
    run: JobFunction
    grace: dt.timedelta = dt.timedelta(minutes=5)


def next_due(job: Job, after: dt.datetime, inclusive: bool = True) -> dt.datetime:
    """The first due time of ``job`` at or after ``after`` (strictly after if not inclusive).

    Examples
    --------
    >>> async def noop(due): pass
    >>> job = Job("settle", dt.timedelta(hours=1), dt.timedelta(minutes=2), noop)
    >>> next_due(job, dt.datetime(2026, 8, 1, 10, 2, tzinfo=dt.UTC)).isoformat()
    '2026-08-01T10:02:00+00:00'
    >>> next_due(job, dt.datetime(2026, 8, 1, 10, 2, tzinfo=dt.UTC), False).isoformat()
    '2026-08-01T11:02:00+00:00'
    """
    base = _EPOCH + job.offset
    periods = (after - base) // job.period
    due = base + periods * job.period
    while due < after or (not inclusive and due == after):
        due += job.period
    return due


MARKET_JOB_ID = "market"
"""Fixed id of the market's tick job (APScheduler job id, job log name)."""


def market_job(tick: JobFunction, period: dt.timedelta) -> Job:
    """The market's tick as a job: expiry, ZI agents, matching and settlement every ``period``.

    Like every job it never overlaps itself (``max_instances=1``), missed ticks coalesce
    into one, and a failing tick is logged and recorded, never fatal (:func:`guarded`).
    A tick later than one period is skipped: the next one does the same work.

    Parameters
    ----------
    tick : callable
        ``async tick(due)`` (:meth:`lastwatt.market_live.LiveMarket.tick_job`).
    period : datetime.timedelta
        Tick interval (> 0).

    Raises
    ------
    ValueError
        If ``period`` is not positive.
    """
    if period <= dt.timedelta(0):
        msg = f"the market tick interval must be positive, got {period.total_seconds()} s"
        raise ValueError(msg)
    return Job(MARKET_JOB_ID, period, dt.timedelta(0), tick, grace=max(period, _MINUTE))


def guarded(job: Job, clock: Clock, record: JobLog | None) -> JobFunction:
    """``job.run`` that logs its timing, records the run and never raises."""

    async def run(due: dt.datetime) -> None:
        started = clock.now()
        t0 = time.perf_counter()
        error: str | None = None
        try:
            await job.run(due)
        except Exception as exc:  # a failing job must not kill the service
            error = f"{type(exc).__name__}: {exc}"
            log.exception("job %s (due %s) failed", job.id, due.isoformat())
        duration = time.perf_counter() - t0
        # The control cycle (every 5 s) and the market tick would fill the log with one
        # INFO line each run, 17 280 a day; their timings are in /metrics and the job log.
        level = logging.DEBUG if job.period < _MINUTE else logging.INFO
        log.log(level, "job %s due %s took %.3f s", job.id, due.isoformat(), duration)
        if record is not None:
            try:
                record.log_job(job.id, due, started, duration, error)
            except Exception:
                log.exception("could not record the run of job %s", job.id)

    return run


class SimulatedRunner:
    """Runs jobs in simulated time (module docstring).

    Parameters
    ----------
    jobs : sequence of Job
        In priority order for ties.
    clock : Clock
        A :class:`~controllers.simulator.ManualClock` (stepped) or a clock that runs by
        itself (the runner sleeps; ``speed`` converts simulated to real seconds).
    speed : float
        Simulated seconds per real second of a self-running clock.
    record : JobLog, optional
        Where runs are recorded.
    """

    def __init__(
        self, jobs: Sequence[Job], clock: Clock, speed: float = 1.0, record: JobLog | None = None
    ) -> None:
        self.jobs = list(jobs)
        self.clock = clock
        self.speed = speed
        self._runs = {j.id: guarded(j, clock, record) for j in self.jobs}

    async def run_until(
        self,
        end: dt.datetime | None,
        stop: asyncio.Event | None = None,
        on_step: Callable[[dt.datetime], Awaitable[None]] | None = None,
    ) -> None:
        """Run due jobs until simulated ``end`` (None: forever) or until ``stop`` is set."""
        stop = stop or asyncio.Event()
        now = self.clock.now()
        due = {j.id: next_due(j, now) for j in self.jobs}
        order = {j.id: k for k, j in enumerate(self.jobs)}
        by_id = {j.id: j for j in self.jobs}
        manual = isinstance(self.clock, ManualClock)
        running: dict[str, asyncio.Task[None]] = {}
        while not stop.is_set():
            job_id = min(due, key=lambda i: (due[i], order[i]))
            when = due[job_id]
            if end is not None and when > end:
                break
            now = self.clock.now()
            if isinstance(self.clock, ManualClock):
                if when > now:
                    self.clock.advance((when - now).total_seconds())
                await asyncio.sleep(0)  # let the API and the simulator's server breathe
            elif when > now:
                wait = (when - now).total_seconds() / self.speed
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                except TimeoutError:
                    pass
                else:
                    break
            job = by_id[job_id]
            late = self.clock.now() - when
            previous = running.get(job_id)
            if previous is not None and not previous.done():
                log.warning(
                    "job %s: run due %s skipped, the last one is still running",
                    job_id,
                    when.isoformat(),
                )
            elif late > job.grace:
                log.warning(
                    "job %s: run due %s skipped, %.0f s late (grace %.0f s)",
                    job_id,
                    when.isoformat(),
                    late.total_seconds(),
                    job.grace.total_seconds(),
                )
            elif manual:
                await self._runs[job_id](when)
            else:
                # A self-running clock does not wait for a slow job (a dispatch): it runs
                # as a task so that the control cycle keeps its pace.
                running[job_id] = asyncio.create_task(self._runs[job_id](when))
            # Coalesce: whatever fell due while this ran becomes one run, the next slot.
            due[job_id] = next_due(job, max(when, self.clock.now()), inclusive=False)
            if on_step is not None:
                await on_step(when)
        pending = [t for t in running.values() if not t.done()]
        if pending:
            await asyncio.wait(pending)


class LiveRunner:
    """Runs jobs on the wall clock with APScheduler's ``AsyncIOScheduler`` (module docstring)."""

    def __init__(self, jobs: Sequence[Job], clock: Clock, record: JobLog | None = None) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        self.scheduler = AsyncIOScheduler(timezone=dt.UTC)
        for job in jobs:
            run = guarded(job, clock, record)

            async def fire(run: JobFunction = run, job: Job = job) -> None:
                await run(next_due(job, clock.now() - job.period + dt.timedelta(microseconds=1)))

            self.scheduler.add_job(
                fire,
                IntervalTrigger(
                    seconds=job.period.total_seconds(),
                    start_date=_EPOCH + job.offset,
                    timezone=dt.UTC,
                ),
                id=job.id,
                name=job.id,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=max(1, int(job.grace.total_seconds())),
            )

    def start(self) -> None:
        """Start firing (needs a running event loop)."""
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop firing; running jobs are not waited for."""
        self.scheduler.shutdown(wait=False)
