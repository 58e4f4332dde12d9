"""One settling process for the cross-process settle-lock test (``test_settle_lock``).

Opens the ledger (a SQLite file, or a site on PostgreSQL), waits for a common start
instant so that the workers overlap, then settles seed 002's day with storage
accounting in the order it is given — the CLI's ``lastwatt settle`` and a service
settling the same hours at once.

Run: python -m tests.settlement.settle_worker sqlite PATH ORDER START_AT TRACE
     python -m tests.settlement.settle_worker postgres CONNINFO:SITE_ID ORDER START_AT TRACE

``ORDER`` is ``up`` (hour 0 to 23) or ``down`` (23 to 0: every hour then replays the
later ones); ``START_AT`` a Unix time [s]; ``TRACE`` a file where the worker writes one
line ``start end`` (``time.monotonic``, the same clock in every process of the machine)
per settlement, taken inside the lock, so the test can check that no two overlapped.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

from settlement import LedgerStore, SettlementConfig, SqliteLedgerStore, settle_hour
from settlement.settle import storage_policy_for
from tests.settlement.conftest import HOUR
from tests.settlement.test_storage import seed_002_site

HOURS = 24


def config_for_test() -> SettlementConfig:
    """Storage accounting with a commission and a tight Bmax: every hour moves WATT."""
    site = seed_002_site()
    return SettlementConfig(storage=storage_policy_for(site, commission_ppm=400, bmax_wh=3000))


def settle_in_order(store: LedgerStore, order: str) -> None:
    """Settle the day's hours ascending (``up``) or descending (``down``)."""
    site = seed_002_site()
    config = config_for_test()
    hours = [HOUR + k * timedelta(hours=1) for k in range(HOURS)]
    for hour in hours if order == "up" else hours[::-1]:
        settle_hour(store, site, hour, config, now=HOUR + timedelta(hours=HOURS + 1))


def _open(kind: str, where: str) -> LedgerStore:
    if kind == "sqlite":
        return SqliteLedgerStore(where, synchronous="NORMAL")
    from settlement.postgres_store import PostgresLedgerStore

    conninfo, _, site_id = where.rpartition(":")
    return PostgresLedgerStore(conninfo, site_id)


def _traced(trace: list[tuple[float, float]]) -> None:
    """Record when each top-level settlement ran, inside the settle lock (a spy)."""
    from settlement import settle as module

    inner = module._settle_hour
    depth = 0

    def spy(*args, **kwargs):
        nonlocal depth
        depth += 1
        start = time.monotonic()
        try:
            return inner(*args, **kwargs)
        finally:
            depth -= 1
            if not depth:
                trace.append((start, time.monotonic()))

    module._settle_hour = spy


if __name__ == "__main__":
    kind, where, order = sys.argv[1], sys.argv[2], sys.argv[3]
    start_at, trace_path = float(sys.argv[4]), Path(sys.argv[5])
    trace: list[tuple[float, float]] = []
    _traced(trace)
    ledger = _open(kind, where)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        settle_in_order(ledger, order)
    finally:
        ledger.close()
    trace_path.write_text("".join(f"{a!r} {b!r}\n" for a, b in trace))
