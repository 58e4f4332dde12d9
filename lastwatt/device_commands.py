"""The ``lastwatt`` device subcommands (registered by :mod:`lastwatt.cli`)."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import socket
from typing import TYPE_CHECKING

from lastwatt.commands import Subcommands, UsageError, add_site_option, command

# The simulator and microgrid import pandas: handlers import them when they run, so that
# `lastwatt --help` stays fast.
if TYPE_CHECKING:
    from controllers.rtu import RtuBus
    from controllers.simulator import AcceleratedClock, SimulatorSettings
    from microgrid import Site

__all__ = ["add_commands", "with_ports"]


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
        help="listen on another port than the site file says; PORT 0: any free port (repeatable)",
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


def free_port(host: str) -> int:
    """A TCP port free on ``host`` right now (the OS's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def with_ports(site: Site, overrides: list[str], option: str = "--port") -> Site:
    """The site with gateway ports replaced by ``GATEWAY=PORT`` items (PORT 0: any free one).

    ``GATEWAY`` may be ``*`` for every gateway (``*=0``: each on its own free port).

    Raises
    ------
    UsageError
        Naming the item, the gateways of the site and the port range.
    """
    gateways = dict(site.gateways)
    for item in overrides:
        name, _, port = item.partition("=")
        names = sorted(gateways) if name == "*" else [name]
        if not set(names) <= set(gateways) or not port.isdigit() or not 0 <= int(port) < 65536:
            msg = (
                f"{option} {item!r}: expected GATEWAY=PORT with GATEWAY one of "
                f"{', '.join(sorted(gateways))} (or *) and PORT in 0–65535 (0: any free port)"
            )
            raise UsageError(msg)
        for n in names:
            chosen = int(port) or free_port(gateways[n].host)
            gateways[n] = gateways[n].model_copy(update={"port": chosen})
    return site.model_copy(update={"gateways": gateways})


def _simulate_devices(args: argparse.Namespace) -> int:
    from controllers.simulator import AcceleratedClock, SimulatorSettings
    from microgrid import load_site, parse_datetime

    site = with_ports(load_site(args.site), args.port)
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
        import asyncio  # deferred: `lastwatt --help` loads no event loop machinery

        asyncio.run(_serve(site, clock, settings, args.duration))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        msg = f"cannot listen: {exc}; is another simulator running? use --port GATEWAY=PORT"
        raise UsageError(msg) from exc
    return 0


def _rtu_buses(site: Site, items: list[str]) -> dict[str, RtuBus]:
    from controllers.rtu import RtuBus

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
    import asyncio

    from controllers.simulator import SimulatedContainer

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
