"""Market figures: ZI-C allocative efficiency, in-memory matching rate, settled trades/s.

Targets (issue 20): ZI-C efficiency (realised ÷ maximum surplus) over ≥ 400 random sessions
with mean ≥ 97 % and 5th percentile ≥ 90 %; in-memory matching ≥ 20 000 orders/s; trades
settled on the ledger at its durable rate (SQLite, ``synchronous=FULL``, one fsync per
commit): one trade per commit as the live market posts them, and in batches.

Run: python benchmarks/bench_market.py [--sessions 400] [--steps 1000] [--orders 20000]
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import machine, median_seconds

from settlement import Asset, Batch, SqliteLedgerStore, Transfer
from settlement.agents import random_zi_c_market, zi_c_session
from settlement.ledger import FIAT_BRIDGE, WATT_ISSUER
from settlement.market import LedgerHoldings, settle_trades
from settlement.orderbook import MemoryHoldings, OrderBook, PlaceOrder, Side, Trade


def efficiency(sessions: int, steps: int, clear_after_trade: bool) -> list[float]:
    out = []
    for seed in range(sessions):
        rng = random.Random(seed)
        market = random_zi_c_market(rng)
        out.append(zi_c_session(market, rng, steps, clear_after_trade=clear_after_trade).efficiency)
    return out


def describe(values: list[float]) -> str:
    ordered = sorted(values)

    def pct(q: float) -> float:
        return ordered[min(int(q * len(ordered)), len(ordered) - 1)]

    return (
        f"mean {statistics.mean(ordered):.2%}  p5 {pct(0.05):.2%}  p25 {pct(0.25):.2%}  "
        f"median {pct(0.5):.2%}  p95 {pct(0.95):.2%}  min {ordered[0]:.2%}"
    )


def histogram(values: list[float]) -> str:
    bins = [0.0, 0.8, 0.85, 0.9, 0.95, 0.98, 1.0001]
    rows = []
    for low, high in itertools.pairwise(bins):
        n = sum(low <= v < high for v in values)
        label = f"[{low:.0%}, {min(high, 1.0):.0%}{']' if high > 1 else ')'}"
        rows.append(f"    {label:>12} {n:4d} {'#' * (60 * n // len(values))}")
    return "\n".join(rows)


def order_flow(n: int, seed: int = 1) -> list[PlaceOrder]:
    """Random limit orders around a drifting mid price, 16 owners, both sides."""
    rng = random.Random(seed)
    mid = 500_000
    flow = []
    for i in range(n):
        mid = max(100_000, mid + rng.randint(-2_000, 2_000))
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        offset = rng.randint(-30_000, 50_000)
        price = mid - offset if side is Side.BUY else mid + offset
        flow.append(
            PlaceOrder(f"user:u{rng.randrange(16)}", side, price, rng.randint(100, 5_000), i)
        )
    return flow


def rich(owners: int = 16) -> MemoryHoldings:
    names = [f"user:u{i}" for i in range(owners)]
    return MemoryHoldings(dict.fromkeys(names, 10**15), dict.fromkeys(names, 10**12))


def bench_matching(n: int, repeats: int) -> tuple[float, int]:
    flow = order_flow(n)
    trades = 0

    def run() -> None:
        nonlocal trades
        book, holdings = OrderBook(), rich()
        trades = sum(len(book.place(a, holdings)[1]) for a in flow)

    return n / median_seconds(run, repeats), trades


def matched_trades(n: int) -> list[Trade]:
    book, holdings = OrderBook(), rich()
    out: list[Trade] = []
    for action in order_flow(n):
        out.extend(book.place(action, holdings)[1])
    return out


def funded_store(path: Path) -> SqliteLedgerStore:
    store = SqliteLedgerStore(path)  # synchronous=FULL: the durable rate
    transfers = []
    for i in range(16):
        account = f"user:u{i}"  # the book's owners are ledger accounts
        transfers.append(Transfer(FIAT_BRIDGE, account, Asset.COIN, 10**15, "fiat.topup"))
        transfers.append(Transfer(WATT_ISSUER, account, Asset.WATT, 10**12, "watt.mint"))
    store.post(Batch("fund", tuple(transfers)))
    return store


def bench_settled_one_by_one(folder: Path, trades: list[Trade], repeats: int) -> float:
    rates = []
    for r in range(repeats):
        with funded_store(folder / f"one-{r}.sqlite") as store:
            holdings = LedgerHoldings(store, prefix=f"m{r}")
            rates.append(len(trades) / median_seconds(lambda h=holdings: _execute(h, trades), 1, 0))
    return statistics.median(rates)


def _execute(holdings: LedgerHoldings, trades: list[Trade]) -> None:
    for trade in trades:
        assert holdings.execute(trade)


def bench_settled_in_batches(folder: Path, trades: list[Trade], lot: int, repeats: int) -> float:
    rates = []
    for r in range(repeats):
        with funded_store(folder / f"batch-{r}.sqlite") as store:

            def run(store: SqliteLedgerStore = store, r: int = r) -> None:
                for k in range(0, len(trades), lot):
                    settle_trades(store, trades[k : k + lot], prefix=f"m{r}")

            rates.append(len(trades) / median_seconds(run, 1, 0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=400)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--trades", type=int, default=2_000, help="trades settled one by one")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {machine()}")

    effs = efficiency(args.sessions, args.steps, clear_after_trade=True)
    print(
        f"ZI-C efficiency, {args.sessions} sessions (6 buyers × 6 sellers × 4 units, "
        f"{args.steps} quotes, a trade clears the book as in Gode & Sunder):"
    )
    print(f"  {describe(effs)}")
    print(histogram(effs))
    kept = efficiency(args.sessions, args.steps, clear_after_trade=False)
    print(f"  same sessions, standing orders kept after a trade: {describe(kept)}")

    rate, trades = bench_matching(args.orders, args.repeats)
    print(
        f"in-memory matching: {rate:,.0f} orders/s (median of {args.repeats} runs of "
        f"{args.orders} orders, {trades} trades each)"
    )

    settled = matched_trades(args.orders)
    one = settled[: args.trades]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(
            f"settled one per commit (live market): "
            f"{bench_settled_one_by_one(folder, one, 3):,.0f} trades/s "
            f"(median of 3 runs of {len(one)} trades, synchronous=FULL)"
        )
        print(
            f"settled in batches of 1000 (settle_trades): "
            f"{bench_settled_in_batches(folder, settled, 1000, 3):,.0f} trades/s "
            f"(median of 3 runs of {len(settled)} trades, synchronous=FULL)"
        )


if __name__ == "__main__":
    main()
