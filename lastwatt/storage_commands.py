"""Storage and producer subcommands: who owns which meter, device credentials, storage options.

``lastwatt owners set|show`` manage who may cash out a meter's coins (seed 002's
producers sell their coins for fiat); ``lastwatt meters credential`` issues a meter's own
credential for ``POST /api/readings``; :func:`add_storage_options` gives ``lastwatt
settle`` the storage policy (WATT, commission, Bmax) through
:mod:`lastwatt.storage_options`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lastwatt.commands import Subcommands, UsageError, add_site_option, command
from lastwatt.ledger_commands import DEFAULT_DB

# `lastwatt --help` imports this module: microgrid and settlement (pandas) are imported
# by each handler when it runs, and here only for annotations.
if TYPE_CHECKING:
    from microgrid import Site

__all__ = ["add_commands", "owned_account"]


def owned_account(site: Site, account: str) -> str:
    """Check that ``account`` is a meter account of the site (``meter:<id>``).

    Raises
    ------
    ValueError
        Naming the account and what would be accepted.
    """
    from settlement.ledger import meter_account
    from settlement.settle import CONTAINER_METERS

    meters = {c.id for c in site.connections} | set(CONTAINER_METERS)
    meter = account.removeprefix(meter_account(""))
    if not account.startswith(meter_account("")) or meter not in meters:
        msg = (
            f"{account!r} is not a meter account of site {site.name!r}; use meter:<id> with "
            "a connection id (e.g. meter:H001) or a container meter (meter:pv_inverter)"
        )
        raise ValueError(msg)
    return account


def add_commands(commands: Subcommands) -> None:
    """Register ``lastwatt owners`` and ``lastwatt meters``."""
    owners = command(
        commands,
        "owners",
        "Manage who owns which meter account (who may withdraw its coins).",
        "lastwatt owners set meter:H001 amina\nlastwatt owners show meter:H001",
        _no_subcommand,
    )
    sub = owners.add_subparsers(dest="owners_command", required=True, metavar="SUBCOMMAND")
    set_owner = command(
        sub,
        "set",
        "Register the owner (an API user name) of a meter account.",
        "lastwatt owners set meter:H001 amina --db data/ledger.sqlite",
        _run_set_owner,
    )
    set_owner.add_argument("account", help="meter account, e.g. meter:H001")
    set_owner.add_argument("owner", help="user name of its owner (their wallet is user:<name>)")
    show = command(
        sub,
        "show",
        "Print the owners of meter accounts.",
        "lastwatt owners show meter:H001 meter:H002",
        _run_show_owners,
    )
    show.add_argument("accounts", nargs="+", help="meter accounts")
    for parser in (set_owner, show):
        parser.add_argument(
            "--db", type=Path, default=DEFAULT_DB, help=f"ledger database (default {DEFAULT_DB})"
        )
        add_site_option(parser)
    meters = command(
        commands,
        "meters",
        "Meters that report themselves: issue a meter's own credential.",
        "lastwatt meters credential H001 --data-dir data",
        _no_subcommand,
    )
    msub = meters.add_subparsers(dest="meters_command", required=True, metavar="SUBCOMMAND")
    credential = command(
        msub,
        "credential",
        "Issue (or rotate) a meter's credential for POST /api/readings; printed once.",
        "lastwatt meters credential H001 --data-dir data",
        _run_credential,
    )
    credential.add_argument("meter", help="meter id (a connection id or container meter)")
    credential.add_argument("--data-dir", type=Path, default=Path("data"), help="service data")
    add_site_option(credential)


def _no_subcommand(args: argparse.Namespace) -> int:  # pragma: no cover - argparse requires one
    msg = "name a subcommand (see --help)"
    raise UsageError(msg)


def _run_set_owner(args: argparse.Namespace) -> int:
    from microgrid import load_site
    from settlement import SqliteLedgerStore

    site = load_site(args.site)
    try:
        account = owned_account(site, args.account)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.owner.strip():
        msg = "owner must be a non-empty user name"
        raise UsageError(msg)
    with SqliteLedgerStore(args.db) as store:
        store.set_owner(account, args.owner)
    print(f"{account} is owned by {args.owner}")
    return 0


def _run_show_owners(args: argparse.Namespace) -> int:
    from settlement import SqliteLedgerStore

    if not args.db.exists():
        msg = f"no ledger at {args.db}; pass --db"
        raise UsageError(msg)
    with SqliteLedgerStore(args.db) as store:
        for account in args.accounts:
            print(f"{account}  {store.owner_of(account) or '(no owner)'}")
    return 0


def _run_credential(args: argparse.Namespace) -> int:
    from lastwatt.device_auth import issue_device_token
    from microgrid import load_site
    from settlement.ledger import meter_account

    site = load_site(args.site)
    try:
        owned_account(site, meter_account(args.meter))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    token = issue_device_token(args.data_dir, args.meter)
    print(f"credential of meter {args.meter} (shown once; configure it in the meter):")
    print(token)
    return 0
