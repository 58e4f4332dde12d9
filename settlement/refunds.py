"""Refunds: the operator gives a customer money back, as ordinary balanced ledger batches.

Two kinds, both posted under the operator's idempotency key ``refund:<key>`` (re-posting
the same refund returns the first result; the same key for another refund is refused):

- **over-charge**: coins the customer paid in error (a faulty reading, an outage that was
  billed) come back to their account from the operator's fee income
  (:data:`settlement.ledger.UTILITY`). The ledger refuses it if the fee account holds
  less: coins are never created by a refund, and no balance goes below zero.
- **top-up**: part or all of a fiat top-up (payment ``P``, credited ``C`` micro-coins at
  price ``p``) is paid back. ``c ≤ C`` micro-coins leave the customer's account for
  :data:`~settlement.ledger.FIAT_BRIDGE` (where coins return when they leave
  circulation) and ``c × p`` of fiat leaves :data:`~settlement.ledger.FIAT_RESERVE` for
  :data:`~settlement.ledger.FIAT_PROCESSOR` (the account of money leaving the utility).
  Handing the money over — cash at the kiosk or a payout by the processor — happens
  outside the ledger; no call to the processor is made here. The account must still hold
  ``c`` (no refund of coins already spent). A top-up is refunded at most once:
  an empty marker batch ``refund:topup:<P>`` is posted in the same transaction and the
  refund requires it absent, so two refunds of one payment cannot both pass, whatever
  their keys.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from settlement.ledger import (
    FIAT_BRIDGE,
    FIAT_PROCESSOR,
    FIAT_RESERVE,
    MAX_AMOUNT,
    UTILITY,
    Asset,
    Batch,
    IdempotencyConflictError,
    LedgerError,
    PostedBatch,
    Transfer,
)
from settlement.store import LedgerStore

__all__ = [
    "REFUND_KEY",
    "RefundError",
    "RefundKind",
    "RefundPlan",
    "plan_refund",
    "post_refund",
    "refund_batch_key",
]

REFUND_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""An operator's idempotency key: 1–64 ASCII letters, digits, ``_ . -`` (no ``:``, so a key
can never name another family's batch)."""


class RefundError(LedgerError):
    """A refund the ledger's rules refuse (unknown top-up, wrong account, too much)."""


class RefundKind(enum.StrEnum):
    """What is refunded."""

    OVERCHARGE = "overcharge"
    """Coins charged in error, paid back from the operator's fee income."""
    TOPUP = "topup"
    """A fiat top-up, paid back through the payment processor."""


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """The batches one refund posts, atomically.

    Attributes
    ----------
    batches : tuple of Batch
        The refund (first) and, for a top-up, its once-only marker.
    fiat_minor : int
        Fiat the processor pays back [millionths of a fiat minor unit]; 0 for an over-charge.
    """

    batches: tuple[Batch, ...]
    fiat_minor: int = 0


def refund_batch_key(key: str) -> str:
    """The ledger batch key of a refund made under the operator's key ``key``.

    Examples
    --------
    >>> refund_batch_key("H001-2026-08-01")
    'refund:H001-2026-08-01'
    """
    return f"refund:{key}"


def _check(account: str, amount_minor: int, key: str) -> None:
    if REFUND_KEY.fullmatch(key) is None:
        msg = f"refund key {key[:70]!r}: 1–64 ASCII letters, digits, '_', '.', '-'"
        raise RefundError(msg)
    family, _, name = account.partition(":")
    if family not in ("meter", "user") or REFUND_KEY.fullmatch(name) is None:
        msg = f"a refund credits a meter:<id> or user:<id> account, not {account[:70]!r}"
        raise RefundError(msg)
    if type(amount_minor) is not int or not 0 < amount_minor <= MAX_AMOUNT:
        msg = f"refund amount must be an int of micro-coins in 1…{MAX_AMOUNT}, got {amount_minor!r}"
        raise RefundError(msg)


def plan_refund(
    store: LedgerStore,
    kind: RefundKind,
    account: str,
    amount_minor: int,
    key: str,
    payment_id: str | None = None,
) -> RefundPlan:
    """The batches of a refund (module docstring); reads the store, writes nothing.

    Parameters
    ----------
    store : LedgerStore
        The ledger (a top-up refund reads the original payment's batch).
    kind : RefundKind
        Over-charge or top-up.
    account : str
        The customer's account, ``meter:<id>`` or ``user:<id>``.
    amount_minor : int
        Coins to refund [micro-coins], > 0.
    key : str
        The operator's idempotency key (:data:`REFUND_KEY`).
    payment_id : str, optional
        The top-up's payment id (``kind`` top-up only).

    Raises
    ------
    RefundError
        Malformed input; a top-up that does not exist, credited another account, or was
        smaller than the refund.
    """
    _check(account, amount_minor, key)
    batch_key = refund_batch_key(key)
    if kind is RefundKind.OVERCHARGE:
        if payment_id is not None:
            msg = "an over-charge refund names no payment_id; use kind 'topup' to refund a top-up"
            raise RefundError(msg)
        transfer = Transfer(UTILITY, account, Asset.COIN, amount_minor, "refund.overcharge")
        return RefundPlan((Batch(batch_key, (transfer,)),))
    if payment_id is None:
        msg = "a top-up refund needs the payment_id of the top-up it pays back"
        raise RefundError(msg)
    payment = f"fiat:payment:{payment_id}"
    original = store.transfers_of(payment)
    coins = next((t for t in original if t.asset is Asset.COIN), None)
    fiat = next((t for t in original if t.asset is Asset.FIAT and t.credit == FIAT_RESERVE), None)
    if coins is None or fiat is None:
        msg = f"no top-up {payment_id!r} in the ledger; give the payment id of a credited top-up"
        raise RefundError(msg)
    if coins.credit != account:
        msg = f"top-up {payment_id!r} credited {coins.credit}, not {account}; refund it there"
        raise RefundError(msg)
    if amount_minor > coins.amount:
        msg = (
            f"top-up {payment_id!r} credited {coins.amount} micro-coins; a refund of "
            f"{amount_minor} is more than was paid"
        )
        raise RefundError(msg)
    # The top-up converted fiat at exactly coins × price (settlement.fiat.topup_batch).
    price = fiat.amount // coins.amount
    fiat_minor = amount_minor * price
    marker = f"refund:topup:{payment_id}"
    refund = Batch(
        batch_key,
        (
            Transfer(account, FIAT_BRIDGE, Asset.COIN, amount_minor, "fiat.refund"),
            Transfer(FIAT_RESERVE, FIAT_PROCESSOR, Asset.FIAT, fiat_minor, "fiat.refund"),
        ),
        requires_present=(payment,),
        requires_absent=(marker,),
    )
    return RefundPlan((refund, Batch(marker, ())), fiat_minor)


def post_refund(store: LedgerStore, plan: RefundPlan, now: datetime | None = None) -> PostedBatch:
    """Post a refund's batches in one transaction; returns the refund batch.

    Raises
    ------
    settlement.ledger.InsufficientFundsError
        The source (fee income, or the customer's coins for a top-up) holds too little.
    settlement.ledger.IdempotencyConflictError
        The key was used for another refund.
    settlement.ledger.BatchRejectedError
        The top-up was refunded before.
    """
    refund, *marker = plan.batches
    if marker and store.posted(refund.key) and store.posted(marker[0].key) is None:
        # Same key and same transfers, another payment: a replay would mark that payment
        # refunded without paying it back.
        msg = f"refund key {refund.key!r} was used to refund another top-up; use a new key"
        raise IdempotencyConflictError(msg)
    return store.post_many(plan.batches, now)[0]
