"""Funding and withdrawals: plain transfers between accounts.

Anyone may fund any meter (a street light, the clinic): coins move from the funder's
account to the meter's. Withdrawals move coins *out of* an account and only its owner
(as registered with :meth:`settlement.store.LedgerStore.set_owner`, or the user of a
``user:<id>`` wallet) may make them.
"""

from __future__ import annotations

from datetime import datetime

from settlement.ledger import (
    Asset,
    Batch,
    LedgerError,
    PostedBatch,
    Transfer,
    meter_account,
    user_account,
)
from settlement.store import LedgerStore

__all__ = ["NotOwnerError", "fund_meter", "owner_of", "withdraw"]


class NotOwnerError(LedgerError):
    """Someone tried to move coins out of an account that is not theirs."""


def owner_of(store: LedgerStore, account: str) -> str | None:
    """Who may withdraw from ``account``: ``user:<id>`` wallets belong to ``<id>``."""
    if account.startswith("user:"):
        return account.removeprefix("user:")
    return store.owner_of(account)


def fund_meter(
    store: LedgerStore,
    funder: str,
    meter_id: str,
    amount_minor: int,
    key: str,
    now: datetime | None = None,
) -> PostedBatch:
    """Fund a meter from the funder's wallet; anyone may fund any meter.

    Parameters
    ----------
    store : LedgerStore
        The ledger.
    funder : str
        User id; the coins come from ``user:<funder>``.
    meter_id : str
        The meter (connection id) to fund.
    amount_minor : int
        Coin minor units, > 0.
    key : str
        Idempotency key of the request (e.g. the app's request id).
    now : datetime, optional
        Posting time.

    Raises
    ------
    settlement.ledger.InsufficientFundsError
        If the wallet holds less than the amount.
    """
    transfer = Transfer(
        user_account(funder), meter_account(meter_id), Asset.COIN, amount_minor, "fund"
    )
    return store.post(Batch(f"fund:{key}", (transfer,)), now)


def withdraw(
    store: LedgerStore,
    requester: str,
    from_account: str,
    to_account: str,
    amount_minor: int,
    key: str,
    now: datetime | None = None,
) -> PostedBatch:
    """Move coins out of the requester's own account.

    Raises
    ------
    NotOwnerError
        If ``from_account`` does not belong to ``requester``.
    settlement.ledger.InsufficientFundsError
        If it holds less than the amount.
    """
    owner = owner_of(store, from_account)
    if owner != requester:
        msg = (
            f"{requester!r} may not withdraw from {from_account}"
            + (f" (owned by {owner!r})" if owner else " (no owner registered)")
            + "; only an account's owner may withdraw — fund it instead"
        )
        raise NotOwnerError(msg)
    transfer = Transfer(from_account, to_account, Asset.COIN, amount_minor, "withdraw")
    return store.post(Batch(f"withdraw:{key}", (transfer,)), now)
