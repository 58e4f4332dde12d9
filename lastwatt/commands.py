"""Shared plumbing of the ``lastwatt`` subcommands: registration, common options, errors.

Each group of subcommands lives in its own module (``cli`` for forecast/dispatch/demo,
``ledger_commands``, ``device_commands``, ...) and registers itself through
:func:`command`, so every subcommand gets the same help layout and error handling.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

__all__ = ["Handler", "Subcommands", "UsageError", "add_site_option", "command"]

Handler = Callable[[argparse.Namespace], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class UsageError(Exception):
    """A problem with what the user asked for; printed without a traceback (exit code 2)."""


def command(
    commands: Subcommands,
    name: str,
    summary: str,
    example: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    """Register one subcommand whose ``--help`` ends with a worked example."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog="example:\n" + textwrap.indent(example.strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def add_site_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--site FILE`` (default: the bundled site)."""
    parser.add_argument(
        "--site",
        type=Path,
        default=None,
        metavar="FILE",
        help="site TOML file (default: the bundled 22 kWp, 400-connection site)",
    )
