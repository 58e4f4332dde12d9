from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from microgrid import load_site
from microgrid.readings import MeterReading
from settlement import SqliteLedgerStore

HOUR = datetime(2026, 8, 1, 10, tzinfo=UTC)  # 11:00 in Niamey: not a friendly hour


@pytest.fixture(scope="session")
def site():
    return load_site(None)


@pytest.fixture
def store(tmp_path):
    with SqliteLedgerStore(tmp_path / "ledger.sqlite", synchronous="NORMAL") as s:
        yield s


def hourly_readings(
    meter_id: str, start: datetime, values: list[int], export: list[int] | None = None
) -> list[MeterReading]:
    """One reading per hour boundary from ``start``: ``values[k]`` at ``start + k h``."""
    export = export or [0] * len(values)
    return [
        MeterReading(meter_id, start + timedelta(hours=k), v, x)
        for k, (v, x) in enumerate(zip(values, export, strict=True))
    ]
