"""Hostile input to the ledger and the fiat webhook: int64 bounds, bounded ids, parsing."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from settlement import (
    Asset,
    SqliteLedgerStore,
    WebhookRejectedError,
    handle_webhook,
    sign_webhook,
)
from settlement.ledger import (
    FIAT_BRIDGE,
    MAX_AMOUNT,
    MAX_BALANCE,
    Batch,
    BatchRejectedError,
    Transfer,
    apply_transfers,
)
from tests.settlement.conftest import HOUR
from tests.settlement.test_mechanisms import FIAT, SECRET

KNOWN = {"user:amina", "meter:H001"}


def send(store, body: bytes, signature: str | None = None, ts: str | None = None):
    stamp = str(int(HOUR.timestamp())) if ts is None else ts
    if signature is None:
        signature = sign_webhook(SECRET, int(stamp), body)
    return handle_webhook(store, FIAT, body, signature, stamp, HOUR, KNOWN.__contains__)


def payment(**fields: object) -> bytes:
    base: dict[str, object] = {
        "payment_id": "pi_1",
        "account": "user:amina",
        "amount_fiat_minor": 1000,
    }
    return json.dumps({**base, **fields}).encode()


def test_a_known_account_is_credited(store):
    assert send(store, payment()).coins_minor == 1_538_461


@pytest.mark.parametrize(
    "account",
    ["meter:DOES_NOT_EXIST", "user:", "user:../../etc/passwd", "user:ami\u202ena", "utility:fees"],
)
def test_webhook_credits_only_existing_accounts(store, account):
    with pytest.raises(WebhookRejectedError, match="account"):
        send(store, payment(account=account))
    assert store.balances() == {}


@pytest.mark.parametrize("payment_id", ["x" * 1_000_000, "pi 1", "pi/1", "", "\u202epi"])
def test_webhook_bounds_payment_ids(store, payment_id):
    with pytest.raises(WebhookRejectedError):
        send(store, payment(payment_id=payment_id))
    assert store.keys_with_prefix("") == []


@pytest.mark.parametrize(
    ("signature", "timestamp"),
    [("é" * 64, None), ("0" * 63, None), ("zz" * 32, None), (None, "1" * 401), (None, "١٢٣")],
)
def test_malformed_signature_or_timestamp_is_rejected_not_a_crash(store, signature, timestamp):
    body = payment()
    ts = timestamp or str(int(HOUR.timestamp()))
    if signature is None:
        # a signature over the odd timestamp, so only the timestamp's shape is at fault
        signature = sign_webhook(SECRET, int(ts) if ts.isascii() else 0, body)
    with pytest.raises(WebhookRejectedError):
        send(store, body, signature, ts)


@pytest.mark.parametrize(
    "body",
    [
        b'{"payment_id": "pi_1", "account": "user:amina", "amount_fiat_minor": '
        + b"9" * 5000
        + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' * 20 + b"1" + b"}" * 20,
        b"\xff\xfe",
    ],
    ids=["5000-digit int", "100k deep", "20 deep", "not utf-8"],
)
def test_validly_signed_hostile_json_is_rejected(store, body):
    with pytest.raises(WebhookRejectedError):
        send(store, body)


@pytest.mark.parametrize("amount", [2**62, 9 * 10**12, "5", True, 1.0, -1, 0])
def test_topup_amounts_are_bounded_ints(store, amount):
    with pytest.raises(WebhookRejectedError, match=r"amount_fiat_minor|digits|withdrawal_id"):
        send(store, payment(amount_fiat_minor=amount))
    assert store.verify().ok


def test_transfer_amount_is_bounded():
    Transfer(FIAT_BRIDGE, "user:a", Asset.COIN, MAX_AMOUNT, "fiat.topup")
    with pytest.raises(BatchRejectedError, match="up to"):
        Transfer(FIAT_BRIDGE, "user:a", Asset.COIN, MAX_AMOUNT + 1, "fiat.topup")


def test_store_refuses_a_balance_beyond_the_bound_and_stays_exact(tmp_path):
    # Many maximal top-ups: each is legal, the sum would leave MAX_BALANCE (and int64 soon
    # after, where SQLite would store a REAL); the store refuses the batch that crosses it.
    big = Transfer(FIAT_BRIDGE, "user:a", Asset.COIN, MAX_AMOUNT, "fiat.topup")
    per_batch = 1000
    with SqliteLedgerStore(tmp_path / "l.sqlite", synchronous="NORMAL") as store:
        crossing = MAX_BALANCE // (MAX_AMOUNT * per_batch)
        for k in range(crossing):
            store.post(Batch(f"b{k}", (big,) * per_batch))
        with pytest.raises(BatchRejectedError, match="bound"):
            store.post(Batch("over", (big,) * per_batch))
        assert store.balance("user:a") <= MAX_BALANCE
        assert type(store.balance("user:a")) is int
        report = store.verify()
        assert report.ok, report.problems


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, MAX_AMOUNT), min_size=1, max_size=40), st.integers(0, 2**62))
def test_apply_transfers_never_leaves_the_bound(amounts, opening):
    transfers = [Transfer(FIAT_BRIDGE, "user:a", Asset.COIN, a, "fiat.topup") for a in amounts]
    try:
        new = apply_transfers({("user:a", Asset.COIN): opening}, transfers)
    except BatchRejectedError:
        assert opening + sum(amounts) > MAX_BALANCE
    else:
        assert all(-MAX_BALANCE <= v <= MAX_BALANCE for v in new.values())
        assert new[("user:a", Asset.COIN)] == opening + sum(amounts)
