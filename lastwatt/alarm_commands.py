"""The ``lastwatt alarms`` subcommand (registered by :mod:`lastwatt.cli`).

Reads the ledger's alarm table directly, so it works whether the service runs or not;
whoever can open the data directory on the box is trusted to acknowledge.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lastwatt.commands import Subcommands, UsageError, command
from lastwatt.ledger_commands import DEFAULT_DB

# `lastwatt --help` imports this module: settlement (pandas) only when the command runs.
if TYPE_CHECKING:
    from settlement import AlarmRecord

__all__ = ["add_commands", "format_alarms"]


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
    parser = command(
        commands,
        "alarms",
        "List the alarms (standing first, newest first), or acknowledge one.",
        "lastwatt alarms --db data/ledger.sqlite\nlastwatt alarms --ack 12 --by amadou",
        _run_alarms,
    )
    parser.add_argument(
        "--db", type=Path, default=DEFAULT_DB, help=f"ledger database (default {DEFAULT_DB})"
    )
    parser.add_argument("--ack", type=int, default=None, metavar="ID", help="acknowledge alarm ID")
    parser.add_argument(
        "--by", default=None, help="who acknowledges (default: the logged-in user name)"
    )
    parser.add_argument(
        "--all", action="store_true", help="include cleared alarms (default: standing only)"
    )
    parser.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")


def format_alarms(records: Sequence[AlarmRecord]) -> list[str]:
    """One line per alarm: id, severity, kind, subject, count, first/last seen, state."""
    if not records:
        return ["no alarms"]
    lines = [
        f"{'id':>5}  {'severity':8}  {'kind':18}  {'subject':14}  {'count':>6}  "
        f"{'first seen (UTC)':16}  {'last seen (UTC)':16}  state"
    ]
    for r in records:
        state = "standing" if r.standing else "cleared"
        if r.acked_by:
            state += f", acked by {r.acked_by}"
        lines.append(
            f"{r.id:>5}  {r.severity.value:8}  {r.kind.value:18}  {r.subject[:14]:14}  "
            f"{r.count:>6}  {r.first_seen:%Y-%m-%d %H:%M}  {r.last_seen:%Y-%m-%d %H:%M}  {state}"
        )
        lines.append(f"       {r.message}")
    return lines


def _run_alarms(args: argparse.Namespace) -> int:
    from settlement import SqliteLedgerStore

    path: Path = args.db
    if not path.exists():
        msg = f"no ledger at {path}; pass --db (the service keeps it in <data-dir>/ledger.sqlite)"
        raise UsageError(msg)
    if args.limit <= 0:
        msg = f"--limit must be a positive number of alarms, got {args.limit}"
        raise UsageError(msg)
    with SqliteLedgerStore(path) as store:
        if args.ack is not None:
            by = (args.by or getpass.getuser()).strip()
            if not by:
                msg = "--by must name who acknowledges"
                raise UsageError(msg)
            record = store.ack_alarm(args.ack, by, dt.datetime.now(dt.UTC))
            if record is None:
                msg = f"no alarm with id {args.ack}; run `lastwatt alarms --all` to list them"
                raise UsageError(msg)
            print("\n".join(format_alarms([record])))
            return 0
        records = store.alarm_records(standing_only=not args.all, limit=args.limit)
    print("\n".join(format_alarms(records)))
    return 0
