"""A job's timing line: INFO for the hourly and daily jobs, DEBUG for the every-few-seconds
ones (the control cycle would write 17 280 INFO lines a day)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from controllers.simulator import AcceleratedClock
from lastwatt.jobs import Job, guarded

START = dt.datetime(2026, 3, 20, 6, tzinfo=dt.UTC)


async def _noop(due: dt.datetime) -> None:
    return None


def test_frequent_jobs_time_themselves_at_debug(caplog):
    clock = AcceleratedClock(START)
    control = Job("control", dt.timedelta(seconds=5), dt.timedelta(0), _noop)
    settle = Job("settle", dt.timedelta(hours=1), dt.timedelta(minutes=2), _noop)
    with caplog.at_level(logging.DEBUG, logger="lastwatt.jobs"):
        asyncio.run(guarded(control, clock, None)(START))
        asyncio.run(guarded(settle, clock, None)(START))
    levels = {r.getMessage().split()[1]: r.levelno for r in caplog.records if "took" in r.msg}
    assert levels == {"control": logging.DEBUG, "settle": logging.INFO}
