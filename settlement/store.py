"""The storage interface of the ledger: what a SQLite or PostgreSQL store must provide.

The pure rules live in :mod:`settlement.ledger`; a store adds durability, atomicity and
concurrency control. A store must post each call of :meth:`LedgerStore.post_many`
atomically (all batches or none), serialise writers so that balance checks and the hash
chain see the latest committed state, and keep the journal append-only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from microgrid.readings import MeterReading
from settlement.alarms import Alarm, AlarmKind, AlarmRecord
from settlement.ledger import (
    Asset,
    Batch,
    JournalRow,
    PostedBatch,
    Transfer,
    VerifiedPoint,
    VerifyReport,
)

if TYPE_CHECKING:
    from settlement.anchor import Anchor
    from settlement.decisions import MeterDecision

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
    """Durable ledger state: journal, balances, batch index, readings, alarms, stakes.

    Attributes
    ----------
    anchor : Anchor or None
        Where the store writes a signed checkpoint after every commit that adds journal
        rows (:mod:`settlement.anchor`); None if it writes none.
    """

    anchor: Anchor | None

    def connect_again(self) -> LedgerStore:
        """The same ledger on a connection of its own (for a worker thread); close it after."""
        ...

    def settling(self, site_id: str) -> AbstractContextManager[None]:
        """Hold ``site_id``'s settlement lock, across processes, for the ``with`` block.

        A second settler of the site (another thread, the CLI, another service) waits
        until the block ends, so it plans from what this one posted. Reentrant. The SQLite
        store also makes the block one transaction (one commit); PostgreSQL holds an
        advisory lock of the site and commits each write on its own.
        """
        ...

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

    def thin_readings(self, site_id: str, start: datetime, end: datetime) -> int:
        """Downsample readings of completely settled hours in ``[start, end)``; rows deleted.

        Per meter and hour the first and the last reading stay (all that settling the hour
        again needs); hours not settled, or settled incomplete, keep every reading.
        """
        ...

    def add_alarms(self, alarms: Sequence[Alarm]) -> None:
        """Fold observations into standing conditions (one per kind and subject)."""
        ...

    def clear_alarm(self, kind: AlarmKind, subject: str, at: datetime) -> bool:
        """Close the standing ``(kind, subject)`` condition; whether one stood."""
        ...

    def alarms(self, since: datetime | None = None) -> list[Alarm]:
        """The latest observation of every condition seen since ``since``, oldest first."""
        ...

    def alarm_records(self, standing_only: bool = False, limit: int = 200) -> list[AlarmRecord]:
        """Alarm conditions, the most recently seen first."""
        ...

    def alarm_record(self, alarm_id: int) -> AlarmRecord | None:
        """One alarm condition by id."""
        ...

    def ack_alarm(self, alarm_id: int, by: str, at: datetime) -> AlarmRecord | None:
        """Record that ``by`` has seen an alarm; None if there is no such alarm."""
        ...

    def mark_hour(
        self, site_id: str, hour: datetime, complete: bool, retry_at: datetime | None = None
    ) -> None:
        """Record that an hour was settled, completely or with meters still missing.

        An incomplete hour counts one more attempt and is due again at ``retry_at``
        (at once if None); a complete one forgets its attempts.
        """
        ...

    def finish_hour(
        self,
        site_id: str,
        hour: datetime,
        complete: bool,
        retry_at: datetime | None = None,
        alarms: Sequence[Alarm] = (),
        decisions: Sequence[MeterDecision] = (),
    ) -> None:
        """Record an hour's alarms, mark and meter decisions, atomically.

        One transaction (one fsync, not three): the alarms, :meth:`mark_hour` and
        :meth:`add_decisions` after the hour's batch is posted.
        """
        ...

    def hour_attempts(self, site_id: str, hour: datetime) -> int:
        """How many settlements of an hour ended incomplete since it was last complete."""
        ...

    def settled_hours(self, site_id: str, start: datetime, end: datetime) -> list[datetime]:
        """Settled hours (complete or not) starting in ``[start, end)``, oldest first."""
        ...

    def incomplete_hours(self, site_id: str, due_at: datetime | None = None) -> list[datetime]:
        """Settled hours that still miss readings (or hold payouts), oldest first.

        With ``due_at``, only those whose retry is due by then.
        """
        ...

    def add_decisions(self, site_id: str, decisions: Sequence[MeterDecision]) -> None:
        """Store meters' decisions; a re-settled hour replaces its earlier ones."""
        ...

    def decisions(self, site_id: str, meter_id: str, limit: int = 24) -> list[MeterDecision]:
        """A meter's latest decisions, newest first."""
        ...

    def connected_after(self, site_id: str, hour: datetime) -> dict[str, bool]:
        """Each meter's decision (relay closed?) made when ``hour`` was settled."""
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
