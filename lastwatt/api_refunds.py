"""Refunds from the operator console, included by :mod:`lastwatt.api_console`.

=====================================  ==========  ==============================================
endpoint                               who         refusal
=====================================  ==========  ==============================================
``POST /api/refunds``                  operator    401 / 403 / 404 unknown account / 409 too
                                                   little to pay from, top-up refunded before,
                                                   key used for another refund / 422 malformed
``GET /api/refunds``                   operator    401 / 403 / 422
=====================================  ==========  ==============================================

The money moves in the ledger (:mod:`settlement.refunds`); the operator's reason, who
refunded and when are kept beside it in the service's own SQLite file (:class:`RefundLog`),
keyed by the ledger batch, so a customer's history shows why each refund was made. The
ledger is posted first: a request repeated after a crash between the two writes replays
the batch and records the reason then.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Depends() annotations,
# which name this module's closures.
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from lastwatt.api_models import VISIBLE_TEXT
from lastwatt.auth import User
from settlement import Asset, InsufficientFundsError
from settlement.fiat import ID_PATTERN
from settlement.ledger import MAX_AMOUNT, BatchRejectedError, IdempotencyConflictError, LedgerError
from settlement.refunds import (
    REFUND_KEY,
    RefundError,
    RefundKind,
    plan_refund,
    post_refund,
    refund_batch_key,
)

if TYPE_CHECKING:
    from lastwatt.service import Service

__all__ = ["Refund", "RefundAnswer", "RefundLog", "RefundRequest", "Refunds", "router"]

_log = logging.getLogger(__name__)

_ACCOUNT = r"^(meter|user):[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    batch TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    account TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    payment_id TEXT,
    reason TEXT NOT NULL,
    refunded_by TEXT NOT NULL,
    refunded_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refunds_account ON refunds (account, refunded_at);
"""


class RefundRequest(BaseModel):
    """A refund to a customer's account (strict: no coercion, no unknown fields)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    account: str = Field(
        pattern=_ACCOUNT, description="The customer's account: meter:<connection> or user:<name>"
    )
    kind: Literal["overcharge", "topup"] = Field(
        description="overcharge: coins back from the fee income; topup: a top-up paid back"
    )
    amount_minor: int = Field(
        gt=0, le=MAX_AMOUNT, description="Coins to refund [micro-coins; 1 coin = 1 000 000]"
    )
    payment_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN.pattern,
        description="The top-up's payment id (kind topup only)",
    )
    reason: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=3, max_length=200, pattern=VISIBLE_TEXT
        ),
    ]
    key: str = Field(
        pattern=REFUND_KEY.pattern,
        description="Idempotency key: the same request again returns the first refund",
    )

    @model_validator(mode="after")
    def _payment_matches_kind(self) -> "RefundRequest":
        if self.kind == "topup" and self.payment_id is None:
            msg = "payment_id: a top-up refund names the payment it pays back"
            raise ValueError(msg)
        if self.kind == "overcharge" and self.payment_id is not None:
            msg = "payment_id: an over-charge refund names no payment (use kind 'topup')"
            raise ValueError(msg)
        return self


class Refund(BaseModel):
    """A refund as recorded: the ledger batch and the operator's reason."""

    batch: str
    kind: str
    account: str
    amount_minor: int = Field(description="Coins refunded [micro-coins]")
    payment_id: str | None
    reason: str
    refunded_by: str
    refunded_at: str


class RefundAnswer(Refund):
    """A posted (or replayed) refund and the account's balance after it."""

    replayed: bool
    fiat_minor: int = Field(
        description="Fiat the processor pays back [millionths of a fiat minor unit]; 0 for "
        "an over-charge"
    )
    balance_minor: int = Field(description="The account's coin balance now [micro-coins]")


class Refunds(BaseModel):
    """Refunds, newest first."""

    refunds: list[Refund]


class RefundLog:
    """Why each refund was made, in a SQLite file (normally the service's state file).

    Parameters
    ----------
    path : str or Path
        The SQLite file (``":memory:"`` for tests).
    """

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA busy_timeout = 10000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def record(self, refund: Refund) -> None:
        """Record a refund once; a replay keeps the first record."""
        self._db.execute(
            "INSERT INTO refunds VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(batch) DO NOTHING",
            (
                refund.batch,
                refund.kind,
                refund.account,
                refund.amount_minor,
                refund.payment_id,
                refund.reason,
                refund.refunded_by,
                refund.refunded_at,
            ),
        )

    def get(self, batch: str) -> Refund | None:
        """The refund posted as ``batch``, or None."""
        found = self.notes([batch])
        return found.get(batch)

    def notes(self, batches: Iterable[str]) -> dict[str, Refund]:
        """The refunds among ``batches`` (ledger batch keys), by batch."""
        keys = [b for b in set(batches) if b.startswith("refund:")]
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        # Only "?" placeholders are formatted in; the keys are bound.
        rows = self._db.execute(f"SELECT * FROM refunds WHERE batch IN ({marks})", keys)
        return {row[0]: _refund(row) for row in rows}

    def of(self, account: str | None = None, limit: int = 100) -> list[Refund]:
        """Refunds, newest first; of one account if given."""
        if account is None:
            rows = self._db.execute(
                "SELECT * FROM refunds ORDER BY refunded_at DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._db.execute(
                "SELECT * FROM refunds WHERE account = ? ORDER BY refunded_at DESC LIMIT ?",
                (account, limit),
            )
        return [_refund(row) for row in rows]


def _refund(row: tuple[str, str, str, int, str | None, str, str, str]) -> Refund:
    batch, kind, account, amount, payment_id, reason, by, at = row
    return Refund(
        batch=batch,
        kind=kind,
        account=account,
        amount_minor=amount,
        payment_id=payment_id,
        reason=reason,
        refunded_by=by,
        refunded_at=at,
    )


def router(
    service: "Service", log: RefundLog, operator: Callable[..., Awaitable[User]]
) -> APIRouter:
    """The refund routes over a started service (module docstring)."""
    api = APIRouter(tags=["payments"])
    meters = {f"meter:{c.id}" for c in service.site.connections}

    def account_or_404(account: str) -> None:
        if account.startswith("meter:"):
            if account not in meters:
                raise HTTPException(404, f"no connection {account[6:]!r} at this site")
        elif not service.store.history(account, 1):
            # A wallet the ledger never touched was never charged nor topped up.
            raise HTTPException(404, f"{account} has no transactions to refund")

    @api.post("/api/refunds")
    async def refund(body: RefundRequest, who: Annotated[User, Depends(operator)]) -> RefundAnswer:
        """Refund a customer: an over-charge from the fee income, or a top-up paid back."""
        account_or_404(body.account)
        batch = refund_batch_key(body.key)
        earlier = log.get(batch)
        asked = (body.kind, body.account, body.amount_minor, body.payment_id, body.reason)
        if earlier is not None and asked != (
            earlier.kind,
            earlier.account,
            earlier.amount_minor,
            earlier.payment_id,
            earlier.reason,
        ):
            raise HTTPException(
                409, f"refund key {body.key!r} was used for another refund; use a new key"
            )
        now: datetime = service.clock.now()
        try:
            plan = plan_refund(
                service.store,
                RefundKind(body.kind),
                body.account,
                body.amount_minor,
                body.key,
                body.payment_id,
            )
            posted = post_refund(service.store, plan, now)
        except RefundError as exc:
            raise HTTPException(422, str(exc)) from None
        except InsufficientFundsError as exc:
            source = "the operator's fee income" if body.kind == "overcharge" else body.account
            raise HTTPException(409, f"{source} cannot pay this refund: {exc}") from None
        except IdempotencyConflictError as exc:
            raise HTTPException(
                409, f"refund key {body.key!r} was used for another refund; use a new key ({exc})"
            ) from None
        except BatchRejectedError:
            raise HTTPException(
                409, f"top-up {body.payment_id!r} was refunded before; a top-up is refunded once"
            ) from None
        except LedgerError as exc:
            raise HTTPException(409, str(exc)) from None
        record = earlier or Refund(
            batch=batch,
            kind=body.kind,
            account=body.account,
            amount_minor=body.amount_minor,
            payment_id=body.payment_id,
            reason=body.reason,
            refunded_by=who.name,
            refunded_at=posted.posted_at.isoformat(),
        )
        log.record(record)
        if not posted.replayed:
            _log.info(
                "%s refunded %d micro-coins to %s (%s): %r",
                who.name,
                body.amount_minor,
                body.account,
                body.kind,
                body.reason,
            )
        return RefundAnswer(
            **record.model_dump(),
            replayed=posted.replayed,
            fiat_minor=plan.fiat_minor,
            balance_minor=service.store.balance(body.account, Asset.COIN),
        )

    @api.get("/api/refunds")
    async def refunds(
        _: Annotated[User, Depends(operator)],
        account: Annotated[str | None, Query(pattern=_ACCOUNT)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Refunds:
        """Refunds with their reasons, newest first; of one account if given."""
        return Refunds(refunds=log.of(account, limit))

    return api
