"""The double-entry ledger's pure core: assets, accounts, transfers, batches, hash chain.

Everything here is a value or a pure function; storage lives in :mod:`settlement.store`
and :mod:`settlement.sqlite_store`.

Model
-----
- An **asset** has integer minor units with an explicit scale (:data:`ASSET_SCALE`).
- An **account** is a string id, ``"<family>:<name>"`` (``meter:H001``, ``user:amina``,
  ``pool:settlement``); it holds one balance per asset and needs no registration.
- A **transfer** moves ``amount > 0`` minor units of one asset from ``debit`` to
  ``credit``; the ledger therefore balances by construction (Σ balances = 0 per asset).
- A **batch** is the unit of atomicity and idempotency: a key, its transfers, and
  optional preconditions on other keys. Posting the same key with the same content again
  returns the first result; the same key with other content is a conflict.
- The **journal** is append-only, one row per transfer, each row hashed with the hash of
  the row before it: ``hash_i = SHA-256(hash_{i−1} ‖ canonical(row_i))`` with
  ``hash_0 = 32 zero bytes``. Editing, deleting or inserting a row breaks the chain at
  that row.

Balance rules
-------------
An account may go below zero only where the ledger allows it (:func:`may_overdraw`):

- ``fiat:bridge`` with ``fiat.*`` codes (the only place coins are created),
- ``fiat:processor`` for the fiat asset (money arriving from outside),
- ``stake:issuer`` with ``stake.*`` codes (the only place stake tokens are created),
- ``watt:battery`` with ``watt.*`` codes (WATT minted on charge, burned on discharge),
- a band contract's ``contract:<id>:receivable`` with ``contract.penalty`` (what the
  consumer owes once bonus and deposit are spent),
- any account with ``settle.*`` codes: energy already consumed must be paid for, so a
  meter may run into debt; prepaid control then opens its relay.

Every other transfer needs the debit account to hold the amount.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from microgrid.units import COIN_SCALE, STAKE_TOKEN_SCALE, WATT_SCALE

__all__ = [
    "ASSET_SCALE",
    "FIAT_BRIDGE",
    "FIAT_PROCESSOR",
    "FIAT_RESERVE",
    "FIAT_ROUNDING",
    "FIAT_WITHDRAWALS_PENDING",
    "GENESIS_HASH",
    "HELD",
    "MAX_AMOUNT",
    "MAX_BALANCE",
    "POOL",
    "STAKE_ISSUER",
    "STAKE_SLASHED",
    "STAKING_POOL",
    "UTILITY",
    "WATT_CODES",
    "WATT_ISSUER",
    "Asset",
    "Batch",
    "BatchRejectedError",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "JournalRow",
    "LedgerError",
    "PostedBatch",
    "Problem",
    "Transfer",
    "VerifiedPoint",
    "VerifyReport",
    "apply_transfers",
    "batch_digest",
    "chain_hash",
    "check_balance_bounds",
    "from_us",
    "is_clearing",
    "may_overdraw",
    "meter_account",
    "stake_account",
    "to_us",
    "user_account",
    "validate_batch",
    "verify_journal",
]


class Asset(enum.StrEnum):
    """What a balance counts."""

    COIN = "coin"
    """Electricity coins, in micro-coins (:data:`microgrid.units.COIN_SCALE`)."""
    STAKE = "stake"
    """Staking tokens, in micro-tokens (:data:`microgrid.units.STAKE_TOKEN_SCALE`)."""
    FIAT = "fiat"
    """Fiat money held for coins, in millionths of the currency's minor unit, so that the
    remainder of a fiat → coin conversion is booked exactly."""
    WATT = "watt"
    """Energo's storage tokens: 1 WATT = 1 kWh stored, counted in Wh
    (:data:`microgrid.units.WATT_SCALE`)."""


ASSET_SCALE: Mapping[Asset, int] = {
    Asset.COIN: COIN_SCALE,
    Asset.STAKE: STAKE_TOKEN_SCALE,
    Asset.FIAT: 1_000_000,
    Asset.WATT: WATT_SCALE,
}
"""Minor units per major unit (coin, token, fiat minor unit) of each asset."""

POOL = "pool:settlement"
"""Clearing account of hourly settlement; nets to zero in every batch."""
UTILITY = "utility:fees"
"""The utility's account: hourly fees."""
HELD = "settlement:held"
"""Payouts held while an hour's production is unknown or zero."""
FIAT_BRIDGE = "fiat:bridge"
"""The only account coins come from (fiat top-ups) and return to (fiat withdrawals)."""
FIAT_PROCESSOR = "fiat:processor"
"""Fiat money arriving from (and leaving to) the payment processor."""
FIAT_RESERVE = "fiat:reserve"
"""Fiat held by the utility against coins in circulation."""
FIAT_ROUNDING = "fiat:rounding"
"""Fiat that bought less than one micro-coin in a top-up (the rounding remainder)."""
FIAT_WITHDRAWALS_PENDING = "fiat:withdrawals_pending"
"""Coins reserved for withdrawals awaiting the processor's confirmation."""
STAKE_ISSUER = "stake:issuer"
"""Where stake tokens are issued from (one per household)."""
STAKE_SLASHED = "stake:slashed"
"""Where slashed stake tokens went before the staking pool (tokens out of circulation)."""
STAKING_POOL = "staking:pool"
"""The staking pool: coins funded from a share of the businesses' energy payments, paid
as stakers' rewards, and slashed stake tokens, recycled to households (never a business's
electricity credit)."""
WATT_CODES = ("watt.", "market.")
"""Transfer codes that may move WATT: storage accounting and trades between holders."""
WATT_ISSUER = "watt:battery"
"""Where WATT storage tokens are minted on charge and burned on discharge: its balance is
minus the WATT outstanding, which reconciles with the battery's stored energy."""

GENESIS_HASH = bytes(32)
"""The hash the first journal row chains to."""

MAX_AMOUNT = 10**15
"""Largest amount one transfer may move [minor units]: 10⁹ coins, tokens or fiat minor
units. Far beyond any village's payment, and small enough that a batch of transfers
cannot leave int64 on its own."""
MAX_BALANCE = 2**62
"""Largest magnitude a balance may reach [minor units]. SQLite stores an integer that
leaves int64 as an inexact REAL, and any sum of two bounded balances stays inside
int64, so stores refuse a batch that would take a balance beyond it."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)  # built once: to_us runs ~2 000 times a settled hour
_SEP = "\x1f"


def meter_account(meter_id: str) -> str:
    """The prepaid account of a meter: ``meter:<id>``."""
    return f"meter:{meter_id}"


def user_account(user_id: str) -> str:
    """A person's wallet: ``user:<id>``."""
    return f"user:{user_id}"


def stake_account(household_id: str) -> str:
    """A household's stake-token account: ``stake:<id>``."""
    return f"stake:{household_id}"


def is_clearing(account: str) -> bool:
    """Whether an account must net to zero within every batch (``pool:*``)."""
    return account.startswith("pool:")


def may_overdraw(account: str, code: str) -> bool:
    """Whether a transfer with ``code`` may take ``account`` below zero (module docstring)."""
    if code.startswith("settle."):
        return True
    if account in (FIAT_BRIDGE, FIAT_PROCESSOR):
        return code.startswith("fiat.")
    if account == STAKE_ISSUER:
        return code.startswith("stake.")
    if account == WATT_ISSUER:
        return code.startswith("watt.")
    if account.startswith("contract:") and account.endswith(":receivable"):
        return code == "contract.penalty"
    return False


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime.

    Examples
    --------
    >>> to_us(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))
    1000000
    """
    if moment.tzinfo is not UTC and (moment.tzinfo is None or moment.utcoffset() is None):
        msg = f"{moment.isoformat()} has no timezone; pass an aware datetime (UTC)"
        raise ValueError(msg)
    return (moment - _EPOCH) // _MICROSECOND


def from_us(micros: int) -> datetime:
    """The UTC datetime of microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


class LedgerError(ValueError):
    """A request the ledger refuses; the message says what is wrong and how to fix it."""


class InsufficientFundsError(LedgerError):
    """A transfer would take an account below zero where that is not allowed."""


class IdempotencyConflictError(LedgerError):
    """A batch key was reused with different content."""


class BatchRejectedError(LedgerError):
    """A batch breaks a ledger rule (bad amount, unbalanced pool, failed precondition)."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` minor units of ``asset`` from ``debit`` to ``credit``.

    Attributes
    ----------
    debit, credit : str
        Account ids; they must differ.
    asset : Asset
        What moves.
    amount : int
        Minor units, > 0.
    code : str
        What kind of transfer (``settle.charge``, ``fund``, ``fiat.topup``, ...).
    """

    debit: str
    credit: str
    asset: Asset
    amount: int
    code: str

    def __post_init__(self) -> None:
        if type(self.amount) is not int or not 0 < self.amount <= MAX_AMOUNT:
            msg = (
                f"transfer {self.code!r} {self.debit} → {self.credit}: amount must be a "
                f"positive int of minor units up to {MAX_AMOUNT}, got {self.amount!r}"
            )
            raise BatchRejectedError(msg)
        if self.debit == self.credit:
            msg = f"transfer {self.code!r}: debit and credit are both {self.debit!r}"
            raise BatchRejectedError(msg)
        if not self.debit or not self.credit or not self.code:
            msg = "transfer needs non-empty debit, credit and code"
            raise BatchRejectedError(msg)
        if not isinstance(self.asset, Asset):
            msg = f"transfer {self.code!r}: unknown asset {self.asset!r}; use an Asset"
            raise BatchRejectedError(msg)


@dataclass(frozen=True, slots=True)
class Batch:
    """Transfers posted together, atomically, under one idempotency key.

    Attributes
    ----------
    key : str
        Idempotency key, e.g. ``settle:<site>:2026-08-01T10:00Z``.
    transfers : tuple of Transfer
        In order; balance checks apply them one after the other.
    requires_absent : tuple of str
        Keys that must not have been posted (e.g. a withdrawal's void when confirming).
    requires_present : tuple of str
        Keys that must have been posted (e.g. the withdrawal's reservation).
    """

    key: str
    transfers: tuple[Transfer, ...]
    requires_absent: tuple[str, ...] = ()
    requires_present: tuple[str, ...] = ()
    digest: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            msg = "a batch needs a non-empty idempotency key"
            raise BatchRejectedError(msg)
        object.__setattr__(self, "digest", batch_digest(self.transfers))


@dataclass(frozen=True, slots=True)
class PostedBatch:
    """What posting a batch produced.

    Attributes
    ----------
    key : str
        The batch key.
    first_seq : int
        Journal sequence number of its first row (0 for an empty batch).
    count : int
        Number of journal rows (transfers).
    posted_at : datetime
        When it was first posted (UTC).
    replayed : bool
        True if the key had been posted before with the same content: nothing changed.
    """

    key: str
    first_seq: int
    count: int
    posted_at: datetime
    replayed: bool = False


class JournalRow(NamedTuple):
    """One journal row: a transfer with its place in the chain."""

    seq: int
    batch_key: str
    code: str
    debit: str
    credit: str
    asset: str
    amount: int
    posted_at_us: int
    hash: bytes


def _transfer_text(code: str, debit: str, credit: str, asset: str, amount: int) -> str:
    return f"{code}{_SEP}{debit}{_SEP}{credit}{_SEP}{asset}{_SEP}{amount}\n"


def batch_digest(transfers: Iterable[Transfer]) -> bytes:
    """SHA-256 of a batch's content (its transfers, in order): what idempotency compares."""
    digest = hashlib.sha256()
    for t in transfers:
        digest.update(_transfer_text(t.code, t.debit, t.credit, t.asset.value, t.amount).encode())
    return digest.digest()


def chain_hash(
    previous: bytes,
    seq: int,
    batch_key: str,
    code: str,
    debit: str,
    credit: str,
    asset: str,
    amount: int,
    posted_at_us: int,
) -> bytes:
    """The hash of a journal row: SHA-256 of the previous hash and the row's canonical text.

    Examples
    --------
    >>> chain_hash(GENESIS_HASH, 1, "k", "fund", "user:a", "meter:H001", "coin", 5, 0).hex()[:12]
    'c486ae85b076'
    """
    text = (
        f"{seq}{_SEP}{batch_key}{_SEP}{code}{_SEP}{debit}{_SEP}{credit}{_SEP}{asset}"
        f"{_SEP}{amount}{_SEP}{posted_at_us}"
    )
    return hashlib.sha256(previous + text.encode()).digest()


def validate_batch(batch: Batch) -> None:
    """Check the rules a batch must meet on its own: clearing accounts net to zero.

    Raises
    ------
    BatchRejectedError
        Naming the clearing account and its net.
    """
    net: dict[tuple[str, Asset], int] = {}
    for t in batch.transfers:
        if is_clearing(t.debit):
            net[t.debit, t.asset] = net.get((t.debit, t.asset), 0) - t.amount
        if is_clearing(t.credit):
            net[t.credit, t.asset] = net.get((t.credit, t.asset), 0) + t.amount
    unbalanced = {k: v for k, v in net.items() if v}
    if unbalanced:
        (account, asset), value = next(iter(unbalanced.items()))
        msg = (
            f"batch {batch.key!r} leaves clearing account {account} at {value:+d} {asset} "
            "minor units; a clearing account must net to zero within its batch"
        )
        raise BatchRejectedError(msg)


def apply_transfers(
    balances: Mapping[tuple[str, Asset], int], transfers: Iterable[Transfer]
) -> dict[tuple[str, Asset], int]:
    """New balances of every account a sequence of transfers touches.

    Parameters
    ----------
    balances : mapping of (account, asset) to int
        Current balances; missing keys are zero.
    transfers : iterable of Transfer
        Applied in order.

    Returns
    -------
    dict of (account, asset) to int
        The new balance of each touched (account, asset).

    Raises
    ------
    InsufficientFundsError
        If a transfer takes an account below zero where :func:`may_overdraw` forbids it.
    BatchRejectedError
        If a balance would leave ±:data:`MAX_BALANCE`.

    Examples
    --------
    >>> t = Transfer("user:a", "meter:H001", Asset.COIN, 5, "fund")
    >>> apply_transfers({("user:a", Asset.COIN): 7}, [t])[("user:a", Asset.COIN)]
    2
    """
    new: dict[tuple[str, Asset], int] = {}
    for t in transfers:
        debit_key = (t.debit, t.asset)
        before = new[debit_key] if debit_key in new else balances.get(debit_key, 0)
        after = before - t.amount
        if after < 0 and not may_overdraw(t.debit, t.code):
            msg = (
                f"{t.debit} holds {before} {t.asset.value} minor units, "
                f"{t.code!r} needs {t.amount}; top the account up or move less"
            )
            raise InsufficientFundsError(msg)
        new[debit_key] = after
        credit_key = (t.credit, t.asset)
        new[credit_key] = (
            new[credit_key] if credit_key in new else balances.get(credit_key, 0)
        ) + (t.amount)
        check_balance_bounds(t.debit, t.asset, new[debit_key])
        check_balance_bounds(t.credit, t.asset, new[credit_key])
    return new


def check_balance_bounds(account: str, asset: Asset | str, balance: int) -> None:
    """Refuse a balance beyond ±:data:`MAX_BALANCE` (it would leave int64 in a sum or a store).

    Raises
    ------
    BatchRejectedError
        Naming the account and the balance it would reach.
    """
    if not -MAX_BALANCE <= balance <= MAX_BALANCE:
        name = asset.value if isinstance(asset, Asset) else asset
        msg = (
            f"{account} would hold {balance} {name} minor units, beyond the ledger's "
            f"bound of ±{MAX_BALANCE}; split the amount or check it for a typo"
        )
        raise BatchRejectedError(msg)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing :func:`verify_journal` found wrong; ``seq`` is 0 when no row is to blame."""

    seq: int
    message: str


@dataclass(frozen=True, slots=True)
class VerifiedPoint:
    """Where a verification that found nothing wrong ended: enough to go on from there.

    Attributes
    ----------
    rows : int
        Journal rows verified (the last one is row ``rows``).
    head_hash : bytes
        Its hash.
    running : mapping of (account, asset) to int
        The balances the journal added up to.
    seen_batches : frozenset of str
        Keys of the batches with rows.
    """

    rows: int
    head_hash: bytes
    running: Mapping[tuple[str, str], int] = field(repr=False)
    seen_batches: frozenset[str] = field(repr=False)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What :func:`verify_journal` checked and found.

    Attributes
    ----------
    rows, batches : int
        Journal rows and batches covered (from the first row, also when resumed).
    head_hash : bytes
        Hash of the last row (the chain head).
    problems : tuple of Problem
        Everything wrong, first bad row first (at most a few hundred are kept).
    point : VerifiedPoint or None
        Where to resume the next verification from; None if problems were found.
    """

    rows: int
    batches: int
    head_hash: bytes
    problems: tuple[Problem, ...]
    point: VerifiedPoint | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Whether the journal verified."""
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        """The first bad row's sequence number, or None if all is well."""
        seqs = [p.seq for p in self.problems if p.seq]
        return min(seqs) if seqs else None


_MAX_PROBLEMS = 200


def verify_journal(
    rows: Iterable[tuple[int, str, str, str, str, str, int, int, bytes]],
    batches: Mapping[str, tuple[bytes, int, int]],
    balances: Mapping[tuple[str, str], int],
    since: VerifiedPoint | None = None,
) -> VerifyReport:
    """Recompute the hash chain and every ledger invariant from the journal.

    Parameters
    ----------
    rows : iterable of journal rows
        ``(seq, batch_key, code, debit, credit, asset, amount, posted_at_us, hash)`` in
        sequence order (:class:`JournalRow` or plain tuples).
    batches : mapping of str to (digest, first_seq, count)
        The store's batch index (batches with no transfers have ``count`` 0).
    balances : mapping of (account, asset) to int
        The store's balance table.
    since : VerifiedPoint, optional
        Resume after an earlier verification: ``rows`` then start at ``since.rows + 1``
        and chain on ``since.head_hash``. Rows before it are not read again, so an edit
        there is not seen; the caller checks that ``since.head_hash`` is still the
        stored hash of row ``since.rows`` (a rewrite changes it) and verifies in full now
        and then.

    Returns
    -------
    VerifyReport
        Checked counts and the problems found, each naming the row.

    Notes
    -----
    Checks, per row: sequence numbers run 1, 2, 3, … with no gap; the stored hash equals
    the recomputed one (chained on the *stored* previous hash, so only an edited row is
    flagged, not every row after it); the amount is positive, the accounts differ, the
    asset is known; no account goes below zero unless :func:`may_overdraw` allows it;
    ``fiat:bridge`` moves only with ``fiat.*`` codes (coins come from nowhere else);
    ``watt:battery`` mints and burns WATT only with ``watt.*`` codes, and WATT move
    between holders only by storage accounting or a market trade (:data:`WATT_CODES`),
    so the WATT outstanding (minus the issuer's balance) is what storage accounting
    minted less what was burned, and no holder is ever below zero. Per batch: its rows
    are contiguous and
    match the batch index (first row, count, content digest); clearing accounts (the
    settlement pool) net to zero. At the end: the balance table equals the balances the
    journal adds up to, and no indexed batch is missing from the journal.
    """
    problems: list[Problem] = []

    def problem(seq: int, message: str) -> None:
        if len(problems) < _MAX_PROBLEMS:
            problems.append(Problem(seq, message))

    assets = {a.value for a in Asset}
    running: dict[tuple[str, str], int] = {} if since is None else dict(since.running)
    previous = GENESIS_HASH if since is None else since.head_hash
    expected_seq = 1 if since is None else since.rows + 1
    seen_batches: set[str] = set() if since is None else set(since.seen_batches)
    current_key: str | None = None
    current_first = 0
    current_count = 0
    current_digest = hashlib.sha256()
    clearing_net: dict[tuple[str, str], int] = {}
    batch_rows_bad = False
    sha256 = hashlib.sha256

    def close_batch(last_seq: int) -> None:
        assert current_key is not None
        if batch_rows_bad:
            return  # the bad row is named already; digest and pool follow from it
        indexed = batches.get(current_key)
        if indexed is None:
            problem(
                current_first,
                f"rows {current_first}–{last_seq}: batch {current_key!r} is not in the batch index",
            )
        else:
            digest, first_seq, count = indexed
            if (first_seq, count) != (current_first, current_count):
                problem(
                    current_first,
                    f"batch {current_key!r}: index says rows {first_seq}+{count}, journal "
                    f"has {current_first}+{current_count}",
                )
            elif digest != current_digest.digest():
                problem(
                    current_first,
                    f"batch {current_key!r}: content digest differs from "
                    "the one recorded when it was posted",
                )
        for (account, asset), net in clearing_net.items():
            if net:
                problem(
                    last_seq,
                    f"batch {current_key!r} leaves clearing account {account} at {net:+d} {asset}",
                )

    last_seq = expected_seq - 1
    for seq, key, code, debit, credit, asset, amount, posted_at_us, stored_hash in rows:
        if seq != expected_seq:
            problem(
                seq,
                f"row {seq}: expected sequence number {expected_seq} (rows deleted or inserted)",
            )
        expected_seq = seq + 1
        text = (
            f"{seq}{_SEP}{key}{_SEP}{code}{_SEP}{debit}{_SEP}{credit}{_SEP}{asset}"
            f"{_SEP}{amount}{_SEP}{posted_at_us}"
        )
        hash_ok = sha256(previous + text.encode()).digest() == stored_hash
        previous = stored_hash
        if key != current_key:
            if current_key is not None:
                close_batch(last_seq)
            batch_rows_bad = False
            if key in seen_batches:
                problem(seq, f"row {seq}: batch {key!r} appears in two places in the journal")
            seen_batches.add(key)
            current_key, current_first, current_count = key, seq, 0
            current_digest = sha256()
            clearing_net = {}
        if not hash_ok:
            problem(seq, f"row {seq}: hash does not match its content (row edited)")
            batch_rows_bad = True
        current_count += 1
        current_digest.update(_transfer_text(code, debit, credit, asset, amount).encode())
        if type(amount) is not int or amount <= 0 or debit == credit or asset not in assets:
            problem(seq, f"row {seq}: malformed transfer ({amount!r} {asset} {debit} → {credit})")
            last_seq = seq
            continue
        debit_key = (debit, asset)
        after = running.get(debit_key, 0) - amount
        running[debit_key] = after
        credit_key = (credit, asset)
        running[credit_key] = running.get(credit_key, 0) + amount
        if after < 0 and not may_overdraw(debit, code):
            problem(
                seq,
                f"row {seq}: {debit} goes to {after} {asset} with {code!r}, which may "
                "not overdraw it (value created outside the bridge)",
            )
        if (debit == FIAT_BRIDGE or credit == FIAT_BRIDGE) and not code.startswith("fiat."):
            problem(
                seq,
                f"row {seq}: {code!r} moves coins through {FIAT_BRIDGE}; only fiat.* transfers may",
            )
        if WATT_ISSUER in (debit, credit) and (asset != Asset.WATT or not code.startswith("watt.")):
            problem(
                seq,
                f"row {seq}: {code!r} mints or burns through {WATT_ISSUER}; only watt.* "
                "transfers of WATT may (WATT exist only as minted for stored energy)",
            )
        elif asset == Asset.WATT and not code.startswith(WATT_CODES):
            problem(
                seq,
                f"row {seq}: {code!r} moves WATT; only watt.* transfers (storage accounting) "
                "and market.* trades between holders may",
            )
        if debit.startswith("pool:"):
            clearing_net[debit_key] = clearing_net.get(debit_key, 0) - amount
        if credit.startswith("pool:"):
            clearing_net[credit_key] = clearing_net.get(credit_key, 0) + amount
        last_seq = seq
    if current_key is not None:
        close_batch(last_seq)
    for key, (_, first_seq, count) in batches.items():
        if count and key not in seen_batches:
            problem(
                first_seq, f"batch {key!r} (rows {first_seq}+{count}) is missing from the journal"
            )
    stored = {k: v for k, v in balances.items() if v}
    computed = {k: v for k, v in running.items() if v}
    for account_asset in sorted(set(stored) | set(computed)):
        if stored.get(account_asset, 0) != computed.get(account_asset, 0):
            account, asset = account_asset
            problem(
                0,
                f"balance of {account} ({asset}) is {stored.get(account_asset, 0)} in "
                f"the balance table but the journal adds up to "
                f"{computed.get(account_asset, 0)}",
            )
    problems.sort(key=lambda p: (p.seq == 0, p.seq))
    point = (
        None
        if problems
        else VerifiedPoint(last_seq, previous, dict(running), frozenset(seen_batches))
    )
    return VerifyReport(last_seq, len(seen_batches), previous, tuple(problems), point)
