"""Worker of the crash tests: record readings, top up, settle 24 hours; safe to rerun.

Run: python -m tests.settlement.crash_worker DB_PATH
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

from microgrid import Site, load_site
from microgrid.readings import MeterReading
from settlement import SqliteLedgerStore, record_readings, settle_hour
from settlement.fiat import FiatConfig, topup_batch

START = datetime(2026, 8, 1, 0, tzinfo=UTC)
HOURS = 24
FIAT = FiatConfig(b"k" * 32, coin_price_fiat_minor=650)


def readings(site: Site) -> list[MeterReading]:
    out = []
    for k in range(HOURS + 1):
        at = START + timedelta(hours=k)
        for i, c in enumerate(site.connections):
            out.append(MeterReading(c.id, at, k * (50 + i % 17)))
        out.append(MeterReading("pv_inverter", at, 0, k * 30_000))
    return out


def run(path: str) -> None:
    site = load_site(None)
    with SqliteLedgerStore(path) as store:
        record_readings(store, site, readings(site), recorded_at=START)
        for k in range(HOURS):
            hour = START + timedelta(hours=k)
            batch, _, _ = topup_batch(f"pi_{k}", f"meter:H{k + 1:03d}", 650 * (k + 1), FIAT)
            store.post(batch, hour)
            settle_hour(store, site, hour, now=hour)


if __name__ == "__main__":
    run(sys.argv[1])
