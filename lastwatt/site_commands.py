"""``lastwatt site init|check|show|businesses``: make, validate and read a site file.

The site file is the one description of the mini-grid (:mod:`microgrid.io`); ``init``
starts from the bundled default (22 kWp, 400 connections), ``check`` validates a file
and names every problem, ``show`` summarises it and ``businesses`` lists the business
ids a stakes file needs.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from lastwatt.commands import Subcommands, UsageError, add_site_option, command

if TYPE_CHECKING:
    from microgrid import Site

__all__ = ["add_commands", "site_summary"]


def add_commands(commands: Subcommands) -> None:
    """Register ``lastwatt site ...`` on the ``lastwatt`` parser."""
    site = command(
        commands,
        "site",
        "Create, check or inspect a site file (the one description of the mini-grid).",
        "lastwatt site init my_site.toml\nlastwatt site check my_site.toml\n"
        "lastwatt site businesses --site my_site.toml",
        _no_subcommand,
    )
    sub = site.add_subparsers(dest="site_command", required=True, metavar="SUBCOMMAND")
    init = command(
        sub,
        "init",
        "Write a site file to edit, starting from the bundled default site.",
        "lastwatt site init my_site.toml",
        _init,
    )
    init.add_argument("path", type=Path, help="the new site file (.toml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    check = command(
        sub,
        "check",
        "Validate a site file; name every problem (exit 2) or print a summary.",
        "lastwatt site check my_site.toml",
        _check,
    )
    check.add_argument("path", type=Path, help="site file to check")
    show = command(
        sub,
        "show",
        "Summarise a site: location, PV, battery, gateways, connections by kind.",
        "lastwatt site show --site my_site.toml",
        _show,
    )
    add_site_option(show)
    businesses = command(
        sub,
        "businesses",
        "List the businesses (ids for a stakes file), their value score and hours.",
        "lastwatt site businesses > businesses.txt",
        _businesses,
    )
    add_site_option(businesses)


def _no_subcommand(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires one
    msg = "name a site subcommand: init, check, show or businesses"
    raise UsageError(msg)


def site_summary(site: Site) -> str:
    """A few lines describing ``site`` (what ``site show`` and ``site check`` print)."""
    from microgrid.site import ConnectionKind

    loc, pv, bat = site.location, site.pv, site.battery
    counts = {k: sum(c.kind is k for c in site.connections) for k in ConnectionKind}
    gateways = ", ".join(f"{n} {g.host}:{g.port}" for n, g in site.gateways.items())
    return "\n".join(
        [
            f"{site.name}",
            f"  location   {loc.latitude:.4f}, {loc.longitude:.4f}, {loc.altitude_m:g} m, "
            f"{loc.timezone}",
            f"  PV         {pv.dc_capacity_kwp:g} kWp DC, {pv.inverter_ac_capacity_kw:g} kW AC, "
            f"tilt {pv.surface_tilt_deg:g}°, azimuth {pv.surface_azimuth_deg:g}°",
            f"  battery    {bat.energy_capacity_kwh:g} kWh, {bat.power_kw_max:g} kW, "
            f"SoC {bat.soc_min_fraction:.0%}–{bat.soc_max_fraction:.0%}",
            f"  gateways   {gateways}",
            f"  relays     {len(site.relay_groups)} household groups",
            "  connections "
            + ", ".join(f"{n} {k.value}" for k, n in counts.items())
            + f" ({len(site.connections)} in all)",
            f"  tariffs    {', '.join(sorted(site.tariffs))}",
        ]
    )


def _init(args: argparse.Namespace) -> int:
    from microgrid import default_site_path

    path: Path = args.path
    if path.suffix.lower() != ".toml":
        msg = f"{path}: a site file is TOML; name it with .toml"
        raise UsageError(msg)
    if path.exists() and not args.force:
        msg = f"{path} exists; pass --force to overwrite it"
        raise UsageError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(default_site_path(), path)
    print(f"wrote {path} (a copy of the bundled default site): edit it, then")
    print(f"  lastwatt site check {path}")
    print(f"  lastwatt serve --site {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from microgrid import load_site

    site = load_site(args.path)  # a SiteFileError names every problem (exit 2)
    print(f"{args.path}: OK")
    print(site_summary(site))
    return 0


def _show(args: argparse.Namespace) -> int:
    from microgrid import load_site

    print(site_summary(load_site(args.site)))
    return 0


def _businesses(args: argparse.Namespace) -> int:
    from microgrid import load_site

    site = load_site(args.site)
    print(f"{'business_id':<24} {'value':>5}  {'kW':>9}  {'kWh/day':>7}  hours")
    for c in site.businesses:
        b = c.business
        if b is None:  # pragma: no cover - the site model requires it for businesses
            continue
        print(
            f"{c.id:<24} {b.value_score:>5g}  {b.power_kw_min:>4g}–{b.power_kw_max:<4g}"
            f"  {b.daily_energy_kwh:>7g}  {b.opening_hour:02d}–{b.closing_hour:02d}"
        )
    return 0
