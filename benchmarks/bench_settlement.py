"""Settlement timings: one hour of 400 meters, durable transfer throughput, verify speed.

Targets (issue 5): settle one hour of 400 meters ≤ 20 ms; durable transfers
≥ 50 000/s in batches on SQLite, hash chain included; verify 1 000 000 journal rows
≤ 10 s. Issue 15: settle one hour of 400 meters with storage accounting and the
commission ≤ 20 ms. The store runs with its default ``synchronous=FULL`` (an fsync per
commit; an hour is one transaction, so one fsync); wall and CPU medians are printed for
settling. With ``--settle-only`` the storage case runs again with ``synchronous=NORMAL``
(no fsync per commit): the difference between the two walls is what fsync costs, the
rest of wall minus CPU is waiting for a core on a shared machine.

With storage, every eighth connection is a prosumer holding 5 kWh of WATT, the battery
charges and discharges in turn, and the commission (0.1 % per quarter, so that every
holder pays in every quarter: the most rows) is posted per 15-minute period.

Run: python benchmarks/bench_settlement.py [--repeats N] [--rows 1000000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, median_seconds

from microgrid import load_site
from microgrid.readings import MeterReading
from settlement import (
    Asset,
    Batch,
    SettlementConfig,
    SqliteLedgerStore,
    Transfer,
    record_readings,
    settle_hour,
)
from settlement.ledger import FIAT_BRIDGE, WATT_ISSUER, meter_account
from settlement.settle import storage_policy_for

START = datetime(2026, 8, 1, tzinfo=UTC)


def bench_settle(folder: Path, repeats: int) -> float:
    site = load_site()
    hours = repeats + 2
    readings = []
    for k in range(hours + 1):
        at = START + timedelta(hours=k)
        readings += [
            MeterReading(c.id, at, k * (40 + i % 23)) for i, c in enumerate(site.connections)
        ]
        readings.append(MeterReading("pv_inverter", at, 0, k * 25_000))
    with SqliteLedgerStore(folder / "settle.sqlite") as store:
        record_readings(store, site, readings, recorded_at=START)
        queue = iter(START + timedelta(hours=k) for k in range(hours))
        return median_seconds(lambda: settle_hour(store, site, next(queue)), repeats, warmup=1)


def bench_settle_storage(
    folder: Path, repeats: int, synchronous: Literal["FULL", "NORMAL"] = "FULL"
) -> tuple[float, float]:
    """Median wall and CPU time of settling one hour with storage and commission [s]."""
    from bench_storage import prosumer_site, readings_for

    site = prosumer_site()
    hours = repeats + 4
    policy = storage_policy_for(site, commission_ppm=1000, bmax_wh=20_000)
    config = SettlementConfig(storage=policy)
    holders = tuple(
        Transfer(WATT_ISSUER, meter_account(c.id), Asset.WATT, 5_000, "watt.mint")
        for c in site.prosumers
    )
    with SqliteLedgerStore(folder / f"storage-{synchronous}.sqlite", synchronous) as store:
        store.post(Batch("holders", holders))
        record_readings(store, site, readings_for(site, hours), recorded_at=START, config=config)
        queue = iter(START + timedelta(hours=k) for k in range(hours))
        settle_hour(store, site, next(queue), config)  # warm-up
        cpu: list[float] = []

        def one() -> None:
            start = time.process_time()
            result = settle_hour(store, site, next(queue), config)
            cpu.append(time.process_time() - start)
            assert result.plan.storage is not None
            assert result.plan.storage.commission

        wall = median_seconds(one, repeats, warmup=0)
        assert store.verify().ok
        return wall, statistics.median(cpu)


def _fund_batches(accounts: int, batch: int, count: int, offset: int) -> list[Batch]:
    batches = []
    for b in range(count):
        transfers = []
        for i in range(batch):
            src = (i * 7 + b) % accounts
            dst = (src + 1 + i % (accounts - 1)) % accounts
            transfers.append(Transfer(f"user:{src}", f"user:{dst}", Asset.COIN, 1 + i % 9, "fund"))
        batches.append(Batch(f"bench:{offset + b}", tuple(transfers)))
    return batches


def bench_throughput(folder: Path, batch: int, repeats: int) -> float:
    """Transfers per second, median of ``repeats`` runs of 10 batches each."""
    accounts = 2000
    with SqliteLedgerStore(folder / "throughput.sqlite") as store:
        seed = tuple(
            Transfer(FIAT_BRIDGE, f"user:{i}", Asset.COIN, 10**12, "fiat.topup")
            for i in range(accounts)
        )
        store.post(Batch("seed", seed))
        rates = []
        for r in range(repeats):
            batches = _fund_batches(accounts, batch, 10, r * 10)
            start = time.perf_counter()
            for b in batches:  # one transaction (and one fsync) per batch
                store.post(b)
            rates.append(10 * batch / (time.perf_counter() - start))
        rates.sort()
        return rates[len(rates) // 2]


def bench_verify(folder: Path, rows: int, repeats: int) -> tuple[float, int]:
    path = folder / "verify.sqlite"
    accounts = 5000
    with SqliteLedgerStore(path, synchronous="NORMAL") as store:
        store.post(
            Batch(
                "seed",
                tuple(
                    Transfer(FIAT_BRIDGE, f"user:{i}", Asset.COIN, 10**12, "fiat.topup")
                    for i in range(accounts)
                ),
            )
        )
        done, b = accounts, 0
        while done < rows:
            n = min(10_000, rows - done)
            store.post(_fund_batches(accounts, n, 1, b)[0])
            done, b = done + n, b + 1
        report = store.verify()
        assert report.ok, report.problems[:3]
        assert report.rows == rows
        return median_seconds(store.verify, repeats, warmup=0), report.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rows", type=int, default=1_000_000, help="journal rows to verify")
    parser.add_argument(
        "--settle-only", action="store_true", help="only the settling benchmarks (no throughput)"
    )
    parser.add_argument("--batch", type=int, default=5_000, help="transfers per batch")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settle_s = bench_settle(folder, args.repeats)
        print(f"settle one hour, 400 meters:  median {settle_s * 1000:7.1f} ms   (target ≤ 20 ms)")
        wall_s, cpu_s = bench_settle_storage(folder, args.repeats)
        print(
            f"settle one hour, 400 meters, WATT + commission per quarter: median wall "
            f"{wall_s * 1000:6.1f} ms, CPU {cpu_s * 1000:5.1f} ms   (target ≤ 20 ms)"
        )
        if args.settle_only:
            wall_s, cpu_s = bench_settle_storage(folder, args.repeats, "NORMAL")
            print(
                f"the same, synchronous=NORMAL (no fsync per commit): median wall "
                f"{wall_s * 1000:6.1f} ms, CPU {cpu_s * 1000:5.1f} ms"
            )
            return
        rate = bench_throughput(folder, args.batch, args.repeats)
        print(
            f"durable transfers, batches of {args.batch}, synchronous=FULL: median "
            f"{rate:,.0f}/s   (target ≥ 50 000/s)"
        )
        verify_s, rows = bench_verify(folder, args.rows, max(1, args.repeats // 2))
        print(f"verify {rows:,} journal rows:  median {verify_s:5.2f} s   (target ≤ 10 s)")


if __name__ == "__main__":
    main()
