"""The ``lastwatt`` service subcommands (registered by :mod:`lastwatt.cli`)."""

from __future__ import annotations

from lastwatt.commands import Subcommands

__all__ = ["add_commands"]


def add_commands(commands: Subcommands) -> None:
    """Register this module's subcommands on the ``lastwatt`` parser."""
