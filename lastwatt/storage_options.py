"""Command-line options of storage accounting, shared by the commands that settle."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from lastwatt.commands import UsageError

# Imported by command modules at parser-building time, so `lastwatt --help` loads this
# module: settlement and microgrid (pandas) are imported only when a command settles.
if TYPE_CHECKING:
    from microgrid import Site
    from settlement import StoragePolicy

__all__ = ["DEFAULT_COMMISSION_PPM", "add_storage_options", "storage_policy_from_args"]

DEFAULT_COMMISSION_PPM = 25
"""``StoragePolicy().commission_ppm``, written out so ``--help`` needs no settlement import.

A test keeps the two equal.
"""


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--storage``, ``--commission-ppm`` and ``--bmax-kwh`` to a settling command."""
    parser.add_argument(
        "--storage",
        action="store_true",
        help="settle the battery as a producer (WATT tokens); needs battery_inverter readings "
        "(import = charged Wh, export = discharged Wh)",
    )
    parser.add_argument(
        "--commission-ppm",
        type=int,
        default=DEFAULT_COMMISSION_PPM,
        help="storage commission per 15 min on each WATT balance [parts per million] "
        f"(default {DEFAULT_COMMISSION_PPM})",
    )
    parser.add_argument(
        "--bmax-kwh",
        type=float,
        default=None,
        help="cap on each connection's WATT balance [kWh]; production above it is sold to "
        "the hour's pool (default: no cap)",
    )


def storage_policy_from_args(args: argparse.Namespace, site: Site) -> StoragePolicy | None:
    """The storage policy the options ask for, or None without ``--storage``."""
    from microgrid.units import WATT_SCALE
    from settlement import storage_policy_for

    if not args.storage:
        return None
    bmax = None if args.bmax_kwh is None else round(args.bmax_kwh * WATT_SCALE)
    try:
        return storage_policy_for(site, commission_ppm=args.commission_ppm, bmax_wh=bmax)
    except ValueError as exc:
        msg = f"storage options: {exc}"
        raise UsageError(msg) from None
