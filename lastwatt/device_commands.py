"""The ``lastwatt`` device subcommands (registered by :mod:`lastwatt.cli`)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging

from controllers.rtu import RtuBus
from controllers.simulator import AcceleratedClock, SimulatedContainer, SimulatorSettings
from lastwatt.commands import Subcommands, UsageError, add_site_option, command
from microgrid import Site, load_site, parse_datetime

__all__ = ["add_commands"]


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
    parser = command(
        commands,
        "simulate-devices",
        "Run the simulated container: a Modbus TCP server per gateway, driven by physics.",
        """
lastwatt simulate-devices --speed 60 --start 2026-03-20T06:00
lastwatt simulate-devices --site my_site.toml --port container=15020 --duration 30
lastwatt simulate-devices --rtu meters-a=9600 --rtu meters-b=9600   # field timing
""",
        _simulate_devices,
    )
    add_site_option(parser)
    parser.add_argument(
        "--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)"
    )
    parser.add_argument(
        "--start", default=None, help="simulated start, local time of the site (default: now)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weather and PV-noise seed")
    parser.add_argument(
        "--soc", type=float, default=0.5, help="initial battery state of charge, 0–1 (default 0.5)"
    )
    parser.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="GATEWAY=PORT",
        help="listen on another port than the site file says (repeatable)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="stop after this many real seconds"
    )
    parser.add_argument(
        "--rtu",
        action="append",
        default=[],
        metavar="GATEWAY=BAUD",
        help="put a gateway's devices on a simulated RS-485 bus at BAUD (repeatable)",
    )


def _with_ports(site: Site, overrides: list[str]) -> Site:
    gateways = dict(site.gateways)
    for item in overrides:
        name, _, port = item.partition("=")
        if name not in gateways or not port.isdigit() or not 0 < int(port) < 65536:
            msg = (
                f"--port {item!r}: expected GATEWAY=PORT with GATEWAY one of "
                f"{', '.join(sorted(gateways))} and PORT in 1–65535"
            )
            raise UsageError(msg)
        gateways[name] = gateways[name].model_copy(update={"port": int(port)})
    return site.model_copy(update={"gateways": gateways})


def _simulate_devices(args: argparse.Namespace) -> int:
    site = _with_ports(load_site(args.site), args.port)
    if args.speed <= 0:
        msg = f"--speed must be positive, got {args.speed}"
        raise UsageError(msg)
    if not 0 <= args.soc <= 1:
        msg = f"--soc is a fraction in [0, 1], got {args.soc}"
        raise UsageError(msg)
    if args.start is None:
        start = dt.datetime.now(dt.UTC)
    else:
        start = parse_datetime(args.start, site.location.timezone).tz_convert("UTC").to_pydatetime()
    clock = AcceleratedClock(start, args.speed)
    settings = SimulatorSettings(
        seed=args.seed, soc_fraction=args.soc, rtu_buses=_rtu_buses(site, args.rtu)
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(site, clock, settings, args.duration))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        msg = f"cannot listen: {exc}; is another simulator running? use --port GATEWAY=PORT"
        raise UsageError(msg) from exc
    return 0


def _rtu_buses(site: Site, items: list[str]) -> dict[str, RtuBus]:
    buses: dict[str, RtuBus] = {}
    for item in items:
        name, _, baud = item.partition("=")
        if name not in site.gateways or not baud.isdigit() or not 300 <= int(baud) <= 1_000_000:
            msg = (
                f"--rtu {item!r}: expected GATEWAY=BAUD with GATEWAY one of "
                f"{', '.join(sorted(site.gateways))} and BAUD in 300–1000000 (e.g. 9600)"
            )
            raise UsageError(msg)
        buses[name] = RtuBus(baud=int(baud))
    return buses


async def _serve(
    site: Site, clock: AcceleratedClock, settings: SimulatorSettings, duration: float | None
) -> None:
    sim = SimulatedContainer(site, clock, settings)
    try:
        await sim.start()
    except RuntimeError as exc:
        raise OSError(str(exc)) from exc
    gateways = ", ".join(f"{n} {g.host}:{g.port}" for n, g in site.gateways.items())
    print(f"simulating {site.name!r} ({len(sim.devices)} devices) on {gateways}", flush=True)
    try:
        if duration is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(duration)
    finally:
        await sim.stop()
