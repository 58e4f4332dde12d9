"""Durable transfers per second with the hash chain, on PostgreSQL and SQLite in one run.

Both stores post the same batches (``--batch`` transfers each, one transaction and one
durable commit per batch): SQLite with ``synchronous=FULL`` (an fsync per commit),
PostgreSQL with the server's ``synchronous_commit`` (printed; ``on`` is a WAL flush per
commit). Goal (issue 21): PostgreSQL ≥ 20 000 transfers/s.

PostgreSQL runs in a throwaway database (durable commits) created with the admin URL
``--pg`` (default: ``LASTWATT_PG_ADMIN``, which ``scripts/start_test_postgres.sh``
prints) and dropped at the end.

Run: python benchmarks/bench_stores.py [--repeats 5] [--batch 5000] [--pg URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine
from bench_settlement import _fund_batches

from settlement import Asset, Batch, LedgerStore, SqliteLedgerStore, Transfer
from settlement.ledger import FIAT_BRIDGE
from settlement.postgres_store import PostgresLedgerStore
from tests.postgres import throwaway_database

ACCOUNTS = 2000
BATCHES_PER_RUN = 10


def transfers_per_second(store: LedgerStore, batch: int, repeats: int) -> float:
    """Median transfers/s over ``repeats`` runs of 10 batches, each its own commit."""
    seed = tuple(
        Transfer(FIAT_BRIDGE, f"user:{i}", Asset.COIN, 10**12, "fiat.topup")
        for i in range(ACCOUNTS)
    )
    store.post(Batch("seed", seed))
    rates = []
    for r in range(repeats):
        batches = _fund_batches(ACCOUNTS, batch, BATCHES_PER_RUN, r * BATCHES_PER_RUN)
        start = time.perf_counter()
        for b in batches:
            store.post(b)
        rates.append(BATCHES_PER_RUN * batch / (time.perf_counter() - start))
    report = store.verify()
    assert report.ok, report.problems[:3]
    return statistics.median(rates)


def _in_postgres(admin_url: str, run: Callable[[LedgerStore], float]) -> tuple[float, str]:
    with (
        throwaway_database(admin_url, durable=True) as conninfo,
        PostgresLedgerStore(conninfo, "bench") as store,
    ):
        mode = store._db.execute("SHOW synchronous_commit").fetchone()
        fsync = store._db.execute("SHOW fsync").fetchone()
        return run(
            store
        ), f"synchronous_commit={mode[0] if mode else '?'}, fsync={fsync[0] if fsync else '?'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5_000, help="transfers per batch")
    parser.add_argument("--pg", default=os.environ.get("LASTWATT_PG_ADMIN", ""))
    args = parser.parse_args()
    print(f"machine: {machine()}")

    def run(store: LedgerStore) -> float:
        return transfers_per_second(store, args.batch, args.repeats)

    pg_rate, mode = _in_postgres(args.pg, run)
    with tempfile.TemporaryDirectory() as tmp, SqliteLedgerStore(Path(tmp) / "t.sqlite") as lite:
        sqlite_rate = run(lite)
    print(f"batches of {args.batch} transfers, one durable commit each, {args.repeats} runs")
    print(f"  PostgreSQL ({mode}): median {pg_rate:>9,.0f} transfers/s (goal ≥ 20 000/s)")
    print(f"  SQLite (synchronous=FULL): median {sqlite_rate:>9,.0f} transfers/s")
    print(f"  PostgreSQL / SQLite: {pg_rate / sqlite_rate:.2f}")


if __name__ == "__main__":
    main()
