"""The ``lastwatt serve`` command (registered by :mod:`lastwatt.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import signal
from pathlib import Path

import psycopg

from controllers.control import ControllerSettings
from controllers.failsafe import FailsafeSettings
from lastwatt.auth import CREDENTIALS_FILE, Credentials, init_credentials, load_credentials
from lastwatt.commands import Subcommands, UsageError, add_site_option, command
from lastwatt.runtime import RunOptions, Runtime
from lastwatt.service import ServiceConfig
from microgrid import Site, load_site, parse_datetime
from microgrid.site import ConnectionKind
from microgrid.units import COIN_SCALE
from settlement.postgres_store import site_schema

__all__ = ["add_commands", "print_credentials"]

LEDGER_URL_ENV = "LASTWATT_LEDGER_URL"


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
    parser = command(
        commands,
        "serve",
        "Run the dispatch service: scheduled jobs, the HTTP API and the dashboard.",
        """
lastwatt serve --init --data-dir data --resident amina=H001
lastwatt serve --site site.toml --data-dir data --port 8000
lastwatt serve --simulate --speed 60 --start 2026-08-01T06:00 --opening-credit 2
""",
        _serve,
    )
    add_site_option(parser)
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="state folder (default data/)"
    )
    parser.add_argument(
        "--init",
        action="store_true",
        help="create the credentials (operator, residents, webhook secret), print them once "
        "and exit",
    )
    parser.add_argument("--force", action="store_true", help="with --init: rotate credentials")
    parser.add_argument(
        "--resident",
        action="append",
        default=[],
        metavar="NAME=HOUSEHOLD",
        help="with --init: a resident login and their household id (repeatable)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="API port (default 8000, 0: any)")
    parser.add_argument(
        "--cycle-s", type=float, default=5.0, help="control cycle [s of service time] (default 5)"
    )
    parser.add_argument(
        "--replan-minutes", type=int, default=15, help="dispatch period (default 15)"
    )
    parser.add_argument(
        "--simulate", action="store_true", help="run the simulated container in this process"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=None,
        help="simulated seconds per real second (default: live, real time); 0 = as fast as "
        "possible (needs --simulate)",
    )
    parser.add_argument(
        "--start", default=None, help="simulated start, local site time (default: now)"
    )
    parser.add_argument(
        "--epoch",
        type=float,
        default=None,
        help="Unix time at which simulated time was --start (to share a clock with a "
        "simulator in another process; default: now)",
    )
    parser.add_argument(
        "--hours", type=float, default=None, help="stop after this many hours of service time"
    )
    parser.add_argument(
        "--opening-credit",
        type=float,
        default=None,
        metavar="COINS",
        help="credit every meter this many coins once, through the fiat bridge (businesses "
        "5×, priority users 3×)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weather seed (forecast, simulator)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    parser.add_argument(
        "--ledger-url",
        default=os.environ.get(LEDGER_URL_ENV),
        metavar="CONNINFO",
        help="keep the ledger in this PostgreSQL database, shared by a fleet's services "
        f"(default: ${LEDGER_URL_ENV}, else data-dir/ledger.sqlite)",
    )
    parser.add_argument(
        "--ledger-site",
        default="default",
        metavar="ID",
        help="this site's id in the PostgreSQL ledger (default 'default')",
    )


def print_credentials(plain: dict[str, str], data_dir: Path) -> None:
    """Print freshly generated credentials (they are not stored in clear anywhere)."""
    print(f"credentials written to {data_dir / CREDENTIALS_FILE} (hashes only); note them now:")
    for name, secret in plain.items():
        if name != "webhook_secret":
            print(f"  user {name:<12} password {secret}")
    print(f"  payment processor webhook HMAC secret (hex): {plain['webhook_secret']}")


def opening_credit(coins: float | None) -> dict[ConnectionKind, int] | None:
    """Opening credit per kind [coin minor units] from a household amount [coins]."""
    if coins is None:
        return None
    household = round(coins * COIN_SCALE)
    return {
        ConnectionKind.HOUSEHOLD: household,
        ConnectionKind.BUSINESS: 5 * household,
        ConnectionKind.PRIORITY: 3 * household,
    }


def service_config(
    data_dir: Path, cycle_s: float, replan_minutes: int, seed: int, device_timeout_s: float
) -> ServiceConfig:
    """The service settings from command-line values."""
    if cycle_s <= 0:
        msg = f"--cycle-s must be positive, got {cycle_s}"
        raise UsageError(msg)
    if replan_minutes < 1:
        msg = f"--replan-minutes must be at least 1, got {replan_minutes}"
        raise UsageError(msg)
    return ServiceConfig(
        data_dir=data_dir,
        cycle_s=cycle_s,
        reading_interval_s=max(300.0, cycle_s),
        dispatch_period=dt.timedelta(minutes=replan_minutes),
        weather_seed=seed,
        controller=ControllerSettings(failsafe=FailsafeSettings(device_timeout_s=device_timeout_s)),
    )


def _residents(items: list[str], site: Site) -> dict[str, str]:
    households = {c.id for c in site.households}
    out = {}
    for item in items:
        name, _, household = item.partition("=")
        if not name or household not in households:
            msg = f"--resident {item!r}: expected NAME=HOUSEHOLD with a household id of the site"
            raise UsageError(msg)
        out[name] = household
    return out


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    site = load_site(args.site)
    data_dir: Path = args.data_dir
    if args.init:
        try:
            plain = init_credentials(data_dir, _residents(args.resident, site), args.force)
        except FileExistsError as exc:
            raise UsageError(str(exc)) from None
        print_credentials(plain, data_dir)
        return 0
    if not (data_dir / CREDENTIALS_FILE).exists():
        print("first start: no credentials yet, generating them")
        print_credentials(init_credentials(data_dir), data_dir)
    credentials = load_credentials(data_dir)
    if args.speed is not None and args.speed < 0:
        msg = f"--speed must be ≥ 0, got {args.speed}"
        raise UsageError(msg)
    start = None
    if args.start is not None:
        start = parse_datetime(args.start, site.location.timezone).tz_convert("UTC").to_pydatetime()
    # The devices' revert timers must outlast two control cycles (setpoints are refreshed
    # at half the timeout) and, in simulated time, the real pauses of a dispatch.
    device_timeout = max(120.0, 4 * args.cycle_s)
    config = service_config(data_dir, args.cycle_s, args.replan_minutes, args.seed, device_timeout)
    if args.ledger_url:
        try:
            site_schema(args.ledger_site)
        except ValueError as exc:
            msg = f"--ledger-site: {exc}"
            raise UsageError(msg) from None
        config = dataclasses.replace(
            config, ledger_url=args.ledger_url, ledger_site=args.ledger_site
        )
    options = RunOptions(
        host=args.host,
        port=args.port,
        simulate=args.simulate,
        sim_seed=args.seed,
        speed=args.speed,
        start=start,
        epoch_s=args.epoch,
        opening_credit_minor=opening_credit(args.opening_credit),
    )
    try:
        asyncio.run(_run(site, config, credentials, options, args.hours))
    except psycopg.OperationalError as exc:
        msg = f"cannot open the PostgreSQL ledger: {str(exc).strip()}; check --ledger-url"
        raise UsageError(msg) from None
    except OSError as exc:
        msg = f"cannot listen: {exc}; is another service or simulator running? try --port"
        raise UsageError(msg) from exc
    return 0


async def _run(
    site: Site,
    config: ServiceConfig,
    credentials: Credentials,
    options: RunOptions,
    hours: float | None,
) -> None:
    runtime = Runtime(site, config, credentials, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    print(f"serving {site.name!r}: dashboard {runtime.url}, API docs {runtime.url}docs", flush=True)
    until = None
    if hours is not None:
        until = runtime.clock.now() + dt.timedelta(hours=hours)
    try:
        if until is not None and runtime.runner is None:
            wait = asyncio.create_task(stop.wait())
            await asyncio.wait({wait}, timeout=hours * 3600 if hours else None)
            wait.cancel()
        else:
            await runtime.run(until, stop)
    finally:
        await runtime.stop()
        print("stopped; devices left in their safe state", flush=True)
