"""A service's ledger work, run as its own process by the concurrent-writers test.

Records one day of readings of the bundled site, posts the day's shared webhook top-ups
(the payment processor delivers each to every replica), posts top-ups only this writer
receives, and settles every hour — the ledger traffic of one ``lastwatt serve``.

Run: python -m tests.settlement.pg_writer CONNINFO SITE_ID WRITER HOURS
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from microgrid import Site, load_site
from microgrid.readings import MeterReading
from settlement import LedgerStore, record_readings, settle_hour
from settlement.fiat import FiatConfig, topup_batch

START = datetime(2026, 8, 1, 0, tzinfo=UTC)
FIAT = FiatConfig(b"k" * 32, coin_price_fiat_minor=650)


def readings(site: Site, hours: int) -> list[MeterReading]:
    out = []
    for k in range(hours + 1):
        at = START + timedelta(hours=k)
        for i, c in enumerate(site.connections):
            out.append(MeterReading(c.id, at, k * (50 + i % 17)))
        out.append(MeterReading("pv_inverter", at, 0, k * 30_000))
    return out


def work(store: LedgerStore, site: Site, writer: int, hours: int) -> None:
    """Everything one writer posts (safe to run again, or by two writers at once)."""
    record_readings(store, site, readings(site, hours), recorded_at=START)
    for k in range(hours):
        hour = START + timedelta(hours=k)
        shared, _, _ = topup_batch(f"pi_{k}", f"meter:H{k + 1:03d}", 650 * (k + 1), FIAT)
        own, _, _ = topup_batch(
            f"pi_w{writer}_{k}", f"meter:H{k + 50:03d}", 650 * (writer + 1), FIAT
        )
        store.post(shared, hour)
        store.post(own, hour)
        settle_hour(store, site, hour, now=hour)


if __name__ == "__main__":
    from settlement.postgres_store import PostgresLedgerStore

    conninfo, site_id, writer, hours = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    with PostgresLedgerStore(conninfo, site_id) as pg:
        work(pg, load_site(None), writer, hours)
