"""The storage interface of the ledger: what a SQLite or PostgreSQL store must provide.

The pure rules live in :mod:`settlement.ledger`; a store adds durability, atomicity and
concurrency control. A store must post each call of :meth:`LedgerStore.post_many`
atomically (all batches or none), serialise writers so that balance checks and the hash
chain see the latest committed state, and keep the journal append-only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from microgrid.readings import MeterReading
from settlement.alarms import Alarm
from settlement.ledger import (
    Asset,
    Batch,
    JournalRow,
    PostedBatch,
    Transfer,
    VerifiedPoint,
    VerifyReport,
)

__all__ = ["LedgerStore", "ReadingsAdded"]


@dataclass(frozen=True, slots=True)
class ReadingsAdded:
    """What a store did with new readings.

    Attributes
    ----------
    accepted : tuple of MeterReading
        Stored.
    duplicates : tuple of MeterReading
        Identical to a stored reading; ignored.
    conflicts : tuple of (MeterReading, MeterReading)
        ``(new, stored)`` pairs for one meter and instant with different registers;
        the stored one is kept.
    """

    accepted: tuple[MeterReading, ...]
    duplicates: tuple[MeterReading, ...]
    conflicts: tuple[tuple[MeterReading, MeterReading], ...]


class LedgerStore(Protocol):
    """Durable ledger state: journal, balances, batch index, readings, alarms, stakes."""

    # --- the journal ---------------------------------------------------------------------
    def post(self, batch: Batch, posted_at: datetime | None = None) -> PostedBatch:
        """Post one batch atomically and idempotently (see :class:`settlement.ledger.Batch`).

        Raises
        ------
        settlement.ledger.IdempotencyConflictError
            If the key was posted with other content.
        settlement.ledger.InsufficientFundsError
            If a transfer would overdraw an account.
        settlement.ledger.BatchRejectedError
            If a precondition fails or a clearing account does not net to zero.
        """
        ...

    def post_many(
        self, batches: Sequence[Batch], posted_at: datetime | None = None
    ) -> list[PostedBatch]:
        """Post several batches in one transaction: all of them, or none."""
        ...

    def posted(self, key: str) -> PostedBatch | None:
        """The batch posted under ``key``, if any."""
        ...

    def keys_with_prefix(self, prefix: str) -> list[str]:
        """Posted batch keys starting with ``prefix``, in posting order."""
        ...

    def transfers_of(self, key: str) -> tuple[Transfer, ...]:
        """The transfers of a posted batch (empty if the key is unknown)."""
        ...

    def balance(self, account: str, asset: Asset = Asset.COIN) -> int:
        """Balance of one account [minor units]; zero for an unknown account."""
        ...

    def balances(
        self, asset: Asset | None = None, prefix: str = ""
    ) -> dict[tuple[str, Asset], int]:
        """Non-zero balances, optionally of one asset and of accounts starting with ``prefix``."""
        ...

    def history(self, account: str, limit: int = 50) -> list[JournalRow]:
        """The latest journal rows that touch ``account``, newest first."""
        ...

    def journal_rows(self, start_seq: int = 1) -> Iterator[JournalRow]:
        """Journal rows from ``start_seq`` on, in order (what anchor checks read)."""
        ...

    def verify(self, since: VerifiedPoint | None = None) -> VerifyReport:
        """Recompute the hash chain and every invariant (see ``verify_journal``).

        With ``since`` (an earlier report's ``point``), only rows after it, unless its
        row's hash changed (then in full).
        """
        ...

    # --- readings, alarms, settled hours ------------------------------------------------
    def add_readings(
        self, readings: Sequence[MeterReading], recorded_at: datetime
    ) -> ReadingsAdded:
        """Store readings; duplicates are ignored and conflicting ones reported, not stored."""
        ...

    def readings(
        self, start: datetime, end: datetime, meter_ids: Sequence[str] | None = None
    ) -> list[MeterReading]:
        """Stored readings with ``start <= read_at <= end``, by meter then time."""
        ...

    def reading_before(self, meter_id: str, moment: datetime) -> MeterReading | None:
        """The meter's last reading strictly before ``moment``."""
        ...

    def reading_after(self, meter_id: str, moment: datetime) -> MeterReading | None:
        """The meter's first reading strictly after ``moment``."""
        ...

    def add_alarms(self, alarms: Sequence[Alarm]) -> None:
        """Record alarms (an identical alarm is recorded once)."""
        ...

    def alarms(self, since: datetime | None = None) -> list[Alarm]:
        """Recorded alarms, oldest first."""
        ...

    def mark_hour(self, site_id: str, hour: datetime, complete: bool) -> None:
        """Record that an hour was settled, completely or with meters still missing."""
        ...

    def settled_hours(self, site_id: str, start: datetime, end: datetime) -> list[datetime]:
        """Settled hours (complete or not) starting in ``[start, end)``, oldest first."""
        ...

    def incomplete_hours(self, site_id: str) -> list[datetime]:
        """Settled hours that still miss readings (or hold payouts), oldest first."""
        ...

    # --- owners and stakes ---------------------------------------------------------------
    def set_owner(self, account: str, owner: str) -> None:
        """Register who may withdraw from ``account``."""
        ...

    def owner_of(self, account: str) -> str | None:
        """Who may withdraw from ``account``, if registered."""
        ...

    def set_stake_choice(
        self, household_id: str, effective_round: int, business_id: str | None
    ) -> None:
        """Record a household's choice (a business, or None to skip) from ``effective_round`` on."""
        ...

    def stake_choices(self, round_number: int) -> dict[str, str | None]:
        """Each household's choice in force in ``round_number``."""
        ...

    def close(self) -> None:
        """Release the store's resources."""
        ...
