"""Command-line options of storage accounting, shared by the commands that settle."""

from __future__ import annotations

import argparse

from lastwatt.commands import UsageError
from microgrid import Site
from microgrid.units import WATT_SCALE
from settlement import StoragePolicy, storage_policy_for

__all__ = ["add_storage_options", "storage_policy_from_args"]


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
        default=StoragePolicy().commission_ppm,
        help="storage commission per 15 min on each WATT balance [parts per million] "
        f"(default {StoragePolicy().commission_ppm})",
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
    if not args.storage:
        return None
    bmax = None if args.bmax_kwh is None else round(args.bmax_kwh * WATT_SCALE)
    try:
        return storage_policy_for(site, commission_ppm=args.commission_ppm, bmax_wh=bmax)
    except ValueError as exc:
        msg = f"storage options: {exc}"
        raise UsageError(msg) from None
