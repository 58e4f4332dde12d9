"""Console endpoints of issue 17's last part: refunds and band-contract standing.

In-process (httpx over ASGI, no socket) on the tests' small site with a simulated
container, HTTP Basic as the operator on every call (as the console sends it):

- ``POST /api/refunds``: N over-charge refunds of one micro-coin each, one after another
  (each a ledger batch and a note), median and p95;
- ``GET /api/console/contracts`` with K day-long contracts on one meter, and that meter's
  ``GET /api/connections/{id}/page`` (which carries the same standings), median and p95.

Run: python benchmarks/bench_console.py [--refunds 200] [--contracts 20] [--reads 50]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' rig
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine

from lastwatt.api import ApiSettings, create_app
from lastwatt.guard import ApiLimits
from microgrid.site import ConnectionKind
from settlement.ledger import FIAT_BRIDGE, UTILITY, Asset, Batch, Transfer
from tests.service.conftest import Rig

# The rate limits are tested elsewhere; here they would only throttle the loop.
LIMITS = ApiLimits(per_client="100000/minute", per_user="100000/minute")


def summary(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    median = statistics.median(seconds)
    return f"{name}: n={len(seconds)} median {median * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms"


async def timed(call) -> float:
    start = time.perf_counter()
    response = await call()
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


async def run(refunds: int, contracts: int, reads: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        opening = {ConnectionKind.HOUSEHOLD: 2_000_000, ConnectionKind.BUSINESS: 5_000_000}
        async with Rig(Path(folder), opening=opening) as rig:
            store = rig.service.store
            fees = Transfer(FIAT_BRIDGE, UTILITY, Asset.COIN, 10**9, "fiat.topup")
            budget = Transfer(
                UTILITY, "utility:contract_budget", Asset.COIN, 10**8, "contract.budget"
            )
            store.post(Batch("bench-fees", (fees, budget)))
            app = create_app(rig.service, rig.credentials, ApiSettings(limits=LIMITS))
            op = ("operator", rig.passwords["operator"])
            home = rig.site.households[0].id
            mill = rig.site.businesses[0].id
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://x", auth=op) as c:
                posts = [
                    await timed(
                        lambda k=k: c.post(
                            "/api/refunds",
                            json={
                                "account": f"meter:{home}",
                                "kind": "overcharge",
                                "amount_minor": 1,
                                "reason": "benchmark",
                                "key": f"bench-{k}",
                            },
                        )
                    )
                    for k in range(refunds)
                ]
                start = rig.clock.now().replace(minute=0, second=0, microsecond=0)
                for k in range(contracts):
                    terms = {
                        "contract_id": f"bench-{k}",
                        "meter_id": mill,
                        "start": start.isoformat(),
                        "interval_s": 900,
                        "bands_wh": [[100, 500]] * 96,
                        "tolerance_wh": 50,
                        "bonus": 100_000,
                        "over_rate": 1000,
                        "under_rate": 1000,
                        "disconnect_penalty": 1000,
                    }
                    (await c.post("/api/contracts", json=terms)).raise_for_status()
                rig.clock.advance(dt.timedelta(hours=1).total_seconds())
                standings = [
                    await timed(lambda: c.get("/api/console/contracts")) for _ in range(reads)
                ]
                pages = [
                    await timed(lambda: c.get(f"/api/connections/{mill}/page"))
                    for _ in range(reads)
                ]
    print(machine())
    print(summary("POST /api/refunds", posts))
    print(summary(f"GET /api/console/contracts ({contracts} contracts)", standings))
    print(summary(f"GET /api/connections/{{id}}/page ({contracts} contracts)", pages))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refunds", type=int, default=200)
    parser.add_argument("--contracts", type=int, default=20)
    parser.add_argument("--reads", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.refunds, args.contracts, args.reads))


if __name__ == "__main__":
    main()
