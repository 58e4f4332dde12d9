"""What a post does to a store, decided without touching one: the pure core of every store.

A store (SQLite, PostgreSQL) reads the chain head, the last batch ordinal, the balances
that must cover debits and the batch index inside its write transaction, hands them to
:func:`plan_posting`, and writes the rows it returns. Idempotency, preconditions,
overdraft rules and the hash chain are therefore decided in one place for every store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from settlement.ledger import (
    Asset,
    Batch,
    BatchRejectedError,
    IdempotencyConflictError,
    InsufficientFundsError,
    PostedBatch,
    chain_hash,
    from_us,
    may_overdraw,
)

__all__ = ["BatchRow", "PostingPlan", "covered_debits", "plan_posting"]

#: A batch index entry as a store returns it: ``(digest, first_seq, count, posted_at_us)``.
BatchRow = tuple[bytes, int, int, int]

#: ``(seq, batch_key, code, debit, credit, asset, amount, posted_at_us, hash)``.
JournalTuple = tuple[int, str, str, str, str, str, int, int, bytes]


@dataclass(frozen=True, slots=True)
class PostingPlan:
    """The rows one ``post_many`` call writes, and what it returns.

    Attributes
    ----------
    results : list of PostedBatch
        One per batch, in call order (replays flagged ``replayed``).
    journal : list of tuple
        New journal rows, in sequence order (:data:`JournalTuple`).
    index : list of tuple
        New batch index rows ``(key, digest, first_seq, count, posted_at_us, ordinal)``.
    deltas : list of (account, asset, delta)
        Non-zero balance changes [minor units], to add to the stored balances.
    """

    results: list[PostedBatch]
    journal: list[JournalTuple]
    index: list[tuple[str, bytes, int, int, int, int]]
    deltas: list[tuple[str, str, int]]


def covered_debits(batches: Sequence[Batch]) -> set[tuple[str, Asset]]:
    """The ``(account, asset)`` pairs whose debits must be covered by their balance."""
    return {
        (t.debit, t.asset)
        for b in batches
        for t in b.transfers
        if not may_overdraw(t.debit, t.code)
    }


def plan_posting(
    batches: Sequence[Batch],
    posted_at_us: int,
    head: tuple[int, bytes],
    last_ordinal: int,
    balances: dict[tuple[str, Asset], int],
    find_batch: Callable[[str], BatchRow | None],
) -> PostingPlan:
    """Decide what posting ``batches`` writes, or raise without writing anything.

    Parameters
    ----------
    batches : sequence of Batch
        Already checked by :func:`settlement.ledger.validate_batch`.
    posted_at_us : int
        Posting time [µs since the epoch, UTC].
    head : (int, bytes)
        The last journal row's sequence number and hash (``(0, GENESIS_HASH)`` if empty).
    last_ordinal : int
        The largest batch ordinal stored (0 if none).
    balances : dict of (account, asset) to int
        Current balances of at least :func:`covered_debits` ``(batches)`` [minor units];
        updated in place as transfers are planned.
    find_batch : callable
        The store's batch index lookup, read inside the same transaction.

    Raises
    ------
    IdempotencyConflictError, InsufficientFundsError, BatchRejectedError
        The store must then roll back: nothing is posted.
    """
    seq, previous = head
    ordinal = last_ordinal
    results: list[PostedBatch] = []
    journal: list[JournalTuple] = []
    index: list[tuple[str, bytes, int, int, int, int]] = []
    deltas: dict[tuple[str, str], int] = {}
    new_keys: set[str] = set()
    for batch in batches:
        existing = find_batch(batch.key)
        if existing is None and batch.key in new_keys:
            msg = f"batch key {batch.key!r} appears twice in one post_many call"
            raise IdempotencyConflictError(msg)
        if existing is not None:
            digest, first_seq, count, first_at = existing
            if digest != batch.digest:
                msg = (
                    f"batch key {batch.key!r} was already posted with different content "
                    f"(at {from_us(first_at).isoformat()}); use a new key for a new batch"
                )
                raise IdempotencyConflictError(msg)
            results.append(PostedBatch(batch.key, first_seq, count, from_us(first_at), True))
            continue
        _check_preconditions(batch, new_keys, find_batch)
        for t in batch.transfers:
            if not may_overdraw(t.debit, t.code):
                key = (t.debit, t.asset)
                before = balances.get(key, 0)
                if before < t.amount:
                    msg = (
                        f"batch {batch.key!r}: {t.debit} holds {before} {t.asset.value} "
                        f"minor units, {t.code!r} needs {t.amount}; top the account up "
                        "or move less"
                    )
                    raise InsufficientFundsError(msg)
                balances[key] = before - t.amount
            credit_key = (t.credit, t.asset)
            if credit_key in balances:
                balances[credit_key] += t.amount
        first_seq = seq + 1
        for t in batch.transfers:
            seq += 1
            asset = t.asset.value
            previous = chain_hash(
                previous, seq, batch.key, t.code, t.debit, t.credit, asset, t.amount, posted_at_us
            )
            journal.append(
                (seq, batch.key, t.code, t.debit, t.credit, asset, t.amount, posted_at_us, previous)
            )
            debit_key = (t.debit, asset)
            deltas[debit_key] = deltas.get(debit_key, 0) - t.amount
            credit_key2 = (t.credit, asset)
            deltas[credit_key2] = deltas.get(credit_key2, 0) + t.amount
        ordinal += 1
        count = len(batch.transfers)
        index.append(
            (batch.key, batch.digest, first_seq if count else 0, count, posted_at_us, ordinal)
        )
        new_keys.add(batch.key)
        results.append(
            PostedBatch(batch.key, first_seq if count else 0, count, from_us(posted_at_us))
        )
    return PostingPlan(results, journal, index, [(a, s, d) for (a, s), d in deltas.items() if d])


def _check_preconditions(
    batch: Batch, new_keys: set[str], find_batch: Callable[[str], BatchRow | None]
) -> None:
    for key in batch.requires_present:
        if key not in new_keys and find_batch(key) is None:
            msg = f"batch {batch.key!r} needs batch {key!r} to have been posted first"
            raise BatchRejectedError(msg)
    for key in batch.requires_absent:
        if key in new_keys or find_batch(key) is not None:
            msg = f"batch {batch.key!r} cannot be posted: batch {key!r} already was"
            raise BatchRejectedError(msg)
