"""Prepaid control, funding, the fiat bridge and staking."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from microgrid.site import ConnectionKind
from settlement import (
    AlarmKind,
    Asset,
    CreditPolicy,
    CreditState,
    CreditStatus,
    FiatConfig,
    IdempotencyConflictError,
    InsufficientFundsError,
    LedgerError,
    NotOwnerError,
    SqliteLedgerStore,
    WebhookRejectedError,
    confirm_withdrawal,
    credit_for_dispatch,
    credit_statuses,
    fund_meter,
    handle_webhook,
    read_credit,
    reserve_withdrawal,
    sign_webhook,
    void_withdrawal,
    withdraw,
)
from settlement.ledger import (
    FIAT_BRIDGE,
    FIAT_PROCESSOR,
    FIAT_RESERVE,
    FIAT_ROUNDING,
)
from settlement.prepaid import credit_status
from tests.settlement.conftest import HOUR

SECRET = b"s" * 32
FIAT = FiatConfig(SECRET, coin_price_fiat_minor=650)
P = CreditPolicy(emergency_credit_minor=0, reconnect_threshold_minor=1_000_000)


# --- prepaid ---------------------------------------------------------------------------------


def status(
    balance: int,
    connected: bool = True,
    hour: int = 12,
    kind: ConnectionKind = ConnectionKind.HOUSEHOLD,
    policy: CreditPolicy = P,
) -> CreditStatus:
    return credit_status("H001", kind, balance, connected, hour, HOUR, policy)


def test_disconnect_when_empty_and_reconnect_with_hysteresis():
    assert status(1).connected
    assert status(1).warning
    assert not status(0).connected
    assert status(0).state is CreditState.DISCONNECTED
    # Topped up to below threshold: stays off; at the threshold (net of debt): on.
    assert not status(999_999, connected=False).connected
    assert status(1_000_000, connected=False).connected


def test_friendly_hours_and_emergency_credit():
    assert status(-5, hour=22).state is CreditState.FRIENDLY_HOLD
    assert status(-5, hour=22).connected
    assert not status(-5, hour=7).connected
    emergency = CreditPolicy(emergency_credit_minor=200_000)
    assert status(-100_000, policy=emergency).state is CreditState.EMERGENCY
    assert not status(-200_000, policy=emergency).connected


def test_priority_users_are_never_cut_but_alarmed_past_the_ceiling():
    deep = status(-30_000_000, kind=ConnectionKind.PRIORITY)
    assert deep.connected
    assert deep.state is CreditState.PRIORITY_DEBT
    assert deep.alarms[0].kind is AlarmKind.PRIORITY_DEBT
    assert not status(-1, kind=ConnectionKind.PRIORITY).alarms


def test_credit_statuses_feed_dispatch(site, store):
    fund_store(store, "amina", 5_000_000)
    fund_meter(store, "amina", "H002", 2_000_000, "r1")
    statuses = read_credit(store, site, HOUR, {"H003": False})
    credit = credit_for_dispatch(statuses)
    assert credit["H002"] is True
    assert credit["H001"] is False  # empty
    assert credit["H003"] is False  # off and not topped up
    assert all(credit[c.id] for c in site.priority_users)
    assert len(credit) == len(site.connections)
    local = credit_statuses(site, {}, {}, HOUR + timedelta(hours=10))  # 21:00 Niamey
    assert local["H001"].state is CreditState.FRIENDLY_HOLD


def test_policy_is_validated():
    with pytest.raises(ValueError, match="hysteresis"):
        CreditPolicy(reconnect_threshold_minor=0)


# --- funding ---------------------------------------------------------------------------------


def fund_store(store: SqliteLedgerStore, user: str, amount: int) -> int:
    body = json.dumps(
        {"payment_id": f"pi_{user}", "account": f"user:{user}", "amount_fiat_minor": amount}
    ).encode()
    ts = str(int(HOUR.timestamp()))
    coins = amount * 1_000_000 // 650
    handle_webhook(store, FIAT, body, sign_webhook(SECRET, int(ts), body), ts, HOUR)
    return coins


def test_anyone_may_fund_any_meter_but_withdraw_only_their_own(store):
    fund_store(store, "amina", 1000)
    fund_meter(store, "amina", "P07_lights_market", 500_000, "street-light-1")
    assert store.balance("meter:P07_lights_market") == 500_000
    with pytest.raises(NotOwnerError, match="'bob' may not withdraw from user:amina"):
        withdraw(store, "bob", "user:amina", "user:bob", 1, "w1")
    with pytest.raises(NotOwnerError, match="no owner registered"):
        withdraw(store, "amina", "meter:P07_lights_market", "user:amina", 1, "w2")
    store.set_owner("meter:H001", "amina")
    fund_meter(store, "amina", "H001", 300_000, "r2")
    withdraw(store, "amina", "meter:H001", "user:amina", 300_000, "w3")
    with pytest.raises(InsufficientFundsError):
        fund_meter(store, "amina", "H001", 10**12, "r3")


# --- fiat ------------------------------------------------------------------------------------


def call(
    store: SqliteLedgerStore,
    payload: dict[str, object],
    now: datetime = HOUR,
    ts: int | None = None,
    secret: bytes = SECRET,
) -> Any:
    body = json.dumps(payload).encode()
    ts = int(now.timestamp()) if ts is None else ts
    return handle_webhook(store, FIAT, body, sign_webhook(secret, ts, body), str(ts), now)


def test_webhook_credits_coins_books_the_remainder_and_is_idempotent(store):
    payment = {"payment_id": "pi_1", "account": "user:amina", "amount_fiat_minor": 1000}
    first = call(store, payment)
    assert first.coins_minor == 1_538_461
    assert first.remainder_fiat == 350
    again = call(store, payment, now=HOUR + timedelta(seconds=30))
    assert again.posted.replayed
    assert store.balance("user:amina") == 1_538_461
    assert store.balance(FIAT_BRIDGE) == -1_538_461
    assert store.balance(FIAT_RESERVE, Asset.FIAT) + store.balance(FIAT_ROUNDING, Asset.FIAT) == (
        1000 * 1_000_000
    )
    with pytest.raises(IdempotencyConflictError):
        call(store, {**payment, "amount_fiat_minor": 2000})
    assert store.verify().ok


def test_webhook_authentication(store):
    payment = {"payment_id": "pi_1", "account": "user:amina", "amount_fiat_minor": 1000}
    with pytest.raises(WebhookRejectedError, match="signature"):
        call(store, payment, secret=b"x" * 32)
    with pytest.raises(WebhookRejectedError, match="replay"):
        call(store, payment, ts=int(HOUR.timestamp()) - 3600)
    with pytest.raises(WebhookRejectedError, match="account"):
        call(store, {**payment, "account": "utility:fees"})
    assert store.balance("user:amina") == 0


def test_withdrawal_reserve_then_confirm_or_void(store):
    fund_store(store, "amina", 6500)  # 10 coins
    reserve_withdrawal(store, "amina", "user:amina", 4_000_000, "wd1")
    assert store.balance("user:amina") == 6_000_000
    call(store, {"type": "withdrawal.succeeded", "withdrawal_id": "wd1"})
    assert store.balance(FIAT_BRIDGE) == -6_000_000
    with pytest.raises(LedgerError, match="already was"):
        void_withdrawal(store, "wd1")
    reserve_withdrawal(store, "amina", "user:amina", 1_000_000, "wd2")
    void_withdrawal(store, "wd2")
    assert store.balance("user:amina") == 6_000_000
    with pytest.raises(LedgerError, match="already was"):
        confirm_withdrawal(store, "wd2", FIAT)
    with pytest.raises(NotOwnerError):
        reserve_withdrawal(store, "bob", "user:amina", 1, "wd3")
    assert store.balance(FIAT_PROCESSOR, Asset.FIAT) == -(6500 - 4 * 650) * 1_000_000
    assert store.verify().ok


# --- staking ---------------------------------------------------------------------------------


# The staking rules are tested in tests/settlement/test_staking.py.
