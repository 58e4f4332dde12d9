"""The fiat bridge: a payment processor's webhooks credit coins; withdrawals reserve first.

Webhook authentication
----------------------
The processor signs each call: header ``signature`` = hex HMAC-SHA256 over
``f"{timestamp}.".encode() + body`` with the shared secret, header ``timestamp`` = Unix
seconds. A call is accepted only with a valid signature (compared in constant time) and a
timestamp within ``timestamp_window_s`` of now, so a captured call cannot be replayed
later; within the window, replays are harmless because every effect is idempotent on the
processor's payment id.

Body (JSON)
-----------
``{"type": "payment", "payment_id": "pi_1", "account": "user:amina", "amount_fiat_minor": 1000}``
credits coins at the configured price. ``{"type": "withdrawal.succeeded" |
"withdrawal.failed", "withdrawal_id": "wd_1"}`` confirms or voids a reserved withdrawal.

Everything from outside is bounded before it is used: the timestamp is 1–12 ASCII
digits, the signature 64 hex digits, the body at most :data:`MAX_WEBHOOK_BODY` bytes
with integers of at most 18 digits and nesting of at most 8 levels, ids match
:data:`ID_PATTERN`, and a payment credits only an account the caller says exists (a
site meter or a known user), never one the processor invents.

Booking a top-up of ``F`` fiat minor units at ``P`` fiat minor units per coin
-------------------------------------------------------------------------------------
``coins = floor(F × COIN_SCALE / P)`` micro-coins go from ``fiat:bridge`` to the account;
in the fiat asset (millionths of a fiat minor unit) ``coins × P`` go from
``fiat:processor`` to ``fiat:reserve`` and the remainder ``F × 10⁶ − coins × P`` — fiat
that bought less than one micro-coin — to ``fiat:rounding``. Nothing is lost to rounding.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from microgrid.units import COIN_SCALE
from settlement.funding import NotOwnerError, owner_of
from settlement.ledger import (
    ASSET_SCALE,
    FIAT_BRIDGE,
    FIAT_PROCESSOR,
    FIAT_RESERVE,
    FIAT_ROUNDING,
    FIAT_WITHDRAWALS_PENDING,
    MAX_AMOUNT,
    Asset,
    Batch,
    LedgerError,
    PostedBatch,
    Transfer,
)
from settlement.store import LedgerStore

__all__ = [
    "ID_PATTERN",
    "MAX_WEBHOOK_BODY",
    "FiatConfig",
    "Topup",
    "WebhookAuthError",
    "WebhookRejectedError",
    "confirm_withdrawal",
    "handle_webhook",
    "reserve_withdrawal",
    "sign_webhook",
    "topup_batch",
    "verify_webhook",
    "void_withdrawal",
]

# Coins and the fiat asset share a scale, so coins × price is exact in fiat units.
assert ASSET_SCALE[Asset.FIAT] == COIN_SCALE


MAX_WEBHOOK_BODY = 16_384
"""Largest webhook body accepted [bytes]; a processor's event is a few hundred."""
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
"""A processor's payment or withdrawal id: 1–100 ASCII letters, digits and ``_ . : -``
(it becomes part of a batch key, so no spaces, slashes or control characters)."""

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")
_MAX_INT_DIGITS = 18  # below int64; an amount is further bounded by MAX_AMOUNT
_MAX_DEPTH = 8


class WebhookRejectedError(LedgerError):
    """A webhook call failed authentication or is malformed (answer it with HTTP 4xx)."""


class WebhookAuthError(WebhookRejectedError):
    """A webhook call's timestamp or signature is missing, malformed, stale or wrong (401)."""


@dataclass(frozen=True, slots=True)
class FiatConfig:
    """The bridge's settings.

    Attributes
    ----------
    secret : bytes
        Shared HMAC secret with the processor (not shown in repr).
    coin_price_fiat_minor : int
        Price of one coin in fiat minor units (e.g. 650 for 650 XOF, 100 for $1.00).
    timestamp_window_s : int
        Largest accepted difference between a call's timestamp and now [s].
    """

    secret: bytes = field(repr=False)
    coin_price_fiat_minor: int
    timestamp_window_s: int = 300

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            msg = (
                "the webhook secret must be at least 16 bytes; generate one with "
                "secrets.token_bytes(32)"
            )
            raise ValueError(msg)
        if self.coin_price_fiat_minor <= 0:
            msg = f"coin_price_fiat_minor must be > 0, got {self.coin_price_fiat_minor}"
            raise ValueError(msg)
        if self.timestamp_window_s <= 0:
            msg = f"timestamp_window_s must be > 0, got {self.timestamp_window_s}"
            raise ValueError(msg)


def sign_webhook(secret: bytes, timestamp: int, body: bytes) -> str:
    """The signature a processor sends: hex HMAC-SHA256 of ``"<timestamp>." + body``.

    Examples
    --------
    >>> sign_webhook(b"0123456789abcdef", 1700000000, b"{}")[:16]
    'e4f8e2ecae2295b2'
    """
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_webhook(
    config: FiatConfig, body: bytes, signature: str, timestamp: str, now: datetime
) -> dict[str, object]:
    """Authenticate a webhook call and parse its JSON body.

    Raises
    ------
    WebhookAuthError
        Malformed or stale timestamp, malformed or wrong signature.
    WebhookRejectedError
        A body over the size limit or not a bounded JSON object.
    """
    if len(body) > MAX_WEBHOOK_BODY:
        msg = f"webhook body is {len(body)} bytes; at most {MAX_WEBHOOK_BODY} are accepted"
        raise WebhookRejectedError(msg)
    if _TIMESTAMP.fullmatch(timestamp) is None:
        msg = f"webhook timestamp {timestamp[:40]!r} is not Unix seconds (1–12 ASCII digits)"
        raise WebhookAuthError(msg)
    sent = int(timestamp)
    skew = abs(now.timestamp() - sent)
    if skew > config.timestamp_window_s:
        msg = (
            f"webhook timestamp is {skew:.0f} s away from now (window "
            f"{config.timestamp_window_s} s): a replay or a wrong clock — check NTP"
        )
        raise WebhookAuthError(msg)
    given = signature.strip()
    if _SIGNATURE.fullmatch(given) is None:
        msg = "webhook signature must be 64 hex digits (HMAC-SHA256); check the header"
        raise WebhookAuthError(msg)
    expected = sign_webhook(config.secret, sent, body)
    if not hmac.compare_digest(expected.encode(), given.lower().encode()):
        msg = "webhook signature does not match; check the shared secret"
        raise WebhookAuthError(msg)
    payload = _parse_json(body)
    if not isinstance(payload, dict):
        msg = "webhook body must be a JSON object"
        raise WebhookRejectedError(msg)
    return payload


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        msg = f"webhook body has an integer of {len(text)} digits; at most {_MAX_INT_DIGITS}"
        raise WebhookRejectedError(msg)
    return int(text)


def _parse_json(body: bytes) -> object:
    """Parse a bounded JSON body; every failure is a :class:`WebhookRejectedError`."""
    if body.count(b"[") + body.count(b"{") > _MAX_DEPTH and _too_deep(body):
        msg = f"webhook body nests deeper than {_MAX_DEPTH} levels"
        raise WebhookRejectedError(msg)
    try:
        payload = json.loads(body, parse_int=_bounded_int)
    except WebhookRejectedError:
        raise
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError included
        msg = "webhook body is not JSON (UTF-8, at most 18-digit integers)"
        raise WebhookRejectedError(msg) from None
    return payload


def _too_deep(body: bytes) -> bool:
    """Whether brackets outside strings nest deeper than the limit.

    Checked before parsing, so a deeply nested body never reaches the recursive parser.
    """
    level, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            level += 1
            if level > _MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            level -= 1
    return False


@dataclass(frozen=True, slots=True)
class Topup:
    """A credited payment.

    Attributes
    ----------
    payment_id, account : str
        The processor's id and the credited account.
    coins_minor : int
        Coins credited [micro-coins].
    remainder_fiat : int
        Fiat that bought less than a micro-coin [millionths of a fiat minor unit].
    posted : PostedBatch
        The batch (``replayed`` if the payment had been credited before).
    """

    payment_id: str
    account: str
    coins_minor: int
    remainder_fiat: int
    posted: PostedBatch


def topup_batch(
    payment_id: str, account: str, amount_fiat_minor: int, config: FiatConfig
) -> tuple[Batch, int, int]:
    """The batch crediting a payment, with the coins and the fiat remainder (module doc).

    Examples
    --------
    >>> cfg = FiatConfig(b"0123456789abcdef", coin_price_fiat_minor=650)
    >>> _, coins, rest = topup_batch("pi_1", "user:amina", 1000, cfg)
    >>> coins, rest, coins * 650 + rest == 1000 * 1_000_000
    (1538461, 350, True)
    """
    family, _, name = account.partition(":")
    if family not in ("user", "meter") or ID_PATTERN.fullmatch(name) is None:
        msg = f"a top-up credits a user:<id> or meter:<id> account, not {account[:60]!r}"
        raise WebhookRejectedError(msg)
    largest = MAX_AMOUNT // ASSET_SCALE[Asset.FIAT]
    if type(amount_fiat_minor) is not int or not 0 < amount_fiat_minor <= largest:
        msg = f"amount_fiat_minor must be a positive int up to {largest}, got {amount_fiat_minor!r}"
        raise WebhookRejectedError(msg)
    price = config.coin_price_fiat_minor
    coins = amount_fiat_minor * COIN_SCALE // price
    if coins == 0:
        msg = f"{amount_fiat_minor} fiat minor units buy less than one micro-coin at {price}/coin"
        raise WebhookRejectedError(msg)
    converted = coins * price
    remainder = amount_fiat_minor * ASSET_SCALE[Asset.FIAT] - converted
    transfers = [
        Transfer(FIAT_PROCESSOR, FIAT_RESERVE, Asset.FIAT, converted, "fiat.topup"),
        Transfer(FIAT_BRIDGE, account, Asset.COIN, coins, "fiat.topup"),
    ]
    if remainder:
        transfers.append(
            Transfer(FIAT_PROCESSOR, FIAT_ROUNDING, Asset.FIAT, remainder, "fiat.rounding")
        )
    return Batch(f"fiat:payment:{payment_id}", tuple(transfers)), coins, remainder


def _text(payload: dict[str, object], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        msg = f"webhook body needs a non-empty string {name!r}"
        raise WebhookRejectedError(msg)
    return value


def _id(payload: dict[str, object], name: str) -> str:
    value = _text(payload, name)
    if ID_PATTERN.fullmatch(value) is None:
        msg = (
            f"webhook {name} {value[:40]!r} must be 1–100 ASCII letters, digits or _ . : - "
            "starting with a letter or digit"
        )
        raise WebhookRejectedError(msg)
    return value


def handle_webhook(
    store: LedgerStore,
    config: FiatConfig,
    body: bytes,
    signature: str,
    timestamp: str,
    now: datetime | None = None,
    account_exists: Callable[[str], bool] | None = None,
) -> Topup | PostedBatch:
    """Authenticate and apply one processor call; safe to receive any number of times.

    A ``payment`` with a negative ``amount_fiat_minor`` is seed 002's ``addFiat`` for a
    producer who sold coins: it names the reserved ``withdrawal_id`` and confirms it,
    if account and amount match the reservation.

    Parameters
    ----------
    account_exists : callable, optional
        Whether a ``user:``/``meter:`` account may be credited (a site meter or a known
        user); a payment to any other account is refused. None accepts any well-formed
        account id (for tools that post to a ledger without a site).

    Returns
    -------
    Topup or PostedBatch
        A :class:`Topup` for a payment; the confirm/void batch for a withdrawal event.

    Raises
    ------
    WebhookRejectedError
        Authentication failed or the body is malformed (HTTP 400/401).
    settlement.ledger.IdempotencyConflictError
        The payment id was credited before with a different amount or account (HTTP 409).
    """
    payload = verify_webhook(config, body, signature, timestamp, now or datetime.now(UTC))
    kind = payload.get("type", "payment")
    if kind == "payment":
        payment_id = _id(payload, "payment_id")
        account = _text(payload, "account")
        if account_exists is not None and not account_exists(account):
            msg = (
                f"webhook account {account[:60]!r} does not exist; a payment credits a "
                "site meter (meter:<id>) or a known user's wallet (user:<name>)"
            )
            raise WebhookRejectedError(msg)
        amount = payload.get("amount_fiat_minor")
        if type(amount) is not int:
            msg = "webhook body needs an integer 'amount_fiat_minor'"
            raise WebhookRejectedError(msg)
        if amount < 0:  # seed 002's addFiat with a negative amount: a producer cashed out
            withdrawal_id = _text(payload, "withdrawal_id")
            _check_paid_out(store, withdrawal_id, account, -amount, config)
            return confirm_withdrawal(store, withdrawal_id, config, now)
        batch, coins, remainder = topup_batch(payment_id, account, amount, config)
        return Topup(payment_id, account, coins, remainder, store.post(batch, now))
    if kind == "withdrawal.succeeded":
        return confirm_withdrawal(store, _id(payload, "withdrawal_id"), config, now)
    if kind == "withdrawal.failed":
        return void_withdrawal(store, _id(payload, "withdrawal_id"), now)
    msg = (
        f"unknown webhook type {str(kind)[:40]!r}; expected payment, "
        "withdrawal.succeeded or .failed"
    )
    raise WebhookRejectedError(msg)


def _check_paid_out(
    store: LedgerStore, withdrawal_id: str, account: str, paid_fiat_minor: int, config: FiatConfig
) -> None:
    """A negative payment must match its reserved withdrawal's account and amount."""
    reserved = _reserved(store, withdrawal_id)
    owed = reserved.amount * config.coin_price_fiat_minor  # [fiat minor × 10⁻⁶]
    if (
        reserved.debit != account
        or abs(paid_fiat_minor * ASSET_SCALE[Asset.FIAT] - owed) >= (ASSET_SCALE[Asset.FIAT])
    ):
        msg = (
            f"withdrawal {withdrawal_id!r} reserved {reserved.amount} micro-coins of "
            f"{reserved.debit} (≈ {owed // ASSET_SCALE[Asset.FIAT]} fiat minor units); the "
            f"processor reports {paid_fiat_minor} paid out of {account}"
        )
        raise WebhookRejectedError(msg)


def _withdrawal_key(withdrawal_id: str, step: str) -> str:
    return f"fiat:withdrawal:{withdrawal_id}:{step}"


def reserve_withdrawal(
    store: LedgerStore,
    requester: str,
    account: str,
    coins_minor: int,
    withdrawal_id: str,
    now: datetime | None = None,
) -> PostedBatch:
    """Reserve coins for a fiat withdrawal; only the account's owner may.

    Raises
    ------
    settlement.funding.NotOwnerError
        If the account is not the requester's.
    settlement.ledger.InsufficientFundsError
        If it holds fewer coins.
    """
    owner = owner_of(store, account)
    if owner != requester:
        msg = f"{requester!r} may not withdraw from {account}; only its owner may"
        raise NotOwnerError(msg)
    transfer = Transfer(account, FIAT_WITHDRAWALS_PENDING, Asset.COIN, coins_minor, "fiat.reserve")
    return store.post(Batch(_withdrawal_key(withdrawal_id, "reserve"), (transfer,)), now)


def _reserved(store: LedgerStore, withdrawal_id: str) -> Transfer:
    transfers = store.transfers_of(_withdrawal_key(withdrawal_id, "reserve"))
    if not transfers:
        msg = f"no reserved withdrawal {withdrawal_id!r}; reserve it first"
        raise LedgerError(msg)
    return transfers[0]


def confirm_withdrawal(
    store: LedgerStore, withdrawal_id: str, config: FiatConfig, now: datetime | None = None
) -> PostedBatch:
    """The processor paid out: the reserved coins return to the bridge, fiat leaves."""
    reserved = _reserved(store, withdrawal_id)
    batch = Batch(
        _withdrawal_key(withdrawal_id, "confirm"),
        (
            Transfer(
                FIAT_WITHDRAWALS_PENDING, FIAT_BRIDGE, Asset.COIN, reserved.amount, "fiat.withdraw"
            ),
            Transfer(
                FIAT_RESERVE,
                FIAT_PROCESSOR,
                Asset.FIAT,
                reserved.amount * config.coin_price_fiat_minor,
                "fiat.withdraw",
            ),
        ),
        requires_present=(_withdrawal_key(withdrawal_id, "reserve"),),
        requires_absent=(_withdrawal_key(withdrawal_id, "void"),),
    )
    return store.post(batch, now)


def void_withdrawal(
    store: LedgerStore, withdrawal_id: str, now: datetime | None = None
) -> PostedBatch:
    """The payout failed: the reserved coins go back to the account."""
    reserved = _reserved(store, withdrawal_id)
    batch = Batch(
        _withdrawal_key(withdrawal_id, "void"),
        (
            Transfer(
                FIAT_WITHDRAWALS_PENDING, reserved.debit, Asset.COIN, reserved.amount, "fiat.void"
            ),
        ),
        requires_present=(_withdrawal_key(withdrawal_id, "reserve"),),
        requires_absent=(_withdrawal_key(withdrawal_id, "confirm"),),
    )
    return store.post(batch, now)
