"""Market and EV subcommands: ``market-day``, ``ocpp-central`` and ``ev-session``.

``market-day`` simulates a day of ZI agents trading rooftop surplus; ``ocpp-central`` runs
the chargers' OCPP 1.6-J central system on a ledger; ``ev-session`` plays one charging
session from a simulated charge point against it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
from datetime import UTC
from pathlib import Path

from lastwatt.commands import Subcommands, UsageError, add_site_option, command
from lastwatt.ledger_commands import DEFAULT_DB

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

    central = command(
        commands,
        "ocpp-central",
        "run the OCPP 1.6-J central system: chargers connect to ws://HOST:PORT/ocpp/<id>",
        "lastwatt ocpp-central --db data/ledger.sqlite --port 9000",
        _ocpp_central,
    )
    add_site_option(central)
    central.add_argument("--db", type=Path, default=DEFAULT_DB, help="ledger with the wallets")
    central.add_argument("--host", default="127.0.0.1")
    central.add_argument("--port", type=int, default=9000)

    session = command(
        commands,
        "ev-session",
        "play one charging session from a simulated charge point against a central system",
        "lastwatt ev-session --url ws://127.0.0.1:9000/ocpp --charger CP01 --tag EV01TAG --wh 3000",
        _ev_session,
    )
    session.add_argument("--url", default="ws://127.0.0.1:9000/ocpp")
    session.add_argument("--charger", default="CP01", help="charge point id")
    session.add_argument("--tag", required=True, help="the vehicle's OCPP idTag")
    session.add_argument("--wh", type=int, required=True, help="energy to deliver [Wh]")


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


def _ocpp_central(args: argparse.Namespace) -> int:
    import asyncio

    from controllers.ocpp_central import CentralSystem
    from microgrid import load_site
    from settlement import SqliteLedgerStore

    site = load_site(args.site)
    if not site.chargers:
        msg = "the site has no [[chargers]]; add one to the site file"
        raise UsageError(msg)
    if not 0 <= args.port <= 65535:
        msg = f"--port {args.port} is not a TCP port (0–65535)"
        raise UsageError(msg)

    async def serve() -> None:
        with SqliteLedgerStore(args.db) as store:
            # No order book here: the service's API owns the one book, and a second one on
            # the same ledger would reuse its trade ids. Market chargers buy at the tariff.
            central = CentralSystem(site, store)
            server = await central.serve(args.host, args.port)
            port = server.sockets[0].getsockname()[1]
            ids = ", ".join(c.id for c in site.chargers)
            print(f"OCPP 1.6-J central system on ws://{args.host}:{port}/ocpp/<id> ({ids})")
            print("ready", flush=True)
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        asyncio.run(serve())
    return 0


def _ev_session(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import datetime

    import websockets

    from controllers.ocpp_sim import connect_charge_point

    if args.wh <= 0:
        msg = f"--wh {args.wh} must be a positive number of Wh"
        raise UsageError(msg)

    async def play() -> str:
        async with connect_charge_point(args.url, args.charger) as charge_point:
            await charge_point.boot()
            report = await charge_point.charge(args.tag, args.wh, datetime.now(UTC))
        return (
            f"{args.tag} at {args.charger}: {report.authorisation}, "
            f"{report.energy_wh} Wh delivered (transaction {report.transaction_id})"
        )

    try:
        print(asyncio.run(play()))
    except (OSError, websockets.InvalidHandshake) as exc:
        msg = f"cannot reach the central system at {args.url}/{args.charger}: {exc}"
        raise UsageError(msg) from None
    return 0
