"""The ``lastwatt market-day`` subcommand: a day of ZI agents trading rooftop surplus."""

from __future__ import annotations

import argparse
import math
import tempfile
from datetime import UTC
from pathlib import Path

from lastwatt.commands import Subcommands, UsageError, add_site_option, command

__all__ = ["add_commands"]


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
    parser = command(
        commands,
        "market-day",
        "simulate a day of the peer-to-peer market: ZI agents trade households' rooftop surplus",
        "lastwatt market-day --date 2026-08-01 --prosumers 0.2 --seed 1",
        _market_day,
    )
    add_site_option(parser)
    parser.add_argument("--date", default="2026-08-01", help="the day (UTC), YYYY-MM-DD")
    parser.add_argument("--prosumers", type=float, default=0.2, help="share with rooftop PV")
    parser.add_argument("--bmax-wh", type=int, default=4000, help="cap on each WATT balance")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--ledger", type=Path, default=None, help="keep the day's ledger in this SQLite file"
    )


def _market_day(args: argparse.Namespace) -> int:
    from datetime import datetime

    from microgrid import load_site
    from scenarios.market import MarketScenario, run_market_day
    from settlement import SqliteLedgerStore

    try:
        day = datetime.fromisoformat(args.date).replace(tzinfo=UTC)
    except ValueError:
        msg = f"--date {args.date!r} is not a date; use YYYY-MM-DD"
        raise UsageError(msg) from None
    if args.ledger is not None and args.ledger.exists():
        msg = f"{args.ledger} exists; the market day needs an empty ledger (pick another path)"
        raise UsageError(msg)
    scenario = MarketScenario(
        day, prosumer_share=args.prosumers, bmax_wh=args.bmax_wh, seed=args.seed
    )
    site = load_site(args.site)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.ledger or Path(tmp) / "market-day.sqlite"
        with SqliteLedgerStore(path, synchronous="NORMAL") as store:
            r = run_market_day(site, scenario, store)
    share = r.traded_wh / r.stored_wh if r.stored_wh else math.nan
    lines = [
        ("rooftop surplus", f"{r.surplus_wh / 1000:.2f} kWh"),
        ("  stored as WATT", f"{r.stored_wh / 1000:.2f} kWh"),
        ("  spilled over Bmax", f"{r.spilled_wh / 1000:.2f} kWh"),
        ("traded", f"{r.traded_wh / 1000:.2f} kWh in {r.trades} trades ({share:.0%} of stored)"),
        ("mean price", f"{r.mean_price_per_kwh / 1e6:.3f} coin/kWh"),
        ("household tariff", f"{r.tariff_per_kwh / 1e6:.3f} coin/kWh"),
        ("coins paid", f"{r.coins_moved / 1e6:.3f} coin"),
        ("from the container", f"{r.from_container_wh / 1000:.2f} kWh of household demand"),
        ("ledger verifies", "yes" if r.ledger_ok else "NO"),
    ]
    for label, value in lines:
        print(f"{label:<20} {value}")
    return 0 if r.ledger_ok else 1
