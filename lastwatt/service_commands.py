"""The ``lastwatt serve`` and ``lastwatt users`` commands (registered by :mod:`lastwatt.cli`).

``serve`` takes its settings from flags, ``LASTWATT_*`` environment variables and a
config file, in that order (:mod:`lastwatt.config`). New passwords and secrets are never
printed: they are written to ``<data-dir>/secrets/<name>`` (mode 0600), and the command
says where (:mod:`lastwatt.auth`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lastwatt.commands import Subcommands, UsageError, add_site_option, command

# The service stack (pandas, the MILP, the Modbus client) is imported by the handlers
# when they run, so that `lastwatt --help` stays fast.
if TYPE_CHECKING:
    import asyncio

    from lastwatt.api import ApiSettings
    from lastwatt.auth import Credentials
    from lastwatt.config import RetentionSettings, Settings, WeatherSettings
    from lastwatt.runtime import RunOptions, Runtime
    from lastwatt.service import ServiceConfig
    from microgrid import Site
    from microgrid.site import ConnectionKind

__all__ = ["add_commands", "opening_credit", "report_secrets", "service_config"]

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
lastwatt serve --simulate --sim-port '*=0' --speed 60 --start 2026-08-01T06:00
LASTWATT_WEATHER__FEED_URL=https://api.open-meteo.com/v1/forecast?... lastwatt serve
lastwatt serve --config /etc/lastwatt/lastwatt.toml
""",
        _serve,
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="service config file (TOML; default $LASTWATT_CONFIG). Precedence: flags, then "
        "LASTWATT_* environment variables, then this file, then defaults",
    )
    add_site_option(parser)
    parser.add_argument("--data-dir", type=Path, default=None, help="state folder (default data/)")
    parser.add_argument(
        "--init",
        action="store_true",
        help="create the credentials (operator, residents, webhook secret) and exit; "
        "with the file present, add the listed residents only (nobody else rotates). "
        "New passwords go to DATA_DIR/secrets/NAME (mode 0600), never to the screen",
    )
    parser.add_argument("--force", action="store_true", help="with --init: rotate every credential")
    parser.add_argument(
        "--resident",
        action="append",
        default=[],
        metavar="NAME=HOUSEHOLD",
        help="with --init: a resident login and their household id (repeatable)",
    )
    parser.add_argument(
        "--rate-limit",
        default=None,
        metavar="LIMITS",
        help="API requests per client address (default 600/minute)",
    )
    parser.add_argument(
        "--private",
        action="store_true",
        help="no public noticeboard: every API read but /api/health and /metrics (no "
        "personal data) needs credentials",
    )
    parser.add_argument("--host", default=None, help="API address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="API port (default 8000, 0: any)")
    parser.add_argument(
        "--ocpp-port",
        type=int,
        default=9000,
        help="where the chargers' OCPP 1.6-J central system listens, on --host, when the "
        "site declares chargers (default 9000, 0: any)",
    )
    parser.add_argument(
        "--market-tick-s",
        type=float,
        default=60.0,
        help="the market job's interval: expiry, ZI agents, matching [s of service time] "
        "(default 60; 0: no job, the book moves on API calls only)",
    )
    parser.add_argument(
        "--cycle-s", type=float, default=None, help="control cycle [s of service time] (default 5)"
    )
    parser.add_argument(
        "--replan-minutes", type=int, default=None, help="dispatch period (default 15)"
    )
    parser.add_argument(
        "--simulate", action="store_true", help="run the simulated container in this process"
    )
    parser.add_argument(
        "--sim-port",
        action="append",
        default=[],
        metavar="GATEWAY=PORT",
        help="with --simulate: the simulated gateway GATEWAY (or * for all) listens on PORT "
        "instead of the site file's, 0: any free port (repeatable)",
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
    parser.add_argument(
        "--seed", type=int, default=None, help="weather seed (simulator, climatology; default 0)"
    )
    parser.add_argument("--log-level", default=None, help="logging level (default INFO)")
    parser.add_argument(
        "--log-json", action="store_true", default=None, help="log one JSON object a line"
    )
    parser.add_argument(
        "--log-file", type=Path, default=None, metavar="FILE", help="also log to FILE, rotated"
    )
    parser.add_argument(
        "--weather-feed",
        default=None,
        metavar="URL",
        help="Open-Meteo style hourly forecast URL, fetched on a schedule (default: none, "
        "the synthetic climatology, flagged as a fallback)",
    )
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
    _add_user_commands(commands)


def report_secrets(plain: dict[str, str], data_dir: Path) -> None:
    """Hand new secrets over in files (mode 0600) and say where; never print them."""
    from lastwatt.auth import hand_over_secrets

    files = hand_over_secrets(data_dir, plain)
    print("new credentials (passwords and secrets are never shown; read them from the files,")
    print("hand them over, then delete the files):")
    for name, path in files.items():
        what = "payment processor's webhook HMAC secret" if name == "webhook_secret" else name
        print(f"  {what:<40} {path}")


def opening_credit(coins: float | None) -> dict[ConnectionKind, int] | None:
    """Opening credit per kind [coin minor units] from a household amount [coins]."""
    from microgrid.site import ConnectionKind
    from microgrid.units import COIN_SCALE

    if coins is None:
        return None
    household = round(coins * COIN_SCALE)
    return {
        ConnectionKind.HOUSEHOLD: household,
        ConnectionKind.BUSINESS: 5 * household,
        ConnectionKind.PRIORITY: 3 * household,
    }


def service_config(
    data_dir: Path,
    cycle_s: float,
    replan_minutes: int,
    seed: int,
    device_timeout_s: float,
    weather: WeatherSettings | None = None,
    retention: RetentionSettings | None = None,
) -> ServiceConfig:
    """The service settings from command-line values."""
    from controllers.control import ControllerSettings
    from controllers.failsafe import FailsafeSettings
    from lastwatt.config import RetentionSettings, WeatherSettings
    from lastwatt.service import ServiceConfig

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
        weather=weather or WeatherSettings(),
        retention=retention or RetentionSettings(),
        controller=ControllerSettings(failsafe=FailsafeSettings(device_timeout_s=device_timeout_s)),
    )


def _api_settings(rate_limit: str | None, private: bool) -> ApiSettings:
    from lastwatt.api import ApiSettings, Noticeboard
    from lastwatt.guard import ApiLimits

    try:
        limits = ApiLimits() if rate_limit is None else ApiLimits(per_client=rate_limit)
    except ValueError as exc:
        msg = f"--rate-limit {rate_limit!r}: {exc}"
        raise UsageError(msg) from None
    board = Noticeboard(plan=False, tiers=False, stakes=False) if private else Noticeboard()
    return ApiSettings(noticeboard=board, limits=limits)


def _residents(items: list[str], site: Site) -> dict[str, str]:
    from lastwatt.auth import check_user_name

    households = {c.id for c in site.households}
    out = {}
    for item in items:
        name, _, household = item.partition("=")
        if not name or household not in households:
            msg = f"--resident {item!r}: expected NAME=HOUSEHOLD with a household id of the site"
            raise UsageError(msg)
        try:
            check_user_name(name)
        except ValueError as exc:
            msg = f"--resident {item!r}: {exc}"
            raise UsageError(msg) from None
        if name in out:
            msg = f"--resident {name!r} is given twice; one login per resident"
            raise UsageError(msg)
        out[name] = household
    return out


def _settings(args: argparse.Namespace) -> Settings:
    from lastwatt.config import load_settings

    flags: dict[str, Any] = {
        "site": args.site,
        "data_dir": args.data_dir,
        "host": args.host,
        "port": args.port,
        "cycle_s": args.cycle_s,
        "replan_minutes": args.replan_minutes,
        "seed": args.seed,
    }
    logging_flags = {"level": args.log_level, "json": args.log_json, "file": args.log_file}
    if any(v is not None for v in logging_flags.values()):
        flags["logging"] = {k: v for k, v in logging_flags.items() if v is not None}
    if args.weather_feed is not None:
        flags["weather"] = {"feed_url": args.weather_feed}
    return load_settings(args.config, flags)


def _serve(args: argparse.Namespace) -> int:
    from lastwatt.auth import CREDENTIALS_FILE, init_credentials, load_credentials
    from lastwatt.logs import setup_logging
    from lastwatt.runtime import RunOptions
    from microgrid import load_site, parse_datetime

    api = _api_settings(args.rate_limit, args.private)  # refuse bad options before writing
    if not 0 <= args.ocpp_port <= 65535:
        msg = f"--ocpp-port {args.ocpp_port} is not a TCP port (0–65535)"
        raise UsageError(msg)
    if args.market_tick_s < 0:
        msg = f"--market-tick-s must be ≥ 0 (0: no market job), got {args.market_tick_s}"
        raise UsageError(msg)
    settings = _settings(args)
    setup_logging(settings.logging)
    site = load_site(settings.site)
    data_dir: Path = settings.data_dir
    if args.ledger_url:  # a bad site id is refused before anything starts
        from settlement.postgres_store import site_schema

        try:
            site_schema(args.ledger_site)
        except ValueError as exc:
            msg = f"--ledger-site: {exc}"
            raise UsageError(msg) from None
    if args.init:
        return _init(data_dir, _residents(args.resident, site), args.force)
    if args.sim_port and not args.simulate:
        msg = "--sim-port moves the simulated container's ports; it needs --simulate"
        raise UsageError(msg)
    if args.simulate:
        from lastwatt.device_commands import with_ports

        site = with_ports(site, args.sim_port, "--sim-port")
        _check_ports_free(site)
    if not (data_dir / CREDENTIALS_FILE).exists():
        print("first start: no credentials yet, generating them")
        report_secrets(init_credentials(data_dir), data_dir)
    secret = settings.webhook_secret
    credentials = load_credentials(data_dir, None if secret is None else secret.get_secret_value())
    if args.speed is not None and args.speed < 0:
        msg = f"--speed must be ≥ 0, got {args.speed}"
        raise UsageError(msg)
    start = None
    if args.start is not None:
        start = parse_datetime(args.start, site.location.timezone).tz_convert("UTC").to_pydatetime()
    # The devices' revert timers must outlast two control cycles (setpoints are refreshed
    # at half the timeout) and, in simulated time, the real pauses of a dispatch.
    device_timeout = max(120.0, 4 * settings.cycle_s)
    config = service_config(
        data_dir,
        settings.cycle_s,
        settings.replan_minutes,
        settings.seed,
        device_timeout,
        settings.weather,
        settings.retention,
    )
    if args.ledger_url:
        config = dataclasses.replace(
            config, ledger_url=args.ledger_url, ledger_site=args.ledger_site
        )
    config = dataclasses.replace(
        config,
        ocpp_host=settings.host,
        ocpp_port=args.ocpp_port,
        market_tick_s=args.market_tick_s or None,
    )
    options = RunOptions(
        host=settings.host,
        port=settings.port,
        simulate=args.simulate,
        sim_seed=settings.seed,
        speed=args.speed,
        start=start,
        epoch_s=args.epoch,
        opening_credit_minor=opening_credit(args.opening_credit),
        api=api,
    )
    import asyncio  # deferred: `lastwatt --help` loads no event loop machinery

    import psycopg

    try:
        asyncio.run(_run(site, config, credentials, options, args.hours))
    except psycopg.OperationalError as exc:
        msg = f"cannot open the PostgreSQL ledger: {str(exc).strip()}; check --ledger-url"
        raise UsageError(msg) from None
    except OSError as exc:
        ports = ", ".join(f"{n} {g.port}" for n, g in site.gateways.items())
        hint = (
            f"try --port, and --sim-port GATEWAY=PORT ('*=0': any free) for the simulated "
            f"gateways ({ports})"
            if args.simulate
            else "try --port"
        )
        msg = f"cannot listen: {exc}; is another service or simulator running? {hint}"
        raise UsageError(msg) from exc
    return 0


def _check_ports_free(site: Site) -> None:
    """Name the simulated gateway whose port is taken, and the flag that moves it."""
    import socket

    for name, gateway in site.gateways.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((gateway.host, gateway.port))
            except OSError as exc:
                msg = (
                    f"the simulated gateway {name!r} cannot listen on {gateway.host}:"
                    f"{gateway.port} ({exc.strerror}); is another simulator running? move it "
                    f"with --sim-port {name}=PORT, or --sim-port '*=0' for free ports"
                )
                raise UsageError(msg) from None


def _init(data_dir: Path, residents: dict[str, str], force: bool) -> int:
    """``serve --init``: create, add the missing residents, or (``--force``) rotate."""
    from lastwatt.auth import (
        CREDENTIALS_FILE,
        CredentialsError,
        Role,
        add_user,
        init_credentials,
        load_credentials,
    )

    if force or not (data_dir / CREDENTIALS_FILE).exists():
        report_secrets(init_credentials(data_dir, residents, overwrite=force), data_dir)
        return 0
    known = {u.name for u in load_credentials(data_dir).users}
    new = {name: h for name, h in residents.items() if name not in known}
    if not new:
        msg = (
            f"{data_dir / CREDENTIALS_FILE} exists and lists every resident given; add users "
            "with 'lastwatt users add' (or --init --resident NAME=HOUSEHOLD), or pass --force "
            "to rotate every credential"
        )
        raise UsageError(msg)
    try:
        plain = {name: add_user(data_dir, name, Role.RESIDENT, h) for name, h in new.items()}
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None
    report_secrets(plain, data_dir)
    return 0


async def _run(
    site: Site,
    config: ServiceConfig,
    credentials: Credentials,
    options: RunOptions,
    hours: float | None,
) -> None:
    import asyncio

    from lastwatt.runtime import Runtime
    from lastwatt.watchdog import notify

    runtime = Runtime(site, config, credentials, options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
    except BaseException:  # stop what did start (a control process would outlive us)
        with contextlib.suppress(Exception):  # the start's own error is the one to report
            await runtime.stop()
        raise
    print(f"serving {site.name!r}: dashboard {runtime.url}, API docs {runtime.url}docs", flush=True)
    watchdog_task = _start_watchdog(runtime, config, options, stop)
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
        notify("STOPPING=1")
        stop.set()
        if watchdog_task is not None:
            await watchdog_task
        await runtime.stop()
        print("stopped; devices left in their safe state", flush=True)


def _start_watchdog(
    runtime: Runtime, config: ServiceConfig, options: RunOptions, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """Tell systemd the service is ready; ping its watchdog while control cycles complete."""
    import asyncio

    from lastwatt.watchdog import Watchdog, notify, watchdog_interval_s

    notify(f"READY=1\nSTATUS=serving on {runtime.url}")
    interval = watchdog_interval_s()
    if interval is None or runtime.service is None:
        return None
    # Service seconds per wall second: live 1, accelerated `speed`, fast-forward unbounded.
    speed = 1.0 if options.speed is None else options.speed or float("inf")
    cycle_wall_s = config.cycle_s / speed
    # Four missed cycles, but never less than 30 s: a slow Modbus sweep is not a stall.
    watchdog = Watchdog(runtime.service, max(4 * cycle_wall_s, 30.0), interval / 3)
    return asyncio.create_task(watchdog.run(stop))


# --- users -----------------------------------------------------------------------------------


def _add_user_commands(commands: Subcommands) -> None:
    users = command(
        commands,
        "users",
        "List, add or remove API users, or rotate the payment processor's secret, one at a "
        "time: nobody else's credential changes. New secrets go to DATA_DIR/secrets/NAME "
        "(mode 0600), never to the screen.",
        "lastwatt users add baraka --household H002\nlastwatt users remove baraka\n"
        "lastwatt users list --data-dir /var/lib/lastwatt",
        _no_users_subcommand,
    )
    sub = users.add_subparsers(dest="users_command", required=True, metavar="SUBCOMMAND")
    listing = command(sub, "list", "List users and roles.", "lastwatt users list", _users_list)
    add = command(
        sub,
        "add",
        "Add a user with a new random password (or, with --replace, give one a new password).",
        "lastwatt users add baraka --household H002\nlastwatt users add night-shift --operator",
        _users_add,
    )
    add.add_argument("name", help="login name (letters, digits, - and _)")
    role = add.add_mutually_exclusive_group(required=True)
    role.add_argument("--household", help="a resident's household connection id")
    role.add_argument("--operator", action="store_true", help="an operator (every write)")
    add.add_argument("--replace", action="store_true", help="new password for an existing user")
    add_site_option(add)
    remove = command(sub, "remove", "Remove a user.", "lastwatt users remove baraka", _users_remove)
    remove.add_argument("name", help="login name")
    rotate = command(
        sub,
        "rotate-webhook-secret",
        "Give the payment processor a new HMAC secret (users unchanged).",
        "lastwatt users rotate-webhook-secret",
        _users_rotate_webhook,
    )
    for parser in (listing, add, remove, rotate):
        parser.add_argument(
            "--data-dir", type=Path, default=Path("data"), help="state folder (default data/)"
        )


def _no_users_subcommand(args: argparse.Namespace) -> int:  # pragma: no cover - argparse
    msg = "name a users subcommand: list, add, remove or rotate-webhook-secret"
    raise UsageError(msg)


def _credentials_call(call: Any, *args: Any) -> Any:
    from lastwatt.auth import CredentialsError

    try:
        return call(*args)
    except (CredentialsError, FileNotFoundError) as exc:
        raise UsageError(str(exc)) from None


def _users_list(args: argparse.Namespace) -> int:
    from lastwatt.auth import load_credentials

    credentials = _credentials_call(load_credentials, args.data_dir)
    for user in sorted(credentials.users, key=lambda u: (u.role.value, u.name)):
        print(f"{user.name:<20} {user.role.value:<9} {user.household or ''}")
    return 0


def _users_add(args: argparse.Namespace) -> int:
    from lastwatt.auth import Role, add_user
    from microgrid import load_site

    household = args.household
    if household is not None and household not in {c.id for c in load_site(args.site).households}:
        msg = f"--household {household!r} is not a household of the site (see 'lastwatt site show')"
        raise UsageError(msg)
    role = Role.OPERATOR if args.operator else Role.RESIDENT
    password = _credentials_call(add_user, args.data_dir, args.name, role, household, args.replace)
    report_secrets({args.name: password}, args.data_dir)
    return 0


def _users_remove(args: argparse.Namespace) -> int:
    from lastwatt.auth import remove_user

    _credentials_call(remove_user, args.data_dir, args.name)
    print(f"removed user {args.name}; every other credential is unchanged")
    return 0


def _users_rotate_webhook(args: argparse.Namespace) -> int:
    from lastwatt.auth import rotate_webhook_secret

    secret = _credentials_call(rotate_webhook_secret, args.data_dir)
    report_secrets({"webhook_secret": secret}, args.data_dir)
    print("give the new secret to the payment processor; restart the service to use it")
    return 0
